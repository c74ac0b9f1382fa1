from __future__ import annotations

from nimbus_api.kit.problems import Conflict, NotFound


class CampaignNotFound(NotFound):
    code = "campaign.not_found"
    title = "No such campaign in this workspace"


class PoolAccountNotFound(NotFound):
    code = "campaign_account.not_found"
    title = "This email account is not in the campaign's sending pool"


class CampaignHasNoSteps(Conflict):
    code = "campaign.no_steps"
    title = "The campaign has no steps: add at least one before starting it"


class CampaignHasNoInboxes(Conflict):
    code = "campaign.no_inboxes"
    title = "The campaign's sending pool is empty: attach at least one email account before starting it"


class CampaignCompleted(Conflict):
    code = "campaign.completed"
    title = "The campaign is completed"


class CampaignNotActive(Conflict):
    code = "campaign.not_active"
    title = "Only an active campaign can be paused"

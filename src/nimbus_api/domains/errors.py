from __future__ import annotations

from nimbus_api.kit.problems import NotFound, RateLimited


class DomainNotFound(NotFound):
    code = "domain.not_found"
    title = "No such domain in this workspace"


class DomainCheckRateLimited(RateLimited):
    code = "domain.check_rate_limited"
    title = "Too many checks of this domain; try again later"

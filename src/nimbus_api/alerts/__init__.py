"""Alerts: workspace rules over the inboxes' and domains' health columns, and the alerts they raise.

A rule (``alert_rules``) has a kind (``kinds.KINDS``), a threshold checked per kind, a severity, an
on/off switch and a scope (every inbox of the workspace, or one). Each workspace starts with the
defaults (``kinds.DEFAULTS``), written when the workspace is created (and by the migration for the ones
that existed before).

An alert (``alert_states``) is one rule's condition holding for one subject, an inbox or a domain:

    (none) --condition starts--> active --condition ends / subject gone--> resolved (condition_ended)
                                 active --rule disabled--> resolved (rule_disabled)
                                 active --rule deleted--> resolved (rule_deleted)

``alert.triggered`` is emitted at the first arrow and ``alert.resolved`` at the others, once each, in the
transaction that writes the transition. Once: the trigger is an insert that a partial unique index
(one *active* row per rule and subject) turns into nothing for every evaluator but the first; a resolve
is an update of rows locked first (``FOR UPDATE SKIP LOCKED``, then ``active`` read again), so a row
another evaluator is resolving is left to it. A condition that starts again later is a new alert.

``evaluate.evaluate`` runs one statement per kind over every workspace (the worker's cron,
``tasks.evaluate_alerts``) or one workspace (after a change that moves a condition, in the caller's
transaction, or the job enqueued by name after commit).
"""

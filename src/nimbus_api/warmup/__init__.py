"""The native warmup exchange: warming inboxes write to each other, and each side acts like a person would.

Pool: every inbox with ``warmup_enabled`` takes part, across the deployment (``NIMBUS_WARMUP_POOL=platform``)
or within its own workspace only (``workspace``). An inbox whose warmup is paused (``pause._paused``) sends
nothing and answers nothing; it may still be written to.

Modules: ``phrases`` (the built-in phrase bank: subjects, greetings, sentences, sign-offs; deterministic
from a seed), ``marker`` (the ``X-Nimbus-Warmup`` header: an HMAC of the Message-ID under a key derived from
the master keys), ``planner`` (each day's rows, spread over the day), ``sender`` (sending the due rows through
the sending inbox's own SMTP), ``receipts`` (what the IMAP sync records when it meets a marked message, before
anything is stored as inbound mail), ``receiver`` (moving it out of Junk, \\Seen, sometimes \\Flagged, and
planning a reply), ``activity`` (the per-day API read), ``tasks`` (the worker's cron jobs).

States of a ``warmup_messages`` row (one function moves each arrow)::

    planned --claim (lease committed before SMTP)--> sending                     sender.claim
    sending --2xx at the final dot-----------------> sent  (+1 warmup_sent_total) sender.record
    sending --refused for good / attempts used-----> failed                       sender.record
    sending --refused for now----------------------> planned (send_at later)      sender.record
    sending --lease expired (worker died)----------> unknown (never sent again)   sender.expire
    sending --lease expired, already received------> sent  (+1 warmup_sent_total) sender.expire
    unknown --the recipient's sync saw it----------> sent  (+1 warmup_sent_total) receipts.record
    planned --the inbox paused / left warmup-------> skipped                      sender.claim

    received_at NULL --the recipient's sync saw it--> received (landed inbox|junk) receipts.record
    received --IMAP: \\Seen [\\Flagged], MOVE Junk->INBOX (rescued)--> handled     receiver.handle
    handled --a share of them: a reply row is planned (depth + 1)--> replied when the reply is sent

Delivery is at most once: a crash between the SMTP transaction and its record leaves the row ``sending``
with a lease; when the lease expires it becomes ``unknown`` and is never retried, so no warmup message is
ever sent twice. If it did go out, the recipient's sync finds it and turns it ``sent`` (evidence, not a
guess); if it did not, one warmup message of that day is lost, which the exchange does not notice.
"""

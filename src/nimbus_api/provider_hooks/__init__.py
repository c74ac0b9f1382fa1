"""Bounce and complaint notifications from sending services, taken as their webhooks.

``POST /hooks/{provider}/{token}`` (``endpoints``) finds the hook by the SHA-256 of its token
(``service``), checks the provider's scheme (``sns`` for Amazon SES through SNS, ``signatures`` for
Postmark, SendGrid, Mailgun and SMTP2GO), reads the payload into ``reports.Report`` rows (``reports``) and
applies each through the same effects as a DSN in the inbox (``apply``): one message matched by its
Message-ID or the provider's message id, counted once whichever way the report arrives first.
"""

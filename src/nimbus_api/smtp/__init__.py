"""SMTP adapter: verified connections to users' own SMTP servers, and the errors they can end in.

The adapter knows nothing of the ORM or the settings: it takes an ``SmtpServer`` (values, with the
password still an opaque ``Secret``) and a ``NetContext`` (egress policy, resolver, shared TLS context,
timeouts), and reports every failure as an ``SmtpError`` with a stable code.

The classification function is not re-exported here on purpose: ``nimbus_api.smtp.classify`` must stay
the module (its table), not be shadowed by a function of the same name.
"""

from nimbus_api.kit.sasl import AuthKind
from nimbus_api.smtp.classify import auth_failed_hint
from nimbus_api.smtp.client import (
    Mode,
    SendResult,
    SmtpConnection,
    SmtpServer,
    connect,
    send_test_message,
    transmit,
)
from nimbus_api.smtp.errors import ServerReply, SmtpError, Stage, redact

__all__ = [
    "AuthKind",
    "Mode",
    "SendResult",
    "ServerReply",
    "SmtpConnection",
    "SmtpError",
    "SmtpServer",
    "Stage",
    "auth_failed_hint",
    "connect",
    "redact",
    "send_test_message",
    "transmit",
]

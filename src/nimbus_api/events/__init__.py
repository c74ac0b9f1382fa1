"""Events: what happened that a customer's systems may want to hear about (the webhook outbox).

Services call ``events.emit`` in the session of the change they make; ``catalogue`` lists the types."""

from nimbus_api.events.service import emit, emit_many

__all__ = ["emit", "emit_many"]

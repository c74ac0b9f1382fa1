"""nimbus_api: an open backend for bring-your-own-SMTP outbound email."""

__version__ = "0.1.0"

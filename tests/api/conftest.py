"""Fixtures of the API tests; ``captured_logs`` (logging as the product sets it up) is the canary's."""

from tests.security.test_canary import captured_logs

__all__ = ["captured_logs"]

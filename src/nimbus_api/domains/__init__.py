"""Sending domains, shared by every account of a workspace on the same domain."""

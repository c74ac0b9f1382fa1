"""Webhooks: a workspace's endpoints (URL, event filter, signing secret) that events are delivered to."""

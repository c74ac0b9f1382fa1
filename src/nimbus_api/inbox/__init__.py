"""The inbox: storing synced messages, matching them to what we sent, their effects, and the inbox API."""

"""Inbox health: the score formula (``score``), its set-based recompute in PostgreSQL (``recompute``), the
requests that ask for an inbox's recompute after an event (``requests``), daily snapshots (``snapshots``),
the worker tasks and the API."""

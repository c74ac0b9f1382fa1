"""Campaigns: steps and their templates, the sending pool, schedule, start/pause, throttling and stats."""

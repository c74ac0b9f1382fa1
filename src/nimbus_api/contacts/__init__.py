"""Contacts: the people campaigns send to, one per address per workspace, with custom fields."""

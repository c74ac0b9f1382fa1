"""Fleet onboarding: import up to 1,000 mailboxes at once (README: Importing a fleet of mailboxes)."""

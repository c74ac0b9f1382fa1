"""OAuth accounts (Google, Microsoft): connect through the provider's consent screen, tokens kept through
the Vault, refreshed before they expire and at once when a login says they did (README: OAuth accounts)."""

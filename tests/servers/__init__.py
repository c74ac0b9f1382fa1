"""Real protocol servers for the tests, on loopback: DNS, SMTP (aiosmtpd), IMAP (Dovecot)."""

"""Email accounts: connected mailboxes with their SMTP/IMAP settings and health fields."""

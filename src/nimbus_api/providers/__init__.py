"""Provider presets: connection settings and advice for well-known SMTP/IMAP services."""

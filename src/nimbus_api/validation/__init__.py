"""Connect-time validation: prove a mailbox works (DNS, SMTP, IMAP, roundtrip) before it is saved."""

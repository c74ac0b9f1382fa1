"""The credential vault: encrypted mailbox secrets, audited decrypts, key rotation."""

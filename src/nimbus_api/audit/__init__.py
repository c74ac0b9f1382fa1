"""The credential audit log: one row per decrypt of a mailbox secret."""

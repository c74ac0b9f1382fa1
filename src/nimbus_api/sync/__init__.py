"""IMAP sync: leases, cursors, persistent connections and the per-worker runner (see ``runner``)."""

"""One inbox's monitoring read (``GET /v1/email-accounts/{id}/monitoring``): its score, sending and
connection figures over 24 h and 7 d, IMAP sync, DNS by record, blocklist status and active alerts.

Read-only, a handful of indexed queries (``queries``), so it stays fast on an inbox with a long history
(bench/bench_monitoring.py)."""

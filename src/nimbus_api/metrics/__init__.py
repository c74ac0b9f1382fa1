"""``GET /metrics``: the recorded metrics (``kit.metrics``) plus gauges read from PostgreSQL at scrape time."""

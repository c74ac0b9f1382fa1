# syntax=docker/dockerfile:1
# nimbus API image: `nimbus api` by default; the same image runs `nimbus worker` and `nimbus migrate`.

# ---- build: install the package and its dependencies into a venv ------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# the whole (filtered, see .dockerignore) context: pyproject.toml, README.md, src/
COPY . .
RUN /opt/venv/bin/pip install .

# ---- runtime -----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    NIMBUS_ALEMBIC_INI=/app/alembic.ini
RUN groupadd --system --gid 10001 nimbus \
 && useradd --system --uid 10001 --gid nimbus --home-dir /app --no-create-home --shell /usr/sbin/nologin nimbus
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY alembic.ini ./alembic.ini
COPY migrations ./migrations
USER nimbus:nimbus

EXPOSE 8000
# Checks the default command (`api` on port 8000); compose turns it off for the worker and migrate.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["nimbus"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

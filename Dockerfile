# syntax=docker/dockerfile:1
#
# One image for every process of the service; docker-compose.yml picks the command:
#   api     python -m app serve: uvicorn serving app.main:app (the default CMD below)
#   worker  celery -A app.tasks.celery_app:celery_app worker
#   beat    celery -A app.tasks.celery_app:celery_app beat
#   migrate python -m app migrate
#
# Build: docker build -t wordcount-service .   (no secrets are baked in; configuration comes
# from the environment at run time, see .env.example)

# --- builder: a virtualenv with the dependencies ------------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency publishes wheels for amd64 and arm64, so no compiler is needed. Should one
# ever have to be built from source, install build-essential here: this stage is thrown away.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# The dependency layer depends on the lock file alone, so editing the code does not reinstall
# it: requirements.lock pins every runtime dependency of pyproject.toml to the versions the
# tests passed with (`make lock` writes it).
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# --- runtime: the virtualenv, the code, an unprivileged user ------------------------------
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    MEDIA_ROOT=/data/media

# A fixed uid/gid, so that shared storage for the media volume can be given to it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
    && mkdir -p /data/media \
    && chown -R app:app /data

COPY --from=builder /opt/venv /opt/venv

# The code runs from /app (on PYTHONPATH) rather than being installed into the virtualenv:
# `python -m app migrate` and `check` find alembic.ini and migrations/ beside the package.
# It stays owned by root, so the service cannot modify its own code.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY simulator ./simulator
COPY app ./app
# Compile once here: the files are read-only at run time (PYTHONDONTWRITEBYTECODE).
RUN python -m compileall -q app migrations simulator

# Numeric, so that orchestrators can verify it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Liveness of the api (slim has no curl). docker-compose.yml sets its own checks: /readyz for
# the api, a Celery ping for the worker, none for beat and migrate.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]

# One image for every role: the command picks it (docker-compose.yml, Procfile,
# deploy/kubernetes): `clockify-relay serve | worker | scheduler`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin relay
WORKDIR /app

# Dependencies first, from pyproject.toml alone: a change to the source reuses this layer.
# Only [project] dependencies: no [local] (embedded Redis) and no [dev] extra in production.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY src ./src
RUN pip install --no-deps . && rm -rf build src/*.egg-info

USER 10001
EXPOSE 8000 8001
# The receiver's liveness (the image has no curl). Worker and scheduler containers override it
# with `clockify-relay worker-alive` (docker-compose.yml; Kubernetes uses its own probes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["clockify-relay", "serve", "--host", "0.0.0.0", "--port", "8000"]

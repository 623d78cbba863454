# CPU image of the sentiment service. No BuildKit features: it builds with the classic builder too.
#   docker build -t sentiment-service .
#   docker run --rm -p 8000:8000 sentiment-service
# A locally built base image can stand in for python:3.11-slim: --build-arg BASE_IMAGE=local/python-base:3.11
ARG BASE_IMAGE=python:3.11-slim
# serve,cpu,postgres for a PostgreSQL job store (SENTIMENT_JOBS_DATABASE_URL); SQLite needs nothing more.
ARG EXTRAS=serve,cpu

FROM ${BASE_IMAGE} AS builder
ARG EXTRAS
# strip (binutils) takes the debug symbols out of the extension modules; only the builder has it.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY model_runtime /src/model_runtime
COPY service /src/service
COPY deploy/docker/install-app.sh /usr/local/bin/install-app.sh
RUN install-app.sh ${EXTRAS}

FROM ${BASE_IMAGE} AS runtime
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/sentiment && chown app /var/lib/sentiment
COPY --from=builder /opt/venv /opt/venv
COPY models/sentiment-bilstm /app/models/sentiment-bilstm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SENTIMENT_MODEL_DIR=/app/models/sentiment-bilstm \
    SENTIMENT_PROVIDER=cpu \
    SENTIMENT_HOST=0.0.0.0 \
    SENTIMENT_PORT=8000 \
    SENTIMENT_SHUTDOWN_GRACE_S=20 \
    SENTIMENT_JOBS_DIR=/var/lib/sentiment
# The job store (SQLite) and its jobs' uploads and results: keep it on a volume.
VOLUME /var/lib/sentiment
WORKDIR /app
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
# Exec form: the server is PID 1's only child-free process and receives SIGTERM itself, then drains.
CMD ["python", "-m", "service"]

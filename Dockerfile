# roomcast server image: `docker compose up` runs two of it behind Caddy, with Redis and PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ROOMCAST_NO_BOOTSTRAP=1 \
    ROOMCAST_HOST=0.0.0.0 ROOMCAST_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY roomcast ./roomcast
RUN pip install --no-cache-dir ".[postgres]"
COPY run.py ./
# /docs serves the protocol from docs/.
COPY docs ./docs
RUN useradd --system --home /data roomcast && mkdir -p /data && chown roomcast /data
USER roomcast
EXPOSE 8000
# Ready, not just up: the database and the stream backend answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
CMD ["python", "run.py", "serve"]

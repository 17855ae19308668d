# refapi container: gunicorn + aiohttp workers, non-root, read-only friendly (metrics dir under /tmp).
# Build: docker build -t refapi .   Run: docker run -p 8001:8001 --env-file conf/refapi.env refapi

# Docs-page assets (Swagger UI, ReDoc) come from the npm registry, integrity-checked by the script.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY bin/fetch-docs-assets bin/
RUN bin/fetch-docs-assets

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY requirements/ requirements/
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements/main.txt
COPY setup.py setup.cfg README.md ./
COPY refapi/ refapi/
COPY --from=assets /src/refapi/openapi/static/vendor/ refapi/openapi/static/vendor/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin refapi
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/* && rm -rf /wheels
COPY conf/gunicorn.conf.py /etc/refapi/gunicorn.conf.py
USER refapi
ENV PYTHONUNBUFFERED=1 BIND_HOST=0.0.0.0 API_FIRST_HTTP_PORT=8001
EXPOSE 8001 8444
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8001/health/', timeout=4).status != 200)"
CMD ["gunicorn", "-c", "/etc/refapi/gunicorn.conf.py"]

"""gunicorn settings for refapi: `gunicorn -c conf/gunicorn.conf.py` (the app is refapi.app:create_app)."""

import os
import shutil
import sys
import tempfile

from refapi.config import ConfigError, Settings

# Validate the environment once in the master, so a bad value stops startup with its name instead of
# crash-looping workers.
try:
    _settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"refapi: invalid configuration: {exc}")

wsgi_app = "refapi.app:create_app"
worker_class = "aiohttp.GunicornWebWorker"
workers = _settings.workers
bind = [f"{_settings.bind_host}:{_settings.http_port}"]
graceful_timeout = 30
timeout = 30
keepalive = 75  # longer than nginx's upstream keepalive_timeout, so nginx closes idle connections first
control_socket_disable = True
accesslog = None  # refapi.access writes one JSON line per request

# Multiprocess metrics: every worker writes its values under one directory that /metrics aggregates. It is
# made fresh for each run (stale files from a previous run would be summed in) and removed at exit. It must
# be in the environment before any worker imports prometheus_client.
_owns_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _owns_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="refapi-metrics-")
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": _settings.log_level, "handlers": ["json"]},
    "handlers": {"json": {"class": "refapi.logs.JsonLineHandler"}},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level, "handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}


def on_starting(server):  # noqa: ARG001 - gunicorn hook signature
    # Empty a directory we were handed (contract: "emptied at start") without removing the directory itself.
    os.makedirs(_metrics_dir, exist_ok=True)
    for entry in os.scandir(_metrics_dir):
        if entry.is_file():
            os.unlink(entry.path)


def child_exit(server, worker):  # noqa: ARG001 - gunicorn hook signature
    # A dead worker's live gauges (in-progress, breaker state) must stop counting; its counters stay.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def on_exit(server):  # noqa: ARG001 - gunicorn hook signature
    if _owns_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)

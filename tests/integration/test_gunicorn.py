"""refapi under gunicorn with several workers: /metrics aggregates every worker's counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.processes import gunicorn
from tests.unit.test_metrics import sample


def per_worker_health_counts(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """Read each worker's counter file on its own: how many /health/ requests that worker served."""
    counts = {}
    for db in metrics_dir.glob("counter_*.db"):
        alone = scratch / db.stem
        alone.mkdir(parents=True)
        shutil.copy(db, alone / db.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts[db.stem] = sample(text, "http_requests_total", method="GET", route="/health/", status="200") or 0.0
    return counts


async def test_metrics_sum_requests_served_by_two_workers(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "RATE_LIMIT_ENABLED": "false"}
    with gunicorn(env, log_path=tmp_path / "gunicorn.log") as port:
        sent = 0
        # A fresh connection per request lets either worker accept it; keep going until both have served some.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for batch in range(50):
                for _ in range(20):
                    async with session.get(f"http://127.0.0.1:{port}/health/") as resp:
                        assert resp.status == 200
                    sent += 1
                counts = per_worker_health_counts(metrics_dir, tmp_path / f"scratch{batch}")
                if len([count for count in counts.values() if count > 0]) >= 2:
                    break
            assert len([count for count in counts.values() if count > 0]) == 2, counts
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
    assert sample(text, "http_requests_total", method="GET", route="/health/", status="200") == sent
    assert sum(counts.values()) == sent

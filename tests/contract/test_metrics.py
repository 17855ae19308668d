"""Contract §3.7: metric names and labels on /metrics, aggregated over the instance's workers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.contract.http import Api, unique

SERVICES = {"vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq"}


async def samples(api: Api) -> list[Sample]:
    reply = await api.get("/metrics")
    assert reply.headers["Content-Type"].startswith("text/plain"), reply
    return [sample for family in text_string_to_metric_families(reply.text) for sample in family.samples]


def named(all_samples: list[Sample], name: str) -> list[Sample]:
    return [sample for sample in all_samples if sample.name == name]


async def test_metric_names_and_labels(api: Api) -> None:
    service = unique("metered")
    await api.post(f"/examples/vault/secret/{service}", json_body={"a": "b"})
    await api.get(f"/examples/vault/secret/{service}")
    await api.get(f"/examples/vault/secret/{service}")
    await api.get("/examples/database/postgres/query")
    await api.get(f"/examples/cache/{unique()}")
    await api.get(f"/no-such-{unique()}")
    found = await samples(api)

    requests = named(found, "http_requests_total")
    assert requests and all(set(s.labels) == {"method", "route", "status"} for s in requests)
    assert any(
        s.labels == {"method": "GET", "route": "/examples/vault/secret/{service_name}", "status": "200"}
        for s in requests
    )
    assert any(s.labels["route"] == "<unmatched>" and s.labels["status"] == "404" for s in requests)
    durations = named(found, "http_request_duration_seconds_bucket")
    assert durations and all(set(s.labels) == {"method", "route", "le"} for s in durations)
    in_progress = named(found, "http_requests_in_progress")
    assert in_progress and all(set(s.labels) == {"method", "route"} for s in in_progress)
    errors = named(found, "http_errors_total")
    assert any(s.labels == {"error": "NotFound", "status": "404"} for s in errors), errors
    (info,) = named(found, "app_info")
    assert info.value == 1 and info.labels["name"] == "refapi" and set(info.labels) == {"name", "version"}
    version = (await api.get("/")).json["version"]
    assert info.labels["version"] == version
    for name in ("cache_hits_total", "cache_misses_total"):
        routes = {s.labels["route"] for s in named(found, name)}
        assert "/examples/vault/secret/{service_name}" in routes, (name, routes)
    states = named(found, "circuit_breaker_state")
    assert {s.labels["service"] for s in states} == SERVICES and all(s.value in (0, 1, 2) for s in states)
    backend = named(found, "backend_request_duration_seconds_bucket")
    assert backend and all(set(s.labels) == {"service", "operation", "le"} for s in backend)
    assert {"vault", "postgres", "redis"} <= {s.labels["service"] for s in backend}


async def test_labels_never_carry_client_text(api: Api) -> None:
    marker = unique("marker")
    await api.get(f"/{marker}")
    await api.get(f"/examples/cache/{marker}")
    await api.get("/", headers={"X-Request-ID": marker, "User-Agent": marker})
    text = (await api.get("/metrics")).text
    assert marker not in text


async def test_rate_limit_rejections_are_counted(strict: Api) -> None:
    for _ in range(20):
        if (await strict.get("/")).status == 429:
            break
    # /metrics has a budget of its own, so it still answers this client.
    text = (await strict.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    rejections = families["rate_limit_rejections"].samples
    assert any(s.labels == {"scope": "general"} and s.value >= 1 for s in rejections), rejections

"""Metrics are labelled by route template and never by client-supplied text."""

from __future__ import annotations

import asyncio

from aiohttp import web

from refapi.app import build_app
from refapi.metrics import Metrics
from tests.conftest import ClientFactory, offline_settings


async def by_key(request: web.Request) -> web.Response:
    return web.json_response({"key": request.match_info["key"]})


def sample(text: str, metric: str, **labels: str) -> float | None:
    """The value of `metric` with exactly these labels in Prometheus text output, or None."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            metric_labels = line[len(metric) + 1 : line.rindex("} ")]
            if ",".join(sorted(metric_labels.split(","))) == wanted:
                return float(line.rsplit(" ", 1)[1])
    return None


async def test_two_paths_of_one_template_share_one_label_set(make_client: ClientFactory) -> None:
    app = build_app(offline_settings())
    app.router.add_get("/things/{key}", by_key)
    client = await make_client(app)
    await client.get("/things/alpha")
    await client.get("/things/beta")
    text = await (await client.get("/metrics")).text()
    assert sample(text, "http_requests_total", method="GET", route="/things/{key}", status="200") == 2.0
    assert "alpha" not in text and "beta" not in text


async def test_unmatched_paths_and_odd_methods_do_not_leak_into_labels(client) -> None:  # type: ignore[no-untyped-def]
    await client.get("/secret-looking-path-1")
    await client.request("PROPFIND", "/")
    text = await (await client.get("/metrics")).text()
    assert sample(text, "http_requests_total", method="GET", route="<unmatched>", status="404") == 1.0
    assert sample(text, "http_requests_total", method="OTHER", route="<unmatched>", status="405") == 1.0
    assert sample(text, "http_errors_total", error="NotFound", status="404") == 1.0
    assert "secret-looking" not in text and "PROPFIND" not in text


async def test_metrics_endpoint_format(client) -> None:  # type: ignore[no-untyped-def]
    await client.get("/health/")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert sample(text, "app_info", name="refapi", version="1.0.0") == 1.0
    assert sample(text, "http_request_duration_seconds_count", method="GET", route="/health/") == 1.0


async def test_concurrent_scrapes_share_one_rendering(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    renders = 0
    original = metrics.render

    def counting_render() -> bytes:
        nonlocal renders
        renders += 1
        return original()

    monkeypatch.setattr(metrics, "render", counting_render)
    bodies = await asyncio.gather(*(metrics.scrape() for _ in range(10)))
    assert renders == 1 and len(set(bodies)) == 1
    await metrics.scrape()  # a scrape after the last one finished renders afresh
    assert renders == 2


async def test_one_loop_turn_of_observations_is_one_write_per_value_with_the_same_totals() -> None:
    batched, direct = Metrics(), Metrics()
    durations = [0.0004, 0.003, 0.003, 0.07, 12.0]  # a bucket edge case, repeats, and +Inf
    writes = 0
    child = batched.child(batched.http_requests, "GET", "/x", "200")
    original_inc = child.inc

    def counting_inc(amount: float = 1) -> None:
        nonlocal writes
        writes += 1
        original_inc(amount)

    child.inc = counting_inc
    batched.request_started("GET", "/slow")  # still in flight: the others are batched with it
    for duration in durations:
        batched.request_started("GET", "/x")
        batched.request_finished("GET", "/x", 200, duration)
        direct.child(direct.http_requests, "GET", "/x", "200").inc()
        direct.child(direct.http_duration, "GET", "/x").observe(duration)
    assert writes == 0  # nothing written during the turn...
    await asyncio.sleep(0)
    assert writes == 1  # ...then one write for all five requests

    def samples(text: bytes) -> list[str]:
        # In-progress went up and down within the turn: nothing to write, so the batched side has no sample.
        return [line for line in text.decode().splitlines() if "_created" not in line and "in_progress" not in line]

    assert samples(await batched.scrape()) == samples(await direct.scrape())
    batched.request_finished("GET", "/slow", 200, 1.0)


async def test_a_request_served_alone_is_written_before_its_response_leaves() -> None:
    metrics = Metrics()
    metrics.request_started("GET", "/x")
    metrics.request_finished("GET", "/x", 200, 0.001)
    # No loop turn has ended: a scrape of the shared files by another worker would already count it.
    assert (
        metrics.registry.get_sample_value("http_requests_total", {"method": "GET", "route": "/x", "status": "200"})
        == 1.0
    )


async def test_in_progress_gauge_nets_out_and_scrapes_see_the_current_turn() -> None:
    metrics = Metrics()
    metrics.add(metrics.http_in_progress, "GET", "/x")
    metrics.add(metrics.http_in_progress, "GET", "/x")
    metrics.add(metrics.http_in_progress, "GET", "/x", amount=-1)
    text = (await metrics.scrape()).decode()  # a scrape flushes first, without waiting for the turn to end
    assert sample(text, "http_requests_in_progress", method="GET", route="/x") == 1.0

"""Contract §2.1: the root document, the OpenAPI document and the docs pages."""

from __future__ import annotations

import re

from tests.contract.conftest import Stack
from tests.contract.http import Api

ROOT_KEYS = {
    "name",
    "version",
    "description",
    "docs",
    "health",
    "metrics",
    "security",
    "redis_cluster",
    "examples",
    "note",
}
DEFAULT_ORIGINS = [f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 8000, 8001, 8080)]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
SERVICES = ["vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq"]
HEALTH_GROUPS = ["all", "database", "cache", "messaging", "live", "ready"]


async def test_root_document(api: Api) -> None:
    body = (await api.get("/")).json
    assert set(body) == ROOT_KEYS
    assert body["name"] == "refapi"
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\S*", body["version"])
    assert (body["docs"], body["health"], body["metrics"]) == ("/docs", "/health/all", "/metrics")
    assert isinstance(body["description"], str) and body["description"]
    assert isinstance(body["note"], str) and body["note"]
    assert body["redis_cluster"] == {
        "nodes": "/redis/cluster/nodes",
        "slots": "/redis/cluster/slots",
        "info": "/redis/cluster/info",
        "node_info": "/redis/nodes/{node_name}/info",
    }
    assert body["examples"] == {
        "vault": "/examples/vault",
        "databases": "/examples/database",
        "cache": "/examples/cache",
        "messaging": "/examples/messaging",
    }


async def test_root_security_reflects_the_configuration(api: Api, local: Stack) -> None:
    security = (await api.get("/")).json["security"]
    assert set(security) == {"cors", "rate_limiting", "request_validation", "circuit_breakers", "authentication"}
    assert security["cors"] == {
        "enabled": True,
        "allowed_origins": ", ".join(DEFAULT_ORIGINS),
        "allowed_methods": "GET, POST, PUT, DELETE, PATCH, OPTIONS",
        "credentials": True,
        "max_age": "600s",
    }
    assert security["rate_limiting"] == {
        "enabled": True,
        "general_endpoints": "1000000/minute",
        "health_checks": "1000000/minute",
        "metrics_endpoint": "1000000/minute",
    }
    assert security["request_validation"] == {
        "max_request_size": "10485760 bytes",
        "allowed_content_types": CONTENT_TYPES,
    }
    assert security["circuit_breakers"] == {
        "enabled": True,
        "services": SERVICES,
        "failure_threshold": 5,
        "reset_timeout": "60s",
    }
    assert security["authentication"] == {
        "enabled": False,
        "api_key_header": "X-API-Key",
        "protected_operations": ["POST /examples/vault/secret/{service_name}"],
    }


async def test_root_under_debug_with_keys_and_low_limits(strict: Api) -> None:
    security = (await strict.get("/")).json["security"]
    assert security["cors"]["allowed_origins"] == "*"
    assert security["cors"]["credentials"] is False
    assert security["rate_limiting"] == {
        "enabled": True,
        "general_endpoints": "6/minute",
        "health_checks": "5/minute",
        "metrics_endpoint": "4/minute",
    }
    assert security["request_validation"]["max_request_size"] == "4096 bytes"
    assert security["authentication"]["enabled"] is True


async def test_openapi_document(api: Api) -> None:
    reply = await api.get("/openapi.json")
    spec = reply.json
    assert set(spec) == {"openapi", "info", "paths", "components"}
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "refapi"
    assert spec["info"]["version"] == (await api.get("/")).json["version"]
    assert "/health" not in spec["paths"]
    for excluded in ("/openapi.json", "/openapi.yaml", "/docs", "/redoc"):
        assert excluded not in spec["paths"]
    for path, item in spec["paths"].items():
        assert not path.startswith("/static/"), path
        assert not {"head", "options"} & set(item), path
    assert spec["paths"]["/examples/vault/transit/encrypt/{plaintext}"]["get"].get("deprecated") is True
    assert spec["paths"]["/examples/vault/transit/decrypt/{ciphertext}"]["get"].get("deprecated") is True
    write = spec["paths"]["/examples/vault/secret/{service_name}"]["post"]
    assert write["security"] == [{"ApiKeyAuth": []}]
    assert spec["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert "ErrorResponse" in spec["components"]["schemas"]


async def test_openapi_lists_every_operation_of_the_contract(api: Api) -> None:
    spec = (await api.get("/openapi.json")).json
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    expected = {
        ("GET", "/"), ("GET", "/metrics"),
        *(("GET", f"/health/{name}") for name in ["", *SERVICES, *HEALTH_GROUPS]),
        ("GET", "/examples/vault/secret/{service_name}"), ("GET", "/examples/vault/secret/{service_name}/{key}"),
        ("POST", "/examples/vault/secret/{service_name}"), ("GET", "/examples/vault/secret/versioned/{service_name}"),
        ("GET", "/examples/vault/health"), ("GET", "/examples/vault/transit/encrypt/{plaintext}"),
        ("GET", "/examples/vault/transit/decrypt/{ciphertext}"), ("POST", "/examples/vault/transit/encrypt"),
        ("POST", "/examples/vault/transit/decrypt"),
        ("GET", "/examples/database/postgres/query"), ("GET", "/examples/database/mysql/query"),
        ("GET", "/examples/database/mongodb/query"), ("GET", "/examples/database/{db}"),
        ("POST", "/examples/database/{db}"),
        ("GET", "/examples/cache/{key}"), ("POST", "/examples/cache/{key}"), ("DELETE", "/examples/cache/{key}"),
        ("GET", "/examples/cache/pattern/{pattern}"),
        ("GET", "/redis/cluster/nodes"), ("GET", "/redis/cluster/slots"), ("GET", "/redis/cluster/info"),
        ("GET", "/redis/nodes/{node_name}/info"),
        ("POST", "/examples/messaging/publish"), ("POST", "/examples/messaging/publish/{queue}"),
        ("GET", "/examples/messaging/queue/{queue_name}/info"), ("GET", "/examples/messaging/consume/{queue}"),
        ("GET", "/examples/messaging/queues"),
    }  # fmt: skip
    assert expected <= operations, sorted(expected - operations)


async def test_docs_pages_load_local_assets_only(api: Api) -> None:
    for path in ("/docs", "/redoc"):
        html = (await api.get(path)).text
        sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert sources, path
        texts = [html]
        for source in sources:
            # data: URIs (an empty favicon) fetch nothing; everything fetched must come from /static/.
            assert source.startswith(("/static/", "#", "data:")) or source == "/openapi.json", (path, source)
            if source.startswith("/static/"):
                asset = await api.get(source)
                assert asset.status == 200, asset
                texts.append(asset.raw.decode(errors="replace"))
        # The page, or a local script of its own, points the viewer at the served document.
        assert any("/openapi.json" in text for text in texts), path

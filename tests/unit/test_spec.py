"""The OpenAPI layer: the generated document, the routes serving it and the response-checking helper."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from marshmallow import Schema, fields
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from refapi.app import build_app
from refapi.config import Settings
from refapi.openapi import docs
from refapi.openapi.fields import Length, Pattern, QueryInt, Range, Str, Utf8Length
from refapi.openapi.operation import Input, json_response, operation, operation_of
from refapi.openapi.spec import dump_spec, generate_spec
from tests.support.contract import Contract, assert_matches_spec, checked, contract

REPO = Path(__file__).resolve().parents[2]
ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}
# Routes that are deliberately not operations (contract §2.1): the spec and docs, static assets, the redirect.
UNDOCUMENTED = {
    ("GET", "/openapi.json"),
    ("GET", "/openapi.yaml"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/static"),
    ("GET", "/health"),
}


@pytest.fixture(scope="module")
def app() -> web.Application:
    return build_app(Settings())


@pytest.fixture(scope="module")
def spec(app: web.Application) -> dict[str, Any]:
    return generate_spec(app)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


# --- the service's own document -------------------------------------------------------------------------------


def test_generated_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate(spec, cls=OpenAPIV31SpecValidator)
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "refapi"


def test_every_operation_is_documented_and_every_documented_operation_is_routed(
    app: web.Application, spec: dict[str, Any]
) -> None:
    routed: set[tuple[str, str]] = set()
    plain: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        key = (route.method, route.resource.canonical)  # type: ignore[union-attr]
        (routed if operation_of(route.handler) else plain).add(key)
    documented = {(method.upper(), path) for method, path, _ in operations(spec)}
    assert routed == documented
    assert plain == UNDOCUMENTED, "a route without @operation(...) is missing from the spec"


def test_operation_ids_are_unique(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))


def test_every_error_status_answers_the_envelope_unless_the_operation_declares_its_own_body(
    app: web.Application, spec: dict[str, Any]
) -> None:
    declared = {
        (route.method.lower(), route.resource.canonical): declaration  # type: ignore[union-attr]
        for route in app.router.routes()
        if (declaration := operation_of(route.handler)) is not None
    }
    for method, path, documented in operations(spec):
        own = declared[(method, path)].responses
        for status, response in documented["responses"].items():
            if int(status) < 400:
                continue
            schema = resolve(spec, response)["content"]["application/json"]["schema"]
            if own.get(int(status)) is None:
                assert schema == ENVELOPE, f"{method.upper()} {path} {status}"
            else:
                assert schema != ENVELOPE, f"{method.upper()} {path} {status} should document its own body"


def test_statuses_any_operation_can_answer_are_documented(spec: dict[str, Any]) -> None:
    for method, path, op in operations(spec):
        assert {"429", "500"} <= op["responses"].keys(), f"{method.upper()} {path}"
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= op["responses"].keys(), f"{method.upper()} {path}"
        if op.get("parameters"):
            assert "422" in op["responses"], f"{method.upper()} {path}"


def test_committed_contract_is_the_generated_document(spec: dict[str, Any]) -> None:
    committed = (REPO / "schemas" / "openapi.yaml").read_text(encoding="utf-8")
    assert committed == dump_spec(spec, "yaml"), "schemas/openapi.yaml is stale: run `refapi spec --write`"


async def test_root_and_health_bodies_match_the_spec(client: TestClient[Any, web.Application]) -> None:
    root = await checked(await client.get("/"))
    assert root["name"] == "refapi"
    assert await checked(await client.get("/health/")) == {"status": "ok"}
    assert await checked(await client.head("/health/")) is None  # HEAD: GET's documented status, no body


# --- served document and docs pages ---------------------------------------------------------------------------


async def test_documents_are_served_as_generated(client: TestClient[Any, web.Application]) -> None:
    expected = generate_spec(client.app)
    as_json = await client.get("/openapi.json")
    assert as_json.status == 200
    assert as_json.headers["Content-Type"] == "application/json; charset=utf-8"
    assert await as_json.json() == expected
    as_yaml = await client.get("/openapi.yaml")
    assert as_yaml.status == 200
    assert as_yaml.headers["Content-Type"] == "application/yaml"
    assert yaml.safe_load(await as_yaml.text()) == expected


async def test_document_is_generated_once_per_app_not_per_request(
    monkeypatch: pytest.MonkeyPatch, make_client: Any
) -> None:
    calls = []

    def counting(app: web.Application | None = None) -> dict[str, Any]:
        calls.append(app)
        return generate_spec(app)

    monkeypatch.setattr(docs, "generate_spec", counting)
    client = await make_client()
    for _ in range(3):
        assert (await client.get("/openapi.json")).status == 200
        assert (await client.get("/openapi.yaml")).status == 200
    assert calls == [client.app]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets_under_a_strict_policy(
    client: TestClient[Any, web.Application], page: str
) -> None:
    resp = await client.get(page)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "http" not in policy  # no other origin is allowed anything
    html = await resp.text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    for asset in assets:
        assert asset.startswith("/static/") or asset == "data:,", asset
    for asset in (a for a in assets if a.startswith("/static/")):
        if "/vendor/" in asset and not (docs.STATIC_DIR / asset.removeprefix("/static/")).is_file():
            continue  # bin/fetch-docs-assets not run here; the browser test insists on them
        assert (await client.get(asset)).status == 200, asset


# --- the builder on a purpose-made app --------------------------------------------------------------------------


class ChildSchema(Schema):
    size = fields.Integer(required=True)


class ItemSchema(Schema):
    name = Str(required=True, validate=[Length(1, 10), Pattern("[a-z]+")])
    code = Str(validate=Pattern("^[A-Z]{2}$"))
    answer = Str(validate=Pattern("^yes|no$"))
    text = Str(validate=Utf8Length(1, 1024))
    padded = Str(validate=Utf8Length(9))
    note = fields.String(allow_none=True)
    kind = fields.String(allow_none=True, metadata={"enum": ["a", "b"]})
    colour = fields.String(metadata={"enum": ["red"]})
    anything = fields.Raw()
    child = fields.Nested(ChildSchema, allow_none=True)
    extra = fields.Dict()


class ItemPath(Schema):
    item_id = Str(required=True)


class RestPath(Schema):
    rest = Str(required=True, metadata={"description": "The rest of the path, slashes included"})


class Page(Schema):
    limit = QueryInt(load_default=10, validate=Range(1, 100))


async def _ok(request: web.Request, inp: Input) -> web.Response:
    return json_response({})


async def _plain(request: web.Request) -> web.Response:
    return web.Response()


def sample_app(*, api_key: bool = True) -> web.Application:
    app = web.Application()
    get, post = app.router.add_get, app.router.add_post  # add_get also routes HEAD, which the spec leaves out
    get(
        "/items/{item_id}",
        operation(
            summary="Read",
            tags=("items",),
            path=ItemPath,
            query=Page,
            responses={200: ItemSchema, 404: None},
            operation_id="read",
        )(_ok),
    )
    post(
        "/items",
        operation(
            summary="Create",
            tags=("items",),
            body=ItemSchema,
            api_key=api_key,
            responses={201: ItemSchema, 503: None},
            operation_id="create",
        )(_ok),
    )
    get(
        "/raw/{rest:.+}",
        operation(
            summary="Raw",
            tags=("raw",),
            path=RestPath,
            deprecated=True,
            responses={200: None},
            content_type="text/plain",
            operation_id="raw",
        )(_ok),
    )
    get(
        "/plain",
        operation(
            summary="Plain",
            tags=("items",),
            description="Cached.",
            responses={200: ItemSchema, 304: None},
            headers={200: {"ETag": "Body hash"}},
            operation_id="plain",
        )(_ok),
    )
    get(
        "/things/{a}/{b}",
        operation(summary="Pair", tags=("things",), path=_pair(), responses={200: ChildSchema}, operation_id="pair")(
            _ok
        ),
    )
    get(
        "/things/fixed/{c}",
        operation(
            summary="Fixed", tags=("things",), path=_single("c"), responses={200: ChildSchema}, operation_id="fixed"
        )(_ok),
    )
    get("/not-an-operation", _plain)
    return app


def _pair() -> type[Schema]:
    return Schema.from_dict({"a": Str(required=True), "b": Str(required=True)}, name="PairPath")


def _single(name: str) -> type[Schema]:
    return Schema.from_dict({name: Str(required=True)}, name="SinglePath")


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return generate_spec(sample_app())


def test_sample_document_is_valid_and_sorted(sample: dict[str, Any]) -> None:
    validate(sample, cls=OpenAPIV31SpecValidator)
    assert list(sample["paths"]) == sorted(sample["paths"])
    assert list(sample["paths"]) == [
        "/items",
        "/items/{item_id}",
        "/plain",
        "/raw/{rest}",
        "/things/fixed/{c}",
        "/things/{a}/{b}",
    ]
    assert all("head" not in item for item in sample["paths"].values())
    assert list(sample) == ["openapi", "info", "paths", "components"]  # the contract's exact key set
    for kind, entries in sample["components"].items():
        assert list(entries) == sorted(entries), kind


def test_generation_is_deterministic() -> None:
    assert dump_spec(generate_spec(sample_app()), "yaml") == dump_spec(generate_spec(sample_app()), "yaml")


def test_parameters_come_from_the_path_and_query_schemas(sample: dict[str, Any]) -> None:
    read = sample["paths"]["/items/{item_id}"]["get"]
    assert read["parameters"] == [
        {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "default": 10, "minimum": 1, "maximum": 100},
        },
    ]
    assert [list(parameter) for parameter in read["parameters"]] == [["name", "in", "required", "schema"]] * 2
    assert sorted(read["responses"]) == ["200", "404", "422", "429", "500"]
    raw = sample["paths"]["/raw/{rest}"]["get"]
    assert raw["deprecated"] is True
    assert raw["parameters"][0]["description"] == "The rest of the path, slashes included"
    assert raw["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}


def test_body_and_api_key_add_their_statuses_and_security(sample: dict[str, Any]) -> None:
    create = sample["paths"]["/items"]["post"]
    assert create["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
    }
    assert sorted(create["responses"]) == ["201", "400", "401", "413", "415", "422", "429", "500", "503"]
    assert create["security"] == [{"ApiKeyAuth": []}]
    assert sample["components"]["securitySchemes"] == {
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    }
    unauthorized = resolve(sample, create["responses"]["401"])
    assert "WWW-Authenticate" in unauthorized["headers"]
    assert "security" not in sample["paths"]["/plain"]["get"]


def test_without_api_key_operations_no_scheme_is_declared() -> None:
    assert "securitySchemes" not in generate_spec(sample_app(api_key=False))["components"]


def test_operation_without_inputs_has_no_422_and_documents_its_headers(sample: dict[str, Any]) -> None:
    plain = sample["paths"]["/plain"]["get"]
    assert plain["description"] == "Cached."
    assert sorted(plain["responses"]) == ["200", "304", "429", "500"]
    ok = plain["responses"]["200"]
    assert ok["headers"]["ETag"] == {"description": "Body hash", "schema": {"type": "string"}}
    assert ok["headers"]["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}
    assert "content" not in plain["responses"]["304"]


def test_error_responses_carry_request_id_rate_limit_and_retry_headers(sample: dict[str, Any]) -> None:
    responses = sample["paths"]["/items"]["post"]["responses"]
    for status in ("429", "503"):
        assert "Retry-After" in resolve(sample, responses[status])["headers"]
    assert set(resolve(sample, responses["500"])["headers"]) == {
        "X-Request-ID",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert sample["components"]["headers"]["X-RateLimit-Reset"]["schema"] == {"type": "integer", "minimum": 1}


def test_schema_fields_map_to_json_schema_2020_12(sample: dict[str, Any]) -> None:
    schemas = sample["components"]["schemas"]
    assert "ItemSchema" not in schemas and "Item" in schemas and "Child" in schemas
    item = schemas["Item"]
    props = item["properties"]
    assert item["additionalProperties"] is False
    assert item["required"] == ["name"]
    assert props["name"] == {"type": "string", "minLength": 1, "maxLength": 10, "pattern": "^(?:[a-z]+)$"}
    assert props["code"]["pattern"] == "^[A-Z]{2}$"
    assert props["answer"]["pattern"] == "^(?:^yes|no$)$"
    assert props["text"] == {"type": "string", "minLength": 1, "maxLength": 1024}  # code points, 1-4 bytes each
    assert props["padded"] == {"type": "string", "minLength": 3}
    assert props["note"] == {"type": ["string", "null"]}
    assert props["kind"] == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert props["colour"] == {"type": "string", "enum": ["red"]}
    assert props["anything"] == {}
    assert props["child"] == {"anyOf": [{"$ref": "#/components/schemas/Child"}, {"type": "null"}]}
    assert props["extra"] == {"type": "object"}


def test_duplicate_operation_ids_are_refused() -> None:
    app = sample_app()
    app.router.add_route(
        "DELETE", "/items", operation(summary="Again", tags=(), responses={200: None}, operation_id="create")(_ok)
    )
    with pytest.raises(ValueError, match="operationId 'create'"):
        generate_spec(app)


def test_two_schemas_with_one_component_name_are_refused() -> None:
    other_item = type("Item", (Schema,), {"other": fields.String()})
    app = sample_app()
    app.router.add_route(
        "GET", "/other", operation(summary="Other", tags=(), responses={200: other_item}, operation_id="other")(_ok)
    )
    with pytest.raises(ValueError, match="component 'Item'"):
        generate_spec(app)


def test_path_parameters_must_match_the_template() -> None:
    app = web.Application()
    app.router.add_route("GET", "/x/{y}", operation(summary="X", tags=(), responses={200: None}, operation_id="x")(_ok))
    with pytest.raises(ValueError, match=r"GET /x/\{y\}"):
        generate_spec(app)


def test_dump_spec_formats() -> None:
    document = {"openapi": "3.1.0", "info": {"title": "é"}, "paths": {"/a": {"get": {"tags": ["x"]}}}}
    as_yaml = dump_spec(document, "yaml")
    assert "title: é" in as_yaml and "  - x" in as_yaml
    assert yaml.safe_load(as_yaml) == document
    as_json = dump_spec(document, "json")
    assert as_json.endswith("}\n") and '\n  "info": {\n    "title": "é"' in as_json
    assert json.loads(as_json) == document
    with pytest.raises(ValueError, match="unknown spec format"):
        dump_spec(document, "toml")


# --- the response-checking helper -------------------------------------------------------------------------------


def test_helper_accepts_a_documented_body_and_rejects_others() -> None:
    assert_matches_spec("GET", "/health/", 200, {"status": "ok"}, {"X-Request-ID": "abc"})
    with pytest.raises(AssertionError, match="status"):
        assert_matches_spec("GET", "/health/", 200, {"status": "fine"})
    with pytest.raises(AssertionError, match="Additional properties"):
        assert_matches_spec("GET", "/health/", 200, {"status": "ok", "extra": 1})


def test_helper_validates_error_envelopes_through_component_references() -> None:
    envelope = {
        "error": "RateLimitExceeded",
        "message": "Rate limit exceeded",
        "status_code": 429,
        "request_id": "r",
        "details": {"scope": "general", "limit": 100},
    }
    assert_matches_spec("GET", "/", 429, envelope, {"X-Request-ID": "r", "Retry-After": "3"})
    with pytest.raises(AssertionError, match="request_id"):
        assert_matches_spec("GET", "/", 429, {k: v for k, v in envelope.items() if k != "request_id"})
    with pytest.raises(AssertionError, match="Retry-After"):
        assert_matches_spec("GET", "/", 429, envelope, {"X-Request-ID": "r", "Retry-After": "soon"})


def test_helper_fails_clearly_on_undocumented_statuses_paths_and_missing_headers() -> None:
    with pytest.raises(AssertionError, match=r"answered 418, which the spec does not document; documented: 200"):
        assert_matches_spec("GET", "/health/", 418, {})
    with pytest.raises(AssertionError, match="no documented operation"):
        assert_matches_spec("GET", "/nowhere", 200, {})
    with pytest.raises(AssertionError, match="required header X-Request-ID is missing"):
        assert_matches_spec("GET", "/health/", 200, {"status": "ok"}, {})


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/raw/a"),
        ("GET", "/raw/a/b/c"),
        ("GET", "/things/fixed/z"),
        ("GET", "/things/other/z"),
        ("GET", "/things/fixed/z/extra"),
        ("HEAD", "/items/7"),
        ("POST", "/items"),
        ("GET", "/items"),
    ],
)
async def test_helper_picks_the_operation_aiohttp_routes_to(method: str, path: str) -> None:
    app = sample_app()
    app.freeze()
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    try:
        template, _ = Contract(app).operation(method, path)
    except AssertionError:
        template = None
    routed = match.route.resource.canonical if match.http_exception is None else None  # type: ignore[union-attr]
    assert template == routed


def test_contract_is_built_once_per_session() -> None:
    assert contract() is contract()


def test_free_form_objects_declare_no_properties() -> None:
    class Free(Schema):
        class Meta:
            unknown = "include"
            description = "Any keys"

    app = web.Application()
    app.router.add_post(
        "/free", operation(summary="Free", tags=(), body=Free, responses={200: None}, operation_id="free")(_ok)
    )
    assert generate_spec(app)["components"]["schemas"]["Free"] == {
        "type": "object",
        "description": "Any keys",
        "additionalProperties": True,
    }

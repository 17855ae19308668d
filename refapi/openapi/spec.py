"""The OpenAPI 3.1 document, generated from the route table and each handler's declared Operation."""

from __future__ import annotations

import http
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

import marshmallow
import yaml
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, fields

import refapi
from refapi.api.meta import DESCRIPTION
from refapi.middlewares.cache import CACHE_HEADERS, CACHED_ROUTES
from refapi.openapi.fields import Pattern, Utf8Length
from refapi.openapi.operation import JSON_TYPE, Operation, operation_of

__all__ = ["ErrorResponse", "dump_spec", "generate_spec"]

OPENAPI_VERSION = "3.1.0"
ERROR_SCHEMA = "ErrorResponse"
API_KEY_SCHEME = "ApiKeyAuth"
_METHOD_ORDER = ("get", "put", "post", "delete", "patch", "options", "trace")

# Envelope responses, shared as components named after the error code (contract §1.3).
_ERROR_RESPONSES = {
    400: ("BadRequest", "Bad request: a body without Content-Type, or an empty message"),
    401: ("Unauthorized", "Missing or wrong API key"),
    403: ("Forbidden", "Forbidden: read-only secret, reserved key or rejected preflight"),
    404: ("NotFound", "The named resource does not exist"),
    409: ("Conflict", "The request conflicts with the backend's state"),
    413: ("PayloadTooLarge", "Request body or message too large"),
    415: ("UnsupportedMediaType", "Unsupported content type"),
    422: ("ValidationError", "Request validation failed"),
    429: ("RateLimitExceeded", "Rate limit exceeded"),
    500: ("InternalServerError", "Internal server error"),
    503: ("ServiceUnavailable", "A backend is unavailable, or its circuit breaker is open"),
}


class ErrorResponse(Schema):
    """The envelope of every 4xx/5xx body (contract §1.3)."""

    error = fields.String(required=True, metadata={"description": "PascalCase error code", "examples": ["NotFound"]})
    message = fields.String(required=True, metadata={"description": "Short English sentence"})
    status_code = fields.Integer(required=True, metadata={"description": "The HTTP status"})
    request_id = fields.String(required=True, metadata={"description": "Equals the X-Request-ID response header"})
    details = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Error-specific details; present only when non-empty", "minProperties": 1},
    )


def _header(description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    header: dict[str, Any] = {"description": description}
    if required:
        header["required"] = True
    header["schema"] = schema
    return header


HEADERS: Mapping[str, dict[str, Any]] = {
    "X-Request-ID": _header(
        "The request's id (the client's X-Request-ID if valid, else a new UUID)",
        {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
        required=True,
    ),
    "X-RateLimit-Limit": _header("Requests allowed per window in this scope", {"type": "integer", "minimum": 0}),
    "X-RateLimit-Remaining": _header("Requests left in the current window", {"type": "integer", "minimum": 0}),
    "X-RateLimit-Reset": _header("Whole seconds until the window ends", {"type": "integer", "minimum": 1}),
    "Retry-After": _header("Whole seconds to wait before retrying", {"type": "integer", "minimum": 1}),
    "WWW-Authenticate": _header("How to authenticate", {"type": "string"}),
}
_EVERY_RESPONSE = ("X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Sent with the envelope of these statuses; an operation's own error body comes from its handler alone.
_ENVELOPE_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}
API_KEY_SECURITY_SCHEME = {"type": "apiKey", "in": "header", "name": "X-API-Key"}


class _Converter(OpenAPIConverter):
    """apispec's converter with the fixes this document needs (see each method)."""

    def init_attribute_functions(self) -> None:
        super().init_attribute_functions()  # type: ignore[no-untyped-call]
        self.add_attribute_function(_nullable_enum)  # type: ignore[no-untyped-call]
        self.add_attribute_function(_full_match_pattern)  # type: ignore[no-untyped-call]

    def dict2properties(self, field: fields.Field[Any], **kwargs: Any) -> dict[str, Any]:
        ret: dict[str, Any] = super().dict2properties(field, **kwargs)
        if ret.get("additionalProperties") == {}:
            del ret["additionalProperties"]  # an empty schema allows anything, as its absence does
        return ret

    def field2range(self, field: fields.Field[Any], ret: dict[str, Any]) -> dict[str, Any]:
        limits = [v for v in field.validators if isinstance(v, Utf8Length)]
        if not limits:
            return super().field2range(field, ret)
        # apispec would take a byte limit for a range (x-minimum/x-maximum). A code point is 1 to 4 bytes in
        # UTF-8, so document the code-point bounds every valid value keeps; the exact rule is the description's.
        out: dict[str, Any] = {}
        low = max(v.min for v in limits)
        if low > 0:
            out["minLength"] = math.ceil(low / 4)
        highs = [v.max for v in limits if v.max is not None]
        if highs:
            out["maxLength"] = min(highs)
        return out

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)  # type: ignore[no-untyped-call]
        if not jsonschema.get("properties"):
            jsonschema.pop("properties", None)  # a schema of free-form keys declares none
        # apispec drops additionalProperties when a schema's Meta has a description; keep the `unknown` policy.
        instance = schema if isinstance(schema, Schema) else _schema_class(schema)()
        if instance.unknown != marshmallow.EXCLUDE:
            jsonschema["additionalProperties"] = instance.unknown == marshmallow.INCLUDE
        return jsonschema


def _nullable_enum(self: OpenAPIConverter, field: fields.Field[Any], ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    # An enum given through metadata must list null itself, or a nullable field could never be null.
    if field.allow_none and "enum" in ret and None not in ret["enum"]:
        return {"enum": [*ret["enum"], None]}
    return {}


def _full_match_pattern(
    self: OpenAPIConverter, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    # JSON Schema patterns search; refapi's Pattern must match the whole value, so anchor the documented one.
    patterns = [
        v.regex.pattern for v in field.validators if isinstance(v, Pattern) and isinstance(v.regex.pattern, str)
    ]
    if not patterns:
        return {}
    pattern = patterns[0]
    # `^...$` already is a full match, unless a top-level `|` splits it; keep the contract's spelling then.
    anchored = pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")
    if not anchored or "|" in pattern:
        pattern = f"^(?:{pattern})$"
    return {"pattern": pattern}


def _schema_class(schema: type[Schema] | Schema) -> type[Schema]:
    # apispec also accepts lists of schemas for some fields; an Operation only ever names one.
    return cast("type[Schema]", resolve_schema_cls(schema))


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


class _ComponentNames:
    """Names schemas after their class without a `Schema` suffix, refusing two classes with one name."""

    def __init__(self) -> None:
        self._owners: dict[str, type[Schema]] = {}

    def __call__(self, schema: type[Schema] | Schema) -> str:
        cls = _schema_class(schema)
        name = cls.__name__.removesuffix("Schema") or cls.__name__
        owner = self._owners.setdefault(name, cls)
        if owner is not cls:
            raise ValueError(
                f"two schemas would both be the component {name!r}: "
                f"{owner.__module__}.{owner.__qualname__} and {cls.__module__}.{cls.__qualname__}; rename one"
            )
        return name


def generate_spec(app: web.Application | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of `app` (default settings if None); nothing connects to a backend."""
    if app is None:
        # Imported here: app.py wires in the docs routes, which import this module.
        from refapi.app import build_app
        from refapi.config import Settings

        app = build_app(Settings())
    return _Builder().build(app)


def dump_spec(spec: Mapping[str, Any], fmt: str) -> str:
    """Serialize as YAML (block style, key order kept) or JSON (2-space indent), ending with a newline."""
    if fmt == "yaml":
        text: str = yaml.dump(
            spec, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120
        )
        return text
    if fmt == "json":
        return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown spec format {fmt!r}; use 'yaml' or 'json'")


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Indents lists under their key, as hand-written OpenAPI documents usually are."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class _Builder:
    """One document: apispec's spec plus what this builder has registered in its components."""

    def __init__(self) -> None:
        self.spec = APISpec(
            title="refapi",
            version=refapi.__version__,
            openapi_version=OPENAPI_VERSION,
            plugins=[_Plugin(schema_name_resolver=_ComponentNames())],
            info={"description": DESCRIPTION},
        )
        self.spec.components.schema(ERROR_SCHEMA, schema=ErrorResponse)
        self.uses_api_key = False
        self.registered: set[tuple[str, str]] = set()

    def build(self, app: web.Application) -> dict[str, Any]:
        by_path: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        seen_ids: dict[str, str] = {}
        found = list(_operations(app))
        for method, template, op in sorted(found, key=lambda item: (item[1], _method_rank(item[0]))):
            where = f"{method.upper()} {template}"
            if op.operation_id in seen_ids:
                raise ValueError(f"operationId {op.operation_id!r} is used by {seen_ids[op.operation_id]} and {where}")
            seen_ids[op.operation_id] = where
            by_path[template][method] = self.operation(where, template, op)
        if self.uses_api_key:
            self.spec.components.security_scheme(API_KEY_SCHEME, dict(API_KEY_SECURITY_SCHEME))
        for template, operations in by_path.items():
            self.spec.path(path=template, operations=operations)
        return _ordered(self.spec.to_dict())

    def operation(self, where: str, template: str, op: Operation) -> dict[str, Any]:
        declared = _template_names(template)
        parameters = self.parameters(op.path, "path") + self.parameters(op.query, "query")
        documented = {p["name"] for p in parameters if p["in"] == "path"}
        if declared != documented:
            raise ValueError(
                f"{where}: the path template has parameters {sorted(declared)} but the Operation's path schema "
                f"declares {sorted(documented)}"
            )
        out: dict[str, Any] = {"tags": list(op.tags), "summary": op.summary}
        if op.description:
            out["description"] = op.description
        out["operationId"] = op.operation_id
        if op.deprecated:
            out["deprecated"] = True
        if op.api_key:
            out["security"] = [{API_KEY_SCHEME: []}]
            self.uses_api_key = True
        if parameters:
            out["parameters"] = parameters
        if op.body is not None:
            out["requestBody"] = {"required": op.body_required, "content": {JSON_TYPE: {"schema": op.body}}}
        cached = template in CACHED_ROUTES
        out["responses"] = {str(status): self.response(op, status, cached) for status in sorted(_statuses(op, cached))}
        return out

    def parameters(self, schema: type[Schema] | None, location: str) -> list[dict[str, Any]]:
        if schema is None:
            return []
        converter = self.spec.plugins[0].converter  # type: ignore[attr-defined]
        parameters: list[dict[str, Any]] = converter.schema2parameters(schema, location=location)
        if location == "path":
            for parameter in parameters:
                parameter["required"] = True
        return [_parameter_order(parameter) for parameter in parameters]

    def response(self, op: Operation, status: int, cached: bool) -> dict[str, Any]:
        declared = op.responses.get(status)
        extra_headers = op.headers.get(status) or {}
        if cached and status in (200, 304):
            # The response cache answers these routes: validators on 200, and 304 to a matching If-None-Match.
            extra_headers = {**CACHE_HEADERS, **extra_headers}
        if status >= 400 and declared is None and not extra_headers:
            return {"$ref": f"#/components/responses/{self.error_response(status)}"}
        out: dict[str, Any] = {"description": http.HTTPStatus(status).phrase, "headers": self.headers(_EVERY_RESPONSE)}
        for name, description in extra_headers.items():
            out["headers"][name] = _header(description, {"type": "string"})
        if status >= 400:
            out["content"] = {JSON_TYPE: {"schema": ErrorResponse if declared is None else declared}}
        elif 200 <= status < 300:
            if declared is None:
                out["content"] = {op.content_type: {"schema": {"type": "string"}}}
            else:
                out["content"] = {JSON_TYPE: {"schema": declared}}
        return out

    def error_response(self, status: int) -> str:
        """The name of the shared envelope response for `status`, registered on first use."""
        name, description = _ERROR_RESPONSES.get(status, (f"Error{status}", http.HTTPStatus(status).phrase))
        if self.first_use("response", name):
            self.spec.components.response(
                name,
                {
                    "description": description,
                    "headers": self.headers([*_EVERY_RESPONSE, *_ENVELOPE_HEADERS.get(status, ())]),
                    "content": {JSON_TYPE: {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
                },
            )
        return name

    def headers(self, names: Iterable[str]) -> dict[str, Any]:
        """References to the shared headers `names`, each registered on first use."""
        for name in names:
            if self.first_use("header", name):
                self.spec.components.header(name, HEADERS[name])
        return {name: {"$ref": f"#/components/headers/{name}"} for name in names}

    def first_use(self, kind: str, name: str) -> bool:
        # Components are registered when something refers to them, so the document lists none unused.
        if (kind, name) in self.registered:
            return False
        self.registered.add((kind, name))
        return True


def _operations(app: web.Application) -> Iterator[tuple[str, str, Operation]]:
    for route in app.router.routes():
        op = operation_of(route.handler)
        if route.method == "HEAD" or op is None or route.resource is None:
            continue  # HEAD mirrors GET; routes without an Operation are the docs, /static and redirects
        method = route.method.lower()
        if method not in _METHOD_ORDER:
            raise ValueError(f"{route.method} {route.resource.canonical}: an Operation needs a concrete HTTP method")
        yield method, route.resource.canonical, op


def _statuses(op: Operation, cached: bool) -> set[int]:
    """The declared statuses plus those the middleware chain can answer for this operation (contract §1.3)."""
    statuses = {*op.responses, 429, 500}
    if cached:
        statuses.add(304)
    if op.path is not None or op.query is not None or op.body is not None:
        statuses.add(422)
    if op.path is not None:
        statuses.add(404)  # a path value the route's pattern does not match is the router's 404
    if op.body is not None:
        statuses |= {400, 413, 415}
    if op.api_key:
        statuses.add(401)
    return statuses


def _parameter_order(parameter: dict[str, Any]) -> dict[str, Any]:
    # The order people write parameters in; apispec's puts `required` after the schema.
    first = [key for key in ("name", "in", "description", "required", "deprecated") if key in parameter]
    return {key: parameter[key] for key in [*first, *(key for key in parameter if key not in first)]}


def _template_names(template: str) -> set[str]:
    return {part[1:-1] for part in template.split("/") if part.startswith("{") and part.endswith("}")}


def _method_rank(method: str) -> int:
    return _METHOD_ORDER.index(method)


def _ordered(document: dict[str, Any]) -> dict[str, Any]:
    """Fixed top-level order and components sorted by name, so adding an operation gives a local diff."""
    components = document.get("components", {})
    ordered_components = {
        kind: dict(sorted(components[kind].items()))
        for kind in ("schemas", "parameters", "responses", "headers", "securitySchemes")
        if components.get(kind)
    }
    info = document["info"]
    return {
        "openapi": document["openapi"],
        "info": {key: info[key] for key in ("title", "version", "description")},
        "paths": document.get("paths", {}),
        "components": ordered_components,
    }

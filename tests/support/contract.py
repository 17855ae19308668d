"""Checking responses against the OpenAPI document generated from the code: every API test goes through here."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from refapi.app import build_app
from refapi.config import Settings
from refapi.openapi.operation import operation_of
from refapi.openapi.spec import generate_spec

__all__ = ["Contract", "assert_matches_spec", "checked", "contract"]

_BASE_URI = "urn:refapi:openapi"
_NO_BODY_METHODS = frozenset({"HEAD"})


@dataclass(frozen=True)
class _Route:
    """One documented operation and how aiohttp matches a concrete path to it."""

    method: str
    template: str
    pattern: re.Pattern[str] | None  # None: a plain path, compared as is
    index_key: str
    order: int

    def matches(self, path: str) -> bool:
        return path == self.template if self.pattern is None else self.pattern.fullmatch(path) is not None


class Contract:
    """The generated document, its routes and a validator factory for its response schemas."""

    def __init__(self, app: Any) -> None:
        self.spec: dict[str, Any] = generate_spec(app)
        self.registry: Registry[Any] = Registry().with_resource(
            _BASE_URI, Resource.from_contents(self.spec, default_specification=DRAFT202012)
        )
        self.routes = sorted(_routes(app), key=lambda r: (-len(r.index_key), r.order))

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The template and operation object that serve `method path`, as aiohttp's router would pick them."""
        wanted = "GET" if method.upper() == "HEAD" else method.upper()
        for route in self.routes:
            if route.method == wanted and route.matches(path):
                return route.template, self.spec["paths"][route.template][wanted.lower()]
        raise AssertionError(f"{method} {path}: no documented operation serves this path")

    def response(self, method: str, path: str, status: int) -> tuple[str, str, dict[str, Any]]:
        """(template, JSON pointer, response object) documented for `status`, following a `$ref` to components."""
        template, operation = self.operation(method, path)
        verb = "get" if method.upper() == "HEAD" else method.lower()
        responses = operation["responses"]
        if str(status) not in responses:
            raise AssertionError(
                f"{method} {path} ({template}) answered {status}, which the spec does not document; "
                f"documented: {', '.join(sorted(responses))}"
            )
        pointer = f"/paths/{_escape(template)}/{verb}/responses/{status}"
        response = responses[str(status)]
        if "$ref" in response:
            pointer = response["$ref"].removeprefix("#")
            response = self.resolve(response["$ref"])
        return template, pointer, response

    def resolve(self, ref: str) -> Any:
        return self.registry.resolver(_BASE_URI).lookup(ref).contents

    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at `pointer`, whose `$ref`s resolve inside the whole document."""
        schema = {"$ref": f"{_BASE_URI}#{pointer}"}
        return Draft202012Validator(schema, registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


@functools.cache
def contract() -> Contract:
    """The contract of the code under test, built once per test session from an app with default settings."""
    return Contract(build_app(Settings()))


def assert_matches_spec(
    method: str, path: str, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    """Fail unless `status` is documented for `method path` and `body` (parsed JSON) matches its schema.

    With `headers`, the documented required headers must be present and integer headers must be integers.
    """
    spec = contract()
    template, pointer, response = spec.response(method, path, status)
    where = f"{method} {path} ({template}) {status}"
    if headers is not None:
        _check_headers(spec, where, response, headers)
    content = response.get("content") or {}
    if method.upper() in _NO_BODY_METHODS or "application/json" not in content:
        return
    errors = list(spec.validator(f"{pointer}/content/application~1json/schema").iter_errors(body))
    if errors:
        error = best_match(errors)
        location = "/".join(map(str, error.absolute_path)) or "(root)"
        raise AssertionError(
            f"{where}: the body does not match the documented schema at {location}: {error.message}\n"
            f"{len(errors)} error(s); body: {_short(body)}"
        )


async def checked(resp: aiohttp.ClientResponse) -> Any:
    """Check `resp` against the spec and return its parsed JSON body (its text for documented non-JSON bodies)."""
    method, path, status = resp.method, resp.url.path, resp.status
    _, _, response = contract().response(method, path, status)
    raw = await resp.read()
    content = response.get("content") or {}
    if method.upper() in _NO_BODY_METHODS or not content:
        assert not raw, f"{method} {path} {status}: expected no body, got {len(raw)} bytes"
        assert_matches_spec(method, path, status, None, resp.headers)
        return None
    media_type = resp.content_type
    assert media_type in content, (
        f"{method} {path} {status}: Content-Type {media_type!r} is not documented; documented: {', '.join(content)}"
    )
    if media_type != "application/json":
        assert_matches_spec(method, path, status, None, resp.headers)
        return raw.decode(resp.charset or "utf-8")
    body = json.loads(raw)
    assert_matches_spec(method, path, status, body, resp.headers)
    return body


def _check_headers(spec: Contract, where: str, response: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    present = {name.lower(): value for name, value in headers.items()}
    for name, header in (response.get("headers") or {}).items():
        if "$ref" in header:
            header = spec.resolve(header["$ref"])
        value = present.get(name.lower())
        if value is None:
            assert not header.get("required"), f"{where}: the required header {name} is missing"
            continue
        schema = header.get("schema") or {}
        if schema.get("type") == "integer":
            assert re.fullmatch(r"-?[0-9]+", value), f"{where}: header {name} should be an integer, got {value!r}"
            value_to_check: Any = int(value)
        else:
            value_to_check = value
        error = best_match(Draft202012Validator(schema).iter_errors(value_to_check))
        assert error is None, f"{where}: header {name}={value!r} does not match its schema: {error.message}"


def _routes(app: Any) -> list[_Route]:
    routes = []
    for order, route in enumerate(app.router.routes()):
        resource = route.resource
        if route.method == "HEAD" or resource is None or operation_of(route.handler) is None:
            continue
        template = resource.canonical
        info = resource.get_info()
        routes.append(_Route(route.method, template, info.get("pattern"), _index_key(template), order))
    return routes


def _index_key(template: str) -> str:
    # aiohttp tries resources under the longest matching static prefix first, then in registration order.
    if "{" in template:
        template = template.partition("{")[0].rpartition("/")[0]
    return template.rstrip("/") or "/"


def _escape(template: str) -> str:
    return template.replace("~", "~0").replace("/", "~1")


def _short(body: Any, limit: int = 500) -> str:
    text = json.dumps(body, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"

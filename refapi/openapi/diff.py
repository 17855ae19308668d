"""Semantic OpenAPI 3.x diff: every contract change, classified as breaking (ERROR) or compatible (INFO)."""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import unquote

__all__ = ["RULES", "Change", "Level", "SpecError", "diff_specs", "render_json", "render_text"]


class Level(enum.StrEnum):
    """How a change affects existing clients: ERROR breaks some of them, INFO breaks none."""

    ERROR = "error"
    INFO = "info"


@dataclass(frozen=True)
class Change:
    """One semantic difference between two OpenAPI documents."""

    code: str
    level: Level
    location: str
    message: str


class SpecError(ValueError):
    """A document cannot be compared at all, e.g. a `$ref` that does not resolve."""


_E, _I = Level.ERROR, Level.INFO

# Every rule the diff applies; a code always has the same level, so CI can rely on it.
RULES: Mapping[str, Level] = types.MappingProxyType(
    {
        "path-removed": _E,
        "path-added": _I,
        "path-parameter-renamed": _I,
        "operation-removed": _E,
        "operation-added": _I,
        "operation-id-changed": _I,
        "deprecated-changed": _I,
        "security-added": _E,
        "security-removed": _I,
        "security-requirement-changed": _E,
        "security-alternative-added": _I,
        "security-scheme-changed": _E,
        "security-scheme-added": _I,
        "security-scheme-removed": _I,
        "parameter-removed": _E,
        "parameter-added-required": _E,
        "parameter-added-optional": _I,
        "parameter-made-required": _E,
        "parameter-made-optional": _I,
        "parameter-style-changed": _E,
        "request-body-removed": _E,
        "request-body-added-required": _E,
        "request-body-added-optional": _I,
        "request-body-made-required": _E,
        "request-body-made-optional": _I,
        "request-field-removed": _E,
        "request-field-added-required": _E,
        "request-field-added-optional": _I,
        "request-field-made-required": _E,
        "request-field-made-optional": _I,
        "request-variant-removed": _E,
        "request-variant-added": _I,
        "response-field-removed": _E,
        "response-field-added": _I,
        "response-field-made-optional": _E,
        "response-field-made-required": _I,
        "response-variant-added": _E,
        "response-variant-removed": _I,
        "response-header-removed": _E,
        "response-header-added": _I,
        "response-constraint-changed": _I,
        "status-removed": _E,
        "status-added": _I,
        "content-type-removed": _E,
        "content-type-added": _I,
        "type-changed": _E,
        "type-widened": _I,
        "type-narrowed": _I,
        "enum-narrowed": _E,
        "enum-widened": _I,
        "constraint-tightened": _E,
        "constraint-relaxed": _I,
        "default-changed": _I,
        "version-changed": _I,
        "openapi-version-changed": _I,
    }
)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAMETER_ORDER = {"path": 0, "query": 1, "header": 2, "cookie": 3}
_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
# Keywords that only document a schema; they never change what is valid on the wire.
_ANNOTATIONS = frozenset({"description", "summary", "title", "example", "examples", "externalDocs", "$comment"})
# Keywords whose values are instance data or names, never schemas, so they are kept verbatim when canonicalised.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "required", "type"})
# Values that are instance data, where a "$ref" key is just data.
_INSTANCE_DATA = frozenset({"example", "examples", "enum", "const", "default"})
_SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_UPPER_LIMITS = ("maxLength", "maxItems", "maxProperties")
_LOWER_LIMITS = ("minLength", "minItems", "minProperties")
_TEMPLATE = re.compile(r"\{([^{}/]+)\}")
_ANY: Mapping[str, Any] = types.MappingProxyType({})


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Compare two OpenAPI documents; the result does not depend on key order in either document.

    Raises SpecError when a document is structurally unusable (unresolvable `$ref`, ambiguous paths).
    """
    for side, document in (("old", old), ("new", new)):
        if not isinstance(document, Mapping):
            raise SpecError(f"{side} document is not a mapping")
    return _Differ(_Document(old, "old"), _Document(new, "new")).run()


def render_text(changes: Sequence[Change]) -> str:
    """Human report: one line per change, errors first, then a summary line."""
    lines = [f"{c.level.value.upper():<5} {c.code}  {c.location}: {c.message}" for c in _errors_first(changes)]
    errors = sum(1 for c in changes if c.level is Level.ERROR)
    infos = len(changes) - errors
    if changes:
        lines.append(f"spec-diff: {_plural(errors, 'error')}, {_plural(infos, 'info')}")
    else:
        lines.append("spec-diff: no differences")
    return "\n".join(lines)


def render_json(changes: Sequence[Change]) -> dict[str, Any]:
    """Machine report: the changes (errors first) and a count per level."""
    ordered = _errors_first(changes)
    return {
        "changes": [
            {"code": c.code, "level": c.level.value, "location": c.location, "message": c.message} for c in ordered
        ],
        "errors": sum(1 for c in changes if c.level is Level.ERROR),
        "infos": sum(1 for c in changes if c.level is Level.INFO),
    }


def _errors_first(changes: Sequence[Change]) -> list[Change]:
    return [c for c in changes if c.level is Level.ERROR] + [c for c in changes if c.level is not Level.ERROR]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Document:
    """One side of the comparison: resolves `$ref` pointers and flattens schemas."""

    def __init__(self, root: Mapping[str, Any], side: str) -> None:
        self.root = root
        self.side = side
        self.check_refs()

    def check_refs(self) -> None:
        """Fail on any dangling `$ref` up front, also in parts the other document has no counterpart for."""
        pending: list[Any] = [self.root]
        while pending:
            node = pending.pop()
            if isinstance(node, Mapping):
                if "$ref" in node:
                    self.pointer(node["$ref"])
                for key, value in node.items():
                    if key in _SCHEMA_MAP_KEYWORDS and isinstance(value, Mapping):
                        pending.extend(value.values())  # keyed by names, which may look like keywords
                    elif key not in _INSTANCE_DATA and not (isinstance(key, str) and key.startswith("x-")):
                        pending.append(value)
            elif isinstance(node, list):
                pending.extend(node)

    def pointer(self, ref: Any) -> Any:
        """The node a local JSON pointer reference (`#/components/...`) names."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SpecError(f"{self.side} document: only local $ref values are supported, got {ref!r}")
        node: Any = self.root
        for raw in ref[1:].split("/")[1:]:
            token = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise SpecError(f"{self.side} document: $ref {ref!r} does not resolve")
        return node

    def resolve(self, node: Any) -> Any:
        """Follow a chain of `$ref` objects (parameters, responses, bodies, headers, path items)."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise SpecError(f"{self.side} document: $ref {ref!r} refers to itself")
            seen.add(ref)
            node = self.pointer(ref)
        if not isinstance(node, Mapping):
            raise SpecError(f"{self.side} document: expected an object, got {node!r}")
        return node

    def schema(self, node: Any, expanding: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The schema with `$ref` resolved, `allOf` merged and nullability and bounds in one normal form.

        Nested schemas (properties, items, ...) stay raw; they are flattened when compared, which keeps
        recursive schemas finite. `expanding` holds the refs being merged into this one schema.
        """
        if node is True or node is None:
            return {}
        if node is False:
            return {"type": []}
        if not isinstance(node, Mapping):
            raise SpecError(f"{self.side} document: expected a schema, got {node!r}")
        if "$ref" in node:
            ref = node["$ref"]
            # A schema that includes itself adds nothing more the second time round.
            target = {} if ref in expanding else self.schema(self.pointer(ref), expanding | {ref})
            siblings = {k: v for k, v in node.items() if k != "$ref" and not _is_annotation(k)}
            return _merge([target, self.schema(siblings, expanding)]) if siblings else target
        own = {k: v for k, v in node.items() if k != "allOf"}
        parts = node.get("allOf") or []
        return _merge([_normalise(own), *(self.schema(part, expanding) for part in parts)])


def _is_annotation(key: Any) -> bool:
    return key in _ANNOTATIONS or (isinstance(key, str) and key.startswith("x-"))


def _normalise(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Fold OpenAPI 3.0 spellings (`nullable`, boolean exclusive bounds, `const`) into the 3.1 ones."""
    out = dict(schema)
    nullable = out.pop("nullable", False)
    if "type" in out:
        declared = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = sorted({str(t) for t in declared} | ({"null"} if nullable else set()))
    for exclusive, inclusive in (("exclusiveMaximum", "maximum"), ("exclusiveMinimum", "minimum")):
        if out.get(exclusive) is True and inclusive in out:
            out[exclusive] = out.pop(inclusive)
        elif isinstance(out.get(exclusive), bool):
            del out[exclusive]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def _merge(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine `allOf` parts into one schema; a value must satisfy every part."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = _combine(key, out[key], value) if key in out else value
    return out


def _combine(key: str, first: Any, second: Any) -> Any:
    if key == "properties":
        merged = dict(first)
        for name, schema in second.items():
            merged[name] = {"allOf": [merged[name], schema]} if name in merged else schema
        return merged
    if key == "required":
        return [*first, *(name for name in second if name not in first)]
    if key == "type":
        return sorted({t for t in first if _accepts(second, t)} | {t for t in second if _accepts(first, t)})
    if key == "enum":
        allowed = {_canonical(v) for v in second}
        return [v for v in first if _canonical(v) in allowed]
    if key in _UPPER_LIMITS or key in ("maximum", "exclusiveMaximum"):
        return min(first, second)
    if key in _LOWER_LIMITS or key in ("minimum", "exclusiveMinimum"):
        return max(first, second)
    if key in ("items", "additionalProperties"):
        if first is False or second is False:
            return False
        if first is True:
            return second
        return first if second is True else {"allOf": [first, second]}
    if key in ("readOnly", "writeOnly", "deprecated", "uniqueItems"):
        return bool(first) or bool(second)
    # Keywords two parts cannot both narrow meaningfully (pattern, format, oneOf, ...): the first part wins.
    return first


def _accepts(allowed: Any, type_name: str) -> bool:
    """Whether a value of JSON type `type_name` is valid for a schema allowing the types `allowed`."""
    if allowed is None:
        return True
    return type_name in allowed or (type_name == "integer" and "number" in allowed)


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The JSON types a schema allows; None when it does not restrict the type."""
    return frozenset(schema["type"]) if "type" in schema else None


def _may_be(allowed: frozenset[str] | None, type_name: str) -> bool:
    return allowed is None or type_name in allowed


def _format_types(allowed: frozenset[str] | None) -> str:
    return "any" if allowed is None else "|".join(sorted(allowed)) or "nothing"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _strip(schema: Any) -> Any:
    """A schema without annotations, in normal form, for comparing inline alternatives by value."""
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in _normalise(schema).items():
        if _is_annotation(key):
            continue
        if key in _DATA_KEYWORDS:
            out[key] = value
        elif key in _SCHEMA_MAP_KEYWORDS and isinstance(value, Mapping):
            out[key] = {name: _strip(sub) for name, sub in value.items()}
        elif isinstance(value, list):
            out[key] = [_strip(item) for item in value]
        else:
            out[key] = _strip(value)
    return out


def _keys(mapping: Any, extensible: bool = False) -> list[str]:
    """A mapping's keys as sorted strings (YAML turns an unquoted `200:` into an int).

    `extensible` objects (Paths, Responses) may also hold `x-` extensions, which are not entries.
    """
    if not isinstance(mapping, Mapping):
        return []
    return sorted(str(k) for k in mapping if not (extensible and _is_annotation(str(k))))


def _by_str_key(mapping: Any, extensible: bool = False) -> dict[str, Any]:
    if not isinstance(mapping, Mapping):
        return {}
    return {str(k): v for k, v in mapping.items() if not (extensible and _is_annotation(str(k)))}


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class _Where:
    """Where the schema being compared sits: the location prefix and whether clients send or receive it."""

    prefix: str
    request: bool

    def at(self, field: str) -> str:
        return f"{self.prefix} → {field}"


class _Differ:
    """Walks both documents in step and records one Change per difference."""

    def __init__(self, old: _Document, new: _Document) -> None:
        self.old = old
        self.new = new
        self.changes: list[Change] = []

    def emit(self, code: str, location: str, message: str) -> None:
        self.changes.append(Change(code, RULES[code], location, message))

    def run(self) -> list[Change]:
        old, new = self.old.root, self.new.root
        if str(old.get("openapi")) != str(new.get("openapi")):
            self.emit(
                "openapi-version-changed",
                "openapi",
                f"OpenAPI version changed from {old.get('openapi')} to {new.get('openapi')}.",
            )
        old_version = str((old.get("info") or {}).get("version"))
        new_version = str((new.get("info") or {}).get("version"))
        if old_version != new_version:
            self.emit("version-changed", "info.version", f"API version changed from {old_version} to {new_version}.")
        self.security_schemes()
        self.paths()
        return self.changes

    def security_schemes(self) -> None:
        old = _by_str_key((self.old.root.get("components") or {}).get("securitySchemes"))
        new = _by_str_key((self.new.root.get("components") or {}).get("securitySchemes"))
        for name in sorted(old.keys() | new.keys()):
            location = f"components → securitySchemes → {name}"
            if name not in new:
                self.emit("security-scheme-removed", location, f"Security scheme {name} was removed.")
            elif name not in old:
                self.emit("security-scheme-added", location, f"Security scheme {name} was added.")
            elif _scheme_signature(self.old.resolve(old[name])) != _scheme_signature(self.new.resolve(new[name])):
                self.emit(
                    "security-scheme-changed",
                    location,
                    f"Security scheme {name} now expects credentials differently.",
                )

    def paths(self) -> None:
        old = _paths_by_shape(self.old)
        new = _paths_by_shape(self.new)
        for shape in sorted(old.keys() | new.keys()):
            if shape not in new:
                self.emit("path-removed", old[shape], f"Path {old[shape]} was removed.")
            elif shape not in old:
                self.emit("path-added", new[shape], f"Path {new[shape]} was added.")
            else:
                self.path(old[shape], new[shape])

    def path(self, old_path: str, new_path: str) -> None:
        old_names, new_names = _TEMPLATE.findall(old_path), _TEMPLATE.findall(new_path)
        for old_name, new_name in zip(old_names, new_names, strict=True):
            if old_name != new_name:
                self.emit(
                    "path-parameter-renamed",
                    new_path,
                    f"Path parameter {{{old_name}}} was renamed to {{{new_name}}}.",
                )
        old_item = self.old.resolve(_by_str_key(self.old.root["paths"])[old_path])
        new_item = self.new.resolve(_by_str_key(self.new.root["paths"])[new_path])
        for method in _METHODS:
            label = f"{method.upper()} {new_path}"
            if method in old_item and method not in new_item:
                old_label = f"{method.upper()} {old_path}"
                self.emit("operation-removed", old_label, f"Operation {old_label} was removed.")
            elif method in new_item and method not in old_item:
                self.emit("operation-added", label, f"Operation {label} was added.")
            elif method in old_item:
                self.operation(
                    label,
                    (old_path, old_item, self.old.resolve(old_item[method])),
                    (new_path, new_item, self.new.resolve(new_item[method])),
                )

    def operation(
        self,
        label: str,
        old: tuple[str, Mapping[str, Any], Mapping[str, Any]],
        new: tuple[str, Mapping[str, Any], Mapping[str, Any]],
    ) -> None:
        (old_path, old_item, old_op), (new_path, new_item, new_op) = old, new
        if bool(old_op.get("deprecated")) != bool(new_op.get("deprecated")):
            state = "deprecated" if new_op.get("deprecated") else "no longer deprecated"
            self.emit("deprecated-changed", label, f"The operation is {state}.")
        if old_op.get("operationId") != new_op.get("operationId"):
            self.emit(
                "operation-id-changed",
                label,
                f"operationId changed from {old_op.get('operationId')} to {new_op.get('operationId')}.",
            )
        self.security(label, old_op, new_op)
        self.parameters(
            label,
            _parameters(self.old, old_path, old_item, old_op),
            _parameters(self.new, new_path, new_item, new_op),
        )
        self.request_body(label, old_op.get("requestBody"), new_op.get("requestBody"))
        self.responses(
            label,
            _by_str_key(old_op.get("responses"), extensible=True),
            _by_str_key(new_op.get("responses"), extensible=True),
        )

    def security(self, label: str, old_op: Mapping[str, Any], new_op: Mapping[str, Any]) -> None:
        old = _security_alternatives(old_op.get("security", self.old.root.get("security")))
        new = _security_alternatives(new_op.get("security", self.new.root.get("security")))
        old_open, new_open = not old or frozenset() in old, not new or frozenset() in new
        if old_open and not new_open:
            self.emit("security-added", label, f"The operation now requires {_format_security(new)}.")
        elif new_open and not old_open:
            self.emit("security-removed", label, "The operation no longer requires authentication.")
        elif old - new - {frozenset()}:
            self.emit(
                "security-requirement-changed",
                label,
                f"The operation now requires {_format_security(new)} instead of {_format_security(old)}.",
            )
        elif new - old - {frozenset()}:
            self.emit(
                "security-alternative-added",
                label,
                f"The operation now also accepts {_format_security(new - old)}.",
            )

    def parameters(
        self,
        label: str,
        old: Mapping[tuple[str, str], Mapping[str, Any]],
        new: Mapping[tuple[str, str], Mapping[str, Any]],
    ) -> None:
        for identity in sorted(old.keys() | new.keys(), key=lambda i: (_PARAMETER_ORDER.get(i[0], 9), i)):
            shown = new[identity] if identity in new else old[identity]
            name = f"{shown.get('in')} parameter {shown.get('name')}"
            location = f"{label} → {name}"
            if identity not in new:
                self.emit("parameter-removed", location, f"The {name} was removed.")
            elif identity not in old:
                required = bool(shown.get("required"))
                self.emit(
                    "parameter-added-required" if required else "parameter-added-optional",
                    location,
                    f"{'A required' if required else 'An optional'} {name} was added.",
                )
            else:
                self.parameter(label, name, old[identity], new[identity])

    def parameter(self, label: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        location = f"{label} → {name}"
        if bool(old.get("required")) != bool(new.get("required")):
            made = "required" if new.get("required") else "optional"
            self.emit(f"parameter-made-{made}", location, f"The {name} is now {made}.")
        if _serialisation(old) != _serialisation(new):
            self.emit(
                "parameter-style-changed",
                location,
                f"Serialisation changed from {_serialisation(old)} to {_serialisation(new)}.",
            )
        if bool(old.get("deprecated")) != bool(new.get("deprecated")):
            state = "deprecated" if new.get("deprecated") else "no longer deprecated"
            self.emit("deprecated-changed", location, f"The {name} is {state}.")
        self.schema(_parameter_schema(old), _parameter_schema(new), _Where(label, request=True), name, frozenset())

    def request_body(self, label: str, old_raw: Any, new_raw: Any) -> None:
        location = f"{label} → request"
        if old_raw is None and new_raw is None:
            return
        if new_raw is None:
            self.emit("request-body-removed", location, "The operation no longer accepts a request body.")
            return
        new = self.new.resolve(new_raw)
        if old_raw is None:
            required = bool(new.get("required"))
            self.emit(
                "request-body-added-required" if required else "request-body-added-optional",
                location,
                f"The operation now accepts {'and requires ' if required else ''}a request body.",
            )
            return
        old = self.old.resolve(old_raw)
        if bool(old.get("required")) != bool(new.get("required")):
            made = "required" if new.get("required") else "optional"
            self.emit(f"request-body-made-{made}", location, f"The request body is now {made}.")
        self.content(_Where(location, request=True), old.get("content"), new.get("content"))

    def responses(self, label: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old_by_status = {_status_key(k): k for k in old}
        new_by_status = {_status_key(k): k for k in new}
        for status in sorted(old_by_status.keys() | new_by_status.keys()):
            location = f"{label} → response {status}"
            if status not in new_by_status:
                self.emit("status-removed", location, f"Response status {status} is no longer documented.")
            elif status not in old_by_status:
                self.emit("status-added", location, f"Response status {status} is now documented.")
            else:
                old_response = self.old.resolve(old[old_by_status[status]])
                new_response = self.new.resolve(new[new_by_status[status]])
                where = _Where(location, request=False)
                self.headers(where, _by_str_key(old_response.get("headers")), _by_str_key(new_response.get("headers")))
                self.content(where, old_response.get("content"), new_response.get("content"))

    def headers(self, where: _Where, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old_by_name = {k.lower(): k for k in old}
        new_by_name = {k.lower(): k for k in new}
        for key in sorted(old_by_name.keys() | new_by_name.keys()):
            name = f"header {new_by_name.get(key) or old_by_name[key]}"
            if key not in new_by_name:
                self.emit("response-header-removed", where.at(name), f"The response no longer has {name}.")
            elif key not in old_by_name:
                self.emit("response-header-added", where.at(name), f"The response now has {name}.")
            else:
                old_header = self.old.resolve(old[old_by_name[key]])
                new_header = self.new.resolve(new[new_by_name[key]])
                self.schema(_parameter_schema(old_header), _parameter_schema(new_header), where, name, frozenset())

    def content(self, where: _Where, old_raw: Any, new_raw: Any) -> None:
        old, new = _media_types(old_raw), _media_types(new_raw)
        for media_type in sorted(old.keys() | new.keys()):
            if media_type not in new:
                self.emit("content-type-removed", where.at(media_type), f"Content type {media_type} was removed.")
            elif media_type not in old:
                self.emit("content-type-added", where.at(media_type), f"Content type {media_type} was added.")
            else:
                field = "body" if media_type == "application/json" else f"body({media_type})"
                old_schema = (old[media_type] or {}).get("schema", _ANY)
                new_schema = (new[media_type] or {}).get("schema", _ANY)
                self.schema(old_schema, new_schema, where, field, frozenset())

    def schema(self, old_raw: Any, new_raw: Any, where: _Where, field: str, seen: frozenset[tuple[Any, Any]]) -> None:
        """Compare two schemas at `field`; `seen` holds the pairs on the current branch, ending recursion."""
        pair = (_identity(old_raw), _identity(new_raw))
        if pair in seen:
            return
        seen = seen | {pair}
        old, new = self.old.schema(old_raw), self.new.schema(new_raw)
        old_variants, new_variants = _variants(old), _variants(new)
        if (old_variants is None) != (new_variants is None):
            # `X` becoming `anyOf: [X, null]` (how apispec writes a nullable ref) is one added variant,
            # so the plain side is compared as a one-variant union rather than field by field.
            self.variants(
                where, field, old_variants or ("anyOf", [old_raw]), new_variants or ("anyOf", [new_raw]), seen
            )
            return
        location = where.at(field)
        old_types, new_types = _types(old), _types(new)
        if old_types != new_types and not self.type_change(location, where.request, old_types, new_types):
            return
        self.enum(location, old, new)
        self.constraints(location, where.request, old, new)
        if _canonical(old.get("default")) != _canonical(new.get("default")):
            self.emit(
                "default-changed",
                location,
                f"Default changed from {_show(old.get('default'))} to {_show(new.get('default'))}.",
            )
        if bool(old.get("deprecated")) != bool(new.get("deprecated")):
            state = "deprecated" if new.get("deprecated") else "no longer deprecated"
            self.emit("deprecated-changed", location, f"{field} is {state}.")
        if _may_be(old_types, "object") and _may_be(new_types, "object"):
            self.properties(where, field, old, new, seen)
            self.additional_properties(where, field, old, new, seen)
        if _may_be(old_types, "array") and _may_be(new_types, "array"):
            self.schema(old.get("items", _ANY), new.get("items", _ANY), where, f"{field}[]", seen)
        if old_variants is not None and new_variants is not None:
            self.variants(where, field, old_variants, new_variants, seen)

    def type_change(self, location: str, request: bool, old: frozenset[str] | None, new: frozenset[str] | None) -> bool:
        """Report a changed type; returns whether the schemas are still worth comparing in detail."""
        message = f"Type changed from {_format_types(old)} to {_format_types(new)}."
        if request:
            # Clients keep sending what was valid before, so every old type must still be accepted.
            compatible = new is None or (old is not None and all(_accepts(new, t) for t in old))
            self.emit("type-widened" if compatible else "type-changed", location, message)
        else:
            # Clients only understand what was documented before, so every new type must have been allowed.
            compatible = new is not None and all(_accepts(old, t) for t in new)
            self.emit("type-narrowed" if compatible else "type-changed", location, message)
        return compatible

    def enum(self, location: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if "enum" not in old and "enum" not in new:
            return
        if "enum" not in new:
            self.emit("enum-widened", location, "Values are no longer restricted to an enum.")
            return
        if "enum" not in old:
            self.emit("enum-narrowed", location, f"Values are now restricted to {_show(new['enum'])}.")
            return
        old_values = {_canonical(v): v for v in old["enum"]}
        new_values = {_canonical(v): v for v in new["enum"]}
        removed = [old_values[k] for k in sorted(old_values.keys() - new_values.keys())]
        added = [new_values[k] for k in sorted(new_values.keys() - old_values.keys())]
        if removed:
            self.emit("enum-narrowed", location, f"Enum values removed: {', '.join(map(_show, removed))}.")
        if added:
            self.emit("enum-widened", location, f"Enum values added: {', '.join(map(_show, added))}.")

    def constraints(self, location: str, request: bool, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        for tightened, description in _constraint_changes(old, new):
            self.constraint(location, request, tightened, description)

    def constraint(self, location: str, request: bool, tightened: bool, description: str) -> None:
        if not request:
            # What a server promises to send; tighter or looser, clients keep working.
            self.emit("response-constraint-changed", location, f"{description} in the response.")
        elif tightened:
            self.emit("constraint-tightened", location, f"{description}, so some valid input is now rejected.")
        else:
            self.emit("constraint-relaxed", location, f"{description}, so more input is accepted.")

    def properties(
        self,
        where: _Where,
        field: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        seen: frozenset[tuple[Any, Any]],
    ) -> None:
        old_props = self.visible_properties(self.old, old, where.request)
        new_props = self.visible_properties(self.new, new, where.request)
        old_required = set(map(str, old.get("required") or ()))
        new_required = set(map(str, new.get("required") or ()))
        side = "request" if where.request else "response"
        for name in sorted(old_props.keys() | new_props.keys()):
            location = where.at(f"{field}.{name}")
            if name not in new_props:
                self.emit(f"{side}-field-removed", location, f"The {side} field {name} was removed.")
            elif name not in old_props:
                if not where.request:
                    self.emit("response-field-added", location, f"The response field {name} was added.")
                elif name in new_required:
                    self.emit("request-field-added-required", location, f"A required request field {name} was added.")
                else:
                    self.emit("request-field-added-optional", location, f"An optional request field {name} was added.")
            else:
                if (name in old_required) != (name in new_required):
                    made = "required" if name in new_required else "optional"
                    self.emit(f"{side}-field-made-{made}", location, f"The {side} field {name} is now {made}.")
                self.schema(old_props[name], new_props[name], where, f"{field}.{name}", seen)

    @staticmethod
    def visible_properties(document: _Document, schema: Mapping[str, Any], request: bool) -> dict[str, Any]:
        """Properties that travel in this direction: readOnly ones are never sent, writeOnly never received."""
        hidden = "readOnly" if request else "writeOnly"
        return {
            name: raw
            for name, raw in _by_str_key(schema.get("properties")).items()
            if not document.schema(raw).get(hidden)
        }

    def additional_properties(
        self,
        where: _Where,
        field: str,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        seen: frozenset[tuple[Any, Any]],
    ) -> None:
        old_extra, new_extra = (
            _extra(old.get("additionalProperties", True)),
            _extra(new.get("additionalProperties", True)),
        )
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.schema(old_extra, new_extra, where, f"{field}{{}}", seen)
            return
        if old_extra is new_extra:
            return
        tightened = _openness(new_extra) < _openness(old_extra)
        description = f"additionalProperties changed from {_show_extra(old_extra)} to {_show_extra(new_extra)}"
        self.constraint(where.at(field), where.request, tightened, description)

    def variants(
        self,
        where: _Where,
        field: str,
        old: tuple[str, Sequence[Any]],
        new: tuple[str, Sequence[Any]],
        seen: frozenset[tuple[Any, Any]],
    ) -> None:
        """Compare `oneOf`/`anyOf` alternatives as sets; alternatives present on both sides are compared deeply."""
        keyword = new[0]
        old_by_key = {_variant_key(raw): raw for raw in old[1]}
        new_by_key = {_variant_key(raw): raw for raw in new[1]}
        for key in sorted(old_by_key.keys() | new_by_key.keys()):
            name = _variant_name(self.new if key in new_by_key else self.old, new_by_key.get(key, old_by_key.get(key)))
            sub = f"{field}.{keyword}[{name}]"
            location = where.at(sub)
            if key not in new_by_key:
                code = "request-variant-removed" if where.request else "response-variant-removed"
                self.emit(code, location, f"The {keyword} alternative {name} was removed.")
            elif key not in old_by_key:
                code = "request-variant-added" if where.request else "response-variant-added"
                self.emit(code, location, f"The {keyword} alternative {name} was added.")
            else:
                self.schema(old_by_key[key], new_by_key[key], where, sub, seen)


def _paths_by_shape(document: _Document) -> dict[str, str]:
    """Path templates keyed by their shape, so `/a/{x}` and `/a/{y}` are one path."""
    by_shape: dict[str, str] = {}
    for path in _keys(document.root.get("paths"), extensible=True):
        shape = _TEMPLATE.sub("{}", path)
        if shape in by_shape:
            raise SpecError(f"{document.side} document: paths {by_shape[shape]} and {path} differ only in names")
        by_shape[shape] = path
    return by_shape


def _parameters(
    document: _Document, path: str, item: Mapping[str, Any], operation: Mapping[str, Any]
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The operation's effective parameters (path-level ones overridden by its own), keyed by identity.

    Path parameters are identified by their position in the template, so renaming one is not a removal;
    header names are case-insensitive.
    """
    positions = {name: str(index) for index, name in enumerate(_TEMPLATE.findall(path))}
    effective: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*(item.get("parameters") or ()), *(operation.get("parameters") or ())]:
        parameter = document.resolve(raw)
        location, name = str(parameter.get("in")), str(parameter.get("name"))
        if location == "path":
            name = "#" + positions.get(name, name)
        elif location == "header":
            name = name.lower()
        effective[(location, name)] = parameter
    return effective


def _parameter_schema(parameter: Mapping[str, Any]) -> Any:
    """A parameter's or header's schema, whether given directly or through `content`."""
    if "schema" in parameter:
        return parameter["schema"]
    content = _media_types(parameter.get("content"))
    return (content[min(content)] or {}).get("schema", _ANY) if content else _ANY


def _serialisation(parameter: Mapping[str, Any]) -> str:
    """How a parameter is written on the wire, with the defaults OpenAPI gives each location filled in."""
    style = str(parameter.get("style", _DEFAULT_STYLE.get(str(parameter.get("in")), "form")))
    explode = bool(parameter.get("explode", style == "form"))
    return f"style={style}, explode={str(explode).lower()}"


def _media_types(content: Any) -> dict[str, Any]:
    """Media types without parameters or case, so `application/json; charset=utf-8` is `application/json`."""
    by_type: dict[str, Any] = {}
    for key in _keys(content):
        by_type.setdefault(key.split(";")[0].strip().lower(), content[key])
    return by_type


def _status_key(status: Any) -> str:
    text = str(status)
    return text.lower() if text.lower() == "default" else text.upper()


def _security_alternatives(requirements: Any) -> frozenset[frozenset[tuple[str, tuple[str, ...]]]]:
    """A security requirement list as a set of alternatives, each a set of (scheme, scopes)."""
    return frozenset(
        frozenset((str(name), tuple(sorted(map(str, scopes or ())))) for name, scopes in alternative.items())
        for alternative in requirements or ()
    )


def _scheme_signature(scheme: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a client must do to satisfy a security scheme; descriptions (also of scopes) do not count."""
    flows = {
        str(kind): (
            flow.get("authorizationUrl"),
            flow.get("tokenUrl"),
            flow.get("refreshUrl"),
            tuple(_keys(flow.get("scopes"))),
        )
        for kind, flow in _by_str_key(scheme.get("flows")).items()
    }
    fields = ("type", "in", "name", "scheme", "bearerFormat", "openIdConnectUrl")
    return (*(str(scheme.get(f)).lower() if f == "scheme" else scheme.get(f) for f in fields), sorted(flows.items()))


def _format_security(alternatives: frozenset[frozenset[tuple[str, tuple[str, ...]]]]) -> str:
    def one(alternative: frozenset[tuple[str, tuple[str, ...]]]) -> str:
        parts = [f"{name}({', '.join(scopes)})" if scopes else name for name, scopes in sorted(alternative)]
        return " + ".join(parts) or "no authentication"

    return " or ".join(sorted(one(a) for a in alternatives))


def _identity(raw: Any) -> Any:
    """What makes a schema node recognisable when recursion brings it round again."""
    if isinstance(raw, Mapping) and "$ref" in raw:
        return raw["$ref"]
    return id(raw)


def _variants(schema: Mapping[str, Any]) -> tuple[str, Sequence[Any]] | None:
    for keyword in ("oneOf", "anyOf"):
        if isinstance(schema.get(keyword), list):
            return keyword, schema[keyword]
    return None


def _variant_key(raw: Any) -> str:
    if isinstance(raw, Mapping) and "$ref" in raw:
        return str(raw["$ref"])
    return _canonical(_strip(raw))


def _variant_name(document: _Document, raw: Any) -> str:
    if isinstance(raw, Mapping) and "$ref" in raw:
        return str(raw["$ref"]).rsplit("/", 1)[-1]
    return _format_types(_types(document.schema(raw)))


def _extra(value: Any) -> Any:
    """additionalProperties as False, True or a schema; an empty schema allows anything, like True."""
    if isinstance(value, Mapping) and not {k for k in value if not _is_annotation(k)}:
        return True
    return value if isinstance(value, Mapping) else bool(value)


def _openness(extra: Any) -> int:
    """Orders additionalProperties by how much they accept: none, those matching a schema, any."""
    if isinstance(extra, Mapping):
        return 1
    return 2 if extra else 0


def _show_extra(value: Any) -> str:
    return "a schema" if isinstance(value, Mapping) else _show(value)


def _constraint_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[tuple[bool, str]]:
    """Each validation keyword that differs, as (whether fewer values are valid now, description)."""
    for keyword in _UPPER_LIMITS:
        before, after = old.get(keyword), new.get(keyword)
        if before != after:
            yield after is not None and (before is None or after < before), _describe(keyword, before, after)
    for keyword in _LOWER_LIMITS:
        before, after = old.get(keyword), new.get(keyword)
        if before != after:
            yield after is not None and (before is None or after > before), _describe(keyword, before, after)
    for upper, inclusive, exclusive in ((True, "maximum", "exclusiveMaximum"), (False, "minimum", "exclusiveMinimum")):
        before_bound, after_bound = _bound(old, inclusive, exclusive, upper), _bound(new, inclusive, exclusive, upper)
        if before_bound != after_bound:
            yield _bound_tighter(before_bound, after_bound, upper), _describe_bound(upper, before_bound, after_bound)
    for keyword in ("pattern", "format"):
        before, after = old.get(keyword), new.get(keyword)
        if before != after:
            yield after is not None, _describe(keyword, before, after)
    before, after = old.get("multipleOf"), new.get("multipleOf")
    if before != after:
        # Every multiple of the old step is still valid when the new step divides it.
        relaxed = after is None or (before is not None and Fraction(str(before)) % Fraction(str(after)) == 0)
        yield not relaxed, _describe("multipleOf", before, after)
    if bool(old.get("uniqueItems")) != bool(new.get("uniqueItems")):
        yield (
            bool(new.get("uniqueItems")),
            _describe("uniqueItems", bool(old.get("uniqueItems")), bool(new.get("uniqueItems"))),
        )


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, upper: bool) -> tuple[Any, bool] | None:
    """The effective numeric bound as (value, exclusive), the tighter of the two keywords."""
    candidates = [(schema[inclusive], False)] if inclusive in schema else []
    if exclusive in schema:
        candidates.append((schema[exclusive], True))
    if not candidates:
        return None
    # For an upper bound the lowest value wins and, on a tie, the exclusive one; mirrored for a lower bound.
    return min(candidates, key=lambda c: (c[0], not c[1])) if upper else max(candidates, key=lambda c: (c[0], c[1]))


def _bound_tighter(before: tuple[Any, bool] | None, after: tuple[Any, bool] | None, upper: bool) -> bool:
    if after is None:
        return False
    if before is None:
        return True
    if after[0] != before[0]:
        return bool(after[0] < before[0]) if upper else bool(after[0] > before[0])
    return after[1] and not before[1]


def _describe_bound(upper: bool, before: tuple[Any, bool] | None, after: tuple[Any, bool] | None) -> str:
    def show(bound: tuple[Any, bool]) -> str:
        return f"{'<' if upper else '>'}{'' if bound[1] else '='} {_show(bound[0])}"

    return _describe("maximum" if upper else "minimum", before, after, show)


def _describe(keyword: str, before: Any, after: Any, show: Callable[[Any], str] = _show) -> str:
    if before is None:
        return f"{keyword} {show(after)} added"
    if after is None:
        return f"{keyword} {show(before)} removed"
    return f"{keyword} changed from {show(before)} to {show(after)}"

"""Vault operations (contract §2.3): KV v2 reads and writes with masking, the versioned read, transit, health."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load

from refapi import errors, keys
from refapi.api.health import VaultHealth, check_service
from refapi.backends.credentials import READ_ONLY_SECRETS
from refapi.backends.vault import CasMismatch, InvalidCiphertext, SecretNotFound, VaultClient
from refapi.openapi.fields import Int, Length, Pattern, QueryInt, Range, Str, Utf8Length, problem
from refapi.openapi.operation import Input, json_response, operation

routes = web.RouteTableDef()
T = TypeVar("T")

NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
CIPHERTEXT_PATTERN = r"^vault:v[0-9]+:[A-Za-z0-9+/=]+$"
RESERVED_SERVICE = "versioned"
SENSITIVE_MARKERS = ("password", "token", "secret", "private_key")
MASK = "***"
NOTE = "Values of keys whose names contain password, token, secret or private_key are masked as ***."
MAX_FIELDS = 50
MAX_FIELD_NAME = 100
MAX_STRING_VALUE = 10000
NO_STORE = {"Cache-Control": "no-store"}
_NAME_RE = re.compile(NAME_PATTERN)
_NO_STORE_DOC = {200: {"Cache-Control": "Always no-store"}}


# -- request schemas ------------------------------------------------------------------------------------------


def _not_reserved(value: str) -> None:
    if value.lower() == RESERVED_SERVICE:
        raise ValidationError(problem("reserved_name", f"Service name '{RESERVED_SERVICE}' is reserved"))


def _service_name() -> Str:
    return Str(required=True, validate=[Length(1, 50), Pattern(NAME_PATTERN), _not_reserved],
               metadata={"description": "Secret name (lower-cased for the KV path, echoed as sent)"})


class ServicePath(Schema):
    service_name = _service_name()


class ServiceKeyPath(Schema):
    service_name = _service_name()
    key = Str(required=True, validate=[Length(1, MAX_FIELD_NAME), Pattern(NAME_PATTERN)],
              metadata={"description": "Looked up exactly, then case-insensitively"})


class VersionQuery(Schema):
    version = QueryInt(validate=Range(min=1), metadata={"description": "Version to read; default latest"})


class CasQuery(Schema):
    cas = QueryInt(validate=Range(min=0),
                   metadata={"description": "Check-and-set: the current version expected (0 = create only)"})


class SecretWriteBody(Schema):
    """Every entry is checked here; marshmallow sees no declared fields, so the object passes through whole."""

    class Meta:
        unknown = INCLUDE
        description = (
            f"The new secret: 1-{MAX_FIELDS} entries; names 1-{MAX_FIELD_NAME} characters of [a-zA-Z0-9_-]; "
            f"values are strings (at most {MAX_STRING_VALUE} characters), finite numbers or booleans"
        )

    @pre_load
    def check_entries(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict):
            return data  # marshmallow reports dict_type
        body: list[dict[str, str]] = []
        entries: dict[str, list[dict[str, str]]] = {}
        if not data:
            body.append(problem("too_few_fields", "Object should have at least 1 entry"))
        elif len(data) > MAX_FIELDS:
            body.append(problem("too_many_fields", f"Object should have at most {MAX_FIELDS} entries"))
        for name, value in data.items():
            name_problem = _field_name_problem(name)
            if name_problem is not None:
                # Not a valid name, so not echoed in `loc`.
                if name_problem not in body:
                    body.append(name_problem)
            elif not _valid_value(value):
                entries[name] = [problem(
                    "value_type",
                    f"Value should be a string of at most {MAX_STRING_VALUE} characters, a finite number or a boolean",
                )]
        if body or entries:
            raise ValidationError({**({"_schema": body} if body else {}), **entries})
        return data


def _field_name_problem(name: str) -> dict[str, str] | None:
    if not name:
        return problem("string_too_short", "Field names should have at least 1 character")
    if len(name) > MAX_FIELD_NAME:
        return problem("string_too_long", f"Field names should have at most {MAX_FIELD_NAME} characters")
    if not _NAME_RE.fullmatch(name):
        return problem("string_pattern_mismatch", f"Field names should match pattern '{NAME_PATTERN}'")
    return None


def _valid_value(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return len(value) <= MAX_STRING_VALUE
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


class PlaintextPath(Schema):
    plaintext = Str(required=True, validate=Utf8Length(1, 1024),
                    metadata={"description": "Text to encrypt, one path segment, 1-1024 bytes as UTF-8"})


class CiphertextPath(Schema):
    ciphertext = Str(required=True, validate=[Length(max=2048), Pattern(CIPHERTEXT_PATTERN)],
                     metadata={"description": "Transit ciphertext; the rest of the path (may contain '/')"})


class EncryptBody(Schema):
    plaintext = Str(required=True, validate=Utf8Length(1, 65536),
                    metadata={"description": "Text to encrypt, 1-65536 bytes as UTF-8"})


class DecryptBody(Schema):
    ciphertext = Str(required=True, validate=[Length(max=100000), Pattern(CIPHERTEXT_PATTERN)])


# -- response schemas -----------------------------------------------------------------------------------------


class SecretResponse(Schema):
    service = fields.String(required=True)
    data = fields.Dict(keys=fields.String(), required=True, metadata={"description": "Sensitive values masked"})
    note = fields.String(required=True)


class SecretKeyResponse(Schema):
    service = fields.String(required=True)
    key = fields.String(required=True)
    value = fields.Raw(required=True, allow_none=True, metadata={"description": "As stored, or *** if masked"})
    note = fields.String(required=True)


class SecretWriteResponse(Schema):
    service = fields.String(required=True)
    version = Int(required=True)
    created_time = fields.String(required=True, metadata={"description": "As Vault reports it"})
    action = fields.String(required=True, metadata={"enum": ["written"]})


class SecretVersionMetadata(Schema):
    created_time = fields.String(required=True)
    deletion_time = fields.String(required=True, allow_none=True)
    destroyed = fields.Boolean(required=True)
    version = Int(required=True)


class SecretVersionSummary(Schema):
    version = Int(required=True)
    created_time = fields.String(required=True)
    deletion_time = fields.String(required=True, allow_none=True)
    destroyed = fields.Boolean(required=True)


class VersionedSecretResponse(Schema):
    service = fields.String(required=True)
    version = Int(required=True)
    data = fields.Dict(keys=fields.String(), required=True, allow_none=True,
                       metadata={"description": "Masked; null when the version is deleted or destroyed"})
    metadata = fields.Nested(SecretVersionMetadata, required=True)
    versions = fields.List(fields.Nested(SecretVersionSummary), required=True)


class EncryptResponse(Schema):
    key_name = fields.String(required=True)
    ciphertext = fields.String(required=True)


class DecryptResponse(Schema):
    key_name = fields.String(required=True)
    plaintext = fields.String(required=True)


# -- helpers --------------------------------------------------------------------------------------------------


def masked(data: Mapping[str, Any]) -> dict[str, Any]:
    """The secret with every sensitive key's value replaced, whatever it was (null and empty included)."""
    return {name: MASK if is_sensitive(name) else value for name, value in data.items()}


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in SENSITIVE_MARKERS)


def find_key(data: Mapping[str, Any], key: str) -> str | None:
    """The stored name for `key`: itself if present, else the first case-insensitive match in sorted order."""
    if key in data:
        return key
    lowered = key.lower()
    return next((name for name in sorted(data) if name.lower() == lowered), None)


async def _vault_call(request: web.Request, operation_name: str, call: Callable[[VaultClient], Awaitable[T]]) -> T:
    client: VaultClient = request.app[keys.VAULT]
    return await request.app[keys.GUARDS]["vault"].call(operation_name, lambda: call(client))


def _invalid_ciphertext(location: str) -> errors.ValidationFailed:
    return errors.ValidationFailed([{
        "loc": [location, "ciphertext"],
        "msg": "Ciphertext could not be decrypted with the transit key",
        "type": "invalid_ciphertext",
    }])


def _secret_not_found(service: str) -> errors.NotFound:
    return errors.NotFound("Secret not found", resource_type="secret", resource_id=service)


# -- handlers -------------------------------------------------------------------------------------------------


@routes.get("/examples/vault/health")
@operation(summary="Vault health (the /health/vault body)", tags=("vault",), responses={200: VaultHealth})
async def vault_health(request: web.Request, inp: Input) -> web.Response:
    return json_response(await check_service(request.app, "vault"))


# Before /secret/{service_name}/{key}: /secret/versioned/X must always reach the versioned read.
@routes.get("/examples/vault/secret/versioned/{service_name}")
@operation(
    summary="Read a secret version with its metadata and version list (masked)",
    tags=("vault",),
    path=ServicePath,
    query=VersionQuery,
    responses={200: VersionedSecretResponse, 404: None, 503: None},
    headers=_NO_STORE_DOC,
)
async def read_versioned_secret(request: web.Request, inp: Input) -> web.Response:
    service: str = inp.path["service_name"]
    version: int | None = inp.query.get("version")
    try:
        found = await _vault_call(request, "kv_read", lambda vault: vault.read_versioned(service.lower(), version))
    except SecretNotFound as exc:
        if exc.version is None:
            raise _secret_not_found(service) from None
        raise errors.NotFound("Secret version not found", resource_type="secret_version",
                              resource_id=f"{service}@{exc.version}") from None
    info = found.info
    return json_response(
        {
            "service": service,
            "version": info.version,
            "data": None if found.data is None else masked(found.data),
            "metadata": {
                "created_time": info.created_time,
                "deletion_time": info.deletion_time,
                "destroyed": info.destroyed,
                "version": info.version,
            },
            "versions": [
                {
                    "version": item.version,
                    "created_time": item.created_time,
                    "deletion_time": item.deletion_time,
                    "destroyed": item.destroyed,
                }
                for item in found.versions
            ],
        },
        headers=NO_STORE,
    )


@routes.get("/examples/vault/secret/{service_name}")
@operation(
    summary="Read a secret's latest version (sensitive values masked)",
    tags=("vault",),
    path=ServicePath,
    responses={200: SecretResponse, 404: None, 503: None},
)
async def read_secret(request: web.Request, inp: Input) -> web.Response:
    service: str = inp.path["service_name"]
    try:
        data = await _vault_call(request, "kv_read", lambda vault: vault.read_secret(service.lower()))
    except SecretNotFound:
        raise _secret_not_found(service) from None
    return json_response({"service": service, "data": masked(data), "note": NOTE})


@routes.get("/examples/vault/secret/{service_name}/{key}")
@operation(
    summary="Read one key of a secret's latest version (masked if sensitive)",
    tags=("vault",),
    path=ServiceKeyPath,
    responses={200: SecretKeyResponse, 404: None, 503: None},
)
async def read_secret_key(request: web.Request, inp: Input) -> web.Response:
    service: str = inp.path["service_name"]
    key: str = inp.path["key"]
    try:
        data = await _vault_call(request, "kv_read", lambda vault: vault.read_secret(service.lower()))
    except SecretNotFound:
        raise _secret_not_found(service) from None
    stored = find_key(data, key)
    if stored is None:
        raise errors.NotFound("Secret key not found", resource_type="secret_key", resource_id=f"{service}/{key}")
    value = MASK if is_sensitive(stored) else data[stored]
    return json_response({"service": service, "key": key, "value": value, "note": NOTE})


@routes.post("/examples/vault/secret/{service_name}")
@operation(
    summary="Write a new version of a secret (replaces the whole secret)",
    tags=("vault",),
    path=ServicePath,
    query=CasQuery,
    body=SecretWriteBody,
    responses={200: SecretWriteResponse, 403: None, 409: None, 503: None},
    headers=_NO_STORE_DOC,
    api_key=True,
)
async def write_secret(request: web.Request, inp: Input) -> web.Response:
    service: str = inp.path["service_name"]
    name = service.lower()
    read_only = READ_ONLY_SECRETS | {request.app[keys.SETTINGS].vault_app_secret.lower()}
    if name in read_only:
        raise errors.Forbidden("This secret is read-only", reason="read_only")
    cas: int | None = inp.query.get("cas")
    try:
        written = await _vault_call(request, "kv_write", lambda vault: vault.write_secret(name, inp.body, cas))
    except CasMismatch:
        raise errors.Conflict("The check-and-set version does not match the secret's current version",
                              reason="cas_mismatch") from None
    return json_response(
        {"service": service, "version": written.version, "created_time": written.created_time, "action": "written"},
        headers=NO_STORE,
    )


async def _encrypt(request: web.Request, plaintext: str) -> web.Response:
    ciphertext = await _vault_call(request, "transit", lambda vault: vault.encrypt(plaintext))
    key_name = request.app[keys.SETTINGS].vault_transit_key
    return json_response({"key_name": key_name, "ciphertext": ciphertext}, headers=NO_STORE)


async def _decrypt(request: web.Request, ciphertext: str, location: str) -> web.Response:
    try:
        plaintext = await _vault_call(request, "transit", lambda vault: vault.decrypt(ciphertext))
    except InvalidCiphertext:
        raise _invalid_ciphertext(location) from None
    key_name = request.app[keys.SETTINGS].vault_transit_key
    return json_response({"key_name": key_name, "plaintext": plaintext}, headers=NO_STORE)


@routes.get("/examples/vault/transit/encrypt/{plaintext}")
@operation(
    summary="Encrypt a path segment with Vault transit (use POST: paths end up in logs and caches)",
    tags=("vault",),
    path=PlaintextPath,
    responses={200: EncryptResponse, 503: None},
    headers=_NO_STORE_DOC,
    deprecated=True,
)
async def encrypt_in_path(request: web.Request, inp: Input) -> web.Response:
    return await _encrypt(request, inp.path["plaintext"])


@routes.get("/examples/vault/transit/decrypt/{ciphertext:.+}")
@operation(
    summary="Decrypt a transit ciphertext given as the rest of the path (use POST)",
    tags=("vault",),
    path=CiphertextPath,
    responses={200: DecryptResponse, 503: None},
    headers=_NO_STORE_DOC,
    deprecated=True,
)
async def decrypt_in_path(request: web.Request, inp: Input) -> web.Response:
    return await _decrypt(request, inp.path["ciphertext"], "path")


@routes.post("/examples/vault/transit/encrypt")
@operation(
    summary="Encrypt text with Vault transit",
    tags=("vault",),
    body=EncryptBody,
    responses={200: EncryptResponse, 503: None},
    headers=_NO_STORE_DOC,
)
async def encrypt(request: web.Request, inp: Input) -> web.Response:
    return await _encrypt(request, inp.body["plaintext"])


@routes.post("/examples/vault/transit/decrypt")
@operation(
    summary="Decrypt a transit ciphertext",
    tags=("vault",),
    body=DecryptBody,
    responses={200: DecryptResponse, 503: None},
    headers=_NO_STORE_DOC,
)
async def decrypt(request: web.Request, inp: Input) -> web.Response:
    return await _decrypt(request, inp.body["ciphertext"], "body")

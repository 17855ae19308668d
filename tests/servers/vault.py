"""Protocol-level HashiCorp Vault double: Vault's real /v1 HTTP API served by aiohttp from memory."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import copy
import fnmatch
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from aiohttp import web, web_protocol
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_exceptions import HTTPRequestEntityTooLarge
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["VaultDouble", "main"]

JSON: TypeAlias = dict[str, Any]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

VAULT_VERSION = "1.19.0"
# Vault's built-in default and maximum lease TTL (32 days); mounts and roles may lower it.
SYSTEM_MAX_TTL = 768 * 3600
KV_DEFAULT_MAX_VERSIONS = 10
_NS = 1_000_000_000
_ALNUM = string.ascii_letters + string.digits
_LOG = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Errors, replies and small parsers
# --------------------------------------------------------------------------------------------------


class VaultError(Exception):
    """A Vault error answer: the HTTP status and the strings of the body's ``errors`` list."""

    def __init__(self, status: int, *errors: str) -> None:
        super().__init__(status, *errors)
        self.status = status
        self.errors = list(errors)


def _multierror(message: str) -> str:
    """Vault's router and ACL errors pass through go-multierror, which formats them like this."""
    return f"1 error occurred:\n\t* {message}\n\n"


def _bad(message: str) -> VaultError:
    return VaultError(400, message)


def _not_found() -> VaultError:
    # A logical backend answering "nothing here" makes Vault send 404 with an empty errors list.
    return VaultError(404)


@dataclass(frozen=True)
class _Reply:
    """One HTTP answer: a JSON body (None for 204) or raw bytes with their content type."""

    status: int
    body: JSON | None = None
    raw: bytes | None = None
    content_type: str = "application/json"


_NO_CONTENT = _Reply(204)


@dataclass
class _Offload:
    """CPU-heavy work a handler hands back: ``work`` runs off the event loop, then ``finish`` under the lock."""

    work: Callable[[], Any]
    finish: Callable[[Any], _Reply]


_Outcome: TypeAlias = _Reply | _Offload


def _now_ns() -> int:
    return time.time_ns()


def _rfc3339(ns: int | None) -> str:
    """Format a UTC instant like Go's time.RFC3339Nano (trailing zeros of the fraction dropped)."""
    if ns is None:
        return ""
    seconds, fraction = divmod(ns, _NS)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def _go_duration(seconds: int) -> str:
    """Format whole seconds like Go's time.Duration.String()."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any, name: str) -> int:
    """Parse a Vault TTL field: integer seconds, a numeric string, or a Go duration such as "720h"."""
    if value is None or value == "":
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if _DURATION.fullmatch(text):
            return int(sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text)))
    raise _bad(f'error converting input {value} for field "{name}": invalid duration')


def _integer(value: Any, name: str) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f'error converting input {value} for field "{name}": invalid syntax') from None


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in {"1", "t", "true", "0", "f", "false", ""}:
        return value.strip().lower() in {"1", "t", "true"}
    raise _bad(f'error converting input {value} for field "{name}": invalid syntax')


def _strings(value: Any) -> list[str]:
    """A Vault comma-string-slice field: a JSON list or a comma-separated string."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _mapping(value: Any, name: str) -> JSON:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    raise _bad(f'error converting input {value} for field "{name}": expected a map')


def _random_id(length: int = 24) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _std_b64decode(text: Any) -> bytes:
    """Decode standard padded base64 strictly, reporting bad input the way Go's decoder does."""
    if isinstance(text, str):
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            pass
        valid = set(string.ascii_letters + string.digits + "+/=")
        position = next((i for i, char in enumerate(text) if char not in valid), len(text))
        raise _bad(f"illegal base64 data at input byte {position}")
    raise _bad("illegal base64 data at input byte 0")


def _policies(requested: Iterable[str], *, add_default: bool) -> list[str]:
    """Normalise a policy list as Vault does: lower-cased, sorted, de-duplicated, "default" added."""
    names = {name.strip().lower() for name in requested if name.strip()}
    if "root" in names:
        return ["root"]
    if add_default:
        names.add("default")
    return sorted(names)


def _merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch (what Vault's PATCH endpoints accept)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------------
# Requests as the backends see them
# --------------------------------------------------------------------------------------------------


@dataclass
class _Mount:
    """A mount table entry: where a backend lives and how it is configured."""

    path: str
    type: str
    backend: _Backend
    description: str = ""
    options: dict[str, str] | None = None
    default_lease_ttl: int = 0
    max_lease_ttl: int = 0
    accessor: str = field(init=False)
    uuid: str = field(init=False, default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self.accessor = f"{self.type}_{secrets.token_hex(4)}"

    @property
    def default_ttl(self) -> int:
        return self.default_lease_ttl or SYSTEM_MAX_TTL

    @property
    def max_ttl(self) -> int:
        return self.max_lease_ttl or SYSTEM_MAX_TTL

    def describe(self) -> JSON:
        return {
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.default_lease_ttl,
                "force_no_cache": False,
                "max_lease_ttl": self.max_lease_ttl,
            },
            "description": self.description,
            "external_entropy_access": False,
            "local": False,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": f"v{VAULT_VERSION}+builtin.vault",
            "running_sha256": "",
            "seal_wrap": False,
            "type": self.type,
            "uuid": self.uuid,
        }


@dataclass
class _Call:
    """One logical request routed to a backend: operation, path inside the mount, parameters, caller."""

    op: str
    path: str
    params: JSON
    token: _Token | None
    mount: _Mount

    def envelope(
        self,
        data: JSON | None = None,
        *,
        auth: JSON | None = None,
        warnings: list[str] | None = None,
        lease_duration: int = 0,
    ) -> JSON:
        """Vault's logical response body around a result."""
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": lease_duration,
            "data": data,
            "wrap_info": None,
            "warnings": warnings or None,
            "auth": auth,
            "mount_type": self.mount.type,
        }

    def reply(
        self,
        data: JSON | None = None,
        *,
        auth: JSON | None = None,
        warnings: list[str] | None = None,
        status: int = 200,
        lease_duration: int = 0,
    ) -> _Reply:
        return _Reply(status, self.envelope(data, auth=auth, warnings=warnings, lease_duration=lease_duration))


Handler: TypeAlias = Callable[[_Call, "re.Match[str]"], _Outcome]


class _Router:
    """Path patterns of one backend, each with a handler per operation (read, list, update, ...)."""

    def __init__(self, routes: Iterable[tuple[str, dict[str, Handler]]]) -> None:
        self._routes = [(re.compile(pattern), handlers) for pattern, handlers in routes]

    def dispatch(self, call: _Call) -> _Outcome:
        for pattern, handlers in self._routes:
            match = pattern.fullmatch(call.path)
            if match:
                handler = handlers.get(call.op)
                if handler is None:
                    raise VaultError(405, _multierror("unsupported operation"))
                return handler(call, match)
        raise VaultError(404, _multierror("unsupported path"))


class _Backend:
    """A secrets engine or auth method: a router plus the paths that need no token."""

    router: _Router
    unauthenticated: tuple[str, ...] = ()

    def is_unauthenticated(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.unauthenticated)

    def handle(self, call: _Call) -> _Outcome:
        return self.router.dispatch(call)


# --------------------------------------------------------------------------------------------------
# Tokens (auth/token/) and AppRole (auth/approle/)
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Token:
    id: str
    accessor: str
    policies: list[str]
    path: str
    display_name: str
    ttl: int  # the TTL a renewal without increment restores; 0 means the token never expires
    renewable: bool
    explicit_max_ttl: int
    max_ttl: int  # the issuing backend's max TTL (AppRole token_max_ttl); 0 means the system max
    period: int
    issued_ns: int
    expires_ns: int | None
    parent: str | None
    meta: dict[str, str] | None
    deny_paths: tuple[str, ...]
    last_renewal_ns: int | None = None

    def remaining(self, now_ns: int) -> int:
        return 0 if self.expires_ns is None else max(0, (self.expires_ns - now_ns) // _NS)

    def lifetime_limit(self) -> int:
        """Seconds after issue beyond which no renewal may extend the token."""
        limits = [self.explicit_max_ttl] if self.period else [self.explicit_max_ttl, self.max_ttl, SYSTEM_MAX_TTL]
        return min((limit for limit in limits if limit > 0), default=0)


class _TokenStore(_Backend):
    """Vault's token store: issue, look up, renew and revoke (cascading to child tokens)."""

    def __init__(self, root_token: str) -> None:
        self.tokens: dict[str, _Token] = {}
        self.issue(
            policies=["root"], ttl=0, renewable=False, path="auth/token/root", display_name="root", token_id=root_token
        )
        self.router = _Router(
            [
                (r"lookup-self", {"read": self._lookup_self, "update": self._lookup_self}),
                (r"lookup", {"update": self._lookup}),
                (r"renew-self", {"update": self._renew_self}),
                (r"renew", {"update": self._renew}),
                (r"create", {"update": self._create}),
                (r"create-orphan", {"update": self._create}),
                (r"revoke-self", {"update": self._revoke_self}),
                (r"revoke", {"update": self._revoke}),
            ]
        )

    # -- store ---------------------------------------------------------------------------------

    def issue(
        self,
        *,
        policies: list[str],
        ttl: int,
        path: str,
        display_name: str,
        renewable: bool = True,
        explicit_max_ttl: int = 0,
        max_ttl: int = 0,
        period: int = 0,
        parent: _Token | None = None,
        meta: dict[str, str] | None = None,
        deny_paths: Iterable[str] = (),
        token_id: str | None = None,
    ) -> tuple[_Token, list[str]]:
        """Create a token; returns it with any warnings (a TTL capped by a max TTL)."""
        now = _now_ns()
        token = _Token(
            id=token_id or f"hvs.{_random_id()}",
            accessor=_random_id(),
            policies=policies,
            path=path,
            display_name=display_name,
            ttl=period or ttl,
            renewable=renewable,
            explicit_max_ttl=explicit_max_ttl,
            max_ttl=max_ttl,
            period=period,
            issued_ns=now,
            expires_ns=None,
            parent=parent.id if parent else None,
            meta=meta,
            deny_paths=tuple(p.lstrip("/") for p in (*(parent.deny_paths if parent else ()), *deny_paths)),
        )
        warnings: list[str] = []
        if token.ttl == 0 and "root" not in policies:
            token.ttl = SYSTEM_MAX_TTL
        limit = token.lifetime_limit()
        if token.ttl and limit and token.ttl > limit:
            warnings.append(_ttl_capped_warning(token.ttl, limit))
            token.ttl = limit
        if token.ttl:
            token.expires_ns = now + token.ttl * _NS
        self.tokens[token.id] = token
        return token, warnings

    def valid(self, token_id: str | None) -> _Token | None:
        """The live token with this id, or None; an expired token (or ancestor) is revoked on sight."""
        token = self.tokens.get(token_id or "")
        now = _now_ns()
        node = token
        while node is not None:
            if node.expires_ns is not None and node.expires_ns <= now:
                self.revoke(node.id)
                return None
            node = self.tokens.get(node.parent) if node.parent else None
        return token

    def revoke(self, token_id: str) -> None:
        """Revoke a token and, as Vault does for non-orphans, every token created from it."""
        doomed = [token_id]
        while doomed:
            current = doomed.pop()
            if self.tokens.pop(current, None) is not None:
                doomed.extend(t.id for t in self.tokens.values() if t.parent == current)

    def expire(self, token_id: str) -> None:
        token = self.tokens.get(token_id)
        if token is not None:
            token.expires_ns = _now_ns()

    def renew(self, call: _Call, token: _Token, increment: int) -> _Reply:
        if token.expires_ns is None or not token.renewable:
            raise _bad("lease is not renewable")
        now = _now_ns()
        ttl = token.period or increment or token.ttl
        warnings: list[str] = []
        limit = token.lifetime_limit()
        if limit:
            left = max(0, (token.issued_ns + limit * _NS - now) // _NS)
            if ttl > left:
                warnings.append(_ttl_capped_warning(ttl, left))
                ttl = left
        token.expires_ns = now + ttl * _NS
        token.last_renewal_ns = now
        return call.reply(auth=self.auth_block(token, ttl), warnings=warnings)

    @staticmethod
    def auth_block(token: _Token, lease_duration: int) -> JSON:
        return {
            "client_token": token.id,
            "accessor": token.accessor,
            "policies": token.policies,
            "token_policies": token.policies,
            "metadata": token.meta,
            "lease_duration": lease_duration,
            "renewable": token.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": token.parent is None,
            "mfa_requirement": None,
            "num_uses": 0,
        }

    @staticmethod
    def lookup_data(token: _Token) -> JSON:
        data: JSON = {
            "accessor": token.accessor,
            "creation_time": token.issued_ns // _NS,
            "creation_ttl": token.ttl,
            "display_name": token.display_name,
            "entity_id": "",
            "expire_time": _rfc3339(token.expires_ns) if token.expires_ns is not None else None,
            "explicit_max_ttl": token.explicit_max_ttl,
            "id": token.id,
            "issue_time": _rfc3339(token.issued_ns),
            "meta": token.meta,
            "num_uses": 0,
            "orphan": token.parent is None,
            "path": token.path,
            "policies": token.policies,
            "renewable": token.renewable,
            "ttl": token.remaining(_now_ns()),
            "type": "service",
        }
        if token.period:
            data["period"] = token.period
        if token.last_renewal_ns is not None:
            data["last_renewal"] = _rfc3339(token.last_renewal_ns)
            data["last_renewal_time"] = token.last_renewal_ns // _NS
        return data

    # -- endpoints -----------------------------------------------------------------------------

    @staticmethod
    def _caller(call: _Call) -> _Token:
        if call.token is None:  # the router only reaches these handlers with a checked token
            raise VaultError(403, "permission denied")
        return call.token

    def _lookup_self(self, call: _Call, _: re.Match[str]) -> _Reply:
        return call.reply(self.lookup_data(self._caller(call)))

    def _lookup(self, call: _Call, _: re.Match[str]) -> _Reply:
        target = self.valid(str(call.params.get("token", "")))
        if target is None:
            raise VaultError(403, "bad token")
        return call.reply(self.lookup_data(target))

    def _renew_self(self, call: _Call, _: re.Match[str]) -> _Reply:
        return self.renew(call, self._caller(call), _duration(call.params.get("increment"), "increment"))

    def _renew(self, call: _Call, _: re.Match[str]) -> _Reply:
        target = self.valid(str(call.params.get("token", "")))
        if target is None:
            raise _bad("lease not found")
        return self.renew(call, target, _duration(call.params.get("increment"), "increment"))

    def _create(self, call: _Call, _: re.Match[str]) -> _Reply:
        parent = self._caller(call)
        params = call.params
        is_root = "root" in parent.policies
        orphan = call.path == "create-orphan" or _boolean(params.get("no_parent", False), "no_parent")
        if orphan and not is_root:
            raise _bad("root or sudo privileges required to create orphan token")
        custom_id = str(params.get("id", "") or "")
        if custom_id and not is_root:
            raise _bad("root or sudo privileges required to specify token id")
        if custom_id in self.tokens:
            raise _bad("cannot create a token with a duplicate ID")
        add_default = not _boolean(params.get("no_default_policy", False), "no_default_policy")
        requested = _strings(params.get("policies"))
        if requested:
            policies = _policies(requested, add_default=add_default)
            if not is_root and not set(policies) - {"default"} <= set(parent.policies):
                raise _bad("child policies must be subset of parent")
        else:
            policies = list(parent.policies)
        name = str(params.get("display_name", "") or "")
        token, warnings = self.issue(
            policies=policies,
            ttl=_duration(params.get("ttl"), "ttl"),
            renewable=_boolean(params.get("renewable", True), "renewable"),
            explicit_max_ttl=_duration(params.get("explicit_max_ttl"), "explicit_max_ttl"),
            period=_duration(params.get("period"), "period"),
            path=f"auth/token/{call.path}",
            display_name=f"token-{name}" if name else "token",
            parent=None if orphan else parent,
            meta={str(k): str(v) for k, v in _mapping(params.get("meta"), "meta").items()} or None,
            deny_paths=parent.deny_paths if orphan else (),
            token_id=custom_id or None,
        )
        return call.reply(auth=self.auth_block(token, token.ttl), warnings=warnings)

    def _revoke_self(self, call: _Call, _: re.Match[str]) -> _Reply:
        self.revoke(self._caller(call).id)
        return _NO_CONTENT

    def _revoke(self, call: _Call, _: re.Match[str]) -> _Reply:
        self.revoke(str(call.params.get("token", "")))
        return _NO_CONTENT


def _ttl_capped_warning(requested: int, limit: int) -> str:
    return (
        f'TTL of "{_go_duration(requested)}" exceeded the effective max_ttl of "{_go_duration(limit)}"; '
        "TTL value is capped accordingly"
    )


@dataclass
class _SecretId:
    accessor: str
    created_ns: int
    expires_ns: int | None
    uses_left: int  # 0 means unlimited
    metadata: dict[str, str]


@dataclass
class _AppRole:
    name: str
    role_id: str
    bind_secret_id: bool = True
    secret_id_ttl: int = 0
    secret_id_num_uses: int = 0
    token_ttl: int = 0
    token_max_ttl: int = 0
    token_explicit_max_ttl: int = 0
    token_period: int = 0
    token_policies: list[str] = field(default_factory=list)
    token_no_default_policy: bool = False
    secret_ids: dict[str, _SecretId] = field(default_factory=dict)

    def describe(self) -> JSON:
        return {
            "bind_secret_id": self.bind_secret_id,
            "local_secret_ids": False,
            "period": self.token_period,
            "policies": self.token_policies,
            "secret_id_bound_cidrs": None,
            "secret_id_num_uses": self.secret_id_num_uses,
            "secret_id_ttl": self.secret_id_ttl,
            "token_bound_cidrs": [],
            "token_explicit_max_ttl": self.token_explicit_max_ttl,
            "token_max_ttl": self.token_max_ttl,
            "token_no_default_policy": self.token_no_default_policy,
            "token_num_uses": 0,
            "token_period": self.token_period,
            "token_policies": self.token_policies,
            "token_ttl": self.token_ttl,
            "token_type": "default",
        }


class _AppRoleBackend(_Backend):
    """The AppRole auth method: roles, role IDs, secret IDs and login."""

    unauthenticated = ("login",)

    def __init__(self, tokens: _TokenStore) -> None:
        self.tokens = tokens
        self.roles: dict[str, _AppRole] = {}
        name = r"role/(?P<name>[^/]+)"
        self.router = _Router(
            [
                (r"login", {"update": self._login}),
                (r"role/", {"list": self._list_roles}),
                (name, {"read": self._read_role, "update": self._write_role, "delete": self._delete_role}),
                (name + "/role-id", {"read": self._read_role_id, "update": self._write_role_id}),
                (name + "/secret-id/?", {"update": self._new_secret_id, "list": self._list_secret_ids}),
            ]
        )

    def write_role(self, name: str, params: JSON) -> _AppRole:
        name = name.lower()
        existing = self.roles.get(name)
        # Work on a copy so a rejected update leaves the stored role untouched.
        role = replace(existing) if existing else _AppRole(name=name, role_id=str(uuid.uuid4()))
        if "role_id" in params:
            role_id = str(params["role_id"]).strip()
            if not role_id:
                raise _bad("missing role_id")
            if any(other.role_id == role_id for other in self.roles.values() if other.name != name):
                raise _bad("role_id already in use")
            role.role_id = role_id
        if "bind_secret_id" in params:
            role.bind_secret_id = _boolean(params["bind_secret_id"], "bind_secret_id")
        for key in ("secret_id_ttl", "token_ttl", "token_max_ttl", "token_explicit_max_ttl"):
            if key in params:
                setattr(role, key, _duration(params[key], key))
        if "secret_id_num_uses" in params:
            role.secret_id_num_uses = _integer(params["secret_id_num_uses"], "secret_id_num_uses")
        for key in ("token_period", "period"):
            if key in params:
                role.token_period = _duration(params[key], key)
        for key in ("token_policies", "policies"):
            if key in params:
                role.token_policies = sorted({p.lower() for p in _strings(params[key])})
        if "token_no_default_policy" in params:
            role.token_no_default_policy = _boolean(params["token_no_default_policy"], "token_no_default_policy")
        if role.token_max_ttl and role.token_ttl > role.token_max_ttl:
            raise _bad("token_ttl should not be greater than token_max_ttl")
        self.roles[name] = role
        return role

    def new_secret_id(self, role: _AppRole, params: JSON) -> tuple[str, _SecretId]:
        if not role.bind_secret_id:
            raise _bad("bind_secret_id is not set on the role")
        ttl = _duration(params.get("ttl"), "ttl") or role.secret_id_ttl
        now = _now_ns()
        secret = _SecretId(
            accessor=str(uuid.uuid4()),
            created_ns=now,
            expires_ns=now + ttl * _NS if ttl else None,
            uses_left=_integer(params.get("num_uses"), "num_uses") or role.secret_id_num_uses,
            metadata={str(k): str(v) for k, v in _mapping(params.get("metadata"), "metadata").items()},
        )
        secret_id = str(uuid.uuid4())
        role.secret_ids[secret_id] = secret
        return secret_id, secret

    def _role(self, match: re.Match[str]) -> _AppRole:
        role = self.roles.get(match["name"].lower())
        if role is None:
            raise _not_found()
        return role

    def _login(self, call: _Call, _: re.Match[str]) -> _Reply:
        role_id = str(call.params.get("role_id", "") or "").strip()
        if not role_id:
            raise _bad("missing role_id")
        role = next((r for r in self.roles.values() if r.role_id == role_id), None)
        if role is None:
            raise _bad("invalid role or secret ID")
        meta = {"role_name": role.name}
        if role.bind_secret_id:
            secret_id = str(call.params.get("secret_id", "") or "").strip()
            if not secret_id:
                raise _bad("missing secret_id")
            secret = role.secret_ids.get(secret_id)
            if secret is None or (secret.expires_ns is not None and secret.expires_ns <= _now_ns()):
                role.secret_ids.pop(secret_id, None)
                raise _bad("invalid role or secret ID")
            if secret.uses_left:
                secret.uses_left -= 1
                if secret.uses_left == 0:
                    del role.secret_ids[secret_id]
            meta = {**secret.metadata, **meta}
        token, warnings = self.tokens.issue(
            policies=_policies(role.token_policies, add_default=not role.token_no_default_policy),
            ttl=role.token_ttl or call.mount.default_ttl,
            max_ttl=role.token_max_ttl,
            explicit_max_ttl=role.token_explicit_max_ttl,
            period=role.token_period,
            path="auth/approle/login",
            display_name="approle",
            meta=meta,
        )
        return call.reply(auth=self.tokens.auth_block(token, token.ttl), warnings=warnings)

    def _list_roles(self, call: _Call, _: re.Match[str]) -> _Reply:
        return _listing(call, sorted(self.roles))

    def _read_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        return call.reply(self._role(match).describe())

    def _write_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        self.write_role(match["name"], call.params)
        return _NO_CONTENT

    def _delete_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        self.roles.pop(match["name"].lower(), None)
        return _NO_CONTENT

    def _read_role_id(self, call: _Call, match: re.Match[str]) -> _Reply:
        return call.reply({"role_id": self._role(match).role_id})

    def _write_role_id(self, call: _Call, match: re.Match[str]) -> _Reply:
        self._role(match)
        self.write_role(match["name"], {"role_id": call.params.get("role_id", "")})
        return _NO_CONTENT

    def _new_secret_id(self, call: _Call, match: re.Match[str]) -> _Reply:
        role = self.roles.get(match["name"].lower())
        if role is None:
            raise _bad(f'role "{match["name"]}" does not exist')
        secret_id, secret = self.new_secret_id(role, call.params)
        ttl = 0 if secret.expires_ns is None else (secret.expires_ns - secret.created_ns) // _NS
        return call.reply(
            {
                "secret_id": secret_id,
                "secret_id_accessor": secret.accessor,
                "secret_id_num_uses": secret.uses_left,
                "secret_id_ttl": ttl,
            }
        )

    def _list_secret_ids(self, call: _Call, match: re.Match[str]) -> _Reply:
        return _listing(call, sorted(s.accessor for s in self._role(match).secret_ids.values()))


def _listing(call: _Call, keys: list[str]) -> _Reply:
    # Vault answers an empty LIST with a bare 404.
    if not keys:
        raise _not_found()
    return call.reply({"keys": keys})


# --------------------------------------------------------------------------------------------------
# KV secrets engine, versions 1 and 2
# --------------------------------------------------------------------------------------------------


@dataclass
class _KVVersion:
    data: JSON | None
    created_ns: int
    deletion_ns: int | None = None
    destroyed: bool = False

    def deleted(self, now_ns: int) -> bool:
        return self.deletion_ns is not None and self.deletion_ns <= now_ns

    def describe(self) -> JSON:
        return {
            "created_time": _rfc3339(self.created_ns),
            "deletion_time": _rfc3339(self.deletion_ns),
            "destroyed": self.destroyed,
        }


@dataclass
class _KVKey:
    created_ns: int
    updated_ns: int
    versions: dict[int, _KVVersion] = field(default_factory=dict)
    current: int = 0
    oldest: int = 0
    max_versions: int = 0
    cas_required: bool = False
    delete_version_after: int = 0
    custom_metadata: dict[str, str] | None = None


class _KVv2(_Backend):
    """The versioned key/value engine (kv version 2)."""

    def __init__(self) -> None:
        self.keys: dict[str, _KVKey] = {}
        self.max_versions = 0
        self.cas_required = False
        self.delete_version_after = 0
        data_path = r"data/(?P<path>.*[^/])"
        self.router = _Router(
            [
                (r"config", {"read": self._read_config, "update": self._write_config}),
                (
                    data_path,
                    {"read": self._read, "update": self._write, "delete": self._delete_latest, "patch": self._patch},
                ),
                (
                    r"metadata/(?P<path>.*)",
                    {
                        "read": self._read_metadata,
                        "list": self._list,
                        "update": self._write_metadata,
                        "patch": self._patch_metadata,
                        "delete": self._delete_metadata,
                    },
                ),
                (r"delete/(?P<path>.*)", {"update": self._delete_versions}),
                (r"undelete/(?P<path>.*)", {"update": self._undelete_versions}),
                (r"destroy/(?P<path>.*)", {"update": self._destroy_versions}),
            ]
        )

    # -- operations shared with the test controls ------------------------------------------------

    def write(self, path: str, data: JSON, cas: int | None) -> tuple[_KVKey, _KVVersion]:
        now = _now_ns()
        key = self.keys.get(path) or _KVKey(created_ns=now, updated_ns=now)
        if cas is not None:
            if cas != key.current:
                raise _bad("check-and-set parameter did not match the current version")
        elif self.cas_required or key.cas_required:
            raise _bad("check-and-set parameter required for this call")
        version = _KVVersion(data=copy.deepcopy(data), created_ns=now)
        delete_after = key.delete_version_after or self.delete_version_after
        if delete_after:
            version.deletion_ns = now + delete_after * _NS
        key.current += 1
        key.versions[key.current] = version
        key.updated_ns = now
        keep = key.max_versions or self.max_versions or KV_DEFAULT_MAX_VERSIONS
        if len(key.versions) > keep:
            key.oldest = key.current - keep + 1
            for number in [n for n in key.versions if n < key.oldest]:
                del key.versions[number]
        self.keys[path] = key
        return key, version

    # -- endpoints -----------------------------------------------------------------------------

    def _read_config(self, call: _Call, _: re.Match[str]) -> _Reply:
        return call.reply(
            {
                "cas_required": self.cas_required,
                "delete_version_after": _go_duration(self.delete_version_after),
                "max_versions": self.max_versions,
            }
        )

    def _write_config(self, call: _Call, _: re.Match[str]) -> _Reply:
        params = call.params
        if "max_versions" in params:
            self.max_versions = _integer(params["max_versions"], "max_versions")
        if "cas_required" in params:
            self.cas_required = _boolean(params["cas_required"], "cas_required")
        if "delete_version_after" in params:
            self.delete_version_after = _duration(params["delete_version_after"], "delete_version_after")
        return _NO_CONTENT

    @staticmethod
    def _version_view(key: _KVKey, number: int, version: _KVVersion) -> JSON:
        return {**version.describe(), "custom_metadata": key.custom_metadata, "version": number}

    def _read(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["path"])
        if key is None:
            raise _not_found()
        number = _integer(call.params.get("version"), "version") or key.current
        version = key.versions.get(number)
        if version is None:
            raise _not_found()
        data = {"data": None, "metadata": self._version_view(key, number, version)}
        if version.destroyed or version.deleted(_now_ns()):
            # Vault answers a deleted or destroyed version with 404 and its metadata.
            return call.reply(data, status=404)
        data["data"] = copy.deepcopy(version.data)
        return call.reply(data)

    def _write(self, call: _Call, match: re.Match[str]) -> _Reply:
        if "data" not in call.params:
            raise _bad("no data provided")
        data = call.params["data"]
        if not isinstance(data, dict):
            raise _bad('error converting input for field "data": expected a map')
        key, version = self.write(match["path"], data, self._cas(call.params))
        return call.reply(self._version_view(key, key.current, version))

    def _patch(self, call: _Call, match: re.Match[str]) -> _Reply:
        patch = call.params.get("data")
        if patch is None:
            raise _bad("no data provided")
        if not isinstance(patch, dict):
            raise _bad('error converting input for field "data": expected a map')
        key = self.keys.get(match["path"])
        current = key.versions.get(key.current) if key else None
        if key is None or current is None:
            raise _not_found()
        if current.destroyed or current.deleted(_now_ns()):
            return call.reply(self._version_view(key, key.current, current), status=404)
        merged = _merge_patch(current.data, patch)
        key, version = self.write(match["path"], merged, self._cas(call.params))
        return call.reply(self._version_view(key, key.current, version))

    @staticmethod
    def _cas(params: JSON) -> int | None:
        options = params.get("options") or {}
        if not isinstance(options, dict):
            raise _bad('error converting input for field "options": expected a map')
        if "cas" not in options:
            return None
        try:
            return int(options["cas"])
        except (TypeError, ValueError):
            raise _bad("error parsing check-and-set parameter") from None

    def _delete_latest(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["path"])
        if key is not None:
            self._mark_deleted(key, [key.current])
        return _NO_CONTENT

    @staticmethod
    def _mark_deleted(key: _KVKey, numbers: Iterable[int]) -> None:
        now = _now_ns()
        for number in numbers:
            version = key.versions.get(number)
            if version is not None and not version.destroyed and not version.deleted(now):
                version.deletion_ns = now

    @staticmethod
    def _versions(params: JSON) -> list[int]:
        numbers = [_integer(v, "versions") for v in _strings(params.get("versions"))]
        if not numbers:
            raise _bad("No version number provided")
        return numbers

    def _delete_versions(self, call: _Call, match: re.Match[str]) -> _Reply:
        numbers = self._versions(call.params)
        key = self.keys.get(match["path"])
        if key is not None:
            self._mark_deleted(key, numbers)
        return _NO_CONTENT

    def _undelete_versions(self, call: _Call, match: re.Match[str]) -> _Reply:
        numbers = self._versions(call.params)
        key = self.keys.get(match["path"])
        if key is not None:
            for version in filter(None, map(key.versions.get, numbers)):
                if not version.destroyed:
                    version.deletion_ns = None
        return _NO_CONTENT

    def _destroy_versions(self, call: _Call, match: re.Match[str]) -> _Reply:
        numbers = self._versions(call.params)
        key = self.keys.get(match["path"])
        if key is not None:
            for version in filter(None, map(key.versions.get, numbers)):
                version.destroyed = True
                version.data = None
        return _NO_CONTENT

    def _read_metadata(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["path"])
        if key is None:
            raise _not_found()
        return call.reply(
            {
                "cas_required": key.cas_required,
                "created_time": _rfc3339(key.created_ns),
                "current_version": key.current,
                "custom_metadata": key.custom_metadata,
                "delete_version_after": _go_duration(key.delete_version_after),
                "max_versions": key.max_versions,
                "oldest_version": key.oldest,
                "updated_time": _rfc3339(key.updated_ns),
                "versions": {str(n): v.describe() for n, v in sorted(key.versions.items())},
            }
        )

    def _list(self, call: _Call, match: re.Match[str]) -> _Reply:
        return _listing(call, _children(self.keys, match["path"]))

    def _write_metadata(self, call: _Call, match: re.Match[str]) -> _Reply:
        self._update_metadata(match["path"], call.params, patch=False)
        return _NO_CONTENT

    def _patch_metadata(self, call: _Call, match: re.Match[str]) -> _Reply:
        if match["path"] not in self.keys:
            raise _not_found()
        self._update_metadata(match["path"], call.params, patch=True)
        return _NO_CONTENT

    def _update_metadata(self, path: str, params: JSON, *, patch: bool) -> None:
        if not path:
            raise _bad("missing path")
        now = _now_ns()
        key = self.keys.get(path) or _KVKey(created_ns=now, updated_ns=now)
        if "max_versions" in params:
            key.max_versions = _integer(params["max_versions"], "max_versions")
        if "cas_required" in params:
            key.cas_required = _boolean(params["cas_required"], "cas_required")
        if "delete_version_after" in params:
            key.delete_version_after = _duration(params["delete_version_after"], "delete_version_after")
        if "custom_metadata" in params:
            requested = _mapping(params["custom_metadata"], "custom_metadata")
            base = dict(key.custom_metadata or {}) if patch else {}
            merged = _merge_patch(base, requested) if patch else requested
            key.custom_metadata = {str(k): str(v) for k, v in merged.items()}
        self.keys[path] = key

    def _delete_metadata(self, call: _Call, match: re.Match[str]) -> _Reply:
        self.keys.pop(match["path"], None)
        return _NO_CONTENT


def _children(keys: Iterable[str], prefix: str) -> list[str]:
    """The entries directly under ``prefix``: leaf names, and sub-folders with a trailing slash."""
    found: set[str] = set()
    for name in keys:
        if name.startswith(prefix) and name != prefix:
            head, slash, _ = name[len(prefix) :].partition("/")
            found.add(head + slash)
    return sorted(found)


class _KVv1(_Backend):
    """The unversioned key/value engine (kv version 1)."""

    def __init__(self) -> None:
        self.entries: dict[str, JSON] = {}
        self.router = _Router(
            [
                (
                    r"(?P<path>.*)",
                    {"read": self._read, "list": self._list, "update": self._write, "delete": self._delete},
                ),
            ]
        )

    def _read(self, call: _Call, match: re.Match[str]) -> _Reply:
        if match["path"] not in self.entries:
            raise _not_found()
        # KV v1 reads carry the mount's TTL as a refresh hint.
        return call.reply(copy.deepcopy(self.entries[match["path"]]), lease_duration=call.mount.default_ttl)

    def _list(self, call: _Call, match: re.Match[str]) -> _Reply:
        return _listing(call, _children(self.entries, match["path"]))

    def _write(self, call: _Call, match: re.Match[str]) -> _Reply:
        if not match["path"]:
            raise _bad("missing path")
        self.entries[match["path"]] = copy.deepcopy(call.params)
        return _NO_CONTENT

    def _delete(self, call: _Call, match: re.Match[str]) -> _Reply:
        self.entries.pop(match["path"], None)
        return _NO_CONTENT


# --------------------------------------------------------------------------------------------------
# Transit secrets engine
# --------------------------------------------------------------------------------------------------

_Aead: TypeAlias = AESGCM | ChaCha20Poly1305
# key type -> (key length, AEAD class, Go's authentication failure message)
_TRANSIT_TYPES: dict[str, tuple[int, Callable[[bytes], _Aead], str]] = {
    "aes128-gcm96": (16, AESGCM, "cipher: message authentication failed"),
    "aes256-gcm96": (32, AESGCM, "cipher: message authentication failed"),
    "chacha20-poly1305": (32, ChaCha20Poly1305, "chacha20poly1305: message authentication failed"),
}
_NONCE_SIZE = 12


@dataclass
class _TransitKey:
    name: str
    type: str
    versions: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # version -> (key, unix created)
    min_decryption_version: int = 1
    min_encryption_version: int = 0
    deletion_allowed: bool = False
    exportable: bool = False
    allow_plaintext_backup: bool = False
    auto_rotate_period: int = 0

    @property
    def latest(self) -> int:
        return max(self.versions)

    def rotate(self) -> None:
        size = _TRANSIT_TYPES[self.type][0]
        self.versions[(self.latest + 1) if self.versions else 1] = (os.urandom(size), int(time.time()))

    def describe(self) -> JSON:
        return {
            "allow_plaintext_backup": self.allow_plaintext_backup,
            "auto_rotate_period": self.auto_rotate_period,
            "deletion_allowed": self.deletion_allowed,
            "derived": False,
            "exportable": self.exportable,
            "imported_key": False,
            "keys": {str(n): created for n, (_, created) in sorted(self.versions.items())},
            "latest_version": self.latest,
            "min_available_version": 0,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": self.min_encryption_version,
            "name": self.name,
            "supports_decryption": True,
            "supports_derivation": True,
            "supports_encryption": True,
            "supports_signing": False,
            "type": self.type,
        }

    def encrypt(self, plaintext: bytes, version: int) -> tuple[str, int]:
        version = version or self.latest
        if version > self.latest:
            raise _bad("requested version for encryption is higher than the latest key version")
        if version < self.min_encryption_version:
            raise _bad("requested version for encryption is less than the minimum encryption key version")
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._aead(version).encrypt(nonce, plaintext, None)
        return f"vault:v{version}:{base64.b64encode(nonce + sealed).decode('ascii')}", version

    def decrypt(self, ciphertext: str) -> bytes:
        if not ciphertext.startswith("vault:v"):
            raise _bad("invalid ciphertext: no prefix")
        fields = ciphertext[len("vault:v") :].split(":", 1)
        if len(fields) != 2:
            raise _bad("invalid ciphertext: wrong number of fields")
        if not fields[0].isdigit():
            raise _bad("invalid ciphertext: version number could not be decoded")
        version = int(fields[0]) or 1
        if version < self.min_decryption_version:
            raise _bad("ciphertext or signature version is disallowed by policy (too old)")
        if version > self.latest:
            raise _bad("invalid ciphertext: version is too new")
        try:
            raw = base64.b64decode(fields[1].encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise _bad("invalid ciphertext: could not decode base64") from None
        if len(raw) < _NONCE_SIZE:
            raise _bad("invalid ciphertext length")
        try:
            return self._aead(version).decrypt(raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], None)
        except InvalidTag:
            raise _bad(_TRANSIT_TYPES[self.type][2]) from None

    def _aead(self, version: int) -> _Aead:
        return _TRANSIT_TYPES[self.type][1](self.versions[version][0])


class _Transit(_Backend):
    """The transit engine: named AEAD keys with versions, encryption as a service."""

    def __init__(self) -> None:
        self.keys: dict[str, _TransitKey] = {}
        name = r"(?P<name>[^/]+)"
        self.router = _Router(
            [
                (r"keys/", {"list": self._list}),
                (rf"keys/{name}", {"read": self._read, "update": self._create, "delete": self._delete}),
                (rf"keys/{name}/config", {"update": self._configure}),
                (rf"keys/{name}/rotate", {"update": self._rotate}),
                (rf"encrypt/{name}", {"update": self._encrypt}),
                (rf"decrypt/{name}", {"update": self._decrypt}),
                (rf"rewrap/{name}", {"update": self._rewrap}),
            ]
        )

    def _create_key(self, name: str, key_type: Any) -> _TransitKey:
        key_type = str(key_type or "aes256-gcm96")
        if key_type not in _TRANSIT_TYPES:
            raise _bad(f"unknown key type {key_type}")
        key = _TransitKey(name=name, type=key_type)
        key.rotate()
        self.keys[name] = key
        return key

    def _key(self, match: re.Match[str]) -> _TransitKey:
        key = self.keys.get(match["name"])
        if key is None:
            raise _bad("encryption key not found")
        return key

    def _list(self, call: _Call, _: re.Match[str]) -> _Reply:
        return _listing(call, sorted(self.keys))

    def _read(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["name"])
        if key is None:
            raise _not_found()
        return call.reply(key.describe())

    def _create(self, call: _Call, match: re.Match[str]) -> _Reply:
        existing = self.keys.get(match["name"])
        if existing is not None:
            return call.reply(existing.describe(), warnings=[f"key {existing.name} already existed"])
        key = self._create_key(match["name"], call.params.get("type"))
        key.exportable = _boolean(call.params.get("exportable", False), "exportable")
        key.allow_plaintext_backup = _boolean(
            call.params.get("allow_plaintext_backup", False), "allow_plaintext_backup"
        )
        key.auto_rotate_period = _duration(call.params.get("auto_rotate_period"), "auto_rotate_period")
        return call.reply(key.describe())

    def _delete(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["name"])
        if key is None:
            raise _bad(f"error deleting policy {match['name']}: could not delete key; not found")
        if not key.deletion_allowed:
            raise _bad(f"error deleting policy {key.name}: deletion is not allowed for this policy")
        del self.keys[key.name]
        return _NO_CONTENT

    def _configure(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self.keys.get(match["name"])
        if key is None:
            raise _bad("no existing key named " + match["name"] + " could be found")
        params = call.params
        if "min_decryption_version" in params:
            wanted = _integer(params["min_decryption_version"], "min_decryption_version")
            if wanted > key.latest:
                raise _bad(f"cannot set min decryption version of {wanted}, latest key version is {key.latest}")
            key.min_decryption_version = max(wanted, 1)
        if "min_encryption_version" in params:
            wanted = _integer(params["min_encryption_version"], "min_encryption_version")
            if wanted > key.latest:
                raise _bad(f"cannot set min encryption version of {wanted}, latest key version is {key.latest}")
            key.min_encryption_version = wanted
        for flag in ("deletion_allowed", "exportable", "allow_plaintext_backup"):
            if flag in params:
                setattr(key, flag, _boolean(params[flag], flag))
        if "auto_rotate_period" in params:
            key.auto_rotate_period = _duration(params["auto_rotate_period"], "auto_rotate_period")
        return call.reply(key.describe())

    def _rotate(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self._key(match)
        key.rotate()
        return call.reply(key.describe())

    def _encrypt(self, call: _Call, match: re.Match[str]) -> _Reply:
        params = call.params
        batch = params.get("batch_input")
        if batch is None and "plaintext" not in params:
            raise _bad("missing plaintext to encrypt")
        # Encrypting with a missing key creates it (Vault's upsert, the "create" capability).
        key = self.keys.get(match["name"]) or self._create_key(match["name"], params.get("type"))

        def one(item: JSON) -> JSON:
            plaintext = _std_b64decode(item.get("plaintext"))
            ciphertext, version = key.encrypt(plaintext, _integer(item.get("key_version"), "key_version"))
            return {"ciphertext": ciphertext, "key_version": version}

        if batch is None:
            return call.reply(one(params))
        return call.reply({"batch_results": _batch(batch, one)})

    def _decrypt(self, call: _Call, match: re.Match[str]) -> _Reply:
        params = call.params
        batch = params.get("batch_input")
        if batch is None and not params.get("ciphertext"):
            raise _bad("missing ciphertext to decrypt")
        key = self._key(match)

        def one(item: JSON) -> JSON:
            plaintext = key.decrypt(str(item.get("ciphertext", "")))
            return {"plaintext": base64.b64encode(plaintext).decode("ascii")}

        if batch is None:
            return call.reply(one(params))
        return call.reply({"batch_results": _batch(batch, one)})

    def _rewrap(self, call: _Call, match: re.Match[str]) -> _Reply:
        key = self._key(match)
        if not call.params.get("ciphertext"):
            raise _bad("missing ciphertext to decrypt")
        plaintext = key.decrypt(str(call.params["ciphertext"]))
        ciphertext, version = key.encrypt(plaintext, _integer(call.params.get("key_version"), "key_version"))
        return call.reply({"ciphertext": ciphertext, "key_version": version})


def _batch(items: Any, one: Callable[[JSON], JSON]) -> list[JSON]:
    """Run a batch_input: per-item failures become an ``error`` entry, as Vault reports them."""
    if not isinstance(items, list) or not items:
        raise _bad("missing batch input to process")
    results: list[JSON] = []
    for item in items:
        if not isinstance(item, dict):
            raise _bad("failed to parse batch input: expected a map")
        try:
            result = one(item)
        except VaultError as exc:
            result = {"error": "; ".join(exc.errors)}
        if "reference" in item:
            result["reference"] = item["reference"]
        results.append(result)
    return results


# --------------------------------------------------------------------------------------------------
# PKI secrets engine
# --------------------------------------------------------------------------------------------------


@dataclass
class _CA:
    """An issuing CA of a PKI mount and the chain above it (nearest issuer first)."""

    certificate: x509.Certificate
    key: PrivateKey
    parents: list[x509.Certificate] = field(default_factory=list)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.certificate, *self.parents]

    @property
    def self_signed(self) -> bool:
        return not self.parents


@dataclass(frozen=True)
class _LeafSpec:
    common_name: str
    dns_names: list[str]
    emails: list[str]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    uris: list[str]
    not_before: datetime
    not_after: datetime
    key_type: str
    key_bits: int
    key_usage: list[str]
    ext_key_usage: list[x509.ObjectIdentifier]
    organization: list[str]
    ou: list[str]


_ROLE_DEFAULTS: JSON = {
    "allow_any_name": False,
    "allow_bare_domains": False,
    "allow_glob_domains": False,
    "allow_ip_sans": True,
    "allow_localhost": True,
    "allow_subdomains": False,
    "allow_token_displayname": False,
    "allow_wildcard_certificates": True,
    "allowed_domains": [],
    "allowed_domains_template": False,
    "allowed_other_sans": [],
    "allowed_serial_numbers": [],
    "allowed_uri_sans": [],
    "allowed_uri_sans_template": False,
    "allowed_user_ids": [],
    "basic_constraints_valid_for_non_ca": False,
    "client_flag": True,
    "cn_validations": ["email", "hostname"],
    "code_signing_flag": False,
    "country": [],
    "email_protection_flag": False,
    "enforce_hostnames": True,
    "ext_key_usage": [],
    "ext_key_usage_oids": [],
    "generate_lease": False,
    "issuer_ref": "default",
    "key_bits": 2048,
    "key_type": "rsa",
    "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
    "locality": [],
    "max_ttl": 0,
    "no_store": False,
    "not_after": "",
    "not_before_duration": 30,
    "organization": [],
    "ou": [],
    "policy_identifiers": [],
    "postal_code": [],
    "province": [],
    "require_cn": True,
    "server_flag": True,
    "signature_bits": 256,
    "street_address": [],
    "ttl": 0,
    "use_csr_common_name": True,
    "use_csr_sans": True,
    "use_pss": False,
}
_ROLE_DURATIONS = frozenset({"ttl", "max_ttl", "not_before_duration"})
_KEY_USAGES = {
    "digitalsignature": "digital_signature",
    "contentcommitment": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "certsign": "key_cert_sign",
    "crlsign": "crl_sign",
    "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}
_HOSTNAME = re.compile(
    r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])\.?"
)
_KEY_BITS = {"rsa": (2048, {2048, 3072, 4096}), "ec": (256, {224, 256, 384, 521}), "ed25519": (0, {0})}
_CURVES: dict[int, Callable[[], ec.EllipticCurve]] = {
    224: ec.SECP224R1,
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}


def _generate_key(key_type: str, bits: int) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ec":
        return ec.generate_private_key(_CURVES[bits]())
    return ed25519.Ed25519PrivateKey.generate()


def _key_type_name(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return "ec" if isinstance(key, ec.EllipticCurvePrivateKey) else "ed25519"


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def _pem(certificate: x509.Certificate) -> str:
    # Vault trims the trailing newline off every PEM it returns.
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii").strip()


def _der_text(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _serial_text(serial: int) -> str:
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _make_ca(common_name: str, key: PrivateKey, ttl: int, issuer: _CA | None) -> _CA:
    """Build a CA certificate, self-signed or signed by ``issuer``."""
    now = datetime.now(UTC).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(seconds=30))
        .not_valid_after(now + timedelta(seconds=ttl))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return _CA(_sign(builder, issuer.key if issuer else key), key, issuer.chain if issuer else [])


def _sign_leaf(ca: _CA, spec: _LeafSpec) -> tuple[x509.Certificate, PrivateKey]:
    """Generate a key pair and a leaf certificate for it, signed by ``ca``."""
    key = _generate_key(spec.key_type, spec.key_bits)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)] if spec.common_name else []
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organization]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in spec.ou]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    sans += [x509.RFC822Name(e) for e in spec.emails]
    sans += [x509.IPAddress(ip) for ip in spec.ips]
    sans += [x509.UniformResourceIdentifier(u) for u in spec.uris]
    usage = {flag: False for flag in _KEY_USAGES.values()}
    usage.update({_KEY_USAGES[name]: True for name in spec.key_usage})
    if not usage["key_agreement"]:
        # X.509 only defines encipher/decipher-only together with keyAgreement.
        usage["encipher_only"] = usage["decipher_only"] = False
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if spec.ext_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.ext_key_usage), critical=False)
    if sans:
        # RFC 5280: the SAN extension is critical when the subject is empty.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=not attributes)
    return _sign(builder, ca.key), key


def _private_key_text(key: PrivateKey, key_format: str, der: bool) -> str:
    pkcs8 = key_format == "pkcs8" or isinstance(key, ed25519.Ed25519PrivateKey)
    fmt = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    if der:
        raw = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        return base64.b64encode(raw).decode("ascii")
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return pem.decode("ascii").strip()


class _PKI(_Backend):
    """The PKI engine: one issuing CA per mount, roles, certificate issuance and CA fetches."""

    # Vault serves these without a token so clients can fetch trust anchors.
    unauthenticated = ("ca", "ca/pem", "ca_chain", "cert/*")

    def __init__(self) -> None:
        self.ca: _CA | None = None
        self.roles: dict[str, JSON] = {}
        self.issued: dict[int, x509.Certificate] = {}
        role = r"roles/(?P<name>[^/]+)"
        self.router = _Router(
            [
                (r"ca", {"read": self._ca_der}),
                (r"ca/pem", {"read": self._ca_pem}),
                (r"ca_chain", {"read": self._ca_chain_raw}),
                (r"cert/ca", {"read": self._cert_ca}),
                (r"cert/ca_chain", {"read": self._cert_ca_chain}),
                (r"cert/(?P<serial>[0-9a-fA-F:-]+)", {"read": self._cert}),
                (r"roles/", {"list": self._list_roles}),
                (role, {"read": self._read_role, "update": self._write_role, "delete": self._delete_role}),
                (r"issue/(?P<role>[^/]+)", {"update": self._issue}),
                (r"root/generate/(?P<kind>internal|exported)", {"update": self._generate_root}),
            ]
        )

    def write_role(self, name: str, params: JSON) -> JSON:
        role = copy.deepcopy(self.roles.get(name, _ROLE_DEFAULTS))
        for key, value in params.items():
            if key not in _ROLE_DEFAULTS:
                continue
            default = _ROLE_DEFAULTS[key]
            if key in _ROLE_DURATIONS:
                role[key] = _duration(value, key)
            elif isinstance(default, bool):
                role[key] = _boolean(value, key)
            elif isinstance(default, int):
                role[key] = _integer(value, key)
            elif isinstance(default, list):
                role[key] = _strings(value)
            else:
                role[key] = str(value)
        key_type = role["key_type"]
        if key_type not in _KEY_BITS:
            raise _bad(f"unknown key type {key_type}")
        default_bits, allowed_bits = _KEY_BITS[key_type]
        if ("key_type" in params and "key_bits" not in params) or not role["key_bits"]:
            role["key_bits"] = default_bits
        if role["key_bits"] not in allowed_bits:
            raise _bad(f"unsupported bit length for {key_type.upper()} key: {role['key_bits']}")
        if role["max_ttl"] and role["ttl"] > role["max_ttl"]:
            raise _bad('"ttl" value must be less than "max_ttl" value')
        self.roles[name] = role
        return role

    # -- fetches -------------------------------------------------------------------------------

    def _issuer(self) -> _CA:
        if self.ca is None:
            raise _bad("no default issuer currently configured")
        return self.ca

    def _ca_der(self, call: _Call, _: re.Match[str]) -> _Reply:
        if self.ca is None:
            return _NO_CONTENT
        raw = self.ca.certificate.public_bytes(serialization.Encoding.DER)
        return _Reply(200, raw=raw, content_type="application/pkix-cert")

    def _ca_pem(self, call: _Call, _: re.Match[str]) -> _Reply:
        if self.ca is None:
            return _NO_CONTENT
        return _Reply(200, raw=_pem(self.ca.certificate).encode(), content_type="application/pem-certificate-chain")

    def _ca_chain_raw(self, call: _Call, _: re.Match[str]) -> _Reply:
        if self.ca is None:
            return _NO_CONTENT
        text = "\n".join(_pem(c) for c in self.ca.chain)
        return _Reply(200, raw=text.encode(), content_type="application/pkix-cert")

    @staticmethod
    def _cert_view(certificate: str) -> JSON:
        return {"certificate": certificate, "revocation_time": 0, "revocation_time_rfc3339": ""}

    def _cert_ca(self, call: _Call, _: re.Match[str]) -> _Reply:
        return call.reply(self._cert_view(_pem(self._issuer().certificate)))

    def _cert_ca_chain(self, call: _Call, _: re.Match[str]) -> _Reply:
        chain = "\n".join(_pem(c) for c in self._issuer().chain)
        return call.reply({**self._cert_view(chain), "ca_chain": chain})

    def _cert(self, call: _Call, match: re.Match[str]) -> _Reply:
        serial = int(re.sub(r"[:-]", "", match["serial"]) or "0", 16)
        certificate = self.issued.get(serial)
        if certificate is None:
            raise _not_found()
        return call.reply(self._cert_view(_pem(certificate)))

    # -- roles ---------------------------------------------------------------------------------

    def _list_roles(self, call: _Call, _: re.Match[str]) -> _Reply:
        return _listing(call, sorted(self.roles))

    def _read_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        role = self.roles.get(match["name"])
        if role is None:
            raise _not_found()
        return call.reply(copy.deepcopy(role))

    def _write_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        return call.reply(copy.deepcopy(self.write_role(match["name"], call.params)))

    def _delete_role(self, call: _Call, match: re.Match[str]) -> _Reply:
        self.roles.pop(match["name"], None)
        return _NO_CONTENT

    # -- issuance ------------------------------------------------------------------------------

    def _issue(self, call: _Call, match: re.Match[str]) -> _Offload:
        role = self.roles.get(match["role"])
        if role is None:
            raise _bad(f"unknown role: {match['role']}")
        ca = self._issuer()
        params = call.params
        output = str(params.get("format", "pem") or "pem")
        if output not in {"pem", "der", "pem_bundle"}:
            raise _bad(f'unknown format for field "format": {output}')
        key_format = str(params.get("private_key_format", "der") or "der")
        if key_format not in {"der", "pem", "pkcs8"}:
            raise _bad(f'unknown format for field "private_key_format": {key_format}')
        spec = self._leaf_spec(role, params, ca, call.mount)

        def finish(result: tuple[x509.Certificate, PrivateKey]) -> _Reply:
            certificate, key = result
            if not role["no_store"]:
                self.issued[certificate.serial_number] = certificate
            return call.reply(_bundle(certificate, key, ca, output, key_format))

        return _Offload(work=lambda: _sign_leaf(ca, spec), finish=finish)

    @staticmethod
    def _leaf_spec(role: JSON, params: JSON, ca: _CA, mount: _Mount) -> _LeafSpec:
        """Validate an issue request against the role, as Vault does, and resolve its lifetime."""
        common_name = str(params.get("common_name", "") or "").strip()
        if not common_name and role["require_cn"]:
            raise _bad(
                'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" '
                'set to true, unless "require_cn" is set to false'
            )
        names = _strings(params.get("alt_names"))
        if common_name and not _boolean(params.get("exclude_cn_from_sans", False), "exclude_cn_from_sans"):
            names.insert(0, common_name)
        if common_name and not _name_allowed(role, common_name):
            raise _bad(f"common name {common_name} not allowed by this role")
        dns_names = list(dict.fromkeys(n for n in names if "@" not in n))
        emails = list(dict.fromkeys(n for n in names if "@" in n))
        for name in dns_names:
            if not _name_allowed(role, name):
                raise _bad(f"subject alternate name {name} not allowed by this role")
        for email in emails:
            if not _name_allowed(role, email):
                raise _bad(f"email address {email} not allowed by this role")
        ip_texts = _strings(params.get("ip_sans"))
        if ip_texts and not role["allow_ip_sans"]:
            raise _bad(
                f"IP Subject Alternative Names are not allowed in this role, but was provided [{' '.join(ip_texts)}]"
            )
        ips = []
        for text in ip_texts:
            try:
                ips.append(ipaddress.ip_address(text))
            except ValueError:
                raise _bad(f'the value "{text}" is not a valid IP address') from None
        uris = _strings(params.get("uri_sans"))
        if uris and not role["allowed_uri_sans"]:
            raise _bad("URI Subject Alternative Names are not allowed in this role, but were provided via the API")
        if any(not any(fnmatch.fnmatchcase(u, p) for p in role["allowed_uri_sans"]) for u in uris):
            raise _bad("URI Subject Alternative Names were provided via the API which are not valid for this role")
        ttl = _duration(params.get("ttl"), "ttl") or role["ttl"] or mount.default_ttl
        ttl = min(ttl, role["max_ttl"] or mount.max_ttl)
        now_ns = _now_ns()
        not_after = datetime.fromtimestamp((now_ns + ttl * _NS) // _NS, UTC)
        ca_not_after = ca.certificate.not_valid_after_utc
        if not_after > ca_not_after:
            raise _bad(
                f"cannot satisfy request, as TTL would result in notAfter of {_rfc3339(now_ns + ttl * _NS)} "
                f"that is beyond the expiration of the CA certificate at "
                f"{_rfc3339(int(ca_not_after.timestamp()) * _NS)}"
            )
        usages = [u.replace(" ", "").lower() for u in role["key_usage"]]
        unknown = [u for u in usages if u not in _KEY_USAGES]
        if unknown:
            raise _bad(f"unknown key usage: {unknown[0]}")
        flags = [
            ("server_flag", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client_flag", ExtendedKeyUsageOID.CLIENT_AUTH),
            ("code_signing_flag", ExtendedKeyUsageOID.CODE_SIGNING),
            ("email_protection_flag", ExtendedKeyUsageOID.EMAIL_PROTECTION),
        ]
        return _LeafSpec(
            common_name=common_name,
            dns_names=dns_names,
            emails=emails,
            ips=ips,
            uris=uris,
            not_before=datetime.fromtimestamp(now_ns // _NS - role["not_before_duration"], UTC),
            not_after=not_after,
            key_type=role["key_type"],
            key_bits=role["key_bits"],
            key_usage=usages,
            ext_key_usage=[oid for flag, oid in flags if role[flag]],
            organization=role["organization"],
            ou=role["ou"],
        )

    def _generate_root(self, call: _Call, match: re.Match[str]) -> _Offload:
        params = call.params
        common_name = str(params.get("common_name", "") or "").strip()
        if not common_name:
            raise _bad("the common_name field is required")
        key_type = str(params.get("key_type", "rsa") or "rsa")
        if key_type not in _KEY_BITS:
            raise _bad(f"unknown key type {key_type}")
        default_bits, allowed_bits = _KEY_BITS[key_type]
        key_bits = _integer(params.get("key_bits"), "key_bits") or default_bits
        if key_bits not in allowed_bits:
            raise _bad(f"unsupported bit length for {key_type.upper()} key: {key_bits}")
        ttl = _duration(params.get("ttl"), "ttl") or call.mount.max_ttl
        exported = match["kind"] == "exported"

        def finish(ca: _CA) -> _Reply:
            self.ca = ca
            data: JSON = {
                "certificate": _pem(ca.certificate),
                "expiration": int(ca.certificate.not_valid_after_utc.timestamp()),
                "issuing_ca": _pem(ca.certificate),
                "serial_number": _serial_text(ca.certificate.serial_number),
            }
            if exported:
                data["private_key"] = _private_key_text(ca.key, "der", der=False)
                data["private_key_type"] = key_type
            return call.reply(data)

        return _Offload(work=lambda: _make_ca(common_name, _generate_key(key_type, key_bits), ttl, None), finish=finish)


def _name_allowed(role: JSON, name: str) -> bool:
    """Whether a DNS name or e-mail address passes the role's naming rules (Vault's ValidateNames)."""
    reduced = name.lower()
    is_email = "@" in reduced
    if is_email:
        parts = reduced.split("@")
        if len(parts) != 2:
            return False
        reduced = parts[1]
    is_wildcard = reduced.startswith("*.")
    if is_wildcard:
        if not role["allow_wildcard_certificates"] or is_email:
            return False
        reduced = reduced[2:]
    if role["enforce_hostnames"] and reduced and not _HOSTNAME.fullmatch(reduced):
        return False
    if role["allow_any_name"]:
        return True
    if role["allow_localhost"]:
        if reduced in {"localhost", "localdomain"}:
            return True
        if role["allow_subdomains"] and reduced.endswith((".localhost", ".localdomain")):
            return True
    for domain in (d.lower() for d in role["allowed_domains"]):
        if role["allow_bare_domains"] and reduced == domain and not is_wildcard:
            return True
        if role["allow_subdomains"] and (reduced.endswith("." + domain) or (is_wildcard and reduced == domain)):
            return True
        if role["allow_glob_domains"] and "*" in domain and fnmatch.fnmatchcase(reduced, domain):
            return True
    return False


def _bundle(certificate: x509.Certificate, key: PrivateKey, ca: _CA, output: str, key_format: str) -> JSON:
    """The data of an issue response in the requested ``format``."""
    encode: Callable[[x509.Certificate], str] = _der_text if output == "der" else _pem
    private_key = _private_key_text(key, key_format, der=output == "der")
    leaf = encode(certificate)
    if output == "pem_bundle":
        # The bundle carries the key and the certificate, plus the issuer unless it is a self-signed root.
        leaf = "\n".join([private_key, leaf, *([] if ca.self_signed else [_pem(ca.certificate)])])
    return {
        "ca_chain": [encode(c) for c in ca.chain],
        "certificate": leaf,
        "expiration": int(certificate.not_valid_after_utc.timestamp()),
        "issuing_ca": encode(ca.certificate),
        "private_key": private_key,
        "private_key_type": _key_type_name(key),
        "serial_number": _serial_text(certificate.serial_number),
    }


# --------------------------------------------------------------------------------------------------
# sys/ and the core that routes requests to mounts
# --------------------------------------------------------------------------------------------------

_ENGINES: dict[str, Callable[[], _Backend]] = {"transit": _Transit, "pki": _PKI}
_RESERVED = ("sys/", "auth/", "cubbyhole/", "identity/")


class _System(_Backend):
    """The sys/ backend: mounts, auth methods and sealing (health and seal-status live in the core)."""

    def __init__(self, core: _Core) -> None:
        self.core = core
        self.router = _Router(
            [
                (r"mounts", {"read": self._list_mounts}),
                (r"mounts/(?P<path>.+)", {"read": self._read_mount, "update": self._enable, "delete": self._disable}),
                (r"auth", {"read": self._list_auth}),
                (r"auth/(?P<path>.+)", {"update": self._enable_auth}),
                (r"seal", {"update": self._seal}),
            ]
        )

    @staticmethod
    def _mount_path(raw: str) -> str:
        return raw.strip("/") + "/"

    def _list_mounts(self, call: _Call, _: re.Match[str]) -> _Reply:
        table = {m.path: m.describe() for m in self.core.mounts.values() if not m.path.startswith("auth/")}
        # Vault mirrors the table at the top level of the body for older clients.
        return _Reply(200, {**call.envelope(table), **table})

    def _read_mount(self, call: _Call, match: re.Match[str]) -> _Reply:
        path = self._mount_path(match["path"])
        mount = self.core.mounts.get(path)
        if mount is None or path.startswith("auth/"):
            raise _bad(f"No secret engine mount at {path}")
        return call.reply(mount.describe())

    def _enable(self, call: _Call, match: re.Match[str]) -> _Reply:
        path = self._mount_path(match["path"])
        params = call.params
        engine = str(params.get("type", "") or "")
        if not engine:
            raise _bad("backend type must be specified")
        options = {str(k): str(v) for k, v in _mapping(params.get("options"), "options").items()}
        for taken in (*_RESERVED, *self.core.mounts):
            if path.startswith(taken) or taken.startswith(path):
                raise _bad(f"path is already in use at {taken}")
        if engine == "kv-v2":
            engine, options = "kv", {**options, "version": "2"}
        if engine == "kv":
            options.setdefault("version", "1")
            if options["version"] not in {"1", "2"}:
                raise _bad(f"invalid version: {options['version']}")
            backend: _Backend = _KVv2() if options["version"] == "2" else _KVv1()
        elif engine in _ENGINES:
            backend = _ENGINES[engine]()
        else:
            raise _bad(f"plugin not found in the catalog: {engine}")
        config = _mapping(params.get("config"), "config")
        self.core.mounts[path] = _Mount(
            path=path,
            type=engine,
            backend=backend,
            description=str(params.get("description", "") or ""),
            options=options or None,
            default_lease_ttl=_duration(config.get("default_lease_ttl"), "default_lease_ttl"),
            max_lease_ttl=_duration(config.get("max_lease_ttl"), "max_lease_ttl"),
        )
        return _NO_CONTENT

    def _disable(self, call: _Call, match: re.Match[str]) -> _Reply:
        path = self._mount_path(match["path"])
        if path.startswith(_RESERVED):
            raise _bad(f"cannot unmount '{path}'")
        self.core.mounts.pop(path, None)
        return _NO_CONTENT

    def _list_auth(self, call: _Call, _: re.Match[str]) -> _Reply:
        table = {m.path[len("auth/") :]: m.describe() for m in self.core.mounts.values() if m.path.startswith("auth/")}
        return _Reply(200, {**call.envelope(table), **table})

    def _enable_auth(self, call: _Call, match: re.Match[str]) -> _Reply:
        # AppRole is always mounted at approle/ here, so enabling it there is accepted as a no-op.
        path = self._mount_path(match["path"])
        method = str(call.params.get("type", "") or "")
        if (path, method) != ("approle/", "approle"):
            if not method:
                raise _bad("backend type must be specified")
            raise _bad(
                f"path is already in use at {path}"
                if path == "token/"
                else f"plugin not found in the catalog: {method}"
            )
        return _NO_CONTENT

    def _seal(self, call: _Call, _: re.Match[str]) -> _Reply:
        if call.token is None or "root" not in call.token.policies:
            raise VaultError(403, _multierror("permission denied"))
        self.core.sealed = True
        return _NO_CONTENT


@dataclass
class _Incoming:
    """The parts of an HTTP request the core needs."""

    method: str
    path: str  # without the /v1/ prefix
    query: dict[str, str]
    body: JSON
    token: str | None


_OPERATIONS = {"GET": "read", "LIST": "list", "POST": "update", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}


class _Core:
    """All Vault state and the request pipeline: seal check, token check, mount routing."""

    def __init__(self, root_token: str) -> None:
        self.sealed = False
        self.cluster_name = f"vault-cluster-{secrets.token_hex(4)}"
        self.cluster_id = str(uuid.uuid4())
        self.tokens = _TokenStore(root_token)
        self.approle = _AppRoleBackend(self.tokens)
        root, intermediate = _PKI(), _PKI()
        root.ca = _make_ca("refapi Root CA", _generate_key("rsa", 2048), 87600 * 3600, None)
        intermediate.ca = _make_ca("refapi Intermediate CA", _generate_key("rsa", 2048), 43800 * 3600, root.ca)
        intermediate.write_role(
            "refapi",
            {
                "allowed_domains": ["localhost"],
                "allow_bare_domains": True,
                "allow_subdomains": True,
                "allow_localhost": True,
                "allow_ip_sans": True,
                "max_ttl": "8760h",
            },
        )
        self.mounts: dict[str, _Mount] = {
            mount.path: mount
            for mount in (
                _Mount("sys/", "system", _System(self), "system endpoints used for control, policy and debugging"),
                _Mount("auth/token/", "token", self.tokens, "token based credentials"),
                _Mount("auth/approle/", "approle", self.approle),
                _Mount("secret/", "kv", _KVv2(), "key/value secret storage", {"version": "2"}),
                _Mount("transit/", "transit", _Transit()),
                _Mount("pki/", "pki", root, max_lease_ttl=87600 * 3600),
                _Mount("pki_int/", "pki", intermediate, max_lease_ttl=43800 * 3600),
            )
        }

    def kv2(self, mount: str) -> _KVv2:
        entry = self.mounts.get(mount.strip("/") + "/")
        if entry is None or not isinstance(entry.backend, _KVv2):
            raise ValueError(f"no KV version 2 engine is mounted at {mount}/")
        return entry.backend

    def handle(self, request: _Incoming) -> _Outcome:
        path = request.path.lstrip("/")
        if path == "sys/health":
            return self._health(request)
        if path == "sys/seal-status" and request.method == "GET":
            return _Reply(200, self._seal_status())
        op = _OPERATIONS.get(request.method)
        if op is None:
            raise VaultError(405)
        if op == "read" and _boolean(request.query.get("list", False), "list"):
            op = "list"
        if op == "list" and not path.endswith("/"):
            path += "/"
        if self.sealed:
            raise VaultError(503, "Vault is sealed")
        mount = max(
            (m for m in self.mounts.values() if path.startswith(m.path)), key=lambda m: len(m.path), default=None
        )
        rest = path[len(mount.path) :] if mount else path
        token = None
        if mount is None or not mount.backend.is_unauthenticated(rest):
            token = self._authorize(request.token, path)
        if mount is None:
            raise VaultError(404, f'no handler for route "{path}". route entry not found.')
        params = request.query if op in {"read", "list"} else request.body
        return mount.backend.handle(_Call(op, rest, params, token, mount))

    def _authorize(self, token_id: str | None, path: str) -> _Token:
        token = self.tokens.valid(token_id)
        if token is None:
            raise VaultError(403, "permission denied")
        if any(path.startswith(prefix) for prefix in token.deny_paths):
            raise VaultError(403, _multierror("permission denied"))
        return token

    def _health(self, request: _Incoming) -> _Reply:
        if request.method not in {"GET", "HEAD"}:
            raise VaultError(405)

        def code(name: str, default: int) -> int:
            raw = request.query.get(name)
            if raw is None:
                return default
            try:
                return int(raw)
            except ValueError:
                raise _bad(f"unable to parse {name} value: {raw}") from None

        # This server is always an initialized, active node, so the standby and DR options do not apply.
        status = code("sealedcode", 503) if self.sealed else code("activecode", 200)
        body: JSON = {
            "initialized": True,
            "sealed": self.sealed,
            "standby": self.sealed,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VAULT_VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
            "replication_primary_canary_age_ms": 0,
            "removed_from_cluster": False,
        }
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        return _Reply(status, body)

    def _seal_status(self) -> JSON:
        body: JSON = {
            "type": "shamir",
            "initialized": True,
            "sealed": self.sealed,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VAULT_VERSION,
            "build_date": "2025-03-04T12:00:00Z",
            "migration": False,
            "recovery_seal": False,
            "storage_type": "inmem",
            "removed_from_cluster": False,
        }
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        return body


# --------------------------------------------------------------------------------------------------
# HTTP front end and the public test double
# --------------------------------------------------------------------------------------------------


class _AnyMethodRequestHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler with the pure-Python HTTP parser, which accepts Vault's LIST method.

    The default C parser (llhttp) only knows registered methods and answers LIST with 400.
    """

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._parser = HttpRequestParserPy(
            self,
            loop,
            2**16,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=web_protocol.RequestPayloadError,
            max_msg_queue_size=web_protocol.MAX_MSG_QUEUE_SIZE,
        )


def _token_from(headers: Mapping[str, str]) -> str | None:
    token = headers.get("X-Vault-Token")
    if token:
        return str(token)
    scheme, _, credentials = str(headers.get("Authorization", "")).partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


async def _incoming(request: web.BaseRequest) -> _Incoming:
    if not request.path.startswith("/v1/"):
        raise _not_found()
    body: JSON = {}
    try:
        raw = await request.read()
    except HTTPRequestEntityTooLarge:
        raise VaultError(413, "http: request body too large") from None
    if raw.strip():
        if request.method == "PATCH" and request.content_type != "application/merge-patch+json":
            raise VaultError(
                415, "PATCH requires Content-Type of application/merge-patch+json, provided " + request.content_type
            )
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise _bad(f"failed to parse JSON input: {exc}") from None
        if not isinstance(parsed, dict):
            raise _bad("failed to parse JSON input: expected a JSON object")
        body = parsed
    query = {key: request.query.getone(key) for key in request.query}
    if request.method == "DELETE" and not body:
        body = dict(query)
    return _Incoming(request.method, request.path[len("/v1/") :], query, body, _token_from(request.headers))


def _http_response(reply: _Reply, *, head: bool) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if reply.raw is not None:
        body, content_type = reply.raw, reply.content_type
    elif reply.body is not None:
        body, content_type = json.dumps(reply.body).encode(), "application/json"
    else:
        return web.Response(status=reply.status, headers=headers)
    headers["Content-Type"] = content_type
    return web.Response(status=reply.status, headers=headers, body=None if head else body)


class VaultDouble:
    """An in-memory Vault server speaking Vault's real HTTP API, for tests.

    ``start()`` serves it from a daemon thread with its own event loop; every test control below is
    thread-safe. Pre-mounted: ``secret/`` (KV v2), ``transit/``, ``pki/`` (a root CA) and ``pki_int/``
    (an intermediate CA signed by that root, with a role ``refapi`` for localhost names and IP SANs).
    AppRole is enabled at ``auth/approle/``. Policies are recorded but not enforced: any live token
    may do anything except what ``create_token(deny_paths=...)`` forbids.
    """

    def __init__(self, *, root_token: str = "root", host: str = "127.0.0.1", port: int = 0) -> None:
        self.root_token = root_token
        self.host = host
        #: (method, path) of every request received, in arrival order; path includes the /v1 prefix.
        self.request_log: list[tuple[str, str]] = []
        self._requested_port = port
        self._port: int | None = None
        self._lock = threading.Lock()
        self._core = _Core(root_token)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the Vault double is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> VaultDouble:
        """Start serving in a daemon thread; returns once the socket accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the Vault double is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self._requested_port), family=family)
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(sock, ready, failure), name=f"vault-double:{self._port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the Vault double failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then stop the server thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = None

    def _serve(self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            server, listener = loop.run_until_complete(self._listen(sock))
        except BaseException as exc:  # handed to start(), which re-raises it in the caller's thread
            failure.append(exc)
            sock.close()
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            listener.close()
            server.pre_shutdown()
            loop.run_until_complete(server.shutdown(5.0))
            loop.run_until_complete(listener.wait_closed())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _listen(self, sock: socket.socket) -> tuple[web.Server, asyncio.Server]:
        loop = asyncio.get_running_loop()
        server = web.Server(self._handle)

        def connection() -> _AnyMethodRequestHandler:
            return _AnyMethodRequestHandler(server, loop=loop, access_log=None)

        return server, await loop.create_server(connection, sock=sock)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.request_log.append((request.method, request.path))
        try:
            incoming = await _incoming(request)
            with self._lock:
                outcome = self._core.handle(incoming)
            if isinstance(outcome, _Offload):
                result = await asyncio.get_running_loop().run_in_executor(None, outcome.work)
                with self._lock:
                    outcome = outcome.finish(result)
            reply = outcome
        except VaultError as exc:
            reply = _Reply(exc.status, {"errors": exc.errors})
        except Exception as exc:  # a bug in the double: answer like Vault's 500 and keep serving
            _LOG.exception("Vault double failed on %s %s", request.method, request.path)
            reply = _Reply(500, {"errors": [_multierror(f"internal error: {exc}")]})
        return _http_response(reply, head=request.method == "HEAD")

    # -- test controls -------------------------------------------------------------------------

    def seal(self) -> None:
        """Seal Vault: health answers 503 and every other endpoint 503 "Vault is sealed"."""
        with self._lock:
            self._core.sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._core.sealed = False

    def create_token(
        self,
        *,
        ttl: int = 3600,
        renewable: bool = True,
        explicit_max_ttl: int = 0,
        policies: list[str] | None = None,
        deny_paths: list[str] | None = None,
    ) -> str:
        """Create an orphan service token; ``deny_paths`` are path prefixes (no /v1/) that answer 403."""
        with self._lock:
            token, _ = self._core.tokens.issue(
                policies=_policies(policies or [], add_default=True),
                ttl=ttl,
                renewable=renewable,
                explicit_max_ttl=explicit_max_ttl,
                path="auth/token/create",
                display_name="token",
                deny_paths=deny_paths or (),
            )
            return token.id

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._core.tokens.revoke(token)

    def expire_token(self, token: str) -> None:
        """Make ``token`` invalid as if its TTL had just run out."""
        with self._lock:
            self._core.tokens.expire(token)

    def create_approle(
        self, role_name: str, *, token_ttl: int = 3600, token_max_ttl: int = 0, policies: list[str] | None = None
    ) -> tuple[str, str]:
        """Create (or update) an AppRole role and a fresh secret ID; returns (role_id, secret_id)."""
        with self._lock:
            role = self._core.approle.write_role(
                role_name,
                {
                    "token_ttl": token_ttl,
                    "token_max_ttl": token_max_ttl,
                    "token_policies": policies or [],
                },
            )
            secret_id, _ = self._core.approle.new_secret_id(role, {})
            return role.role_id, secret_id

    def put_secret(self, path: str, data: dict[str, Any], *, mount: str = "secret") -> int:
        """Write a new version of a KV v2 secret; returns the version number."""
        with self._lock:
            key, _ = self._core.kv2(mount).write(path.strip("/"), data, None)
            return key.current


def main(argv: list[str] | None = None) -> None:
    """Run the double in the foreground until SIGINT or SIGTERM; prints the URL once it listens."""
    parser = argparse.ArgumentParser(description="Serve an in-memory HashiCorp Vault double.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200, help="0 picks a free port")
    parser.add_argument("--root-token", default="root")
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the server thread starts so it inherits the mask and sigwait() below gets them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    double = VaultDouble(root_token=args.root_token, host=args.host, port=args.port).start()
    print(double.url, flush=True)
    signal.sigwait(stop_signals)
    double.stop()


if __name__ == "__main__":
    main()

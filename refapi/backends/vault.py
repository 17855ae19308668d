"""Vault over its HTTP API on the worker's aiohttp session: token/AppRole auth, KV v2, transit, PKI and health."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from cryptography import x509

from refapi import errors, keys
from refapi.api.health import register_check
from refapi.backends.credentials import CredentialStore, SecretReader
from refapi.config import Settings
from refapi.resilience.guard import make_guard

log = logging.getLogger("refapi.vault")

SERVICE = "vault"
TRANSIT_KEY_TYPE = "aes256-gcm96"
# Pause before retrying token maintenance or certificate issuance after a failure.
RETRY_DELAY = 10.0
CERTIFICATE_RETRY_DELAY = 60.0
# Never re-issue more often than this, even if PKI hands out certificates that are almost expired.
MIN_REISSUE_DELAY = 1.0
# AppRole id files in VAULT_APPROLE_DIR: Vault Agent writes role-id/secret-id, other tools the underscore form.
_ROLE_ID_FILES = ("role-id", "role_id")
_SECRET_ID_FILES = ("secret-id", "secret_id")


class VaultUnavailable(errors.ServiceUnavailable):
    """Vault cannot serve the call: `denied`, `not_configured`, `auth_failed` or `error` (sealed, 5xx, garbage).

    It is the API's 503 itself; the guard counts `denied` and `not_configured` as breaker successes.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(SERVICE, reason)


class SecretNotFound(Exception):
    """No such secret (`version` None), or no such version; also a deleted or destroyed latest version."""

    def __init__(self, version: int | None = None) -> None:
        super().__init__("secret not found" if version is None else "secret version not found")
        self.version = version


class CasMismatch(Exception):
    """A KV write's check-and-set version did not match the secret's current version."""


class InvalidCiphertext(Exception):
    """Transit refused the ciphertext, or the plaintext it produced is not UTF-8."""


@dataclass(frozen=True)
class VersionInfo:
    """One KV v2 version as the metadata describes it; `deletion_time` None when not deleted."""

    version: int
    created_time: str
    deletion_time: str | None
    destroyed: bool


@dataclass(frozen=True)
class VersionedSecret:
    """A version's data (None when deleted or destroyed), its metadata and every kept version, ascending."""

    info: VersionInfo
    data: dict[str, Any] | None
    versions: list[VersionInfo]


@dataclass(frozen=True)
class IssuedCertificate:
    """A PKI certificate: PEM chain (leaf first), PEM private key and validity window."""

    chain_pem: str
    key_pem: str = field(repr=False)
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class _Lease:
    """The token in use. `ttl` None: not looked up yet; 0: never expires. `capped`: renewal hit the max TTL."""

    token: str = field(repr=False)
    ttl: float | None
    renewable: bool
    obtained: float  # time.monotonic() when the ttl was granted
    full_ttl: float | None = None  # the TTL a renewal restores while the max TTL is far
    capped: bool = False


@dataclass(frozen=True)
class _AppRoleIds:
    role_id: str = field(repr=False)
    secret_id: str = field(repr=False)


def is_configured(settings: Settings) -> bool:
    """Whether any Vault auth is configured; without it token-needing calls answer 503 not_configured."""
    return any((settings.vault_token, settings.vault_approle_dir, settings.vault_role_id, settings.vault_secret_id))


class VaultClient:
    """The worker's Vault facade. Calls raise VaultUnavailable, SecretNotFound, CasMismatch, InvalidCiphertext
    or aiohttp's connection errors; one per worker, created by the cleanup context."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        self._settings = settings
        self._base = settings.vault_addr.rstrip("/") + "/v1/"
        self._timeout = aiohttp.ClientTimeout(total=settings.backend_timeout)
        self._approle: _AppRoleIds | None = None
        self._lease: _Lease | None = None
        self._login_lock = asyncio.Lock()
        self._lease_changed = asyncio.Event()
        self._transit_ready = False
        self._transit_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Pick the auth method and start the token maintenance task (which logs in); never raises."""
        self._approle = await asyncio.to_thread(_approle_ids, self._settings)
        if self._approle is None and not self._settings.vault_token:
            log.info("no Vault token or AppRole configured; Vault operations will answer 503")
            return
        self.spawn(self._keep_token())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background job that lives as long as this client (cancelled by close())."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def uses_approle(self) -> bool:
        return self._approle is not None

    # -- KV v2 ----------------------------------------------------------------------------------------------

    async def read_secret(self, name: str) -> dict[str, Any]:
        """The latest version's data; SecretNotFound if the secret is absent or its latest version deleted."""
        status, body = await self._call("GET", self._kv("data", name))
        if status == 404:
            raise SecretNotFound()
        data = _dig(body, "data", "data") if status == 200 else None
        if not isinstance(data, dict):
            raise self._unexpected("kv read", status)
        return data

    async def read_secret_or_none(self, name: str) -> Mapping[str, Any] | None:
        """read_secret for the credential store: None when the secret does not exist."""
        try:
            return await self.read_secret(name)
        except SecretNotFound:
            return None

    async def read_versioned(self, name: str, version: int | None = None) -> VersionedSecret:
        """A version (default latest) with data, metadata and the version list; deleted data comes back None."""
        params = None if version is None else {"version": str(version)}
        (meta_status, meta_body), (data_status, data_body) = await asyncio.gather(
            self._call("GET", self._kv("metadata", name)),
            self._call("GET", self._kv("data", name), params=params),
        )
        if meta_status == 404:
            raise SecretNotFound()
        versions = _dig(meta_body, "data", "versions") if meta_status == 200 else None
        if not isinstance(versions, dict):
            raise self._unexpected("kv metadata", meta_status)
        # Vault answers a deleted or destroyed version with 404 and that version's metadata.
        metadata = _dig(data_body, "data", "metadata") if data_status in (200, 404) else None
        if data_status == 404 and not isinstance(metadata, dict):
            raise SecretNotFound(version)
        if not isinstance(metadata, dict):
            raise self._unexpected("kv read", data_status)
        data = _dig(data_body, "data", "data") if data_status == 200 else None
        try:
            info = _version_info(metadata.get("version"), metadata)
            listed = sorted(
                (_version_info(number, item) for number, item in versions.items()), key=lambda item: item.version
            )
        except (KeyError, TypeError, ValueError):
            raise self._unexpected("kv metadata", meta_status) from None
        return VersionedSecret(info=info, data=data if isinstance(data, dict) else None, versions=listed)

    async def write_secret(self, name: str, data: Mapping[str, Any], cas: int | None = None) -> VersionInfo:
        """Write a new version replacing the whole secret; `cas` makes it conditional (0 = create only)."""
        body: dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            body["options"] = {"cas": cas}
        status, answer = await self._call("POST", self._kv("data", name), body=body)
        if status == 400 and any("check-and-set" in message for message in _errors(answer)):
            raise CasMismatch()
        written = _dig(answer, "data") if status == 200 else None
        try:
            if not isinstance(written, dict):
                raise TypeError("data")
            return _version_info(written.get("version"), written)
        except (KeyError, TypeError, ValueError):
            raise self._unexpected("kv write", status) from None

    # -- transit --------------------------------------------------------------------------------------------

    async def encrypt(self, plaintext: str) -> str:
        """`vault:vN:...` for the UTF-8 bytes of `plaintext` under VAULT_TRANSIT_KEY (created if missing)."""
        await self._ensure_transit_key()
        encoded = base64.b64encode(plaintext.encode("utf-8")).decode("ascii")
        status, body = await self._call("POST", self._transit("encrypt"), body={"plaintext": encoded})
        ciphertext = _dig(body, "data", "ciphertext") if status == 200 else None
        if not isinstance(ciphertext, str):
            raise self._unexpected("transit encrypt", status)
        return ciphertext

    async def decrypt(self, ciphertext: str) -> str:
        """The UTF-8 plaintext; InvalidCiphertext when transit refuses it or the bytes are not UTF-8."""
        await self._ensure_transit_key()
        status, body = await self._call("POST", self._transit("decrypt"), body={"ciphertext": ciphertext})
        if status == 400:
            raise InvalidCiphertext()
        encoded = _dig(body, "data", "plaintext") if status == 200 else None
        if not isinstance(encoded, str):
            raise self._unexpected("transit decrypt", status)
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidCiphertext() from None

    async def _ensure_transit_key(self) -> None:
        if self._transit_ready:
            return
        async with self._transit_lock:
            if self._transit_ready:
                return
            path = self._transit("keys")
            status, _ = await self._call("GET", path)
            if status == 404:
                log.info("creating the transit key %s", self._settings.vault_transit_key)
                status, _ = await self._call("POST", path, body={"type": TRANSIT_KEY_TYPE})
            if status not in (200, 204):
                raise self._unexpected("transit key", status)
            self._transit_ready = True

    # -- PKI and TLS ----------------------------------------------------------------------------------------

    async def issue_certificate(self) -> IssuedCertificate:
        """A serving certificate from VAULT_PKI_MOUNT/issue/VAULT_PKI_ROLE for TLS_COMMON_NAME, localhost, 127.0.0.1."""
        settings = self._settings
        request = {
            "common_name": settings.tls_common_name,
            "alt_names": "localhost",
            "ip_sans": "127.0.0.1",
            "ttl": settings.tls_cert_ttl,
        }
        path = f"{settings.vault_pki_mount.strip('/')}/issue/{quote(settings.vault_pki_role, safe='')}"
        status, body = await self._call("POST", path, body=request)
        data = _dig(body, "data") if status == 200 else None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("certificate"), str)
            or not isinstance(data.get("private_key"), str)
        ):
            raise self._unexpected("pki issue", status)
        chain = [data["certificate"], *(item for item in data.get("ca_chain") or [] if isinstance(item, str))]
        leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
        return IssuedCertificate(
            chain_pem="\n".join(pem.strip() for pem in chain) + "\n",
            key_pem=data["private_key"],
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )

    async def keep_tls_certificate(self, context: ssl.SSLContext) -> bool:
        """Load a PKI certificate into `context` and re-issue it in the background when under a third of its
        lifetime remains; False (and nothing scheduled) if the first one cannot be issued."""
        try:
            certificate = await self.issue_certificate()
            await _load_certificate(context, certificate)
        except Exception as exc:  # no certificate: the caller keeps serving HTTP only
            log.error("could not issue the TLS certificate from Vault PKI (%s)", _describe(exc))
            return False
        log.info("TLS certificate issued by Vault PKI", extra={"not_after": certificate.not_after.isoformat()})
        self.spawn(self._renew_certificate(context, certificate))
        return True

    async def _renew_certificate(self, context: ssl.SSLContext, certificate: IssuedCertificate) -> None:
        issued_at = time.time()
        while True:
            # The lifetime counts from issuance: PKI backdates not_before (30 s in Vault) against clock skew.
            expires = certificate.not_after.timestamp()
            renew_at = expires - (expires - max(issued_at, certificate.not_before.timestamp())) / 3
            await asyncio.sleep(max(MIN_REISSUE_DELAY, renew_at - time.time()))
            try:
                certificate = await self.issue_certificate()
                issued_at = time.time()
                # New handshakes use the new certificate; established connections keep theirs.
                await _load_certificate(context, certificate)
            except Exception as exc:  # keep the current certificate and try again shortly
                log.error("could not re-issue the TLS certificate (%s); retrying", _describe(exc))
                await asyncio.sleep(CERTIFICATE_RETRY_DELAY)
            else:
                log.info("TLS certificate re-issued", extra={"not_after": certificate.not_after.isoformat()})

    # -- health ---------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """The contract's vault check body from sys/health (no token); raises when Vault gives no usable answer."""
        status, body = await self._send("GET", "sys/health", token=None, params={"standbyok": "true"})
        if status == 200 and not isinstance(body, dict):
            raise VaultUnavailable("error")
        answer = body if isinstance(body, dict) else {}

        def flag(name: str, default: bool) -> bool:
            value = answer.get(name)
            return value if isinstance(value, bool) else default

        state = "healthy" if status == 200 else "unhealthy"
        return {
            "status": state,
            "details": {
                "status": state,
                "initialized": flag("initialized", status != 501),
                "sealed": flag("sealed", status == 503),
                "standby": flag("standby", status == 429),
            },
        }

    # -- token lifecycle ------------------------------------------------------------------------------------

    async def maintain_token(self) -> float | None:
        """One step of token upkeep: get a token if there is none, renew it (or log in again) once half its
        lease has passed. Returns the seconds until the next step is due, None when nothing is left to do."""
        lease = await self._current_lease()
        if lease.ttl is None:
            lease = await self._look_up(lease)
        if not lease.ttl or not (lease.renewable or self.uses_approle):
            return None  # never expires, or a plain token that cannot be renewed: keep it as it is
        due = lease.obtained + lease.ttl / 2 - time.monotonic()
        if due > 0:
            return due
        if lease.renewable and not lease.capped:
            try:
                lease = await self.renew_token()
            except (VaultUnavailable, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Vault token renewal failed (%s)", _describe(exc))
                if not self.uses_approle:
                    raise
                lease = await self._relogin(lease.token)
        elif self.uses_approle:
            lease = await self._relogin(lease.token)
        else:
            return None  # at its max TTL: a plain token is used until it expires
        return lease.ttl / 2 if lease.ttl else None

    async def renew_token(self) -> _Lease:
        """auth/token/renew-self for the current token; notes when the max TTL caps the lease."""
        lease = await self._current_lease()
        status, body = await self._send("POST", "auth/token/renew-self", token=lease.token, body={})
        auth = _dig(body, "auth") if status == 200 else None
        if not isinstance(auth, dict) or not isinstance(auth.get("lease_duration"), int):
            raise VaultUnavailable("denied" if status == 403 else "error")
        ttl = float(auth["lease_duration"])
        full = lease.full_ttl or lease.ttl or ttl
        renewed = replace(
            lease,
            ttl=ttl,
            renewable=bool(auth.get("renewable")),
            obtained=time.monotonic(),
            full_ttl=full,
            capped=ttl < full,
        )
        if self._lease is not None and self._lease.token == lease.token:
            self._lease = renewed
        log.info("Vault token renewed", extra={"ttl_seconds": ttl, "capped": renewed.capped})
        return renewed

    async def _keep_token(self) -> None:
        while True:
            self._lease_changed.clear()
            try:
                delay = await self.maintain_token()
            except Exception as exc:  # Vault down or refusing: requests log in on demand meanwhile
                log.warning("Vault token upkeep failed (%s); retrying in %.0fs", _describe(exc), RETRY_DELAY)
                delay = RETRY_DELAY
            # A login done for a request (after a 403) replaces the lease: wake up and reschedule.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lease_changed.wait(), delay)

    async def _current_lease(self) -> _Lease:
        lease = self._lease
        if lease is not None:
            return lease
        async with self._login_lock:
            if self._lease is None:
                if self._approle is not None:
                    self._lease = await self._login(self._approle)
                elif self._settings.vault_token:
                    self._lease = _Lease(
                        self._settings.vault_token, ttl=None, renewable=False, obtained=time.monotonic()
                    )
                else:
                    raise VaultUnavailable("not_configured")
            return self._lease

    async def _relogin(self, stale_token: str) -> _Lease:
        """Replace `stale_token` by an AppRole login, once even when many requests saw it fail together."""
        async with self._login_lock:
            current = self._lease
            if current is not None and current.token != stale_token:
                return current
            if self._approle is None:
                raise VaultUnavailable("denied")
            self._lease = await self._login(self._approle)
            self._lease_changed.set()
            return self._lease

    async def _login(self, ids: _AppRoleIds) -> _Lease:
        status, body = await self._send(
            "POST", "auth/approle/login", token=None, body={"role_id": ids.role_id, "secret_id": ids.secret_id}
        )
        auth = _dig(body, "auth") if status == 200 else None
        if (
            isinstance(auth, dict)
            and isinstance(auth.get("client_token"), str)
            and isinstance(auth.get("lease_duration"), int)
        ):
            ttl = float(auth["lease_duration"])
            log.info("logged in to Vault with AppRole", extra={"ttl_seconds": ttl})
            return _Lease(
                auth["client_token"],
                ttl=ttl,
                renewable=bool(auth.get("renewable")),
                obtained=time.monotonic(),
                full_ttl=ttl,
            )
        if status >= 500:
            raise self._unexpected("approle login", status)
        log.warning("Vault rejected the AppRole login (HTTP %s)", status)
        raise VaultUnavailable("auth_failed")

    async def _look_up(self, lease: _Lease) -> _Lease:
        """Learn a configured token's remaining TTL and renewability (auth/token/lookup-self)."""
        status, body = await self._send("GET", "auth/token/lookup-self", token=lease.token)
        data = _dig(body, "data") if status == 200 else None
        if not isinstance(data, dict) or not isinstance(data.get("ttl"), int):
            raise VaultUnavailable("denied" if status == 403 else "error")
        creation_ttl = data.get("creation_ttl")
        looked_up = replace(
            lease,
            ttl=float(data["ttl"]),
            renewable=bool(data.get("renewable")),
            obtained=time.monotonic(),
            full_ttl=float(creation_ttl) if isinstance(creation_ttl, int) else None,
        )
        if self._lease is not None and self._lease.token == lease.token:
            self._lease = looked_up
        return looked_up

    # -- HTTP -----------------------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """An authenticated request: a 403 gets one AppRole re-login and retry, then means `denied`; sealed,
        5xx and throttled answers raise. Returns (status, parsed body) for the caller to interpret."""
        lease = await self._current_lease()
        status, answer = await self._send(method, path, token=lease.token, params=params, body=body)
        if status == 403 and self._approle is not None:
            lease = await self._relogin(lease.token)
            status, answer = await self._send(method, path, token=lease.token, params=params, body=body)
        if status == 403:
            log.warning("Vault denied %s %s", method, path)
            raise VaultUnavailable("denied")
        if status >= 500 or status == 429:
            raise self._unexpected(f"{method} {path}", status)
        return status, answer

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        headers = {"X-Vault-Token": token} if token else None
        async with self._session.request(
            method, self._base + path, params=params, json=body, headers=headers, timeout=self._timeout
        ) as response:
            raw = await response.read()
            status = response.status
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, None

    def _unexpected(self, what: str, status: int) -> VaultUnavailable:
        log.warning("unexpected Vault answer to %s (HTTP %s)", what, status)
        return VaultUnavailable("error")

    def _kv(self, kind: str, name: str) -> str:
        return f"{self._settings.vault_kv_mount.strip('/')}/{kind}/{quote(name, safe='')}"

    def _transit(self, kind: str) -> str:
        settings = self._settings
        return f"{settings.vault_transit_mount.strip('/')}/{kind}/{quote(settings.vault_transit_key, safe='')}"


def _dig(body: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(body, dict):
            return None
        body = body.get(name)
    return body


def _errors(body: Any) -> list[str]:
    found = _dig(body, "errors")
    return [item for item in found if isinstance(item, str)] if isinstance(found, list) else []


def _version_info(number: Any, item: Mapping[str, Any]) -> VersionInfo:
    created = item["created_time"]
    deleted = item.get("deletion_time")
    if not isinstance(created, str):
        raise TypeError("created_time")
    return VersionInfo(
        version=int(number),
        created_time=created,
        deletion_time=deleted if isinstance(deleted, str) and deleted else None,
        destroyed=bool(item.get("destroyed")),
    )


def _describe(exc: BaseException) -> str:
    """An exception for a log line: the 503 reason or the class name, never a message that could hold secrets."""
    if isinstance(exc, errors.ServiceUnavailable):
        return exc.reason or "error"
    return type(exc).__name__


def _approle_ids(settings: Settings) -> _AppRoleIds | None:
    """VAULT_ROLE_ID / VAULT_SECRET_ID, each else its file in VAULT_APPROLE_DIR; None unless both exist."""
    role_id = settings.vault_role_id or _read_id(settings.vault_approle_dir, _ROLE_ID_FILES)
    secret_id = settings.vault_secret_id or _read_id(settings.vault_approle_dir, _SECRET_ID_FILES)
    return _AppRoleIds(role_id, secret_id) if role_id and secret_id else None


def _read_id(directory: str, names: tuple[str, ...]) -> str:
    if not directory:
        return ""
    for name in names:
        try:
            return (Path(directory) / name).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read the AppRole file %s (%s)", name, type(exc).__name__)
    return ""


async def _load_certificate(context: ssl.SSLContext, certificate: IssuedCertificate) -> None:
    # load_cert_chain only reads files: write both to a private directory and remove it right after.
    directory = await asyncio.to_thread(_write_pem_files, certificate)
    try:
        # On the loop thread, where the handshakes run, so no handshake sees a half-updated context;
        # the files are a few KB in a local temporary directory.
        context.load_cert_chain(str(directory / "cert.pem"), str(directory / "key.pem"))
    finally:
        await asyncio.to_thread(shutil.rmtree, directory, True)


def _write_pem_files(certificate: IssuedCertificate) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="refapi-tls-"))  # mode 0700
    (directory / "cert.pem").write_text(certificate.chain_pem, encoding="ascii")
    key = directory / "key.pem"
    key.touch(mode=0o600)
    key.write_text(certificate.key_pem, encoding="ascii")
    return directory


def classify(exc: BaseException) -> str | None:
    """Driver exceptions → 503 reason; Vault's own answers already arrive as VaultUnavailable or request errors."""
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return "unreachable"
    if isinstance(exc, aiohttp.ClientError):
        return "error"
    return None


async def _vault_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    client = VaultClient(app[keys.HTTP_SESSION], settings)
    app[keys.VAULT] = client
    try:
        await client.start()
        try:
            # Bounded so a black-holed Vault never holds up startup; the store keeps env/defaults meanwhile.
            async with asyncio.timeout(settings.backend_timeout):
                await app[keys.CREDENTIALS].load_all()
        except TimeoutError:
            log.warning("Vault did not answer in time for credentials; using environment/defaults")
        yield
    finally:
        await client.close()


def secret_reader(app: web.Application) -> SecretReader:
    """The credential store's source: the latest data of a KV secret through the worker's client."""

    async def read(name: str) -> Mapping[str, Any] | None:
        client: VaultClient = app[keys.VAULT]
        return await client.read_secret_or_none(name)

    return read


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard, health check and the credential store fed by Vault."""
    settings = app[keys.SETTINGS]

    async def check() -> dict[str, Any]:
        client: VaultClient = app[keys.VAULT]
        return await client.health()

    app[keys.CREDENTIALS] = CredentialStore(settings, secret_reader(app) if is_configured(settings) else None)
    make_guard(app, SERVICE, classify)
    register_check(app, SERVICE, check)
    app.cleanup_ctx.append(_vault_ctx)

"""Response cache (contract §3.5): a few GET routes stored in Redis with ETags; fails open when Redis is away.

Entries of one lower-cased Vault service share a hash tag, so they live in one cluster slot with that
service's generation counter. A vault write invalidates them all by incrementing the counter: every entry
records the generation it was computed under and only counts while that is still current. Unlike deleting
the entries, this also drops a read that was computed before the write but stored after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from refapi import errors, keys
from refapi.backends.redis import RESERVED_PREFIX
from refapi.config import Settings
from refapi.resilience.fallback import FailOpen, Skipped

log = logging.getLogger("refapi.cache")

PREFIX = f"{RESERVED_PREFIX}cache:"
# Response headers of a cached route, for its operation's `headers=` (200 and 304) in the OpenAPI document.
CACHE_HEADERS = {
    "ETag": 'Strong validator: `"` + the first 32 hex digits of the body\'s SHA-256 + `"`',
    "Cache-Control": "`private, max-age=<seconds the cached entry has left>`",
    "X-Cache": "`HIT` when served from the response cache, else `MISS`",
}
_ETAG_LENGTH = 34  # '"' + 32 hex digits + '"'
_ETAG_TAGS = re.compile(r'(?:W/)?"[^"]*"')
_READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class CachedRoute:
    """How one route template is cached: its TTL setting and the path parameters that make up its key."""

    name: str
    ttl: Callable[[Settings], int]
    params: tuple[str, ...] = ()
    # Names the invalidation group: the first parameter, lower-cased, under this label (e.g. one Vault service).
    group: str | None = None
    # A 200 to a POST on this template invalidates the group.
    invalidated_by_post: bool = False

    def group_key(self, match_info: Any) -> str | None:
        if self.group is None:
            return None
        return f"{PREFIX}{{{self.group}:{match_info[self.params[0]].lower()}}}"

    def entry_key(self, match_info: Any) -> str:
        group = self.group_key(match_info)
        if group is None:
            return PREFIX + self.name
        # Values as sent, hashed: before validation they may hold any character, and keys stay short.
        digest = hashlib.sha256(orjson.dumps([match_info[param] for param in self.params])).hexdigest()[:32]
        return f"{group}:{self.name}:{digest}"


def _vault_ttl(settings: Settings) -> int:
    return settings.response_cache_ttl_vault


CACHED_ROUTES: dict[str, CachedRoute] = {
    "/health/all": CachedRoute("health_all", lambda settings: settings.response_cache_ttl_health),
    "/examples/vault/secret/{service_name}": CachedRoute(
        "vault_secret", _vault_ttl, ("service_name",), group="vault", invalidated_by_post=True
    ),
    "/examples/vault/secret/{service_name}/{key}": CachedRoute(
        "vault_secret_key", _vault_ttl, ("service_name", "key"), group="vault"
    ),
}


def etag_of(body: bytes) -> str:
    """Strong and content-derived, so every worker and instance gives the same body the same tag."""
    return f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def if_none_match(headers: Iterable[str], etag: str) -> bool:
    """Does If-None-Match (a list, or `*`) match `etag`? Weak comparison: a `W/` prefix is ignored."""
    wanted = etag.removeprefix("W/")
    for header in headers:
        if header.strip() == "*":
            return True
        if any(tag.removeprefix("W/") == wanted for tag in _ETAG_TAGS.findall(header)):
            return True
    return False


def cache_directives(headers: Iterable[str]) -> set[str]:
    """The directive names of the request's Cache-Control headers, lower-cased (`no-cache`, `no-store`, ...)."""
    return {part.split("=", 1)[0].strip().lower() for header in headers for part in header.split(",")}


@dataclass(frozen=True, slots=True)
class Entry:
    etag: str
    body: bytes
    max_age: int


def encode_entry(generation: bytes, etag: str, body: bytes) -> bytes:
    return generation + b"\n" + etag.encode() + body


def decode_entry(raw: bytes | None, generation: bytes, pttl: int) -> Entry | None:
    """The stored response if it belongs to the current generation and has not expired."""
    if raw is None or pttl <= 0:
        return None
    stored_generation, _, rest = raw.partition(b"\n")
    if stored_generation != generation:
        return None
    return Entry(rest[:_ETAG_LENGTH].decode(), rest[_ETAG_LENGTH:], -(-pttl // 1000))  # whole seconds, up


# The entry, its PTTL and (given a second key) its group's generation, atomically in one command; the hash tag
# puts both keys in one cluster slot. A missing generation reads as false (nil), like a missing entry.
_LOOKUP = (
    "EVAL",
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), KEYS[2] and redis.call('GET', KEYS[2])}",
)


async def _lookup(backend: Any, group_key: str | None, entry_key: str) -> tuple[bytes, Entry | None]:
    """The group's generation (b"0" before its first write) and the entry, if current and unexpired."""
    keys = (entry_key,) if group_key is None else (entry_key, f"{group_key}:gen")
    reply = await backend.read(*_LOOKUP, len(keys), *keys)
    if isinstance(reply, Exception):
        raise reply
    raw, pttl, *rest = reply
    generation = (rest[0] if rest else None) or b"0"
    return generation, decode_entry(raw, generation, pttl)


def _cache_headers(etag: str, max_age: int, outcome: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": f"private, max-age={max_age}", "X-Cache": outcome}


def _answer(request: web.Request, body: bytes, headers: dict[str, str]) -> web.Response:
    if if_none_match(request.headers.getall("If-None-Match", ()), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={"Content-Type": errors.JSON_CONTENT_TYPE, **headers})


def cache_middleware() -> web.middleware:  # type: ignore[valid-type]
    # One gate per app (per worker): after a Redis failure the cache is skipped for 5 s, not retried per request.
    gate = FailOpen("response cache (redis)")

    @web.middleware
    async def response_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        rule = CACHED_ROUTES.get(resource.canonical) if resource is not None else None
        if rule is None:
            return await handler(request)
        if request.method == "POST" and rule.invalidated_by_post:
            return await _invalidating(request, handler, rule, gate)
        if request.method not in _READS:
            return await handler(request)
        return await _cached(request, handler, rule, gate)

    return response_cache


async def _invalidating(
    request: web.Request, handler: Handler, rule: CachedRoute, gate: FailOpen
) -> web.StreamResponse:
    response = await handler(request)
    backend = request.app.get(keys.REDIS)
    group_key = rule.group_key(request.match_info)
    if response.status == 200 and backend is not None and group_key is not None:
        try:
            await gate.call(lambda: backend.client.incr(f"{group_key}:gen"))
        except Skipped:
            # Entries of this service may be served until they expire; the write itself succeeded.
            log.warning("could not invalidate cached reads after a vault write")
    return response


async def _cached(request: web.Request, handler: Handler, rule: CachedRoute, gate: FailOpen) -> web.StreamResponse:
    directives = cache_directives(request.headers.getall("Cache-Control", ()))
    if "no-store" in directives:
        return await handler(request)
    app = request.app
    settings, metrics = app[keys.SETTINGS], app[keys.METRICS]
    template = request.match_info.route.resource.canonical  # type: ignore[union-attr]
    backend = app.get(keys.REDIS) if settings.response_cache_enabled else None
    match_info = request.match_info
    group_key, entry_key = rule.group_key(match_info), rule.entry_key(match_info)
    generation: bytes | None = None  # known only after a successful lookup: then we may store
    if backend is not None:
        try:
            generation, entry = await gate.call(lambda: _lookup(backend, group_key, entry_key))
        except Skipped:
            pass
        else:
            # With no-cache the entry is ignored; the lookup still reads the generation the new entry needs.
            if "no-cache" not in directives:
                if entry is not None:
                    metrics.add(metrics.cache_hits, template)
                    return _answer(request, entry.body, _cache_headers(entry.etag, entry.max_age, "HIT"))
                metrics.add(metrics.cache_misses, template)

    response = await handler(request)
    if response.status != 200 or not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body, ttl = response.body, rule.ttl(settings)
    etag = etag_of(body)
    if backend is not None and generation is not None:
        stored = encode_entry(generation, etag, body)
        with contextlib.suppress(Skipped):  # served uncached; the gate has logged the failure
            await gate.call(lambda: backend.client.set(entry_key, stored, ex=ttl))
    headers = _cache_headers(etag, ttl, "MISS")
    if if_none_match(request.headers.getall("If-None-Match", ()), etag):
        return web.Response(status=304, headers=headers)
    response.headers.update(headers)
    return response

"""Redis backend: one cluster-aware client per worker, per-node clients for INFO/CLUSTER, parsing, health check."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from refapi import errors, keys
from refapi.api.health import register_check
from refapi.backends.credentials import CredentialStore
from refapi.batching import Coalescer
from refapi.config import RedisNode, Settings
from refapi.resilience.guard import Guard, make_guard

log = logging.getLogger("refapi.redis")
T = TypeVar("T")

SERVICE = "redis"
# Keys of the response cache and the rate limiter; clients may neither touch nor see them (contract §5).
RESERVED_PREFIX = "refapi:"
MAX_SLOTS = 16384
_SCAN_COUNT = 1000
# A node probe stops this much before HEALTH_CHECK_TIMEOUT, so one black-holed node is reported as unhealthy
# in the body instead of the whole check timing out.
_PROBE_MARGIN = 0.25
# Commands whose raw text (or nested lists) the parsers below read; redis-py would otherwise reshape them.
_RAW_COMMANDS = ("INFO", "CLUSTER INFO", "CLUSTER NODES", "CLUSTER SLOTS")

AnyClient = Redis | RedisCluster
Command = tuple[Any, ...]  # ("GET", key), ...
# A string key's value and TTL read atomically in one command: redis-py spends several microseconds packing and
# parsing each command of a pipeline (cache GET +11 % measured), and two commands could straddle the expiry.
GET_WITH_TTL: Command = ("EVAL", "return {redis.call('GET', KEYS[1]), redis.call('TTL', KEYS[1])}", 1)


# ---- Parsing (pure functions over what the server sent; contract §2.6) ----------------------------------------

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+")


def _int_or_str(text: str) -> int | str:
    return int(text) if _INT.fullmatch(text) else text


def _number_or_str(text: str) -> int | float | str:
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _fields(text: str) -> dict[str, str]:
    """`key:value` lines; `# Section` headers and blank lines skipped; the value keeps any further colons."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if sep:
            out[name] = value
    return out


def parse_info_fields(text: str) -> dict[str, str]:
    """INFO as plain strings (the health check reads a few of them exactly as sent)."""
    return _fields(text)


def parse_info(text: str) -> dict[str, Any]:
    """INFO with numbers typed and `k=v,k=v` lists (db0, cmdstat_*, slave0, ...) turned into objects."""
    out: dict[str, Any] = {}
    for name, value in _fields(text).items():
        items = value.split(",")
        if "=" in value and all("=" in item for item in items):
            out[name] = {k: _number_or_str(v) for k, _, v in (item.partition("=") for item in items)}
        else:
            out[name] = _number_or_str(value)
    return out


def parse_cluster_info(text: str) -> dict[str, int | str]:
    return {name: _int_or_str(value) for name, value in _fields(text).items()}


def _address(field: str) -> tuple[str, int]:
    # ip:port@cport[,hostname]; IPv6 hosts contain colons, so split at the last one.
    address = field.split(",", 1)[0].split("@", 1)[0]
    host, _, port = address.rpartition(":")
    return host, int(port) if port.isdigit() else 0


def _role(flags: Sequence[str]) -> str:
    if "master" in flags:
        return "master"
    if "slave" in flags or "replica" in flags:
        return "replica"
    return "unknown"


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES lines → node objects, ordered by address for a stable answer."""
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags_field, master, ping_sent, pong_recv, epoch, link_state, *slots = parts
        host, port = _address(address)
        flags = flags_field.split(",")
        ranges = []
        for token in slots:
            if token.startswith("["):
                continue  # [slot->-id] / [slot-<-id]: a migration in progress, not an owned slot
            start, _, end = token.partition("-")
            ranges.append({"start": int(start), "end": int(end or start)})
        nodes.append(
            {
                "node_id": node_id,
                "host": host,
                "port": port,
                "role": _role(flags),
                "flags": flags,
                "master_id": None if master == "-" else master,
                "ping_sent": ping_sent,
                "pong_recv": pong_recv,
                "config_epoch": int(epoch) if _INT.fullmatch(epoch) else 0,
                "link_state": link_state,
                "slots_count": sum(r["end"] - r["start"] + 1 for r in ranges),
                "slot_ranges": ranges,
            }
        )
    return sorted(nodes, key=lambda node: (node["host"], node["port"], node["node_id"]))


def _slot_node(entry: Sequence[Any]) -> dict[str, Any]:
    # [host, port, node_id, (metadata)]; old servers omit the id.
    return {"host": str(entry[0]), "port": int(entry[1]), "node_id": str(entry[2]) if len(entry) > 2 else ""}


def parse_cluster_slots(raw: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """CLUSTER SLOTS replies ([start, end, master, *replicas]) → ranges ordered by start slot."""
    ranges = []
    for start, end, master, *replicas in raw:
        ranges.append(
            {
                "start_slot": int(start),
                "end_slot": int(end),
                "slots_count": int(end) - int(start) + 1,
                "master": _slot_node(master),
                "replicas": [_slot_node(replica) for replica in replicas],
            }
        )
    return sorted(ranges, key=lambda item: item["start_slot"])


# ---- Error mapping --------------------------------------------------------------------------------------------


def classify(exc: BaseException) -> str | None:
    """A redis-py exception → the 503 reason; None for anything that is not the backend failing."""
    if isinstance(exc, rexc.AuthenticationError):
        return "auth_failed"
    if isinstance(exc, rexc.NoPermissionError):
        return "denied"
    if isinstance(exc, rexc.TimeoutError):
        return "timeout"
    if isinstance(exc, rexc.ConnectionError | rexc.RedisClusterException | OSError):
        return "unreachable"
    if isinstance(exc, rexc.RedisError):
        return "error"
    return None


def _is_wrong_type(exc: BaseException) -> bool:
    return isinstance(exc, rexc.ResponseError) and str(exc).startswith("WRONGTYPE")


def _is_cluster_disabled(exc: BaseException) -> bool:
    return isinstance(exc, rexc.ResponseError) and "cluster support disabled" in str(exc)


# ---- The facade -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedValue:
    value: str
    ttl: int | None  # seconds left; None when the key never expires


class RedisBackend:
    """Everything refapi asks of Redis. API operations go through the guard; the health check does not."""

    def __init__(self, settings: Settings, credentials: CredentialStore, guard: Guard) -> None:
        self._settings = settings
        self._credentials = credentials
        self._guard = guard
        self._client, self._nodes = self._build()
        self._reads: Coalescer[Command, Any] = Coalescer(self._send_reads)

    @property
    def client(self) -> AnyClient:
        """The shared cluster-aware client (bytes replies), for the response cache's own fail-open calls."""
        return self._client

    @property
    def clustered(self) -> bool:
        return self._settings.redis_cluster

    def _build(self) -> tuple[AnyClient, dict[str, Redis]]:
        settings = self._settings
        password = self._credentials.get(SERVICE)["password"] or None
        common: dict[str, Any] = {
            "password": password,
            "socket_timeout": settings.backend_timeout,
            "socket_connect_timeout": settings.backend_timeout,
            # One quick retry replaces a pooled connection the server has closed; more would only stack timeouts.
            "retry": Retry(NoBackoff(), 1),
        }
        client: AnyClient
        if settings.redis_cluster:
            seeds = [ClusterNode(node.host, node.port) for node in settings.redis_nodes]
            client = RedisCluster(startup_nodes=seeds, **common)
        else:
            client = Redis(host=settings.redis_host, port=settings.redis_port, **common)
        nodes = {node.name: self._node_client(node, common) for node in settings.redis_nodes}
        return client, nodes

    @staticmethod
    def _node_client(node: RedisNode, common: dict[str, Any]) -> Redis:
        client = Redis(host=node.host, port=node.port, decode_responses=True, encoding_errors="replace", **common)
        for command in _RAW_COMMANDS:
            client.set_response_callback(command, lambda response, **_: response)
        return client

    async def start(self) -> None:
        """Check the connection once; a Redis that is down only logs a warning (commands connect on demand)."""
        target = (
            f"cluster seeded from {len(self._settings.redis_nodes)} node(s)"
            if self.clustered
            else f"{self._settings.redis_host}:{self._settings.redis_port}"
        )
        try:
            async with asyncio.timeout(self._settings.backend_timeout):
                if isinstance(self._client, RedisCluster):
                    await self._client.initialize()
                else:
                    await self._client.ping()
        except Exception as exc:
            log.warning(
                "redis (%s) is not reachable at startup (%s); will connect on first use", target, type(exc).__name__
            )
        else:
            log.info("redis connected (%s)", target)

    async def close(self) -> None:
        await _close_all([self._client, *self._nodes.values()])

    async def read(self, *command: Any) -> Any:
        """A read-only command, sent in one pipeline with the other reads of the same moment (refapi.batching).

        Identical reads of one batch go out once and share the reply, so a hot key costs one command per batch
        rather than one per request. An error reply comes back as its exception (WRONGTYPE, ...); a failure
        of the whole round trip (connection, timeout) raises for every read of the batch.
        """
        return await self._reads.submit(command)

    async def _send_reads(self, commands: list[Command]) -> list[Any]:
        unique = list(dict.fromkeys(commands))
        pipe = self._client.pipeline(transaction=False)
        for command in unique:
            pipe.execute_command(*command)
        replies = dict(zip(unique, await pipe.execute(raise_on_error=False), strict=True))
        return [replies[command] for command in commands]

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Guarded call; a rejected password re-reads the credentials and, if they changed, retries once."""

        async def attempt() -> T:
            try:
                return await fn()
            except rexc.AuthenticationError:
                if not await self._credentials.refresh(SERVICE):
                    raise
                log.warning("redis rejected its credentials; reconnecting with the ones re-read from Vault")
                old = [self._client, *self._nodes.values()]
                self._client, self._nodes = self._build()
                # In-flight calls on the old clients carry the rejected password: they fail either way.
                await _close_all(old)
                return await fn()

        return await self._guard.call(operation, attempt)

    # -- cache endpoints --

    async def get(self, key: str) -> CachedValue | None:
        async def run() -> CachedValue | None:
            reply = await self.read(*GET_WITH_TTL, key)
            if _is_wrong_type(reply):
                raise errors.Conflict("The key holds a value that is not a string", reason="wrong_type")
            if isinstance(reply, Exception):
                raise reply
            value, ttl = reply
            if value is None:
                return None
            return CachedValue(value.decode("utf-8", "replace"), None if ttl < 0 else ttl)

        return await self._call("get", run)

    async def set(self, key: str, value: str, ttl: int | None) -> None:
        # A plain SET (ex=None) also clears any expiry the key had.
        await self._call("set", lambda: self._client.set(key, value, ex=ttl))

    async def delete(self, key: str) -> bool:
        return bool(await self._call("delete", lambda: self._client.delete(key)))

    async def scan(self, pattern: str, limit: int) -> tuple[list[str], bool]:
        """Up to `limit` sorted keys matching `pattern` on every master, and whether more exist."""

        async def run() -> tuple[list[str], bool]:
            found: set[str] = set()
            client = self._client
            if isinstance(client, RedisCluster):
                await client.initialize()
                targets: list[ClusterNode | None] = list(client.get_primaries())
            else:
                targets = [None]
            for target in targets:
                async for raw in _scan(client, target, pattern):
                    key = raw.decode("utf-8", "replace")
                    if not key.startswith(RESERVED_PREFIX):
                        found.add(key)
                        if len(found) > limit:
                            return sorted(found)[:limit], True
            return sorted(found), False

        return await self._call("scan", run)

    # -- cluster endpoints --

    async def cluster_nodes(self) -> list[dict[str, Any]]:
        return parse_cluster_nodes(await self._cluster_command("CLUSTER NODES"))

    async def cluster_slots(self) -> list[dict[str, Any]]:
        return parse_cluster_slots(await self._cluster_command("CLUSTER SLOTS"))

    async def cluster_info(self) -> dict[str, int | str]:
        return parse_cluster_info(await self._cluster_command("CLUSTER INFO"))

    async def node_info(self, name: str) -> dict[str, Any]:
        """INFO all of a configured node; an unknown name is a 404 that never reaches Redis."""
        if name not in self._nodes:
            raise errors.NotFound(
                f"Redis node {name} is not configured",
                resource_type="redis_node",
                resource_id=name,
                details={"available_nodes": list(self._nodes)},
            )
        return parse_info(await self._call("info", lambda: _raw(self._nodes[name], "INFO", "all")))

    async def _cluster_command(self, command: str) -> Any:
        async def run() -> Any:
            last: Exception | None = None
            for client in self._nodes.values():  # configuration order: the first node that answers
                try:
                    return await _raw(client, command)
                except rexc.AuthenticationError:
                    raise
                except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                    last = exc
                except rexc.ResponseError as exc:
                    if _is_cluster_disabled(exc):
                        raise errors.ServiceUnavailable(SERVICE, "cluster_disabled") from None
                    raise
            assert last is not None  # REDIS_NODES is never empty
            raise last

        return await self._call("cluster", run)

    # -- health --

    async def health(self) -> dict[str, Any]:
        """Contract §2.2: every configured node probed concurrently, reported in configuration order."""
        budget = max(self._settings.health_check_timeout - _PROBE_MARGIN, _PROBE_MARGIN)
        nodes = self._settings.redis_nodes
        probes = await asyncio.gather(*(self._probe(node, self._nodes[node.name], budget) for node in nodes))
        healthy = [probe for probe in probes if probe[0]["status"] == "healthy"]
        cluster_enabled, cluster_state = (healthy[0][1], healthy[0][2]) if healthy else (False, "unknown")
        return {
            "status": "healthy" if len(healthy) == len(probes) else "unhealthy",
            "cluster_enabled": cluster_enabled,
            "cluster_state": cluster_state,
            "nodes": [probe[0] for probe in probes],
            "total_nodes": len(probes),
        }

    @staticmethod
    async def _probe(node: RedisNode, client: Redis, budget: float) -> tuple[dict[str, Any], bool, str]:
        try:
            async with asyncio.timeout(budget):
                await client.ping()
                info = parse_info_fields(await _raw(client, "INFO"))
                cluster_enabled = info.get("cluster_enabled") == "1"
                state = "unknown"
                if cluster_enabled:
                    state = str(parse_cluster_info(await _raw(client, "CLUSTER INFO")).get("cluster_state", "unknown"))
            body = {
                "host": node.host,
                "port": node.port,
                "status": "healthy",
                "version": info.get("redis_version", ""),
                "role": info.get("role", ""),
                "connected_clients": int(info.get("connected_clients", "0")),
                "used_memory_human": info.get("used_memory_human", ""),
            }
            return body, cluster_enabled, state
        except Exception as exc:
            log.warning("redis node %s failed its health probe (%s)", node.name, type(exc).__name__)
            unhealthy = {"host": node.host, "port": node.port, "status": "unhealthy", "error": "Node connection failed"}
            return unhealthy, False, "unknown"


async def _raw(client: Redis, *command: str) -> Any:
    """A command on a per-node client, whose callbacks for the parsed commands hand back the reply as sent."""
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


async def _scan(client: AnyClient, target: ClusterNode | None, pattern: str) -> AsyncIterator[bytes]:
    """SCAN MATCH over one server (standalone) or one primary (cluster); never KEYS."""
    cursor = 0
    while True:
        reply: Any
        if isinstance(client, RedisCluster):
            # With target_nodes the cluster client answers ({node name: cursor}, keys).
            reply = await client.scan(cursor, match=pattern, count=_SCAN_COUNT, target_nodes=target)
            cursors, page = reply
            cursor = cursors[target.name] if target is not None else 0
        else:
            reply = await client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            cursor, page = reply
        for key in page:
            yield key
        if cursor == 0:
            return


async def _close_all(clients: Sequence[AnyClient]) -> None:
    results = await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("closing a redis client failed (%s)", type(result).__name__)


def setup(app: web.Application) -> None:
    """Register the cleanup context, guard and health check of this backend."""
    settings = app[keys.SETTINGS]
    guard = make_guard(app, SERVICE, classify)

    async def check() -> dict[str, Any]:
        backend: RedisBackend = app[keys.REDIS]  # before startup there is none: the check reports unhealthy
        return await backend.health()

    register_check(app, SERVICE, check)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        # The Vault backend (set up first) provides the store; without it, the environment and defaults apply.
        credentials = app.get(keys.CREDENTIALS) or CredentialStore(settings, None)
        backend = RedisBackend(settings, credentials, guard)
        await backend.start()
        app[keys.REDIS] = backend
        try:
            yield
        finally:
            await backend.close()

    app.cleanup_ctx.append(redis_ctx)

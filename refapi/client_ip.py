"""The client address (contract §3.3): the peer, or X-Forwarded-For read right to left when the peer is trusted."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from refapi import keys

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request: web.Request, trusted: Sequence[Network]) -> str:
    """Resolve once per request and remember it: the limiter and the access line both ask."""
    cached = request.get(keys.CLIENT_IP)
    if cached is None:
        cached = request[keys.CLIENT_IP] = _resolve(request, trusted)
    return cached


def _resolve(request: web.Request, trusted: Sequence[Network]) -> str:
    peer = request.remote or "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    header = ",".join(request.headers.getall("X-Forwarded-For", ()))
    if not header:
        return peer
    for entry in reversed(header.split(",")):
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            return peer  # a malformed chain cannot be trusted at all
        if not any(address in network for network in trusted):
            return str(address)
    return peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)

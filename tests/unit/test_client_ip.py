"""Client address: the peer, unless a trusted proxy forwarded the request (X-Forwarded-For, right to left)."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp.test_utils import make_mocked_request

from refapi.client_ip import client_ip

TRUSTED = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


def request_from(peer: str, forwarded: str | None):  # type: ignore[no-untyped-def]
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    request = make_mocked_request("GET", "/", headers=headers)
    request._transport_peername = (peer, 12345)  # type: ignore[attr-defined]
    return request


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: the header is ignored
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # trusted peer: the forwarded client
        ("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3", "198.51.100.1"),  # skip trusted hops, right to left
        ("127.0.0.1", "10.0.0.1, 10.0.0.2", "127.0.0.1"),  # everything trusted: the peer
        ("127.0.0.1", "198.51.100.1, garbage", "127.0.0.1"),  # malformed: the peer
        ("127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_resolution(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_ip(request_from(peer, forwarded), TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_ip(request_from("127.0.0.1", "198.51.100.1"), ()) == "127.0.0.1"


async def test_limits_apply_to_the_forwarded_client(make_client) -> None:  # type: ignore[no-untyped-def]
    client = await make_client(rate_limit_general=1, trusted_proxies=TRUSTED)
    first = await client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})
    other = await client.get("/", headers={"X-Forwarded-For": "198.51.100.8"})
    again = await client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})
    assert [first.status, other.status, again.status] == [200, 200, 429]

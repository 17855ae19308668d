"""Parsers of INFO / CLUSTER INFO / CLUSTER NODES / CLUSTER SLOTS replies (contract §2.6), on captured text."""
# ruff: noqa: E501 - captured server output stays verbatim, one node per line

from __future__ import annotations

import pytest
from redis import exceptions as rexc

from refapi.api.cluster import slot_summary
from refapi.backends.redis import classify, parse_cluster_info, parse_cluster_nodes, parse_cluster_slots, parse_info

# Redis 7.0 with a replica, a node mid-migration (both directions), a hostname, a failed node without
# address, a single-slot owner and an IPv6 node; one line per node, in no particular order.
CLUSTER_NODES = """\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,cache-4.local slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922 [10923->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10924-16383 10923 [5460-<-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 replica 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
a1b2c3d4e5f60718293a4b5c6d7e8f9012345678 :0@0 fail,noaddr - 1426238310000 1426238309000 0 disconnected
fe80aa0000000000000000000000000000000001 ::1:30006@31006 handshake - 0 0 0 connected
"""


def by_port(nodes: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {node["port"]: node for node in nodes}


def test_cluster_nodes_masters_and_slots() -> None:
    nodes = by_port(parse_cluster_nodes(CLUSTER_NODES))
    first = nodes[30001]
    assert first == {
        "node_id": "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca",
        "host": "127.0.0.1",
        "port": 30001,
        "role": "master",
        "flags": ["myself", "master"],
        "master_id": None,
        "ping_sent": "0",
        "pong_recv": "0",
        "config_epoch": 1,
        "link_state": "connected",
        "slots_count": 5461,
        "slot_ranges": [{"start": 0, "end": 5460}],
    }
    # Migration tokens are skipped; a single slot is a range of one.
    assert nodes[30002]["slot_ranges"] == [{"start": 5461, "end": 10922}]
    assert nodes[30003]["slot_ranges"] == [{"start": 10924, "end": 16383}, {"start": 10923, "end": 10923}]
    assert nodes[30003]["slots_count"] == 5461


def test_cluster_nodes_replicas_hostnames_and_odd_addresses() -> None:
    nodes = by_port(parse_cluster_nodes(CLUSTER_NODES))
    replica = nodes[30004]
    assert replica["host"] == "127.0.0.1" and replica["role"] == "replica" and replica["flags"] == ["slave"]
    assert replica["master_id"] == "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
    assert replica["slots_count"] == 0 and replica["slot_ranges"] == []
    assert nodes[30005]["role"] == "replica"
    assert nodes[0]["host"] == "" and nodes[0]["role"] == "unknown" and nodes[0]["link_state"] == "disconnected"
    assert nodes[0]["flags"] == ["fail", "noaddr"] and nodes[0]["ping_sent"] == "1426238310000"
    assert nodes[30006]["host"] == "::1" and nodes[30006]["role"] == "unknown"


def test_cluster_nodes_are_ordered_by_address_and_blank_lines_ignored() -> None:
    nodes = parse_cluster_nodes("\n" + CLUSTER_NODES + "\n")
    assert len(nodes) == 7
    assert [(n["host"], n["port"]) for n in nodes] == sorted((n["host"], n["port"]) for n in nodes)


# redis-py hands CLUSTER SLOTS back as nested lists; Redis 7 adds a metadata map to each node.
CLUSTER_SLOTS = [
    [10923, 16383, ["127.0.0.1", 30003, "292f8b36", {}]],
    [0, 5460, ["127.0.0.1", 30001, "e7d1eecc", {}], ["127.0.0.1", 30004, "07c37dfe", {"hostname": "cache-4"}]],
    [5461, 10922, ["127.0.0.1", 30002, "67ed2db8"]],
]


def test_cluster_slots_ranges_sorted_with_replicas() -> None:
    ranges = parse_cluster_slots(CLUSTER_SLOTS)
    assert [r["start_slot"] for r in ranges] == [0, 5461, 10923]
    assert ranges[0] == {
        "start_slot": 0,
        "end_slot": 5460,
        "slots_count": 5461,
        "master": {"host": "127.0.0.1", "port": 30001, "node_id": "e7d1eecc"},
        "replicas": [{"host": "127.0.0.1", "port": 30004, "node_id": "07c37dfe"}],
    }
    assert ranges[1]["replicas"] == []


def test_slot_summary_coverage() -> None:
    full = slot_summary(parse_cluster_slots(CLUSTER_SLOTS))
    assert full["total_slots"] == 16384 and full["max_slots"] == 16384 and full["coverage_percentage"] == 100.0
    partial = slot_summary(parse_cluster_slots(CLUSTER_SLOTS[:1]))
    assert partial["total_slots"] == 5461 and partial["coverage_percentage"] == 33.33
    assert slot_summary([])["coverage_percentage"] == 0.0


def test_cluster_info_ints_when_they_parse() -> None:
    info = parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_my_epoch:-1\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_assigned": 16384, "cluster_my_epoch": -1}


INFO = """\
# Server\r
redis_version:7.0.15\r
redis_git_sha1:00000000\r
os:Linux 6.1.0 x86_64\r
executable:/usr/bin/redis-server\r
config_file:\r
\r
# Memory\r
used_memory:1848760\r
used_memory_human:1.76M\r
mem_fragmentation_ratio:4.17\r
\r
# Replication\r
role:master\r
slave0:ip=::1,port=6380,state=online,offset=1234,lag=0\r
\r
# Commandstats\r
cmdstat_cluster|info:calls=6,usec=188,usec_per_call=31.33,rejected_calls=0,failed_calls=0\r
\r
# Keyspace\r
db0:keys=3,expires=1,avg_ttl=92875\r
"""


def test_info_types_numbers_and_objects() -> None:
    info = parse_info(INFO)
    assert info["redis_version"] == "7.0.15" and info["os"] == "Linux 6.1.0 x86_64"
    assert info["executable"] == "/usr/bin/redis-server" and info["config_file"] == ""
    assert info["redis_git_sha1"] == 0  # digits are a number, as the contract types them
    assert info["used_memory"] == 1848760 and info["used_memory_human"] == "1.76M"
    assert info["mem_fragmentation_ratio"] == 4.17
    assert info["db0"] == {"keys": 3, "expires": 1, "avg_ttl": 92875}
    assert info["slave0"] == {"ip": "::1", "port": 6380, "state": "online", "offset": 1234, "lag": 0}
    assert info["cmdstat_cluster|info"]["usec_per_call"] == 31.33
    assert "# Server" not in info and "" not in info


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (rexc.AuthenticationError("WRONGPASS"), "auth_failed"),
        (rexc.NoPermissionError("NOPERM"), "denied"),
        (rexc.TimeoutError("Timeout reading"), "timeout"),
        (rexc.ConnectionError("refused"), "unreachable"),
        (rexc.RedisClusterException("Redis Cluster cannot be connected"), "unreachable"),
        (ConnectionRefusedError(), "unreachable"),
        (rexc.ResponseError("OOM command not allowed"), "error"),
        (rexc.ClusterDownError("CLUSTERDOWN"), "error"),
        (ValueError("a bug"), None),
    ],
)
def test_classify(exc: BaseException, reason: str | None) -> None:
    assert classify(exc) == reason

"""Redis Cluster views (contract §2.6): CLUSTER NODES / SLOTS / INFO and INFO of one configured node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from refapi import keys
from refapi.backends.redis import MAX_SLOTS
from refapi.openapi.fields import Str
from refapi.openapi.operation import Input, json_response, operation

routes = web.RouteTableDef()

TAGS = ("redis-cluster",)


class SlotRange(Schema):
    start = fields.Integer(required=True)
    end = fields.Integer(required=True)


class ClusterNodeView(Schema):
    node_id = fields.String(required=True)
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    role = fields.String(required=True, metadata={"enum": ["master", "replica", "unknown"]})
    flags = fields.List(fields.String(), required=True)
    master_id = fields.String(required=True, allow_none=True)
    ping_sent = fields.String(required=True)
    pong_recv = fields.String(required=True)
    config_epoch = fields.Integer(required=True)
    link_state = fields.String(required=True)
    slots_count = fields.Integer(required=True)
    slot_ranges = fields.List(fields.Nested(SlotRange), required=True)


class ClusterNodes(Schema):
    status = fields.String(required=True, metadata={"enum": ["success"]})
    total_nodes = fields.Integer(required=True)
    nodes = fields.List(fields.Nested(ClusterNodeView), required=True)


class SlotNode(Schema):
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    node_id = fields.String(required=True)


class SlotDistribution(Schema):
    start_slot = fields.Integer(required=True)
    end_slot = fields.Integer(required=True)
    slots_count = fields.Integer(required=True)
    master = fields.Nested(SlotNode, required=True)
    replicas = fields.List(fields.Nested(SlotNode), required=True)


class ClusterSlots(Schema):
    status = fields.String(required=True, metadata={"enum": ["success"]})
    total_slots = fields.Integer(required=True)
    max_slots = fields.Integer(required=True, metadata={"enum": [MAX_SLOTS]})
    coverage_percentage = fields.Float(required=True)
    slot_distribution = fields.List(fields.Nested(SlotDistribution), required=True)


class ClusterInfo(Schema):
    status = fields.String(required=True, metadata={"enum": ["success"]})
    cluster_info = fields.Dict(
        keys=fields.String(),
        required=True,
        metadata={"description": "CLUSTER INFO fields; integers typed, the rest strings"},
    )


class NodePath(Schema):
    node_name = Str(required=True, metadata={"description": "A name from REDIS_NODES (e.g. redis-1)"})


class NodeInfo(Schema):
    status = fields.String(required=True, metadata={"enum": ["success"]})
    node = fields.String(required=True)
    info = fields.Dict(
        keys=fields.String(), required=True, metadata={"description": "INFO all; numbers typed, k=v lists as objects"}
    )


def slot_summary(ranges: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The slots body: total assigned slots and their share of the 16384, to 2 decimals."""
    total = sum(item["slots_count"] for item in ranges)
    return {
        "status": "success",
        "total_slots": total,
        "max_slots": MAX_SLOTS,
        "coverage_percentage": round(total / MAX_SLOTS * 100, 2),
        "slot_distribution": list(ranges),
    }


@routes.get("/redis/cluster/nodes")
@operation(summary="Cluster nodes (CLUSTER NODES)", tags=TAGS, responses={200: ClusterNodes, 503: None})
async def cluster_nodes(request: web.Request, inp: Input) -> web.Response:
    nodes = await request.app[keys.REDIS].cluster_nodes()
    return json_response({"status": "success", "total_nodes": len(nodes), "nodes": nodes})


@routes.get("/redis/cluster/slots")
@operation(summary="Slot distribution (CLUSTER SLOTS)", tags=TAGS, responses={200: ClusterSlots, 503: None})
async def cluster_slots(request: web.Request, inp: Input) -> web.Response:
    return json_response(slot_summary(await request.app[keys.REDIS].cluster_slots()))


@routes.get("/redis/cluster/info")
@operation(summary="Cluster state (CLUSTER INFO)", tags=TAGS, responses={200: ClusterInfo, 503: None})
async def cluster_info(request: web.Request, inp: Input) -> web.Response:
    return json_response({"status": "success", "cluster_info": await request.app[keys.REDIS].cluster_info()})


@routes.get("/redis/nodes/{node_name}/info")
@operation(
    summary="INFO all of one configured node", tags=TAGS, path=NodePath, responses={200: NodeInfo, 404: None, 503: None}
)
async def node_info(request: web.Request, inp: Input) -> web.Response:
    name = inp.path["node_name"]
    info = await request.app[keys.REDIS].node_info(name)
    return json_response({"status": "success", "node": name, "info": info})

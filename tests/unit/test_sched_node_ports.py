"""NodePorts: hostPort conflicts by protocol, port and host IP (0.0.0.0 overlaps everything)."""
from __future__ import annotations

import random
from typing import Any

import pytest

from nanokube.scheduler.framework import NodeInfo, Snapshot, schedule, unschedulable_message
from nanokube.scheduler.plugins import node_ports

REASON = "node(s) didn't have free ports for the requested pod ports"


def port(host_port: int, proto: str | None = None, ip: str | None = None, container_port: int = 80) -> dict[str, Any]:
    p: dict[str, Any] = {"containerPort": container_port, "hostPort": host_port}
    if proto:
        p["protocol"] = proto
    if ip:
        p["hostIP"] = ip
    return p


def pod(name: str, *ports: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if ports:
        c["ports"] = list(ports)
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [c]}}


def node_with(*placed: dict[str, Any], name: str = "n1") -> NodeInfo:
    ni = NodeInfo({"metadata": {"name": name, "labels": {}},
                   "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})
    for p in placed:
        ni.add_pod(p)
    return ni


@pytest.mark.parametrize("used, want, fits", [
    ([], [port(8080)], True),
    ([port(8080)], [], True),                                        # the pod wants no host port
    ([{"containerPort": 80}], [{"containerPort": 80}], True),        # container ports alone never clash
    ([port(8080)], [port(8080)], False),
    ([port(8080)], [port(8081)], True),
    ([port(8080, "TCP")], [port(8080, "UDP")], True),                # different protocol
    ([port(53, "UDP")], [port(53, "UDP")], False),
    ([port(8080)], [port(8080, "TCP")], False),                      # protocol defaults to TCP
    ([port(8080, ip="10.0.0.1")], [port(8080, ip="10.0.0.2")], True),  # different specific IPs
    ([port(8080, ip="10.0.0.1")], [port(8080, ip="10.0.0.1")], False),
    ([port(8080, ip="10.0.0.1")], [port(8080)], False),              # wanted 0.0.0.0 overlaps any IP
    ([port(8080)], [port(8080, ip="10.0.0.1")], False),              # used 0.0.0.0 overlaps any IP
    ([port(8080, ip="0.0.0.0")], [port(8080, ip="10.0.0.1")], False),
    ([port(8080, "UDP", "10.0.0.1")], [port(8080, "TCP")], True),
    ([port(8080), port(9090)], [port(7070), port(9090)], False),     # any one wanted port clashing
])
def test_filter(used: list[dict[str, Any]], want: list[dict[str, Any]], fits: bool) -> None:
    ni = node_with(pod("old", *used))
    p = pod("new", *want)
    got = node_ports.filter(p, ni, node_ports.pre_filter(p, None))
    assert got == (None if fits else REASON)
    assert node_ports.filter(p, ni, None) == got


def test_port_freed_when_pod_removed() -> None:
    old = pod("old", port(8080))
    ni = node_with(old)
    p = pod("new", port(8080))
    assert node_ports.filter(p, ni, None) == REASON
    ni.remove_pod(old)
    assert node_ports.filter(p, ni, None) is None


def test_schedule_goes_to_the_free_node() -> None:
    busy, free = node_with(pod("old", port(80)), name="a"), node_with(name="b")
    p = pod("new", port(80))
    assert schedule(p, Snapshot([busy, free]), [node_ports], random.Random(0)).node == "b"
    r = schedule(p, Snapshot([busy, node_with(pod("o2", port(80)), name="c")]), [node_ports], random.Random(0))
    assert r.node is None and unschedulable_message(2, r.reasons) == f"0/2 nodes are available: 2 {REASON}."

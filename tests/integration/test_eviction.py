"""Node allocatable and memory-pressure eviction, with the real kubectl on a 1-node cluster
whose hard threshold is set so that ~250Mi of pod memory is the limit: a BestEffort pod
holding ~350Mi past it is evicted (Failed/Evicted, upstream's message, an
Evicted event), the node reports MemoryPressure and is tainted meanwhile, a Burstable pod
within its request keeps running, and the pressure clears once the memory is back."""
from __future__ import annotations

import re
import textwrap
import time

import psutil
import pytest

from .conftest import start_cluster, stop_cluster

HEADROOM_KI = 250 * 1024   # pods on the node may use this much before the threshold is crossed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cap_ki = psutil.virtual_memory().total // 1024          # a simulated node's memory capacity
    c = start_cluster(tmp_path_factory, nodes=1, extra=(
        "--eviction-hard", f"memory.available<{cap_ki - HEADROOM_KI}Ki",
        "--eviction-pressure-transition-period", "5", "--system-reserved", "cpu=100m"))
    yield c
    stop_cluster(c)


CALM = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: calm}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: c
        image: busybox
        command: [sleep, '3600']
        resources: {requests: {memory: 20Mi}}
""")

HOG = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: hog}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: hog
        image: busybox
        command: [sh, -c, 'x=$(head -c 350m /dev/zero | tr "\\0" a); sleep 3600; echo ${#x}']
""")


def test_allocatable_is_capacity_minus_reservations_and_threshold(cluster):
    st = cluster.kjson("get", "node", "node1")["status"]
    cap_ki = int(st["capacity"]["memory"].removesuffix("Ki"))
    assert st["allocatable"]["memory"] == f"{HEADROOM_KI}Ki" and cap_ki > HEADROOM_KI
    cpu = st["capacity"]["cpu"]
    assert st["allocatable"]["cpu"] == f"{int(cpu) * 1000 - 100}m"


def test_best_effort_hog_is_evicted_under_memory_pressure(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=CALM)
    c.kubectl("wait", "--for=condition=Ready", "pod/calm", "--timeout=60s")
    c.kubectl("apply", "-f", "-", input=HOG)
    seen = {"pressure": False, "taint": False}

    def evicted():
        node = c.kjson("get", "node", "node1")
        conds = {x["type"]: x["status"] for x in node["status"]["conditions"]}
        seen["pressure"] |= conds.get("MemoryPressure") == "True"
        seen["taint"] |= any(t["key"] == "node.kubernetes.io/memory-pressure" and t["effect"] == "NoSchedule"
                             for t in node["spec"].get("taints") or [])
        st = c.kjson("get", "pod", "hog")["status"]
        return st.get("phase") == "Failed" and st.get("reason") == "Evicted" and st
    try:
        st = c.wait_for("the hog to be evicted", evicted, timeout=90, interval=0.3)
        assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: ")
        assert "Container hog was using" in st["message"] and "request is 0" in st["message"]
        assert any(x["type"] == "DisruptionTarget" and x["reason"] == "TerminationByKubelet" for x in st["conditions"])
        ev = c.kjson("get", "events", "--field-selector", "involvedObject.name=hog,reason=Evicted")["items"]
        assert ev and ev[0]["type"] == "Warning" and ev[0]["message"] == st["message"]
        desc = c.kubectl("describe", "pod", "hog").stdout
        assert re.search(r"\nStatus:\s+Failed\n", desc) and re.search(r"\nReason:\s+Evicted\n", desc), desc
        assert re.search(r"\nMessage:\s+The node was low on resource: memory\.", desc), desc
        # the node said so while it lasted (it lasts at least the 5 s transition period)
        deadline = time.monotonic() + 15
        while not (seen["pressure"] and seen["taint"]) and time.monotonic() < deadline:
            evicted()
            time.sleep(0.3)
        assert seen["pressure"] and seen["taint"]
        # the Burstable pod within its request was not touched
        calm = c.kjson("get", "pod", "calm")["status"]
        assert calm["phase"] == "Running" and calm["containerStatuses"][0]["restartCount"] == 0
        # memory is back: the pressure and its taint go away
        def relieved():
            node = c.kjson("get", "node", "node1")
            conds = {x["type"]: x["status"] for x in node["status"]["conditions"]}
            return conds.get("MemoryPressure") == "False" and not any(
                t["key"] == "node.kubernetes.io/memory-pressure" for t in node["spec"].get("taints") or [])
        c.wait_for("the memory pressure to clear", relieved, timeout=60)
    finally:
        c.kubectl("delete", "pod", "hog", "calm", "--wait=false", "--ignore-not-found")

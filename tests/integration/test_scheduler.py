"""The scheduler as a tutorial drives it, with the real kubectl on a 3-node cluster:
nodeSelector and `kubectl label node`, required node affinity, pod anti-affinity spreading
replicas (and leaving one Pending), topology spread, taints and tolerations, resource
requests (also through init containers), hostPort conflicts, schedulerName, and
PriorityClass preemption. Pending pods must say why, in upstream's words."""
from __future__ import annotations

import json
import textwrap

import pytest

from .conftest import start_cluster, stop_cluster

NODES = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=3)
    yield c
    stop_cluster(c)


def pod_yaml(name: str, *, spec_extra: str = "", requests: str = "", labels: str = "", init: str = "") -> str:
    res = f"\n    resources: {{requests: {requests}}}" if requests else ""
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}{', labels: ' + labels if labels else ''}}}
        spec:
          terminationGracePeriodSeconds: 0
        """) + textwrap.indent(textwrap.dedent(spec_extra), "  ") + (init and textwrap.indent(textwrap.dedent(init), "  ")) + \
        f"  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']{res}\n"


def scheduled_condition(c, name: str) -> dict:
    pod = c.kjson("get", "pod", name)
    return next((x for x in pod["status"].get("conditions") or [] if x["type"] == "PodScheduled"), {})


def wait_pending(c, name: str, contains: str) -> str:
    def check():
        cond = scheduled_condition(c, name)
        return cond.get("status") == "False" and contains in cond.get("message", "") and cond["message"]
    msg = c.wait_for(f"{name} Pending with {contains!r}", check, timeout=30)
    assert c.kjson("get", "pod", name)["spec"].get("nodeName") is None
    return msg


def wait_node(c, name: str) -> str:
    return c.wait_for(f"{name} scheduled", lambda: c.kjson("get", "pod", name)["spec"].get("nodeName"), timeout=30)


def events_for(c, name: str, reason: str) -> list[str]:
    ev = c.kjson("get", "events", "--field-selector", f"involvedObject.name={name},reason={reason}")
    return [e["message"] for e in ev["items"]]


def delete(c, *names: str) -> None:
    c.kubectl("delete", "pod", *names, "--wait=false", "--ignore-not-found")


def node_cpu_milli(c) -> int:
    alloc = c.kjson("get", "node", "node1")["status"]["allocatable"]["cpu"]
    return int(alloc[:-1]) if alloc.endswith("m") else int(alloc) * 1000


def test_node_selector_waits_for_kubectl_label(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=pod_yaml("sel", spec_extra="nodeSelector: {disktype: ssd}\n"))
    msg = wait_pending(c, "sel", "didn't match")
    assert msg == ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
                   "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    assert msg in events_for(c, "sel", "FailedScheduling")
    # kubectl describe shows it as upstream does
    assert "FailedScheduling" in c.kubectl("describe", "pod", "sel").stdout
    c.kubectl("label", "node", "node2", "disktype=ssd")
    try:
        assert wait_node(c, "sel") == "node2"
        assert any("Successfully assigned default/sel to node2" in m for m in events_for(c, "sel", "Scheduled"))
        c.kubectl("wait", "--for=condition=Ready", "pod/sel", "--timeout=60s")
    finally:
        c.kubectl("label", "node", "node2", "disktype-")
        delete(c, "sel")


def test_required_node_affinity(cluster):
    c = cluster
    aff = """\
        affinity:
          nodeAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              nodeSelectorTerms:
              - matchExpressions:
                - {key: kubernetes.io/hostname, operator: In, values: [node3]}
            preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 50
              preference:
                matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node1]}]
        """
    c.kubectl("apply", "-f", "-", input=pod_yaml("aff", spec_extra=aff))
    nope = """\
        affinity:
          nodeAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              nodeSelectorTerms:
              - matchExpressions:
                - {key: kubernetes.io/hostname, operator: NotIn, values: [node1, node2, node3]}
        """
    c.kubectl("apply", "-f", "-", input=pod_yaml("noaff", spec_extra=nope))
    try:
        assert wait_node(c, "aff") == "node3"
        wait_pending(c, "noaff", "3 node(s) didn't match Pod's node affinity/selector")
    finally:
        delete(c, "aff", "noaff")


ANTI = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: spread}
    spec:
      replicas: 4
      selector: {matchLabels: {app: spread}}
      template:
        metadata: {labels: {app: spread}}
        spec:
          terminationGracePeriodSeconds: 0
          affinity:
            podAntiAffinity:
              requiredDuringSchedulingIgnoredDuringExecution:
              - labelSelector: {matchLabels: {app: spread}}
                topologyKey: kubernetes.io/hostname
          containers:
          - {name: c, image: busybox, command: [sleep, '3600']}
""")


def test_anti_affinity_spreads_three_and_leaves_the_fourth_pending(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=ANTI)
    try:
        def placed():
            pods = c.kjson("get", "pods", "-l", "app=spread")["items"]
            on = [p["spec"].get("nodeName") for p in pods]
            return len(pods) == 4 and sum(1 for n in on if n) == 3 and pods
        pods = c.wait_for("3 of 4 replicas placed", placed, timeout=60)
        assert sorted(p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")) == NODES
        pending = next(p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName"))
        msg = wait_pending(c, pending, "anti-affinity")
        assert msg.startswith("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
        # scaling down frees a node: the pending replica's peers shrink to 2 ... and 3 fit again
        c.kubectl("scale", "deploy/spread", "--replicas=3")
        c.wait_for("3 replicas, all placed", lambda: (lambda ps: len(ps) == 3 and all(p["spec"].get("nodeName") for p in ps))(
            [p for p in c.kjson("get", "pods", "-l", "app=spread")["items"] if not p["metadata"].get("deletionTimestamp")]),
            timeout=60)
    finally:
        c.kubectl("delete", "deploy", "spread", "--wait=false")


SPREAD = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: even}
    spec:
      replicas: 6
      selector: {matchLabels: {app: even}}
      template:
        metadata: {labels: {app: even}}
        spec:
          terminationGracePeriodSeconds: 0
          topologySpreadConstraints:
          - maxSkew: 1
            topologyKey: kubernetes.io/hostname
            whenUnsatisfiable: DoNotSchedule
            labelSelector: {matchLabels: {app: even}}
          containers:
          - {name: c, image: busybox, command: [sleep, '3600']}
""")


def test_topology_spread_places_two_per_node(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=SPREAD)
    try:
        def placed():
            on = [p["spec"].get("nodeName") for p in c.kjson("get", "pods", "-l", "app=even")["items"]]
            return len(on) == 6 and all(on) and on
        on = c.wait_for("6 replicas placed", placed, timeout=60)
        assert sorted(on) == sorted(NODES * 2)
    finally:
        c.kubectl("delete", "deploy", "even", "--wait=false")


def test_tainted_node_takes_only_tolerating_pods(cluster):
    c = cluster
    c.kubectl("taint", "node", "node1", "dedicated=db:NoSchedule")
    try:
        pin = "nodeSelector: {kubernetes.io/hostname: node1}\n"
        c.kubectl("apply", "-f", "-", input=pod_yaml("intolerant", spec_extra=pin))
        tol = pin + "tolerations:\n- {key: dedicated, operator: Equal, value: db, effect: NoSchedule}\n"
        c.kubectl("apply", "-f", "-", input=pod_yaml("tolerant", spec_extra=tol))
        msg = wait_pending(c, "intolerant", "untolerated taint")
        assert msg.startswith("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, "
                              "2 node(s) didn't match Pod's node affinity/selector.")
        assert wait_node(c, "tolerant") == "node1"
        for i in range(4):
            c.kubectl("apply", "-f", "-", input=pod_yaml(f"free{i}"))
        for i in range(4):
            assert wait_node(c, f"free{i}") in ("node2", "node3")
        c.kubectl("taint", "node", "node1", "dedicated-")
        assert wait_node(c, "intolerant") == "node1"   # untainting moves it back to the queue
    finally:
        c.kubectl("taint", "node", "node1", "dedicated-", check=False)
        delete(c, "intolerant", "tolerant", *(f"free{i}" for i in range(4)))


def test_requests_beyond_every_node_stay_pending_with_insufficient_cpu(cluster):
    c = cluster
    cpu = node_cpu_milli(c)
    c.kubectl("apply", "-f", "-", input=pod_yaml("huge", requests=f"{{cpu: {cpu + 1000}m}}"))
    # the init-container rule: the effective request is max(largest init, sum of apps)
    big_init = f"initContainers:\n- {{name: i, image: busybox, command: ['true'], resources: {{requests: {{cpu: {cpu + 1}m}}}}}}\n"
    c.kubectl("apply", "-f", "-", input=pod_yaml("bigInit".lower(), init=big_init, requests="{cpu: 10m}"))
    ok_init = f"initContainers:\n- {{name: i, image: busybox, command: ['true'], resources: {{requests: {{cpu: {cpu // 2}m}}}}}}\n"
    c.kubectl("apply", "-f", "-", input=pod_yaml("okinit", init=ok_init, requests="{cpu: 10m}"))
    try:
        msg = wait_pending(c, "huge", "Insufficient cpu")
        # more than a node has at all: evicting pods cannot help (upstream since 1.28)
        assert msg == ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
                       "3 Preemption is not helpful for scheduling.")
        wait_pending(c, "biginit", "3 Insufficient cpu")
        assert wait_node(c, "okinit") in NODES
        assert "Insufficient cpu" in c.kubectl("describe", "pod", "huge").stdout
    finally:
        delete(c, "huge", "biginit", "okinit")


def test_host_port_conflict_and_the_host_port_answering(cluster):
    c = cluster
    port = "  containers:\n  - name: c\n    image: busybox\n" \
           "    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']\n" \
           "    ports: [{containerPort: 8080, hostPort: 18080}]\n"
    for name in ("hp1", "hp2"):
        c.kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n"
                  f"  terminationGracePeriodSeconds: 0\n  nodeSelector: {{kubernetes.io/hostname: node2}}\n" + port)
    try:
        assert wait_node(c, "hp1") == "node2"
        wait_pending(c, "hp2", "1 node(s) didn't have free ports for the requested pod ports")
        # the hostPort answers on the node's address (DNAT to the pod, like the portmap plugin)
        c.kubectl("wait", "--for=condition=Ready", "pod/hp1", "--timeout=60s")
        node_ip = next(a["address"] for a in c.kjson("get", "node", "node2")["status"]["addresses"]
                       if a["type"] == "InternalIP")
        assert c.wait_for("node2:18080 to answer", lambda: c.wget(f"http://{node_ip}:18080/"), timeout=30).strip() == "hp1"
        delete(c, "hp1")
        assert wait_node(c, "hp2") == "node2"
        c.kubectl("wait", "--for=condition=Ready", "pod/hp2", "--timeout=60s")
        assert c.wait_for("the port to follow the new pod",
                          lambda: (c.wget(f"http://{node_ip}:18080/") or "").strip() == "hp2", timeout=30)
    finally:
        delete(c, "hp1", "hp2")


def test_other_schedulers_pods_are_left_alone(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=pod_yaml("mine", spec_extra="schedulerName: my-scheduler\n"))
    c.kubectl("apply", "-f", "-", input=pod_yaml("ours"))
    try:
        wait_node(c, "ours")
        pod = c.kjson("get", "pod", "mine")
        assert not pod["spec"].get("nodeName") and not pod["status"].get("conditions")
        assert events_for(c, "mine", "FailedScheduling") == [] and events_for(c, "mine", "Scheduled") == []
    finally:
        delete(c, "mine", "ours")


def test_preemption_evicts_the_lower_priority_pod(cluster):
    c = cluster
    c.kubectl("create", "priorityclass", "nk-low", "--value=10", "--description=batch")
    c.kubectl("create", "priorityclass", "nk-high", "--value=100000", "--description=important")
    cpu = node_cpu_milli(c)
    pin = "nodeSelector: {kubernetes.io/hostname: node3}\n"
    try:
        c.kubectl("apply", "-f", "-", input=pod_yaml("victim", spec_extra=pin + "priorityClassName: nk-low\n",
                                                     requests=f"{{cpu: {cpu * 3 // 4}m}}"))
        assert wait_node(c, "victim") == "node3"
        uid_victim = c.kjson("get", "pod", "victim")["metadata"]["uid"]
        # an equal-priority pod cannot preempt: it waits, saying so
        c.kubectl("apply", "-f", "-", input=pod_yaml("peer", spec_extra=pin + "priorityClassName: nk-low\n",
                                                     requests=f"{{cpu: {cpu * 3 // 4}m}}"))
        msg = wait_pending(c, "peer", "Insufficient cpu")
        assert "1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling." in msg
        delete(c, "peer")
        c.kubectl("apply", "-f", "-", input=pod_yaml("vip", spec_extra=pin + "priorityClassName: nk-high\n",
                                                     requests=f"{{cpu: {cpu * 3 // 4}m}}"))
        assert c.kjson("get", "pod", "vip")["spec"]["priority"] == 100000
        assert wait_node(c, "vip") == "node3"
        gone = c.kubectl("get", "pod", "victim", "-o", "json", check=False)
        assert gone.returncode != 0 or json.loads(gone.stdout)["metadata"]["uid"] != uid_victim or \
            json.loads(gone.stdout)["metadata"].get("deletionTimestamp")
        uid_vip = c.kjson("get", "pod", "vip")["metadata"]["uid"]
        assert f"Preempted by pod {uid_vip} on node node3" in events_for(c, "victim", "Preempted")
    finally:
        delete(c, "victim", "peer", "vip")
        c.kubectl("delete", "priorityclass", "nk-low", "nk-high", "--ignore-not-found")

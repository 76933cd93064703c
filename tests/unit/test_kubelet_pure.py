"""The kubelet's pure parts: $(VAR) expansion, env with valueFrom, pod files, phases."""
import pytest

from nanokube.kubelet import podspec
from nanokube.kubelet.status import ContainerView, compute, phase
from nanokube.network.ipam import Exhausted, Ipam
from nanokube.network.routes import plan_routes

POD = {"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
       "spec": {"nodeName": "node2", "restartPolicy": "Always", "containers": []}}


def test_expand_like_kubernetes():
    env = {"A": "x", "B": "y"}
    assert podspec.expand("$(A)-$(B)", env) == "x-y"
    assert podspec.expand("$$(A) $(MISSING)", env) == "$(A) $(MISSING)"


def test_env_order_and_value_from():
    c = {"name": "c", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "hi $(POD)"},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "PATH", "value": "/bin"},
    ]}
    lookup = lambda kind, name, key: {"color": "blue"}.get(key) if name == "cfg" else None  # noqa: E731
    env = dict(podspec.build_env(POD, c, image_env=[("PATH", "/usr/bin"), ("HOME", "/root")], pod_ip="10.244.2.5",
                                 host_ip="172.30.0.12", lookup=lookup))
    assert env == {"PATH": "/bin", "HOME": "/root", "POD": "web-1", "IP": "10.244.2.5", "APP": "web",
                   "GREETING": "hi web-1", "COLOR": "blue"}
    with pytest.raises(KeyError):
        podspec.build_env(POD, {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
                          image_env=[], pod_ip="", host_ip="", lookup=lambda *a: None)


def test_resolv_conf_and_hosts():
    rc = podspec.resolv_conf(POD)
    assert rc == "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    assert "10.244.2.5\tweb-1" in podspec.hosts_file(POD, "10.244.2.5")


def test_phases():
    run = ContainerView("a", "busybox", state={"running": {}})
    done0 = ContainerView("a", "busybox", state={"terminated": {"exitCode": 0}}, last_state={})
    done1 = ContainerView("a", "busybox", state={"terminated": {"exitCode": 1}})
    fresh = ContainerView("a", "busybox")
    assert phase([fresh], "Always") == "Pending"
    assert phase([run], "Always") == "Running"
    assert phase([done0], "Never") == "Succeeded"
    assert phase([done1], "Never") == "Failed"
    assert phase([done1], "OnFailure") == "Running"
    st = compute(POD, [run], pod_ip="10.244.2.5", host_ip="172.30.0.12", now="2026-01-01T00:00:00Z", start_time=None)
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert st["phase"] == "Running" and conds["Ready"] == "True" and st["podIP"] == "10.244.2.5"


def test_ipam_persists_and_releases(tmp_path):
    ipam = Ipam(tmp_path, "10.244.3.0/29")
    a = ipam.allocate("u1")
    assert a == "10.244.3.2" and ipam.gateway == "10.244.3.1"
    assert Ipam(tmp_path, "10.244.3.0/29").allocate("u1") == a  # same uid, same address, after a restart
    ips = {ipam.allocate(f"x{i}") for i in range(4)}
    assert a not in ips and len(ips) == 4
    with pytest.raises(Exhausted):
        ipam.allocate("one-too-many")
    ipam.release("u1")
    assert ipam.allocate("new") == a


def test_plan_routes_skips_self_and_incomplete():
    def node(name, cidr, ip):
        return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
    nodes = [node("node1", "10.244.1.0/24", "172.30.0.11"), node("node2", "10.244.2.0/24", "172.30.0.12"),
             node("node3", None, "172.30.0.13")]
    assert plan_routes(nodes, "node1") == {"10.244.2.0/24": "172.30.0.12"}


async def test_event_recorder_writes_in_order_off_the_callers_path():
    import asyncio
    from nanokube.api.errors import NotFound
    from nanokube.client.events import Recorder

    class SlowClient:
        def __init__(self):
            self.created = []

        async def get(self, plural, name, namespace=None):
            await asyncio.sleep(0.01)
            raise NotFound(plural, name)

        async def create(self, plural, obj, namespace=None):
            await asyncio.sleep(0.01)
            self.created.append(obj["reason"])
    c = SlowClient()
    r = Recorder(c, component="kubelet", host="n1")
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default", "uid": "u"}}
    t0 = asyncio.get_running_loop().time()
    for reason in ("Pulled", "Created", "Started"):
        r.record(pod, reason=reason, message=reason)
    assert asyncio.get_running_loop().time() - t0 < 0.01 and c.created == []  # nothing waited for the API
    await asyncio.wait_for(r._task, 2)
    assert c.created == ["Pulled", "Created", "Started"]


def test_log_pieces_of_a_long_line_print_as_one():
    from nanokube.kubelet.server import format_line
    p = format_line("2026-01-01T00:00:00.000000001Z stdout P abc\n", timestamps=False)
    f = format_line("2026-01-01T00:00:00.000000002Z stdout F def\n", timestamps=False)
    assert p[1] + f[1] == "abcdef\n"
    assert format_line("2026-01-01T00:00:00.000000002Z stderr F \n", timestamps=True)[1] == "2026-01-01T00:00:00.000000002Z \n"

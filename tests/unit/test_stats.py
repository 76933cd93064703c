"""The kubelet's stats sampler and the metrics.k8s.io rendering, without a cluster: cgroup
reads from fake cgroup files in a tmp dir (v1 and v2 layouts), the CPU rate over a window
with an injected clock, and quantities printed as metrics-server prints them."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nanokube.apiserver import metrics
from nanokube.host import cgroups
from nanokube.host.cgroups import Usage
from nanokube.kubelet import stats


def write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (d / k).write_text(v)


def v1_tree(tmp: Path, rel: str, *, cpu_ns: int, usage: int, inactive: int) -> cgroups.V1:
    for c in ("cpu", "cpuacct", "memory", "pids"):
        (tmp / c).mkdir(exist_ok=True)
    write(tmp / "cpuacct" / rel, {"cpuacct.usage": f"{cpu_ns}\n"})
    write(tmp / "memory" / rel, {"memory.usage_in_bytes": f"{usage}\n",
                                 "memory.stat": f"cache 0\ninactive_file 7\ntotal_cache 0\ntotal_inactive_file {inactive}\n"})
    return cgroups.V1(root={c: "/" for c in ("cpu", "cpuacct", "memory", "pids")}, fs=tmp)


def test_v1_usage_is_cpuacct_and_usage_minus_total_inactive_file(tmp_path):
    drv = v1_tree(tmp_path, "nk/podu/c", cpu_ns=123_456_789, usage=60 << 20, inactive=10 << 20)
    assert drv.usage("nk/podu/c") == Usage(123_456_789, 60 << 20, 50 << 20)
    assert drv.usage("nk/podu/missing") is None


def test_v1_working_set_never_negative(tmp_path):
    drv = v1_tree(tmp_path, "x", cpu_ns=1, usage=100, inactive=4096)
    assert drv.usage("x").working_set_bytes == 0


def test_v1_comounted_cpu_cpuacct_dirs_used_once(tmp_path):
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "cpuacct").symlink_to("cpu,cpuacct")
    (tmp_path / "memory").mkdir()
    drv = cgroups.V1(root={"cpu": "/", "cpuacct": "/", "memory": "/"}, fs=tmp_path)
    assert len(drv.dirs("a/b")) == 2


def test_v2_usage_is_usage_usec_and_current_minus_inactive_file(tmp_path):
    write(tmp_path / "nk" / "pod1" / "c", {"cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
                                          "memory.current": "52428800\n",
                                          "memory.stat": "anon 40000000\nfile 12000000\ninactive_file 4096\n"})
    drv = cgroups.V2(root="/", fs=tmp_path)
    assert drv.usage("nk/pod1/c") == Usage(2_500_000, 52428800, 52428800 - 4096)
    assert drv.usage("nk/pod2") is None


def test_host_usage_from_proc(tmp_path):
    write(tmp_path, {"stat": "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 1 2 3\n",
                     "meminfo": "MemTotal:       1000 kB\nMemFree:         400 kB\nInactive(file):  100 kB\n"})
    u = cgroups.host_usage(proc=tmp_path)
    import os
    assert u.cpu_ns == (100 + 5 + 50 + 3 + 2) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert u.memory_bytes == 600 * 1024 and u.working_set_bytes == 500 * 1024


def sample(at: float, cpu_ns: int, ws: int = 0) -> stats.Sample:
    return stats.Sample(at, "2026-01-01T00:00:00Z", Usage(cpu_ns, ws, ws))


def test_rate_is_nanocores_over_the_window():
    assert stats.nanocores(sample(10.0, 1_000_000_000), sample(15.0, 2_000_000_000)) == 200_000_000  # 200m
    assert stats.nanocores(sample(10.0, 0), sample(12.0, 4_000_000_000)) == 2_000_000_000  # two full cores
    assert stats.nanocores(sample(10.0, 5), sample(10.0, 9)) is None          # no window
    assert stats.nanocores(sample(10.0, 9), sample(15.0, 5)) is None          # counter went backwards


def test_series_keeps_two_samples_and_restarts_on_counter_reset():
    s = stats.Series()
    s.push(sample(0, 100))
    assert s.prev is None
    s.push(sample(5, 200))
    s.push(sample(10, 300))
    assert (s.prev.at, s.cur.at) == (5, 10)
    s.push(sample(15, 50))  # a restarted container: a new cgroup, a new counter
    assert s.prev is None and s.cur.usage.cpu_ns == 50


def running_pod(name: str, uid: str, containers: list[str], *, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid},
            "status": {"phase": phase, "startTime": "2026-01-01T00:00:00Z",
                       "containerStatuses": [{"name": c, "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}
                                             for c in containers]
                       + [{"name": "done", "state": {"terminated": {"exitCode": 0}}}]}}


def test_targets_are_running_containers_under_the_pod_cgroup():
    pods = [running_pod("a", "u1", ["web", "side"]), running_pod("b", "u2", ["x"], phase="Succeeded"),
            {"metadata": {"name": "c", "namespace": "default", "uid": "u3"}, "status": {"phase": "Pending"}}]
    ts = stats.targets(pods, pod_cgroup=lambda uid: f"nk/pod{uid}")
    assert [(t.name, t.cgroup) for t in ts] == [("a", "nk/podu1")]
    assert [(c.name, c.cgroup) for c in ts[0].containers] == [("web", "nk/podu1/web"), ("side", "nk/podu1/side")]


def test_sampler_summary_over_fake_cgroups(tmp_path):
    """Two samples 5 s apart of fake v1 files: the summary reports the rate and working set."""
    drv = v1_tree(tmp_path, "nk/podu1/web", cpu_ns=1_000_000_000, usage=30 << 20, inactive=0)
    write(tmp_path / "cpuacct" / "nk" / "podu1", {"cpuacct.usage": "1000000000"})
    write(tmp_path / "memory" / "nk" / "podu1", {"memory.usage_in_bytes": str(30 << 20), "memory.stat": ""})
    write(tmp_path / "cpuacct" / "nk", {"cpuacct.usage": "1000000000"})
    write(tmp_path / "memory" / "nk", {"memory.usage_in_bytes": str(31 << 20), "memory.stat": "total_inactive_file 1048576"})
    now = [100.0]
    s = stats.StatsSampler("node1", drv.usage, lambda: drv.usage("nk"), lambda: [running_pod("a", "u1", ["web"])],
                           lambda uid: f"nk/pod{uid}", clock=lambda: now[0], wall=lambda: 1_700_000_000.0 + now[0])
    s.sample()
    first = s.summary()
    assert "usageNanoCores" not in first["pods"][0]["containers"][0]["cpu"]  # one sample: no rate yet
    for rel in ("nk/podu1/web", "nk/podu1", "nk"):
        (tmp_path / "cpuacct" / rel / "cpuacct.usage").write_text("2000000000")  # +1 s of CPU ...
    now[0] += 5.0                                                               # ... in 5 s
    s.sample()
    out = s.summary()
    c = out["pods"][0]["containers"][0]
    assert out["pods"][0]["podRef"] == {"name": "a", "namespace": "default", "uid": "u1"}
    assert c["name"] == "web" and c["cpu"]["usageNanoCores"] == 200_000_000 and c["cpu"]["windowSeconds"] == 5.0
    assert c["memory"]["workingSetBytes"] == 30 << 20
    assert out["node"]["cpu"]["usageNanoCores"] == 200_000_000 and out["node"]["memory"]["workingSetBytes"] == 30 << 20
    assert out["node"]["nodeName"] == "node1" and out["node"]["cpu"]["time"].endswith("Z")


def test_sampler_drops_containers_that_stopped(tmp_path):
    drv = v1_tree(tmp_path, "nk/podu1/web", cpu_ns=1, usage=1, inactive=0)
    pods = [running_pod("a", "u1", ["web"])]
    s = stats.StatsSampler("n", drv.usage, lambda: None, lambda: pods, lambda uid: f"nk/pod{uid}")
    s.sample()
    assert len(s.summary()["pods"]) == 1
    pods.clear()
    s.sample()
    assert s.summary()["pods"] == [] and s.series == {}


@pytest.mark.parametrize("n, want", [(0, "0"), (12345, "12345n"), (5_000_000, "5m"), (200_000_000, "200m"),
                                     (1_500_000, "1500u"), (2_000_000_000, "2"), (123_456_789, "123456789n")])
def test_cpu_quantity_like_metrics_server(n, want):
    assert metrics.format_cpu(n) == want


@pytest.mark.parametrize("n, want", [(0, "0"), (1000, "1000"), (1024, "1Ki"), (1234 * 1024, "1234Ki"),
                                     (50 << 20, "50Mi"), (1025, "1025"), (3 << 30, "3Gi")])
def test_memory_quantity_like_metrics_server(n, want):
    assert metrics.format_memory(n) == want


SUMMARY = {"node": {"nodeName": "node1",
                    "cpu": {"time": "2026-01-01T00:00:05Z", "usageNanoCores": 250_000_000, "windowSeconds": 5.0},
                    "memory": {"time": "2026-01-01T00:00:05Z", "workingSetBytes": 100 << 20}},
           "pods": [{"podRef": {"name": "a", "namespace": "default", "uid": "u1"},
                     "containers": [{"name": "web", "cpu": {"time": "2026-01-01T00:00:05Z", "usageNanoCores": 1234,
                                                            "windowSeconds": 5.0},
                                     "memory": {"workingSetBytes": 4096}}]}]}


def test_node_and_pod_metrics_objects():
    node = {"metadata": {"name": "node1", "labels": {"k": "v"}}}
    m = metrics.node_metrics(node, SUMMARY)
    assert m["kind"] == "NodeMetrics" and m["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert m["usage"] == {"cpu": "250m", "memory": "100Mi"} and m["window"] == "5s"
    assert m["metadata"]["labels"] == {"k": "v"}
    pod = {"metadata": {"name": "a", "namespace": "default", "uid": "u1"}}
    pm = metrics.pod_metrics(pod, SUMMARY["pods"][0])
    assert pm["containers"] == [{"name": "web", "usage": {"cpu": "1234n", "memory": "4Ki"}}]
    incomplete = {"containers": [{"name": "web", "cpu": {"time": "t"}, "memory": {"workingSetBytes": 1}}]}
    assert metrics.pod_metrics(pod, incomplete) is None  # no rate yet: left out, as metrics-server does


class FakeRegistry:
    def __init__(self, nodes: list[dict], pods: list[dict]):
        self.nodes, self.pods_ = nodes, pods

    def list(self, plural: str, **_kw) -> dict:
        return {"items": self.nodes if plural == "nodes" else self.pods_}

    def get(self, plural: str, name: str, *, namespace: str | None = None) -> dict:
        for o in (self.nodes if plural == "nodes" else self.pods_):
            if o["metadata"]["name"] == name:
                return o
        from nanokube.api.errors import NotFound
        raise NotFound(plural, name)


def test_api_scrapes_ready_nodes_once_per_ttl_and_skips_failures():
    ready = {"type": "Ready", "status": "True"}
    nodes = [{"metadata": {"name": n}, "status": {"conditions": [ready] if n != "down" else []}}
             for n in ("node1", "node2", "down")]
    calls: list[str] = []

    async def fetch(node):
        calls.append(node["metadata"]["name"])
        if node["metadata"]["name"] == "node2":
            raise OSError("connection refused")
        return SUMMARY

    now = [0.0]
    api = metrics.MetricsApi(FakeRegistry(nodes, [{"metadata": {"name": "a", "namespace": "default", "uid": "u1"}}]),
                             kubelet_token=None, fetch=fetch, clock=lambda: now[0])

    async def go():
        got = await api.nodes(None)
        assert [i["metadata"]["name"] for i in got["items"]] == ["node1"]
        await api.pods("default", None)
        assert sorted(calls) == ["node1", "node2"]  # cached: one round for both requests
        now[0] += 10
        pm = await api.pods("default", "a")
        assert pm["kind"] == "PodMetrics" and len(calls) == 4
        with pytest.raises(Exception) as e:
            await api.nodes("node2")
        assert e.value.code == 404 and "nodemetrics.metrics.k8s.io" in e.value.message
    asyncio.run(go())


def test_discovery_documents():
    assert metrics.group_entry()["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    rs = {r["name"]: r for r in metrics.resource_list()["resources"]}
    assert rs["nodes"]["kind"] == "NodeMetrics" and not rs["nodes"]["namespaced"]
    assert rs["pods"]["kind"] == "PodMetrics" and rs["pods"]["namespaced"] and rs["pods"]["verbs"] == ["get", "list"]


def test_table_columns_like_metrics_server():
    pm = metrics.pod_metrics({"metadata": {"name": "a", "namespace": "default"}},
                             {"containers": [SUMMARY["pods"][0]["containers"][0],
                                             {"name": "b", "cpu": {"time": "t", "usageNanoCores": 5_000_000 - 1234},
                                              "memory": {"workingSetBytes": 1 << 20}}]})
    t = metrics.metrics_table([pm])
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "CPU", "Memory", "Window"]
    assert t["rows"][0]["cells"] == ["a", "5m", "1028Ki", "5s"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"

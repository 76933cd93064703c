"""What a container may see and do, and what it gets: checked from inside the pods (and CPU
time from the pods' cgroups on the node). Isolation — its own processes, not the host's
files, /proc/sys read-only, no `ip link add`, no mount; two containers of a pod share
localhost and an emptyDir. Resources — a 200m limit holds a burner to 0.2 core; requests of
100m and 400m competing for one CPU share it 1:4; a memory hog over 64Mi ends OOMKilled with
137; OOM scores per QoS class as upstream."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

BURN = "while :; do :; done"


def pod(name: str, containers: list[dict], **spec) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 1, "containers": containers, **spec}})


def burner(cmd: list[str], **resources) -> list[dict]:
    return [{"name": "burn", "image": "busybox", "command": cmd, "resources": resources}]


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    c = one_node_cluster
    shared = [{"name": "shared", "mountPath": "/shared"}]
    c.kubectl("apply", "-f", "-", input="---\n".join([
        pod("duo", [{"name": "web", "image": "busybox", "volumeMounts": shared,
                     "command": ["sh", "-c", "exec httpd -f -p 127.0.0.1:8080 -h /shared"]},
                    {"name": "probe", "image": "busybox", "command": ["sleep", "3600"], "volumeMounts": shared}],
            volumes=[{"name": "shared", "emptyDir": {}}]),
        pod("capped", burner(["sh", "-c", BURN], limits={"cpu": "200m", "memory": "32Mi"})),
        pod("small", burner(["taskset", "-c", "0", "sh", "-c", BURN], requests={"cpu": "100m"})),
        pod("big", burner(["taskset", "-c", "0", "sh", "-c", BURN], requests={"cpu": "400m"})),
        pod("besteffort", [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]),
    ]))
    c.kubectl("wait", "--for=condition=Ready", "pod/duo", "pod/capped", "pod/small", "pod/big", "pod/besteffort",
              "--timeout=90s")
    return c


def sh(c, pod: str, cmd: str, container: str | None = None, check: bool = True):
    return c.kubectl("exec", pod, *(["-c", container] if container else []), "--", "sh", "-c", cmd, check=check)


def test_isolation_from_inside(cluster):
    c = cluster
    procs = sh(c, "duo", "ps -o pid,comm", "probe").stdout.split()
    assert procs[2:4] == ["1", "sleep"] and "httpd" not in procs  # its own pid namespace
    assert sh(c, "duo", f"ls {Path(__file__).parent}", "probe", check=False).returncode != 0  # not the host's files
    r = sh(c, "duo", "echo 1 > /proc/sys/net/ipv4/ip_forward", "probe", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    r = sh(c, "duo", "ip link add nk-x type dummy", "probe", check=False)
    assert r.returncode != 0 and "not permitted" in r.stderr.lower()
    r = sh(c, "duo", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m", "probe", check=False)
    assert r.returncode != 0 and "denied" in r.stderr.lower()
    sh(c, "duo", "echo shared-by-both > /shared/index.html", "probe")
    assert sh(c, "duo", "wget -qO- http://127.0.0.1:8080/", "probe").stdout == "shared-by-both\n"  # one localhost


def cpu_seconds(c, pod_name: str) -> float:
    """CPU time of the pod's cgroup on the node (cgroup v1 cpuacct or v2 cpu.stat)."""
    uid = c.kjson("get", "pod", pod_name)["metadata"]["uid"]
    for base, f in ((Path("/sys/fs/cgroup/cpuacct"), "cpuacct.usage"), (Path("/sys/fs/cgroup"), "cpu.stat")):
        hits = [p for p in base.rglob(f"pod{uid}") if (p / f).exists()] if base.exists() else []
        if hits:
            text = (hits[0] / f).read_text()
            return int(text) / 1e9 if f == "cpuacct.usage" else int(text.split("usage_usec")[1].split()[0]) / 1e6
    raise AssertionError(f"no cgroup for pod {pod_name}")


def test_cpu_limit_and_shares(cluster):
    c = cluster
    names = ("capped", "small", "big")
    t0, before = time.monotonic(), {n: cpu_seconds(c, n) for n in names}
    time.sleep(8)
    dt = time.monotonic() - t0
    used = {n: (cpu_seconds(c, n) - before[n]) / dt for n in names}
    assert 0.18 <= used["capped"] <= 0.22, used  # 200m: 0.2 core ±10%
    ratio = used["big"] / used["small"]
    assert 3.2 <= ratio <= 4.8, used  # 400m : 100m on one CPU, ±20%


def test_oom_scores_by_qos_class(cluster):
    c = cluster
    qos = {p: c.kjson("get", "pod", p)["status"]["qosClass"] for p in ("capped", "small", "besteffort")}
    assert qos == {"capped": "Guaranteed", "small": "Burstable", "besteffort": "BestEffort"}
    score = lambda p: int(sh(c, p, "cat /proc/1/oom_score_adj").stdout)  # noqa: E731
    assert score("besteffort") == 1000 and 2 <= score("small") <= 999
    # Lowering a score needs CAP_SYS_RESOURCE; where even root lacks it (some sandboxes), the
    # Guaranteed pod still runs, with the score it inherited.
    cap_eff = int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("CapEff")).split()[1], 16)
    assert score("capped") == (-997 if cap_eff & (1 << 24) else 0)


def test_memory_hog_is_oom_killed(cluster):
    c = cluster
    c.kubectl("apply", "-f", "-", input=pod("hog", [{
        "name": "hog", "image": "busybox", "command": ["sh", "-c", "head -c 200m /dev/zero | tail"],
        "resources": {"limits": {"memory": "64Mi"}}}], restartPolicy="Never"))

    def terminated():
        st = c.kjson("get", "pod", "hog")["status"].get("containerStatuses") or []
        return st and st[0]["state"].get("terminated")
    t = c.wait_for("the hog to be killed", terminated, timeout=60)
    assert (t["reason"], t["exitCode"]) == ("OOMKilled", 137)
    for p in ("capped", "small", "big"):
        c.kubectl("delete", "pod", p, "--wait=false")

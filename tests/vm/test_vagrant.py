"""Issue 10's user story on real VMs: `vagrant up` of the three-VM cluster in vagrant/ with the
offline Debian 12 box (libvirt, TCG), then from the VMs' host — a network namespace of the
test's own — 3 Ready nodes on their private IPs, a Deployment spread over them, its NodePort
answering curl on every VM, a memory limit enforced by cgroup v2, and `vagrant destroy`
leaving no domain, volume or network behind. Tests run in file order on one cluster.

Run times and memory are printed (never asserted): run with -s, as scripts/test-vm does."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import time

import pytest
import yaml

from tests import polling
from .vmhost import BOX_NAME, REPO, VAGRANT_DIR, VAGRANT_HOME, cluster_yaml, parse_names

IPS = {"server": "192.168.56.10", "node1": "192.168.56.11", "node2": "192.168.56.12"}
NUMBERS: dict[str, object] = {}


def say(key: str, value: object) -> None:
    NUMBERS[key] = value
    print(f"\n[vm] {key}: {value}", flush=True)


@pytest.fixture(scope="module")
def cluster(vm_host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vagrant")
    base = yaml.safe_load((VAGRANT_DIR / "cluster.yaml").read_text())
    cfg_file = tmp / "cluster.yaml"
    cfg_file.write_text(yaml.safe_dump(cluster_yaml(base, box=BOX_NAME)))
    made = [p for p in (VAGRANT_DIR / ".join", VAGRANT_DIR / "kubeconfig", VAGRANT_DIR / ".vagrant") if not p.exists()]
    env = dict(os.environ, VAGRANT_HOME=str(VAGRANT_HOME), VAGRANT_DEFAULT_PROVIDER="libvirt",
               NANOKUBE_CLUSTER_YAML=str(cfg_file), VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1")

    def vagrant(*args: str, timeout: float = 600, check: bool = True):
        return vm_host.run("vagrant", *args, cwd=VAGRANT_DIR, env=env, timeout=timeout, check=check)

    vm_host.vagrant = vagrant
    vm_host.kubeconfig = VAGRANT_DIR / "kubeconfig"
    try:
        t0 = time.monotonic()
        r = vagrant("up", "--provider", "libvirt", timeout=3600, check=False)
        (tmp / "vagrant-up.log").write_text(r.stdout + r.stderr)
        assert r.returncode == 0, f"vagrant up failed (log {tmp / 'vagrant-up.log'}):\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
        say("vagrant up (provisioned) s", round(time.monotonic() - t0, 1))
        vm_host.t_up = t0
        yield vm_host
    finally:
        r = vagrant("destroy", "-f", timeout=900, check=False)
        print("[vm] vagrant destroy:", r.returncode, r.stdout[-1500:], r.stderr[-1500:])
        for p in made:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        print("[vm] numbers:", json.dumps(NUMBERS, indent=1))


def kubectl(c, *args: str, check: bool = True):
    return c.run(str(REPO / ".venv" / "bin" / "kubectl"), "--kubeconfig", str(c.kubeconfig), *args,
                 check=check, timeout=120)


def kjson(c, *args: str):
    return json.loads(kubectl(c, *args, "-o", "json").stdout)


def wait_for(what: str, fn, *, timeout: float):
    return polling.wait_for(what, fn, timeout=timeout, interval=3)


def ssh(c, machine: str, cmd: str, *, check: bool = True):
    return c.vagrant("ssh", machine, "-c", f"sudo sh -c {shlex.quote(cmd)}", timeout=300, check=check)


def test_three_ready_nodes_on_private_ips(cluster):
    def ready():
        nodes = kjson(cluster, "get", "nodes")["items"]
        ok = {n["metadata"]["name"]: [a["address"] for a in n["status"].get("addresses", []) if a["type"] == "InternalIP"]
              for n in nodes
              if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
        return ok if len(ok) == 3 else None
    nodes = wait_for("3 Ready nodes", ready, timeout=600)
    say("vagrant up to 3 Ready nodes s", round(time.monotonic() - cluster.t_up, 1))
    assert nodes == {name: [ip] for name, ip in IPS.items()}, nodes
    out = kubectl(cluster, "get", "nodes", "-o", "wide").stdout
    print(out)
    assert "10.0.2.15" not in out and "192.168.121." not in out  # never the NAT / management address


def test_services_are_systemd_units_on_cgroup_v2(cluster):
    r = ssh(cluster, "server", "systemctl is-active nanokube-server nanokube-agent; stat -fc %T /sys/fs/cgroup; "
                               "update-alternatives --query iptables | grep ^Value")
    lines = r.stdout.split()
    assert lines[:2] == ["active", "active"], r.stdout
    assert "cgroup2fs" in r.stdout and "iptables-nft" in r.stdout, r.stdout
    for m in ("node1", "node2"):
        assert ssh(cluster, m, "systemctl is-active nanokube-agent").stdout.split() == ["active"]


def test_deployment_spread_and_nodeport_on_every_vm(cluster):
    docs = list(yaml.safe_load_all((REPO / "examples" / "hello.yaml").read_text()))
    dep = docs[0]
    dep["spec"]["template"]["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "hello"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    manifest = VAGRANT_DIR / ".vagrant" / "hello-spread.yaml"
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(yaml.safe_dump_all(docs))
    kubectl(cluster, "apply", "-f", str(manifest))

    def spread():
        pods = kjson(cluster, "get", "pods", "-l", "app=hello")["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions", []))]
        return ready if len(ready) == 3 else None
    pods = wait_for("3 ready hello pods", spread, timeout=600)
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(IPS), [p["spec"]["nodeName"] for p in pods]
    names = {p["metadata"]["name"] for p in pods}
    for node, ip in IPS.items():
        def answers():
            r = cluster.run("curl", "-s", "--max-time", "5", f"http://{ip}:30080/", check=False, timeout=30)
            return r.stdout.strip() if r.returncode == 0 and r.stdout.startswith("hello from ") else None
        body = wait_for(f"NodePort on {node}", answers, timeout=120)
        assert body.removeprefix("hello from ") in names, body
        # several requests reach more than one pod (kube-proxy balances across VMs)
    seen = set()
    for _ in range(30):
        r = cluster.run("curl", "-s", "--max-time", "5", f"http://{IPS['node1']}:30080/", check=False, timeout=30)
        seen.add(r.stdout.strip())
    say("pods answering NodePort on node1 (30 requests)", len(seen))
    assert len(seen) >= 2, seen


def test_memory_limit_enforced_by_cgroup_v2(cluster):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
           "spec": {"restartPolicy": "Never", "nodeName": "node2", "containers": [{
               "name": "hog", "image": "busybox", "command": ["sh", "-c", "sleep 30; tail /dev/zero"],
               "resources": {"limits": {"memory": "32Mi", "cpu": "500m"}}}]}}
    f = VAGRANT_DIR / ".vagrant" / "hog.yaml"
    f.write_text(yaml.safe_dump(pod))
    kubectl(cluster, "apply", "-f", str(f))

    def running_uid():
        p = kjson(cluster, "get", "pod", "hog")
        return p["metadata"]["uid"] if p["status"].get("phase") in ("Running", "Failed") else None
    uid = wait_for("hog pod started", running_uid, timeout=300)
    r = ssh(cluster, "node2", f"find /sys/fs/cgroup/nanokube/pod{uid} -name memory.max -exec grep -H . {{}} +",
            check=False)
    print("[vm] memory.max in the hog pod's cgroups:\n" + r.stdout.strip(), r.stderr.strip()[-300:])

    def terminated():
        st = kjson(cluster, "get", "pod", "hog")["status"]
        for cs in st.get("containerStatuses") or []:
            t = (cs.get("state") or {}).get("terminated")
            if t:
                return t
        return None
    t = wait_for("hog terminated", terminated, timeout=300)
    assert t["reason"] == "OOMKilled" and t["exitCode"] == 137, t
    assert any(line.endswith(f"memory.max:{32 * 1024 * 1024}") for line in r.stdout.split()), r.stdout
    kubectl(cluster, "delete", "pod", "hog", "--wait=false")


def test_service_memory_inside_a_vm(cluster):
    script = ("for u in nanokube-server nanokube-agent; do p=$(systemctl show -p MainPID --value $u); "
              "echo $u $(awk '/^VmRSS/{print $2}' /proc/$p/status) $(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup); done")
    measured = []
    for m in ("server", "node1"):
        for line in ssh(cluster, m, script, check=False).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                say(f"{m}: {parts[0]} RSS/PSS MiB", f"{int(parts[1]) / 1024:.1f} / {int(parts[2]) / 1024:.1f}")
                measured.append((m, parts[0]))
    # numbers are reported, not asserted; that both services run and were measured is
    assert sorted(measured) == [("node1", "nanokube-agent"), ("server", "nanokube-agent"),
                                ("server", "nanokube-server")], measured


def test_vagrant_destroy_leaves_nothing(cluster):
    t0 = time.monotonic()
    r = cluster.vagrant("destroy", "-f", timeout=900)
    say("vagrant destroy s", round(time.monotonic() - t0, 1))
    assert parse_names(cluster.virsh("list", "--all", "--name").stdout) == []
    vols = parse_names(cluster.virsh("vol-list", "default", check=False).stdout)
    left = [v for v in vols if any(m in v for m in ("vagrant_server", "vagrant_node1", "vagrant_node2"))]
    assert left == [], vols
    nets = parse_names(cluster.virsh("net-list", "--all", "--name").stdout)
    assert [n for n in nets if n not in cluster.networks_before] == [], nets
    assert "not created" in cluster.vagrant("status").stdout, r.stdout

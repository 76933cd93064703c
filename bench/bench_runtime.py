"""Issue 5's numbers: pod start (bound → Running) and 100 pods on one node, against `runc run`
of the same busybox rootfs in the same run.

    sudo .venv/bin/python bench/bench_runtime.py [--trials 20] [--pods 100]

- **runc** (baseline): `runc run --detach` of `sleep 3600` in an OCI bundle over the local
  busybox image's rootfs (read-only, no network namespace setup beyond runc's own), until
  runc returns with the container running; then `runc delete --force`. Its cgroup path is
  relative, i.e. below this process's own cgroup. Skipped if runc is not installed.
- **runtime alone**: nanokube's runtime starting the same container (shim, namespaces,
  overlay, cgroup; no API, no kubelet).
- **pod start**: on an isolated 1-node cluster, a pod created already bound (`spec.nodeName`)
  until the kubelet reports it Running (seen by a watch); p50/p99 over --trials.
- **100 pods**: --pods bound pods created at once → all Running.
Everything runs in namespaces the benchmark creates and removes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_foundation import pct, runtime_floor  # noqa: E402

PY = sys.executable
BUSYBOX = Path("/var/lib/nanokube/images/busybox/rootfs")


def runc_floor(trials: int) -> list[float]:
    runc = shutil.which("runc")
    if runc is None or not BUSYBOX.is_dir():
        return []
    out = []
    with tempfile.TemporaryDirectory(prefix="nkbench-runc") as d:
        bundle = Path(d)
        subprocess.run([runc, "spec", "--bundle", str(bundle)], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": str(BUSYBOX), "readonly": True}
        spec["process"]["args"] = ["sleep", "3600"]
        spec["process"]["terminal"] = False
        spec["hostname"] = "bench"
        for i in range(trials):
            cid = f"nkbench-{secrets.token_hex(3)}"
            spec["linux"]["cgroupsPath"] = cid   # relative: below our own cgroup
            (bundle / "config.json").write_text(json.dumps(spec))
            # The detached container inherits runc's stdio: give it files, not pipes that stay open.
            with open(bundle / "err.log", "w+") as err:
                t0 = time.perf_counter()
                r = subprocess.run([runc, "--root", str(bundle / "state"), "run", "--detach", "--bundle", str(bundle),
                                    cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                dt = time.perf_counter() - t0
                subprocess.run([runc, "--root", str(bundle / "state"), "delete", "--force", cid], capture_output=True)
                if r.returncode != 0:
                    err.seek(0)
                    print(f"runc run failed: {err.read().strip()}")
                    return []
            out.append(dt)
    return out


def bound_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"bench": "rt"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


async def running_after(client, names: list[str], node: str, timeout: float = 180) -> float:
    lst = await client.list("pods", namespace="default", label_selector="bench=rt")
    t0 = time.perf_counter()
    for n in names:
        await client.create("pods", bound_pod(n, node), namespace="default")
    running: set[str] = set()
    async for _typ, pod in client.watch("pods", namespace="default", label_selector="bench=rt",
                                        resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=int(timeout)):
        if (pod.get("status") or {}).get("phase") == "Running" and pod["metadata"]["name"] in names:
            running.add(pod["metadata"]["name"])
        if len(running) == len(names):
            return time.perf_counter() - t0
    raise TimeoutError(names[0])


async def wipe(client) -> None:
    for p in (await client.list("pods", namespace="default", label_selector="bench=rt"))["items"]:
        await client.delete("pods", p["metadata"]["name"], namespace="default")
    for _ in range(600):
        if not (await client.list("pods", namespace="default", label_selector="bench=rt"))["items"]:
            return
        await asyncio.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--pods", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    runc = runc_floor(args.trials)
    direct = runtime_floor(args.trials)
    cluster = "b" + secrets.token_hex(3)
    state = Path(tempfile.mkdtemp(prefix="nkbench"))
    r = subprocess.run([PY, "-m", "nanokube", "up", "--isolated", "--detach", "--nodes", "1", "--cluster", cluster,
                        "--state-dir", str(state)], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(1)
    try:
        info = json.loads((state / cluster / "cluster.json").read_text())
        from nanokube.client.http import HttpClient
        from nanokube.host import netns

        async def bench() -> tuple[list[float], float]:
            client = HttpClient.from_kubeconfig(info["kubeconfig"])
            try:
                singles = []
                for i in range(args.trials):
                    singles.append(await running_after(client, [f"one{i}"], "node1"))
                    await wipe(client)
                many = await running_after(client, [f"many{i}" for i in range(args.pods)], "node1")
                await wipe(client)
                return singles, many
            finally:
                await client.close()
        singles, many = netns.run_in(info["host_netns"], lambda: asyncio.run(bench()))
    finally:
        subprocess.run([PY, "-m", "nanokube", "down", "--cluster", cluster, "--state-dir", str(state)], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    base = f"runc run p50 {pct(runc, 50):.3f} s p99 {pct(runc, 99):.3f} s" if runc else "runc: not installed"
    print(f"baseline {base};  nanokube runtime alone p50 {pct(direct, 50):.3f} s p99 {pct(direct, 99):.3f} s")
    ratio = f" -> ratio to runc p50 {pct(singles, 50) / pct(runc, 50):.1f}x" if runc else ""
    print(f"pod start, bound -> Running (n={len(singles)}): p50 {pct(singles, 50):.3f} s  p99 {pct(singles, 99):.3f} s "
          f"(target p99 <= 0.3 s){ratio}")
    print(f"{args.pods} bound pods on one node -> all Running: {many:.2f} s (target <= 10 s)"
          + (f"; {args.pods} x runc run p50 = {args.pods * pct(runc, 50):.2f} s" if runc else ""))


if __name__ == "__main__":
    main()

"""NetworkPolicy on the data path: requests/s from one pod to another with no policy, then
with 50 policies selecting the server (one of them admitting the client), same run, ratio.

    sudo .venv/bin/python bench/bench_netpol_datapath.py [--requests 400]

A 1-node `nanokube up --isolated` cluster of its own (removed afterwards). The client loops
busybox wget inside its pod (one HTTP connection per request, so every request crosses the
FORWARD path and its policy chains); the cost of `kubectl exec` itself is measured and taken off.
"""
from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

NK = [sys.executable, "-m", "nanokube"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    a = ap.parse_args()
    name, state = "bnp" + secrets.token_hex(3), Path(tempfile.mkdtemp(prefix="nk-bench-np-"))
    base = ["--cluster", name, "--state-dir", str(state)]

    def k(*args: str, input: str | None = None) -> str:
        return subprocess.run(NK + ["kubectl", *base, "--", *args], capture_output=True, text=True, check=True,
                              input=input).stdout
    subprocess.run(NK + ["up", "--isolated", "--detach", "--nodes", "1", *base], check=True, capture_output=True)
    try:
        k("apply", "-f", "-", input=textwrap.dedent("""
            apiVersion: v1
            kind: Pod
            metadata: {name: server, labels: {app: server}}
            spec:
              containers: [{name: c, image: busybox, command: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www']}]
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: client, labels: {role: client}}
            spec:
              containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
        """))
        k("wait", "--for=condition=Ready", "pod/server", "pod/client", "--timeout=60s")
        ip = json.loads(k("get", "pod", "server", "-o", "json"))["status"]["podIP"]
        loop = f"for i in $(seq {a.requests}); do wget -qO- http://{ip}:8080/ >/dev/null || echo FAIL; done"

        def timed(cmd: str) -> tuple[float, str]:
            t0 = time.perf_counter()
            out = k("exec", "client", "--", "sh", "-c", cmd)
            return time.perf_counter() - t0, out

        def rps() -> float:
            empty = min(timed("true")[0] for _ in range(3))  # kubectl exec's own cost, taken off
            t, out = timed(loop)
            assert "FAIL" not in out, out
            return a.requests / (t - empty)
        rps()  # warm up
        base_rps = rps()
        pols = [textwrap.dedent(f"""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {{name: p{i}}}
            spec:
              podSelector: {{matchLabels: {{app: server}}}}
              ingress: [{{from: [{{podSelector: {{matchLabels: {{role: {'client' if i == 0 else f'other{i}'}}}}}}}], ports: [{{port: {8080 if i == 0 else 9000 + i}}}]}}]
        """) for i in range(50)]
        k("apply", "-f", "-", input="---\n".join(pols))
        time.sleep(2)  # the agent batches and applies
        with_rps = rps()
        print(f"pod to pod, {a.requests} requests: no policy {base_rps:.0f} req/s, 50 policies {with_rps:.0f} req/s, "
              f"ratio {with_rps / base_rps:.2f}")
    finally:
        subprocess.run(NK + ["down", *base], capture_output=True)
        subprocess.run(["rm", "-rf", str(state)])


if __name__ == "__main__":
    main()

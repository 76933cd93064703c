"""Faults the control plane must survive (issue 11), each against a real `nanokube up --isolated`
cluster or a real server process:

- ``kill -9`` of the server in the middle of a storm of 1,000 writes from five HTTPS clients:
  every acknowledged write is there afterwards with its content, nothing half-written is
  stored, and a watcher that reconnects from its last resourceVersion sees every event
  exactly once, in order;
- the server's disk full (its data dir a tiny tmpfs, filled up): writes fail with a 5xx
  ``Status``, reads keep working, nothing is corrupted, and writes work again once space
  returns;
- the server's filesystem turning read-only (ext4 errors=remount-ro on a loop image): writes
  fail with a 5xx ``Status``, reads keep working; after e2fsck a new server has everything;
- the server unreachable (SIGSTOP) for 60 s: agents keep their pods running and catch up.

The clients are plain aiohttp with the cluster's token, run in a thread that entered the
cluster's host-side namespace, so they depend on nothing in nanokube's own client.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nanokube.api.validation import validate
from nanokube.host import netns

from .conftest import Cluster, restart_server, server_argv, start_cluster, stop_cluster

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

NS = "storm"
CLIENTS, PER_CLIENT = 5, 200  # 1,000 writes


def content(name: str) -> dict[str, str]:
    """The known data of ConfigMap ``name`` (~1 KB, so a torn write could not pass as whole)."""
    h = hashlib.sha256(name.encode()).hexdigest()
    return {"name": name, "sha": h, "payload": h * 16}


@dataclass
class Conn:
    """How a client outside nanokube reaches the API: URL, bearer token, CA, host netns."""
    url: str
    token: str
    ca: str
    netns: str | None

    @classmethod
    def of(cls, c: Cluster) -> "Conn":
        info = json.loads((c.state_dir / c.name / "cluster.json").read_text())
        kc = Path(info["kubeconfig"]).read_text()
        token = next(l.split(":", 1)[1].strip() for l in kc.splitlines() if l.strip().startswith("token:"))
        return cls(info["server"], token, str(c.state_dir / c.name / "server" / "pki" / "ca.crt"), info.get("host_netns"))

    def session(self) -> aiohttp.ClientSession:
        ctx = ssl.create_default_context(cafile=self.ca)
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"},
                                     connector=aiohttp.TCPConnector(ssl=ctx, limit=0))


def in_netns_thread(name: str | None, coro_fn) -> threading.Thread:
    """Run ``asyncio.run(coro_fn())`` in a new thread inside netns ``name``; started."""
    def target() -> None:
        if name:
            netns.enter(name)  # setns(2) moves this thread only
        asyncio.run(coro_fn())
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


@dataclass
class StormLog:
    acked: dict[str, str] = field(default_factory=dict)   # name → resourceVersion of the 201
    already: set[str] = field(default_factory=set)         # a retry got 409: an unacked attempt had committed
    conn_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # non-2xx answers by code
    events: list[tuple[str, str, int]] = field(default_factory=list)  # watcher: (type, name, rv)
    watch_connects: int = 0
    watch_errors: list[Any] = field(default_factory=list)
    done: bool = False


async def _writer(conn: Conn, s: aiohttp.ClientSession, log: StormLog, client: int, deadline: float) -> None:
    url = f"{conn.url}/api/v1/namespaces/{NS}/configmaps"
    for j in range(PER_CLIENT):
        name = f"cm-{client}-{j:03d}"
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": content(name)}
        while time.monotonic() < deadline:
            try:
                async with s.post(url, json=body, timeout=aiohttp.ClientTimeout(total=20)) as r:
                    payload = await r.json(content_type=None)
                    if r.status == 201:
                        log.acked[name] = payload["metadata"]["resourceVersion"]
                        break
                    log.statuses[r.status] = log.statuses.get(r.status, 0) + 1
                    if r.status == 409 and payload.get("reason") == "AlreadyExists":
                        log.already.add(name)
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                log.conn_errors += 1  # the server is down: the outcome of this write is unknown, retry
            await asyncio.sleep(0.1)


async def _watcher(conn: Conn, s: aiohttp.ClientSession, log: StormLog, deadline: float, total: int) -> None:
    """List, then watch from the list's resourceVersion; on any break reconnect from the last
    resourceVersion seen, the way an informer resumes."""
    rv = None
    names: set[str] = set()
    while time.monotonic() < deadline and len(names) < total:
        try:
            if rv is None:
                async with s.get(f"{conn.url}/api/v1/namespaces/{NS}/configmaps") as r:
                    rv = (await r.json())["metadata"]["resourceVersion"]
            url = f"{conn.url}/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={rv}"
            async with s.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as r:
                if r.status != 200:
                    log.watch_errors.append((r.status, await r.text()))
                    await asyncio.sleep(0.2)
                    continue
                log.watch_connects += 1
                async for line in r.content:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":
                        log.watch_errors.append(ev["object"])
                        rv = None if ev["object"].get("code") == 410 else rv
                        break
                    obj_rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK" and ev["object"]["metadata"]["name"].startswith("cm-"):
                        log.events.append((ev["type"], ev["object"]["metadata"]["name"], int(obj_rv)))
                        names.add(ev["object"]["metadata"]["name"])
                    rv = obj_rv
                    if len(names) >= total:
                        return
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            pass
        await asyncio.sleep(0.2)


def _db_rows(db: Path) -> tuple[str, list[tuple[int, str, int, str]]]:
    """integrity_check and every row of the revision log, read straight from the file."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        rows = con.execute("SELECT id, name, deleted, value FROM kine ORDER BY id").fetchall()
    finally:
        con.close()
    return check, rows


def test_server_sigkill_during_write_storm(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1)
    restarted: subprocess.Popen | None = None
    try:
        c.kubectl("create", "namespace", NS)
        conn = Conn.of(c)
        log = StormLog()
        total = CLIENTS * PER_CLIENT
        deadline = time.monotonic() + 240

        async def storm() -> None:
            async with conn.session() as s:
                w = asyncio.create_task(_watcher(conn, s, log, deadline, total))
                while log.watch_connects == 0 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # the watch is open before the first write
                await asyncio.gather(*(_writer(conn, s, log, i, deadline) for i in range(CLIENTS)))
                log.done = True
                await w

        pid, argv = server_argv(c)
        t = in_netns_thread(conn.netns, storm)
        c.wait_for("a third of the writes acknowledged", lambda: len(log.acked) >= total // 3 or not t.is_alive(),
                   timeout=120, interval=0.01)
        os.kill(pid, signal.SIGKILL)  # the server this test's cluster started
        acked_at_kill = len(log.acked)
        c.wait_for("the server to be gone", lambda: not Path(f"/proc/{pid}").exists()
                   or Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z", timeout=20, interval=0.05)
        assert acked_at_kill < total, "the storm ended before the kill"
        restarted = restart_server(c, argv)
        t.join(timeout=max(1.0, deadline - time.monotonic()))
        assert not t.is_alive(), f"storm did not finish: {len(log.acked)} acked, {len(log.events)} events"
        assert log.done
        print(f"acked before kill {acked_at_kill}, total acked {len(log.acked)}, 409 after retry {len(log.already)}, "
              f"connection errors {log.conn_errors}, statuses {log.statuses}, watch connects {log.watch_connects}")
        assert len(log.acked) > acked_at_kill  # clients reconnected and went on writing
        assert set(log.acked) | log.already == {f"cm-{i}-{j:03d}" for i in range(CLIENTS) for j in range(PER_CLIENT)}
        assert not set(log.statuses) - {409}, log.statuses  # no 5xx, nothing but the retried AlreadyExists

        # Every acknowledged write is there, unchanged, with the resourceVersion it was acknowledged with.
        items = {i["metadata"]["name"]: i for i in c.kjson("get", "configmaps", "-n", NS)["items"]
                 if i["metadata"]["name"].startswith("cm-")}  # not the kube-root-ca.crt a controller adds
        assert set(items) == set(log.acked) | log.already
        for name, rv in log.acked.items():
            assert items[name]["data"] == content(name), name
            assert items[name]["metadata"]["resourceVersion"] == rv, name
        for name, obj in items.items():  # nothing half-written: every object whole and valid
            assert obj["data"] == content(name) and obj["kind"] == "ConfigMap", name
            assert validate("configmaps", obj) == [], name

        # The log itself: intact, every value parses, one create row per object, nothing else.
        check, rows = _db_rows(c.state_dir / c.name / "server" / "state.db")
        assert check == "ok"
        for rid, key, deleted, value in rows:
            json.loads(value)  # each row is whole JSON
        mine = [(rid, key, deleted, json.loads(v)) for rid, key, deleted, v in rows
                if key.startswith(f"/registry/configmaps/{NS}/cm-")]
        assert sorted(k.rsplit("/", 1)[1] for _, k, _, _ in mine) == sorted(items)
        assert all(d == 0 and v["data"] == content(v["metadata"]["name"]) for _, _, d, v in mine)

        # The watcher: exactly one ADDED per object, in revision order, each at the object's revision,
        # across at least one reconnect from its last resourceVersion.
        assert log.watch_connects >= 2, log.watch_connects
        assert not log.watch_errors, log.watch_errors
        assert [e[0] for e in log.events] == ["ADDED"] * len(log.events)
        assert sorted(e[1] for e in log.events) == sorted(items)  # each exactly once
        revs = [e[2] for e in log.events]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)
        assert {n: str(r) for _, n, r in log.events} == {n: o["metadata"]["resourceVersion"] for n, o in items.items()}

        # The restarted server goes on as before: a write after all this works.
        c.kubectl("create", "configmap", "after", "-n", NS, "--from-literal=k=v")
        assert c.kjson("get", "configmap", "after", "-n", NS)["data"] == {"k": "v"}
    finally:
        stop_cluster(c)
        if restarted is not None:
            restarted.wait(timeout=30)  # reap our child, which `down` stopped


# -- the store's disk full -----------------------------------------------------
KUBECTL = str(Path(sys.executable).parent / "kubectl")


class LoopbackServer:
    """`nanokube server` alone on a 127.0.0.1 port (no cluster network needed), data dir given."""

    def __init__(self, data_dir: Path, log: Path):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data_dir, self.log_path = data_dir, log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "nanokube", "server", "--data-dir", str(data_dir), "--port", str(self.port),
                 "--cluster-dns-port", "0"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 60
        while self.call("GET", "/readyz")[0] != 200:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.2)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """(HTTP code, parsed body) of one raw request with the admin token; (0, None) if no answer."""
        import urllib.error
        import urllib.request
        token = (self.data_dir / "token").read_text().strip() if (self.data_dir / "token").exists() else ""
        ca = self.data_dir / "pki" / "ca.crt"
        if not ca.exists():
            return 0, None
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(ca)), timeout=20) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        except OSError:
            return 0, None
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": content(name)}


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem has no block left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512):
            buf = b"\0" * chunk
            try:
                while True:
                    f.write(buf)
            except OSError:
                pass


BASE = "/api/v1/namespaces/default/configmaps"


def writes_fail(srv: "LoopbackServer", prefix: str) -> tuple[list[str], dict]:
    """Create ConfigMaps until one is refused; (acked names, the first refusal's Status)."""
    acked = []
    for i in range(300):
        code, st = srv.call("POST", BASE, cm(f"{prefix}-{i}"))
        if code == 201:
            acked.append(f"{prefix}-{i}")
            continue
        assert 500 <= code < 600, (code, st)
        return acked, st
    raise AssertionError(f"300 writes acknowledged on a {prefix} store")


def reads_work(srv: "LoopbackServer", names: list[str]) -> None:
    code, lst = srv.call("GET", BASE)
    assert code == 200, lst
    got = {i["metadata"]["name"]: i["data"] for i in lst["items"]}
    for n in names:
        assert got.get(n) == content(n), n
        code, one = srv.call("GET", f"{BASE}/{n}")
        assert code == 200 and one["data"] == content(n), (n, code)


def test_store_disk_full_then_space_returns(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "nk-hc-store", str(data)], check=True)
    srv: LoopbackServer | None = None
    try:
        srv = LoopbackServer(data, tmp_path / "server.log")
        base = BASE
        for i in range(20):
            assert srv.call("POST", base, cm(f"before-{i}"))[0] == 201

        # Disk full: writes refused with a Status, reads go on, the refused object is not there.
        fill(data / "filler")
        acked_full, st = writes_fail(srv, "full")
        print("disk full:", st)
        assert st["kind"] == "Status" and st["status"] == "Failure" and st["code"] in (500, 503, 507), st
        assert "full" in st["message"], st
        refused = f"full-{len(acked_full)}"
        assert srv.call("GET", f"{base}/{refused}")[0] == 404
        assert srv.proc.poll() is None  # the server did not fall over
        reads_work(srv, [f"before-{i}" for i in range(20)] + acked_full)
        # Space returns: the same write and new ones go through.
        (data / "filler").unlink()
        assert srv.call("POST", base, cm(refused))[0] == 201
        assert srv.call("POST", base, cm("after-space"))[0] == 201
        reads_work(srv, [refused, "after-space"])

        # Nothing corrupted: the file checks out, and a fresh server over it has every acknowledged write.
        everything = [f"before-{i}" for i in range(20)] + acked_full + [refused, "after-space"] 
        srv.stop()
        check, rows = _db_rows(data / "state.db")
        assert check == "ok"
        assert all(json.loads(v) for _, _, _, v in rows)
        srv = LoopbackServer(data, tmp_path / "server.log")
        reads_work(srv, everything)
        code, lst = srv.call("GET", base)
        assert sorted(i["metadata"]["name"] for i in lst["items"] if i["metadata"]["name"] != "kube-root-ca.crt") \
            == sorted(everything)
    finally:
        if srv is not None:
            srv.stop()
        subprocess.run(["umount", str(data)], check=False)


def test_store_goes_read_only_then_is_repaired(tmp_path):
    """The data dir's filesystem turns read-only under the server, as ext4 does on an error
    (errors=remount-ro; the error is raised through ext4's own trigger_fs_error knob on a
    loop-mounted image this test made): writes fail with a 5xx Status, reads keep working, the
    server stays up. Repaired (stop, e2fsck, mount again), a restarted server has every
    acknowledged write and takes new ones."""
    if os.geteuid() != 0:
        pytest.skip("needs root to loop-mount an image")
    img, data = tmp_path / "store.img", tmp_path / "data"
    data.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True,
                          check=True).stdout.strip()
    srv: LoopbackServer | None = None
    try:
        subprocess.run(["blockdev", "--setrw", loop], check=True)  # a reused loop device may carry a ro flag
        subprocess.run(["mount", "-t", "ext4", "-o", "errors=remount-ro", loop, str(data)], check=True)
        srv = LoopbackServer(data, tmp_path / "server.log")
        before = [f"before-{i}" for i in range(20)]
        for n in before:
            assert srv.call("POST", BASE, cm(n))[0] == 201
        Path(f"/sys/fs/ext4/{Path(loop).name}/trigger_fs_error").write_text("nanokube chaos test\n")
        opts = next(l for l in Path("/proc/mounts").read_text().splitlines() if f" {data} " in l).split()[3].split(",")
        assert "ro" in opts or "emergency_ro" in opts, opts  # newer kernels say emergency_ro
        acked, st = writes_fail(srv, "ro")
        print("read-only store:", st)
        assert acked == [] and st["kind"] == "Status" and st["status"] == "Failure" and st["code"] == 500, st
        assert "I/O error" in st["message"] or "readonly" in st["message"], st
        assert srv.call("GET", f"{BASE}/ro-0")[0] == 404
        assert srv.proc.poll() is None
        reads_work(srv, before)
        # Repair: the server stops, the filesystem is checked and mounted again, a new server starts.
        srv.stop()
        srv = None
        subprocess.run(["umount", str(data)], check=True)
        fsck = subprocess.run(["e2fsck", "-fy", loop], capture_output=True, text=True)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors corrected
        subprocess.run(["mount", "-t", "ext4", "-o", "errors=remount-ro", loop, str(data)], check=True)
        srv = LoopbackServer(data, tmp_path / "server.log")
        reads_work(srv, before)
        assert srv.call("POST", BASE, cm("after-repair"))[0] == 201
        reads_work(srv, ["after-repair"])
        srv.stop()
        srv = None
        check, rows = _db_rows(data / "state.db")
        assert check == "ok" and all(json.loads(v) for _, _, _, v in rows)
    finally:
        if srv is not None:
            srv.stop()
        subprocess.run(["umount", str(data)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)


# -- the server unreachable for a minute ------------------------------------------------------
STEADY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 4
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      containers:
      - {name: c, image: busybox, command: [sh, -c, 'while true; do sleep 1; done']}
---
apiVersion: v1
kind: Pod
metadata: {name: ender}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: [sh, -c, 'sleep 25; exit 3']}
"""
OUTAGE = 60.0


def container_pids(c: Cluster) -> dict[str, str]:
    """container id → its process id, as each node's shims record them."""
    out = {}
    for node_dir in (c.state_dir / c.name / "nodes").iterdir():
        for d in (node_dir / "containers").iterdir():
            if (d / "pid").exists():
                out[d.name] = (d / "pid").read_text().split()[0]
    return out


def running(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_server_unreachable_for_a_minute(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=2)
    stopped = None
    try:
        c.kubectl("apply", "-f", "-", input=STEADY)
        c.kubectl("rollout", "status", "deploy/steady", "--timeout=120s")
        c.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/ender", "--timeout=60s")
        before = {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=steady")["items"]}
        ender_cid = c.kjson("get", "pod", "ender")["status"]["containerStatuses"][0]["containerID"].split("://")[1]
        pids = {cid: p for cid, p in container_pids(c).items() if cid != ender_cid}  # ender exits by design
        assert len(pids) >= 4 and all(running(p) for p in pids.values())
        agents = [int(f.read_text()) for f in (c.state_dir / c.name / "pids").glob("node*.pid")]
        spid, _ = server_argv(c)

        os.kill(spid, signal.SIGSTOP)  # the server this test's cluster started: it answers nothing now
        stopped = spid
        t0 = time.monotonic()
        assert c.kubectl("get", "--raw", "/readyz", "--request-timeout=3s", check=False).returncode != 0
        while time.monotonic() - t0 < OUTAGE:
            # all along: every agent and every container process is still there
            assert all(running(str(a)) for a in agents), "an agent died while the server was away"
            assert all(running(p) for p in pids.values()), "a container died while the server was away"
            time.sleep(5)
        os.kill(spid, signal.SIGCONT)
        stopped = None
        outage = time.monotonic() - t0

        c.wait_for("the server to answer", lambda: c.kubectl("get", "--raw", "/readyz", check=False).returncode == 0)
        c.wait_for("both nodes Ready", lambda: all(
            any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"])
            for n in c.kjson("get", "nodes")["items"]), timeout=90)
        after = {p["metadata"]["name"]: p for p in c.kjson("get", "pods", "-l", "app=steady")["items"]}
        assert set(after) == set(before)  # nothing replaced
        for name, p in after.items():
            cs, cs0 = p["status"]["containerStatuses"][0], before[name]["status"]["containerStatuses"][0]
            assert cs["restartCount"] == 0 and cs["state"]["running"]["startedAt"] == cs0["state"]["running"]["startedAt"]
        now = container_pids(c)
        assert all(now.get(cid) == p and running(p) for cid, p in pids.items())  # the very same processes

        # Catching up: what happened on the node while the server was away reaches the API ...
        def ended():
            st = c.kjson("get", "pod", "ender")["status"]
            t = (st.get("containerStatuses") or [{}])[0].get("state", {}).get("terminated")
            return st["phase"] == "Failed" and t and t["exitCode"] == 3 and t
        c.wait_for("the pod that ended during the outage to be reported Failed", ended, timeout=60)
        # ... and what the API asks afterwards reaches the nodes: a new pod runs, a deleted one is gone.
        c.kubectl("run", "after", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
        c.kubectl("wait", "--for=condition=Ready", "pod/after", "--timeout=90s")
        assert c.kubectl("exec", "after", "--", "echo", "hi").stdout.strip() == "hi"
        victim = sorted(after)[0]
        old = set(container_pids(c).items())
        c.kubectl("delete", "pod", victim, "--timeout=60s")
        c.kubectl("rollout", "status", "deploy/steady", "--timeout=90s")
        gone = [p for cid, p in old if cid not in container_pids(c)]
        assert gone and not any(running(p) for p in gone)
        print(f"outage {outage:.0f}s; {len(pids)} containers kept their pids")
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        stop_cluster(c)

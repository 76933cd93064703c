"""The node's ingress controller: informers → ingress.render → nginx.conf → nginx, plus status.

Each agent runs one real nginx (Debian's package) as its child, in the node's network
namespace (where the agent already lives), bound to the node IP's ports 80 and 443. The
key design choice: nginx does all the proxying and we only keep its config current — render
(pure, ingress.py) on every change, write only when the text or a certificate differs, check
it with ``nginx -t`` and send SIGHUP, which nginx turns into a graceful reload (new workers
take new connections, old ones finish theirs), so endpoint changes drop no requests.

Everything nginx writes lives under ``<data_dir>/ingress/`` (config, pid file, temp dirs,
error log, certificates); workers run as ``nobody``. nginx gets PR_SET_PDEATHSIG=SIGQUIT, so
it quits gracefully if the agent dies, the agent sends SIGQUIT when it stops, and
``stop_leftover`` (used at start and by ``nanokube down``) finds a stray master by its pid
file and ends it and its workers.

One agent — the first Ready node by name — writes ``status.loadBalancer`` of the Ingresses
it serves: the IPs of every Ready node (all of them run this proxy), a value that changes
only when a node's readiness does.
"""
from __future__ import annotations

import asyncio
import copy
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.client.informer import shared
from . import ingress

log = logging.getLogger("nanokube.ingress")
PR_SET_PDEATHSIG = 1


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _ours(pid: int, prefix: Path) -> bool:
    """Is ``pid`` an nginx master started on this prefix's config (not someone else's nginx)?"""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmd.startswith(b"nginx: master process") and str(prefix / "nginx.conf").encode() in cmd


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] == "Z"
    except (OSError, IndexError):
        return True


def stop_leftover(prefix: Path, *, grace: float = 5.0) -> bool:
    """End the nginx whose pid file is under ``prefix`` (SIGQUIT, then SIGKILL with its workers).
    Returns whether there was one."""
    try:
        pid = int((prefix / "nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    if not _ours(pid, prefix):
        return False
    workers = _children(pid)
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + grace
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in [pid, *workers, *_children(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def ensure_default_cert(path: Path) -> None:
    """The catch-all server's self-signed certificate (like ingress-nginx's "Fake Certificate")."""
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp) + ".key", "-out", str(tmp) + ".crt", "-days", "3650",
                    "-subj", "/O=nanokube/CN=Ingress Controller Fake Certificate"], check=True, capture_output=True)
    data = Path(str(tmp) + ".crt").read_bytes() + Path(str(tmp) + ".key").read_bytes()
    for s in (".crt", ".key"):
        Path(str(tmp) + s).unlink()
    _write(path, data, mode=0o600)


def _write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pdeathsig() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)


class IngressAgent:
    def __init__(self, client: Any, *, node_name: str, node_ip: str, data_dir: Path,
                 nginx: str | None = None, min_sync_period: float = 0.2, controller: str = ingress.CONTROLLER):
        self.client, self.node_name, self.node_ip = client, node_name, node_ip
        self.prefix = data_dir / "ingress"
        self.nginx = nginx or nginx_binary()
        self.min_sync_period, self.controller = min_sync_period, controller
        self.ingresses = shared(client, "ingresses")
        self.classes = shared(client, "ingressclasses")
        self.services = shared(client, "services")
        self.endpoints = shared(client, "endpoints")
        self.secrets = shared(client, "secrets")
        self.nodes = shared(client, "nodes")
        self._dirty = asyncio.Event()
        for inf in (self.ingresses, self.classes, self.services, self.endpoints, self.secrets):
            inf.add_handler(on_add=self._changed, on_update=lambda o, n: self._changed(), on_delete=self._changed)
        self.nodes.add_handler(on_add=self._changed, on_delete=self._changed,
                               on_update=lambda o, n: (ingress.node_ready(o) != ingress.node_ready(n)
                                                       or ingress.node_ip(o) != ingress.node_ip(n)) and self._changed())
        self.proc: subprocess.Popen | None = None
        self._conf: str | None = None
        self._files: dict[str, bytes] = {}
        self.reloads = 0

    def _changed(self, _obj: Any = None) -> None:
        self._dirty.set()

    @property
    def opts(self) -> ingress.Options:
        return ingress.Options(listen=[self.node_ip], prefix=str(self.prefix),
                               default_cert=str(self.prefix / "default.pem"))

    def prepare(self) -> None:
        for d in ("tmp", "certs"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.prefix / "certs", 0o700)
        if stop_leftover(self.prefix):
            log.info("stopped an nginx left by an earlier agent")
        ensure_default_cert(self.prefix / "default.pem")

    def render(self) -> ingress.Rendered:
        return ingress.render(self.ingresses.list(), self.services.list(), self.endpoints.list(),
                              self.secrets.list(), self.classes.list(), self.opts, controller=self.controller)

    def write(self, r: ingress.Rendered) -> bool:
        """Write what changed; True if nginx must (re)load. A config nginx rejects is not installed."""
        changed = False
        for name, data in r.files.items():
            if self._files.get(name) != data:
                _write(self.prefix / name, data, mode=0o600)
                changed = True
        for f in (self.prefix / "certs").glob("*.pem"):
            if f"certs/{f.name}" not in r.files:
                f.unlink()
        self._files = dict(r.files)
        if r.conf != self._conf:
            new = self.prefix / "nginx.conf.new"
            _write(new, r.conf.encode())
            if self.nginx:
                p = subprocess.run([self.nginx, "-t", "-q", "-c", str(new), "-p", str(self.prefix),
                                    "-e", str(self.prefix / "error.log")], capture_output=True, text=True)
                if p.returncode != 0:
                    log.error("nginx rejected the rendered config, keeping the old one: %s", p.stderr.strip())
                    return False
            os.replace(new, self.prefix / "nginx.conf")
            self._conf = r.conf
            changed = True
        return changed

    def start_nginx(self) -> None:
        assert self.nginx
        errlog = open(self.prefix / "nginx.out", "ab")
        self.proc = subprocess.Popen([self.nginx, "-c", str(self.prefix / "nginx.conf"), "-p", str(self.prefix),
                                      "-e", str(self.prefix / "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog, preexec_fn=_pdeathsig)
        errlog.close()
        log.info("nginx started (pid %d) on %s:80,443", self.proc.pid, self.node_ip)

    def reload(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)
            self.reloads += 1

    async def stop_nginx(self, *, grace: float = 5.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
        deadline = time.monotonic() + grace
        while p.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if p.poll() is None:
            workers = _children(p.pid)
            p.kill()
            for w in workers:
                try:
                    os.kill(w, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
        log.info("nginx stopped")

    async def write_status(self) -> int:
        """As the status writer, set status.loadBalancer of our Ingresses; returns updates made."""
        nodes = self.nodes.list()
        if ingress.status_writer(nodes) != self.node_name:
            return 0
        want = ingress.lb_status(nodes)
        n = 0
        classes = self.classes.list()
        for obj in self.ingresses.list():
            if not ingress.is_ours(obj, classes, controller=self.controller):
                continue
            if ((obj.get("status") or {}).get("loadBalancer") or {}) == want:
                continue
            new = copy.deepcopy(obj)
            new.setdefault("status", {})["loadBalancer"] = want
            try:
                await self.client.update("ingresses", new, namespace=obj["metadata"]["namespace"], subresource="status")
                n += 1
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                self._dirty.set()  # conflict: the informer brings the new version, try again
        return n

    async def run(self) -> None:
        if not self.nginx:
            log.warning("nginx is not installed: no ingress controller on this node (apt-get install nginx)")
            await asyncio.Event().wait()  # the agent stops when any of its tasks ends
        infs = (self.ingresses, self.classes, self.services, self.endpoints, self.secrets, self.nodes)
        tasks = [asyncio.create_task(i.run()) for i in infs]
        try:
            await asyncio.to_thread(self.prepare)
            await asyncio.gather(*(i.wait_synced() for i in infs))
            while True:
                self._dirty.clear()
                try:
                    r = await asyncio.to_thread(self.render)
                    changed = await asyncio.to_thread(self.write, r)
                    if self.proc is None or self.proc.poll() is not None:
                        if self.proc is not None:
                            log.warning("nginx exited with %s; restarting", self.proc.returncode)
                            await asyncio.sleep(1)
                        if self._conf is not None:
                            self.start_nginx()
                    elif changed:
                        self.reload()
                        log.info("nginx reloaded (%d ingresses)", len(r.ingresses))
                    await self.write_status()
                except Exception as e:  # noqa: BLE001 - retry on the next round
                    log.warning("ingress sync failed: %r", e)
                    await asyncio.sleep(1)
                    self._dirty.set()
                await asyncio.sleep(self.min_sync_period)
                try:  # wake up now and then to notice a dead nginx
                    await asyncio.wait_for(self._dirty.wait(), timeout=5.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            for t in tasks:
                t.cancel()
            await self.stop_nginx()

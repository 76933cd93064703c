"""The kubelet's HTTP endpoint (port 10250): container logs for ``kubectl logs`` and the
exec stream for ``kubectl exec`` (see streaming.py), both proxied by the apiserver, the
Summary API (/stats/summary, see stats.py) the apiserver's metrics.k8s.io reads, plus
/healthz and Prometheus /metrics. Requests other than /healthz and /readyz must carry the
kubelet bearer token (the apiserver's; users reach /metrics through nodes/proxy, as upstream's
``kubectl get --raw /api/v1/nodes/NODE/proxy/metrics``).

Logs are read from the CRI-format file the shim writes; ``follow`` keeps streaming until
the container has exited and its log is drained.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from nanokube.network.podnet import pod_netns_name
from . import portforward, streaming
from .podspec import container_id


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                              "reason": reason, "message": message}, status=code,
                             reason=message.replace("\r", " ").replace("\n", " "))  # a failed exec upgrade only sees this


def format_line(line: str, *, timestamps: bool) -> tuple[str, str] | None:
    """A CRI log line → (timestamp, text to print); a P(artial) piece of a long line goes on
    without a newline, so the pieces print as the line they came from."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4:
        return None
    ts, _stream, tag, text = parts
    end = "" if tag == "P" else "\n"
    return ts, (f"{ts} {text}{end}" if timestamps else text + end)


class KubeletServer:
    def __init__(self, kubelet: Any, *, token: str | None):
        self.kubelet = kubelet
        self.token = token

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/exec/{ns}/{pod}/{container}", self.exec)
        app.router.add_get("/attach/{ns}/{pod}/{container}", self.attach)
        app.router.add_get("/stats/summary", lambda r: web.json_response(self.kubelet.stats.summary()))
        app.router.add_get("/portForward/{ns}/{pod}", self.port_forward)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path not in ("/healthz", "/readyz") and self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once the node is registered and its pod network is up."""
        if self.kubelet.ready.is_set():
            return web.Response(text="ok")
        return web.Response(text="node network not set up yet", status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        from . import prober
        lines = ["# TYPE nanokube_probe_start_jitter_seconds summary"]
        for q, v in prober.jitter_quantiles().items():
            lines.append(f'nanokube_probe_start_jitter_seconds{{quantile="{q}"}} {v:.6f}')
        lines.append("# TYPE prober_probe_total counter")
        for kind, n in sorted(prober.PROBES_RUN.items()):
            lines.append(f'prober_probe_total{{probe_type="{kind}"}} {n}')
        lines.append("# TYPE kubelet_running_pods gauge")
        lines.append(f"kubelet_running_pods {len(self.kubelet.tracks)}")
        lines.append("# TYPE nanokube_stats_sample_duration_seconds gauge")  # the last cgroup sampling pass
        lines.append(f"nanokube_stats_sample_duration_seconds {self.kubelet.stats.last_duration:.6f}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def _stream_target(self, request: web.Request, what: str) -> tuple[str, Any] | web.Response:
        """The running container a stream request (exec, attach) is for: (id, status), or the
        error response upstream's kubelet gives."""
        ns, name, cname = request.match_info["ns"], request.match_info["pod"], request.match_info["container"]
        if not streaming.negotiate(request):
            return _status(400, "BadRequest", f"{what} needs a WebSocket upgrade with one of the subprotocols "
                                              + ", ".join(streaming.PROTOCOLS))
        pod = self.kubelet.pods.get(f"{ns}/{name}")
        track = self.kubelet.tracks.get(pod["metadata"]["uid"]) if pod else None
        t = track.containers.get(cname) if track else None
        if t is None or t.attempt < 0:
            return _status(404, "NotFound", f'container not found ("{cname}")')
        cid = container_id(pod["metadata"]["uid"], cname, t.attempt)
        st = await self.kubelet.runtime.status(cid)
        if st.state != "running":
            return _status(400, "BadRequest", f'container "{cname}" in pod "{name}" is not running')
        return cid, st

    async def exec(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        command = q.getall("command", [])
        if not command:
            return _status(400, "BadRequest", "you must specify at least 1 command")
        target = await self._stream_target(request, "exec")
        if isinstance(target, web.Response):
            return target
        cid, st = target
        flag = lambda k: q.get(k) in ("true", "1")  # noqa: E731
        return await streaming.serve_exec(request, self.kubelet.runtime.exec_argv(cid, command), command,
                                          stdin=flag("stdin"), tty=flag("tty"), root=f"/proc/{st.pid}/root")

    async def attach(self, request: web.Request) -> web.StreamResponse:
        target = await self._stream_target(request, "attach")
        if isinstance(target, web.Response):
            return target
        cid, _ = target
        rt = self.kubelet.runtime
        sock = rt.attach_socket(cid)

        async def running() -> bool:
            return (await rt.status(cid)).state == "running"

        async def exit_code() -> int | None:
            return (await rt.status(cid)).exit_code
        return await streaming.serve_attach(request, sock_path=sock if sock.exists() else None, log_path=rt.log_path(cid),
                                            running=running, exit_code=exit_code)

    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["pod"]
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if portforward.PROTOCOL not in offered:
            return _status(400, "BadRequest", f"port-forward needs a WebSocket upgrade with subprotocol {portforward.PROTOCOL}")
        pod = self.kubelet.pods.get(f"{ns}/{name}")
        track = self.kubelet.tracks.get(pod["metadata"]["uid"]) if pod else None
        if track is None or not track.pod_ip:
            return _status(404, "NotFound", f'pod "{name}" has no network namespace on this node')
        uid = pod["metadata"]["uid"]
        return await portforward.serve_portforward(request, netns_name=pod_netns_name(uid),
                                                   pod_desc=f"{name}_{ns}, uid {uid}")

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, cname = request.match_info["ns"], request.match_info["pod"], request.match_info["container"]
        q = request.query
        pod = self.kubelet.pods.get(f"{ns}/{name}")
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        uid = pod["metadata"]["uid"]
        track = self.kubelet.tracks.get(uid)
        t = track.containers.get(cname) if track else None
        if t is None or t.attempt < 0:
            reason = (t.waiting[0] if t and t.waiting else "ContainerCreating")
            return _status(400, "BadRequest", f'container "{cname}" in pod "{name}" is waiting to start: {reason}')
        attempt = t.attempt
        if q.get("previous") in ("true", "1"):
            attempt -= 1
            if attempt < 0:
                return _status(400, "BadRequest", f'previous terminated container "{cname}" in pod "{name}" not found')
        cid = container_id(uid, cname, attempt)
        path: Path = self.kubelet.runtime.log_path(cid)
        if not path.exists():
            return _status(400, "BadRequest", f'previous terminated container "{cname}" in pod "{name}" not found')
        timestamps = q.get("timestamps") in ("true", "1")
        follow = q.get("follow") in ("true", "1") and q.get("previous") not in ("true", "1")
        since = None
        if q.get("sinceSeconds"):
            since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=int(q["sinceSeconds"]))).strftime("%Y-%m-%dT%H:%M:%S")
        elif q.get("sinceTime"):
            since = q["sinceTime"][:19]
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        sent = 0
        with open(path, "r", errors="replace") as f:
            lines = f.readlines()
            out = [x for x in (format_line(l, timestamps=timestamps) for l in lines) if x and (since is None or x[0][:19] >= since)]
            if tail is not None:
                out = out[-tail:] if tail > 0 else []
            for _, text in out:
                data = text.encode()
                if limit is not None:
                    data = data[: max(0, limit - sent)]
                await resp.write(data)
                sent += len(data)
            while follow:
                line = f.readline()
                if line:
                    x = format_line(line, timestamps=timestamps)
                    if x:
                        await resp.write(x[1].encode())
                    continue
                try:
                    if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:  # rotated: follow the new file
                        f.close()
                        f = open(path, "r", errors="replace")
                        continue
                except FileNotFoundError:
                    pass
                st = await self.kubelet.runtime.status(cid)
                if st.state != "running":
                    break
                await asyncio.sleep(0.2)
            f.close()  # the file followed last (the with closes only the first)
        await resp.write_eof()
        return resp

"""The kubelet: run the pods bound to this node and report how they are doing.

One keyed work queue of pods; ``sync_pod`` is level-triggered: it reads the pod from the
informer and what the runtime has on disk, starts what should run (network first, then
containers in order), restarts what exited as the restart policy says with upstream's
back-off (10 s doubling to 300 s, reset after 10 minutes of running), and writes the status
when it changed. A ticker re-queues every pod each second, which is how exits are noticed.
Deleted pods are stopped in a task of their own (SIGTERM, SIGKILL after the grace period),
their kernel objects removed, then the deletion is finalised with grace 0.

Containers and pod networks are found again after a restart (ids are deterministic:
``<pod uid>-<container>-<attempt>``), so a restarted kubelet adopts running pods without
restarting them.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanokube.api.errors import ApiError
from nanokube.client.events import Recorder, emit
from nanokube.client.informer import key_of, shared
from nanokube.client.workqueue import WorkQueue, run_workers
from nanokube.host import mounts as host_mounts
from nanokube.network.podnet import PodNet
from nanokube.network.routes import plan_routes
from nanokube.runtime.runtime import ContainerConfig, ImageNotFound, Mount
from nanokube.runtime import images
from . import eviction, nodestatus, podspec, prober, probes, security, stats, status as podstatus, volumes

log = logging.getLogger("nanokube.kubelet")
Obj = dict[str, Any]
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0
VOLUME_RESYNC = 60.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(ts: str | None) -> float:
    if not ts:
        return 0.0
    t = dt.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    return (dt.datetime.now(dt.timezone.utc) - t).total_seconds()


@dataclass
class ContainerTrack:
    attempt: int = -1                 # attempt number of the current container, -1 = none yet
    backoff: float = 0.0              # seconds to wait before the next restart
    next_start: float = 0.0           # monotonic time before which we must not restart
    delay: float = 0.0                # the back-off applied to the pending restart
    waiting: tuple[str, str] | None = None  # (reason, message) when not running
    last_terminated: Obj | None = None
    probe: prober.ProbeState | None = None   # probe results of the running container
    probe_cid: str | None = None              # the container the probe workers watch
    killing: bool = False                     # a liveness kill is under way
    pull_backoff: float = 0.0                 # image "pull" back-off (no registry: a missing image)
    pull_retry_at: float = 0.0                # monotonic time of the next pull attempt


@dataclass
class PodTrack:
    uid: str
    containers: dict[str, ContainerTrack] = field(default_factory=dict)
    pod_ip: str | None = None
    start_time: str | None = None
    terminating: asyncio.Task | None = None
    volumes: dict[str, str] = field(default_factory=dict)
    volumes_at: float | None = None
    cgroup_set: bool = False
    net: Any = None
    evict: str | None = None   # the eviction manager chose this pod: the message to evict it with


# Upstream's podPidsLimit defaults to unlimited; a node shared by several pods needs a cap, so
# ours is 1024 per pod (--pod-max-pids -1 lifts it).
DEFAULT_POD_PIDS_LIMIT = 1024


class Kubelet:
    def __init__(self, client: Any, *, node_name: str, node_ip: str, runtime: Any, network: Any,
                 cgroup_prefix: str, state_dir: Path, capacity: dict[str, str] | None = None,
                 kubelet_port: int = 10250, max_pods: int = 110, simulated_node: bool = False,
                 stats_interval: float = stats.DEFAULT_INTERVAL, status_interval: float = 10.0,
                 pod_pids_limit: int | None = DEFAULT_POD_PIDS_LIMIT,
                 eviction_hard: str = eviction.DEFAULT_EVICTION_HARD, reserved: list[dict[str, str]] | None = None,
                 eviction_pressure_transition_period: float = 300.0):
        self.client = client
        self.pod_pids_limit = pod_pids_limit  # podPidsLimit: a fork bomb stays inside its pod
        self.node_name, self.node_ip = node_name, node_ip
        self.runtime, self.network = runtime, network
        self.cgroup_prefix = cgroup_prefix.strip("/")
        self.events = Recorder(client, component="kubelet", host=node_name)  # off the pod start path
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity or nodestatus.default_capacity(max_pods)
        # Node allocatable and memory-pressure eviction (eviction.py): what the scheduler may
        # place here is capacity minus reservations minus the hard eviction threshold.
        thresholds = eviction.parse_thresholds(eviction_hard)
        self.allocatable = eviction.allocatable(self.capacity, reserved=reserved or [], thresholds=thresholds)
        self.evictor = eviction.EvictionManager(thresholds, podspec.bytes_(self.capacity["memory"]),
                                                transition_period=eviction_pressure_transition_period)
        # status.images (for the scheduler's ImageLocality); sizes are cached per image version.
        self.node_images = nodestatus.NodeImages(runtime.images) if hasattr(runtime, "images") else None
        self.kubelet_port = kubelet_port
        self.pods = shared(client, "pods", field_selector=f"spec.nodeName={node_name}")
        self.nodes = shared(client, "nodes")
        self.queue = WorkQueue(base_delay=0.2, max_delay=10)
        self.tracks: dict[str, PodTrack] = {}   # by pod uid
        self.status_interval = status_interval  # node status and Lease renewal (upstream: 10 s)
        self._tokens: dict[tuple[str, str], tuple[str, float, float]] = {}  # (pod uid, volume/path) -> token, issued, expires
        self.pods.add_handler(on_add=self._enqueue, on_update=lambda o, n: self._enqueue(n), on_delete=self._enqueue)
        self.nodes.add_handler(on_add=self._nodes_changed, on_update=lambda o, n: self._nodes_changed(n),
                               on_delete=self._nodes_changed)
        self._routes_dirty = asyncio.Event()
        self.ready = asyncio.Event()
        self._refs: dict[str, dict[tuple[str, str], Obj | None]] = {}
        self._uid_by_key: dict[str, str] = {}
        self.local_path_root = volumes.local_path_root(self.state_dir.parent)  # local-path PersistentVolumes
        self.stats = stats.for_kubelet(self, simulated=simulated_node, interval=stats_interval)  # GET /stats/summary

    def _enqueue(self, pod: Obj) -> None:
        self.queue.add(key_of(pod))

    def _nodes_changed(self, _n: Obj) -> None:
        self._routes_dirty.set()

    # -- node ----------------------------------------------------------------------------------
    async def _node_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            try:
                images = await asyncio.to_thread(self.node_images.status) if self.node_images else None
                await nodestatus.heartbeat(self.client, node_name=self.node_name, node_ip=self.node_ip,
                                           capacity=self.capacity, kubelet_port=self.kubelet_port, images=images,
                                           allocatable=self.allocatable,
                                           memory_pressure=self.evictor.memory_pressure)
                await nodestatus.renew_lease(self.client, self.node_name)
            except Exception as e:  # noqa: BLE001 - try again next beat
                log.warning("node heartbeat: %r", e)

    async def _routes_loop(self) -> None:
        cidr_set = False
        while True:
            await self._routes_dirty.wait()
            self._routes_dirty.clear()
            me = self.nodes.get(self.node_name)
            cidr = ((me or {}).get("spec") or {}).get("podCIDR")
            # pyroute2's synchronous API runs its own event loop: call it from a worker thread.
            try:
                if cidr and not cidr_set:
                    await asyncio.to_thread(self.network.setup_node, cidr)
                    cidr_set = True
                    self.ready.set()
                if cidr_set:
                    await asyncio.to_thread(self.network.sync_routes, plan_routes(self.nodes.list(), self.node_name))
            except Exception as e:  # noqa: BLE001 - next change or tick
                log.warning("node network: %r", e)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for p in self.pods.list():
                self.queue.add(key_of(p))
            self._routes_dirty.set()

    # -- adoption and cleanup -------------------------------------------------------------------
    def _adopt(self) -> None:
        """Rebuild tracks from the runtime's containers, so nothing running restarts."""
        for cid in self.runtime.list():
            meta = self.runtime.meta(cid)
            uid, name = meta.get("pod_uid"), meta.get("name")
            if not uid or not name:
                continue
            attempt = int(cid.rsplit("-", 1)[1])
            t = self.tracks.setdefault(uid, PodTrack(uid)).containers.setdefault(name, ContainerTrack())
            t.attempt = max(t.attempt, attempt)

    async def _cleanup_orphans(self) -> None:
        live = {p["metadata"]["uid"] for p in self.pods.list()}
        for cid in self.runtime.list():
            uid = self.runtime.meta(cid).get("pod_uid")
            if uid and uid not in live:
                await self.runtime.remove(cid)
        for uid in self.network.pods():
            if uid not in live:
                self.network.teardown_pod(uid)
        for uid in list(self.tracks):
            if uid not in live:
                self._remove_pod_cgroup(uid)
                self._remove_pod_dir(uid)
                del self.tracks[uid]
        for k in [k for k in self._tokens if k[0] not in self.tracks]:
            del self._tokens[k]

    def _remove_pod_dir(self, uid: str) -> None:
        """The pod's kubelet directory, after the tmpfs of its secret volumes."""
        d = self.state_dir / "pods" / uid
        if d.exists():
            host_mounts.unmount_below(d)
            shutil.rmtree(d, ignore_errors=True)

    def _pod_cgroup(self, uid: str) -> str:
        return f"{self.cgroup_prefix}/pod{uid}"

    def _remove_pod_cgroup(self, uid: str) -> None:
        self.runtime.remove_pause(uid)
        try:
            self.runtime.cgroups.remove(self._pod_cgroup(uid))
        except OSError as e:
            log.warning("removing cgroup of pod %s: %r", uid, e)

    # -- pods ----------------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            # Gone from the API without us (force deletion): kill and clean up at once.
            uid = self._uid_by_key.pop(key, None)
            track = self.tracks.get(uid) if uid else None
            if track is not None and track.terminating is None:
                gone = {"metadata": {"uid": uid, "namespace": key.split("/")[0], "name": key.split("/")[1],
                                     "deletionGracePeriodSeconds": 0}, "spec": {}}
                track.terminating = asyncio.create_task(self._terminate(gone, track, finalize=False))
            return
        uid = pod["metadata"]["uid"]
        self._uid_by_key[key] = uid
        track = self.tracks.setdefault(uid, PodTrack(uid))
        if pod["metadata"].get("deletionTimestamp"):
            if track.terminating is None:
                track.terminating = asyncio.create_task(self._terminate(pod, track))
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            # Finished for good: nothing more runs. Keep the containers for their logs.
            return
        if track.evict is not None:
            await self._evict(pod, track)
            return
        if not self.ready.is_set():
            self.queue.add_after(key, 0.2)
            return
        if track.start_time is None:
            track.start_time = (pod.get("status") or {}).get("startTime") or _now()
        if track.net is None and pod["spec"].get("hostNetwork"):
            # The node's own network namespace (the agent's): no veth, the node's address.
            track.net = PodNet(uid=uid, netns="", netns_path="", ip=self.node_ip, gateway="", host_veth="")
        if track.net is None:
            track.net = self.network.get_pod(uid) or await asyncio.to_thread(self.network.setup_pod, uid)
        net = track.net
        track.pod_ip = net.ip
        if not track.cgroup_set:  # the pod level of the cgroup tree, with the pod's totals
            pod_cg = self._pod_cgroup(uid)
            self.runtime.cgroups.create(pod_cg)
            self.runtime.cgroups.set_resources(pod_cg, **podspec.pod_resources(pod))
            self.runtime.cgroups.set_pids_limit(pod_cg, self.pod_pids_limit)
            track.cgroup_set = True
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and _seconds_since(track.start_time) > deadline:
            await self._deadline_exceeded(pod, track)
            return
        try:
            # Volumes are set up once, then refreshed now and then (configMap/secret updates).
            if track.volumes_at is None or time.monotonic() - track.volumes_at > VOLUME_RESYNC:
                track.volumes = await self._volumes(pod)
                track.volumes_at = time.monotonic()
        except volumes.VolumeError as e:
            await emit(self.client, pod, reason="FailedMount", type="Warning", component="kubelet",
                       host=self.node_name, message=f"MountVolume.SetUp failed: {e}")
            self.queue.add_after(key, 2)
            return
        init_views: list[podstatus.ContainerView] = []
        initialized = True
        for c in pod["spec"].get("initContainers") or []:
            if not initialized:
                init_views.append(podstatus.ContainerView(name=c["name"], image=c.get("image", ""),
                                                          state={"waiting": {"reason": "PodInitializing"}}))
                continue
            sidecar = c.get("restartPolicy") == "Always"
            # A sidecar (restartPolicy Always) keeps running beside the app: the next init
            # container starts once it has started; it restarts like an app container.
            v = await self._sync_container(pod, track, c, net, init=not sidecar,
                                           policy="Always" if sidecar else None)
            v.sidecar = sidecar
            init_views.append(v)
            initialized = podstatus.init_done(v)
        views, ephemeral = [], []
        for c in pod["spec"].get("containers") or []:
            if initialized:
                views.append(await self._sync_container(pod, track, c, net))
            else:
                views.append(podstatus.ContainerView(name=c["name"], image=c.get("image", ""),
                                                     state={"waiting": {"reason": "PodInitializing"}}))
        if initialized:  # ephemeral containers (kubectl debug) join a running pod; they never restart
            for c in pod["spec"].get("ephemeralContainers") or []:
                ephemeral.append(await self._sync_container(pod, track, c, net, policy="Never"))
        new_status = podstatus.compute(pod, views, pod_ip=track.pod_ip, host_ip=self.node_ip, now=_now(),
                                       start_time=track.start_time, init_views=init_views, ephemeral_views=ephemeral)
        await self._write_status(pod, new_status)

    async def _volumes(self, pod: Obj) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        objects: dict[tuple[str, str], Obj | None] = {}
        for res, name in volumes.referenced(pod):
            try:
                objects[(res, name)] = await self.client.get(res, name, namespace=ns)
            except ApiError as e:
                if e.code != 404:
                    raise
                objects[(res, name)] = None
        await volumes.resolve_claims(self.client, objects)
        for key, src in volumes.tokens_wanted(pod):
            objects[("token", key)] = await self._token(pod, key, src)
        base = self.state_dir / "pods" / pod["metadata"]["uid"]
        return await asyncio.to_thread(volumes.prepare, pod, base, objects, tmpfs=host_mounts.mount_tmpfs)

    async def _token(self, pod: Obj, key: str, src: Obj) -> str | None:
        """A ServiceAccount token bound to the pod (TokenRequest), renewed after 80% of its life."""
        md = pod["metadata"]
        cache_key = (md["uid"], key)
        hit = self._tokens.get(cache_key)
        now = time.time()
        if hit and now < hit[1] + 0.8 * (hit[2] - hit[1]):
            return hit[0]
        req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": int(src.get("expirationSeconds") or 3600),
                        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md["name"], "uid": md["uid"]}}}
        if src.get("audience"):
            req["spec"]["audiences"] = [src["audience"]]
        try:
            tr = await self.client.create_subresource("serviceaccounts", pod["spec"].get("serviceAccountName") or "default",
                                                      "token", req, namespace=md["namespace"])
        except ApiError as e:
            log.warning("token for pod %s/%s: %s", md["namespace"], md["name"], e)
            return hit[0] if hit else None
        self._tokens[cache_key] = (tr["status"]["token"], now, now + req["spec"]["expirationSeconds"])
        return tr["status"]["token"]

    async def _deadline_exceeded(self, pod: Obj, track: PodTrack) -> None:
        """activeDeadlineSeconds: stop everything; the pod fails with DeadlineExceeded."""
        for t in track.containers.values():
            self._stop_probes(t)
        ids = [cid for cid in self.runtime.list() if self.runtime.meta(cid).get("pod_uid") == pod["metadata"]["uid"]]
        await asyncio.gather(*(self.runtime.stop(cid, grace_seconds=float(pod["spec"].get("terminationGracePeriodSeconds", 30)))
                               for cid in ids))
        p = copy.deepcopy(pod)
        p["status"] = {**(pod.get("status") or {}), "phase": "Failed", "reason": "DeadlineExceeded",
                       "message": "Pod was active on the node longer than the specified deadline"}
        for cs in p["status"].get("containerStatuses") or []:
            cs["ready"] = False
        await emit(self.client, pod, reason="DeadlineExceeded", type="Warning", component="kubelet", host=self.node_name,
                   message="Pod was active on the node longer than the specified deadline")
        await self._write_status(pod, p["status"])

    async def _sync_container(self, pod: Obj, track: PodTrack, c: Obj, net: Any, *,
                              init: bool = False, policy: str | None = None) -> podstatus.ContainerView:
        name = c["name"]
        t = track.containers.setdefault(name, ContainerTrack())
        policy = policy or pod["spec"].get("restartPolicy", "Always")
        view = podstatus.ContainerView(name=name, image=c.get("image", ""))
        img = self.runtime.images.resolve(c.get("image", ""))
        if img is not None:
            view.image_id = img.id
        if t.attempt >= 0:
            cid = podspec.container_id(pod["metadata"]["uid"], name, t.attempt)
            st = await self.runtime.status(cid)
            view.container_id = cid
            if st.state == "running":
                view.state = {"running": {"startedAt": st.started_at}}
                view.restart_count = t.attempt
                view.last_state = {"terminated": t.last_terminated} if t.last_terminated else {}
                t.waiting = None
                self._ensure_probes(pod, c, t, cid)
                assert t.probe is not None
                view.ready, view.started = t.probe.ready and t.probe.started, t.probe.started
                if t.probe.failed_liveness and not t.killing:
                    t.killing = True
                    asyncio.create_task(self._kill_unhealthy(pod, c, t, cid, t.probe.failed_liveness))
                return view
            self._stop_probes(t)
            if st.state == "exited":
                term = {"exitCode": st.exit_code, "reason": st.reason, "startedAt": st.started_at,
                        "finishedAt": st.finished_at, "containerID": f"nanokube://{cid}"}
                if st.signal:
                    term["signal"] = st.signal
                if init:
                    # Init containers run to completion; a failure retries unless the policy is Never.
                    restart = st.exit_code != 0 and policy != "Never"
                else:
                    restart = policy == "Always" or (policy == "OnFailure" and st.exit_code != 0)
                view.restart_count = t.attempt
                if not restart:
                    view.state = {"terminated": term}
                    view.will_restart = False
                    view.last_state = {"terminated": t.last_terminated} if t.last_terminated else {}
                    return view
                if t.last_terminated is None or t.last_terminated.get("containerID") != term["containerID"]:
                    # A new exit: schedule the restart with back-off.
                    ran = _seconds_since(st.started_at) - _seconds_since(st.finished_at)
                    if ran >= BACKOFF_RESET:
                        t.backoff = 0.0
                    t.delay = t.backoff
                    t.next_start = time.monotonic() + t.delay
                    t.backoff = BACKOFF_START if t.backoff == 0 else min(t.backoff * 2, BACKOFF_MAX)
                    t.last_terminated = term
                view.last_state = {"terminated": t.last_terminated}
                if time.monotonic() < t.next_start:
                    wait = int(t.next_start - time.monotonic()) + 1
                    msg = (f"back-off {int(t.delay)}s "
                           f"restarting failed container={name} pod={pod['metadata']['name']}_{pod['metadata']['namespace']}"
                           f"({pod['metadata']['uid']})")
                    view.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                    if t.waiting is None or t.waiting[0] != "CrashLoopBackOff":
                        await emit(self.client, pod, reason="BackOff", type="Warning", component="kubelet",
                                   host=self.node_name, message="Back-off restarting failed container "
                                   f"{name} in pod {pod['metadata']['name']}_{pod['metadata']['namespace']}")
                    t.waiting = ("CrashLoopBackOff", msg)
                    self.queue.add_after(key_of(pod), min(wait, 5))
                    return view
        # Start the container (first time, or a restart whose back-off has passed).
        return await self._start(pod, track, c, t, view, net)

    # -- probes --------------------------------------------------------------------------------
    def _ensure_probes(self, pod: Obj, c: Obj, t: ContainerTrack, cid: str) -> None:
        if t.probe_cid == cid and t.probe is not None:
            return
        self._stop_probes(t)
        t.probe, t.probe_cid, t.killing = prober.new_state(c), cid, False
        key, name, uid = key_of(pod), c["name"], pod["metadata"]["uid"]
        pid_box: list[int | None] = []

        def target() -> probes.Target | None:
            cur = self.pods.get(key)
            track = self.tracks.get(uid)
            ct = track.containers.get(name) if track else None
            if cur is None or ct is None or ct.probe_cid != cid or cur["metadata"].get("deletionTimestamp"):
                return None
            if not pid_box:  # the container's pid never changes: read it once
                pid_file = self.runtime.dir(cid) / "pid"
                pid_box.append(int(pid_file.read_text().split()[0]) if pid_file.exists() else None)
            return probes.Target(cur, c, track.pod_ip or "", pid_box[0])

        async def event(kind: str, msg: str) -> None:
            await emit(self.client, pod, reason="Unhealthy", type="Warning", component="kubelet", host=self.node_name,
                       message=f"{kind.capitalize()} probe failed: {msg}")
        for kind in ("startup", "readiness", "liveness"):
            spec = c.get(f"{kind}Probe")
            if spec:
                t.probe.tasks.append(asyncio.create_task(prober.worker(
                    kind, spec, t.probe, target, lambda: self.queue.add(key), event)))

    @staticmethod
    def _stop_probes(t: ContainerTrack) -> None:
        if t.probe is not None:
            t.probe.cancel()
        t.probe, t.probe_cid = None, None

    async def _run_hook(self, hook: Obj, pod: Obj, c: Obj, pod_ip: str, pid: int | None, *,
                        timeout: float) -> tuple[bool, str]:
        """A lifecycle handler (exec or httpGet) runs like a probe with the given timeout."""
        spec = {**hook, "timeoutSeconds": max(1, int(timeout))}
        return await probes.run(spec, probes.Target(pod, c, pod_ip, pid))

    async def _kill_unhealthy(self, pod: Obj, c: Obj, t: ContainerTrack, cid: str, message: str) -> None:
        await emit(self.client, pod, reason="Killing", component="kubelet", host=self.node_name, message=message)
        grace = c.get("livenessProbe", {}).get("terminationGracePeriodSeconds",
                                                 pod["spec"].get("terminationGracePeriodSeconds", 30))
        await self.runtime.stop(cid, grace_seconds=float(grace))
        self.queue.add(key_of(pod))

    async def _image_missing(self, pod: Obj, c: Obj, t: ContainerTrack, view: podstatus.ContainerView) -> None:
        """No local image: ErrImageNeverPull (policy Never), InvalidImageName, or — there is no
        registry — a failed "pull" (ErrImagePull, Warning Failed), then ImagePullBackOff until
        the back-off (10s doubling to 300s, as upstream) allows the next attempt."""
        image, key = c["image"], key_of(pod)
        fail = images.pull_failure(image, c.get("imagePullPolicy"))
        view.restart_count = max(t.attempt, 0)
        now = time.monotonic()

        async def warn(reason: str, message: str, type: str = "Warning") -> None:
            await emit(self.client, pod, reason=reason, type=type, component="kubelet", host=self.node_name,
                       message=message)
        if fail.reason != "ErrImagePull":  # ErrImageNeverPull / InvalidImageName: no pull, recheck later
            if t.waiting is None or t.waiting[0] != fail.reason:
                await warn(fail.reason, fail.event)
            view.state = {"waiting": {"reason": fail.reason, "message": fail.message}}
            t.waiting = (fail.reason, fail.message)
            self.queue.add_after(key, 10)
            return
        if now < t.pull_retry_at:
            msg = f'Back-off pulling image "{image}"'
            if t.waiting is None or t.waiting[0] != "ImagePullBackOff":
                await warn("BackOff", msg, type="Normal")
                await warn("Failed", "Error: ImagePullBackOff")
            view.state = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
            t.waiting = ("ImagePullBackOff", msg)
            self.queue.add_after(key, min(t.pull_retry_at - now + 0.1, 5))
            return
        await warn("Pulling", f'Pulling image "{image}"', type="Normal")
        await warn("Failed", fail.event)
        await warn("Failed", "Error: ErrImagePull")
        t.pull_backoff = images.next_pull_backoff(t.pull_backoff)
        t.pull_retry_at = now + t.pull_backoff
        view.state = {"waiting": {"reason": "ErrImagePull", "message": fail.message}}
        t.waiting = ("ErrImagePull", fail.message)
        self.queue.add_after(key, 1)  # the next sync shows ImagePullBackOff, as upstream

    async def _start(self, pod: Obj, track: PodTrack, c: Obj, t: ContainerTrack, view: podstatus.ContainerView,
                     net: Any) -> podstatus.ContainerView:
        name = c["name"]
        md = pod["metadata"]
        try:
            base = self.runtime.resolve_argv(c["image"], c.get("command"), c.get("args"))
            img_env = self.runtime.image_env(c["image"])
        except ImageNotFound:
            await self._image_missing(pod, c, t, view)
            return view
        t.pull_backoff = 0.0
        try:
            await self._prefetch(pod, c)
            env = podspec.build_env(pod, c, image_env=img_env, pod_ip=net.ip, host_ip=self.node_ip,
                                    lookup=self._lookup_cache(md["namespace"]))
            img = self.runtime.resolve_image(c["image"])
            sec = security.resolve(pod, c, image_user=img.config.user, rootfs=img.rootfs)
            vol_mounts = volumes.mounts(c, track.volumes, pod=pod)  # a bad subPath: SubPathError (a KeyError)
        except KeyError as e:
            msg = str(e).strip("'\"")
            view.state = {"waiting": {"reason": "CreateContainerConfigError", "message": msg}}
            if t.waiting != ("CreateContainerConfigError", msg):
                await emit(self.client, pod, reason="Failed", type="Warning", component="kubelet", host=self.node_name,
                           message=f"Error: {msg}")
            t.waiting = ("CreateContainerConfigError", msg)
            self.queue.add_after(key_of(pod), 2)
            return view
        attempt = t.attempt + 1
        cid = podspec.container_id(md["uid"], name, attempt)
        files = self._pod_files(pod, net.ip)
        cfg = ContainerConfig(
            id=cid, pod_uid=md["uid"], namespace=md["namespace"], pod_name=md["name"], name=name, image=c["image"],
            argv=podspec.argv(c, base, env), env=env, working_dir=c.get("workingDir"), netns_path=net.netns_path,
            hostname=podspec.hostname(pod), cgroup=f"{self._pod_cgroup(md['uid'])}/{name}",
            mounts=[Mount(str(files / "hosts"), "/etc/hosts"), Mount(str(files / "resolv.conf"), "/etc/resolv.conf"),
                    Mount(str(files / "hostname"), "/etc/hostname")] + vol_mounts,
            stdin=bool(c.get("stdin")), stdin_once=bool(c.get("stdinOnce")), tty=bool(c.get("tty")),
            pid_ns=await self._pid_ns(pod, track, c, net),
            security=sec, oom_score_adj=podspec.oom_score_adj(pod, c, memory_capacity=podspec.bytes_(self.capacity["memory"])),
            **podspec.resources(c))
        if attempt == 0:
            self.events.record(pod, reason="Pulled", message=f'Container image "{c["image"]}" already present on machine')
        # Keep one previous container for `kubectl logs --previous`; older ones go.
        if attempt >= 2:
            await self.runtime.remove(podspec.container_id(md["uid"], name, attempt - 2))
        try:
            st = await self.runtime.start(cfg)
        except Exception as e:  # noqa: BLE001 - reported as the container's waiting reason
            msg = str(e)[:500]
            view.state = {"waiting": {"reason": "RunContainerError", "message": msg}}
            t.waiting = ("RunContainerError", msg)
            await emit(self.client, pod, reason="Failed", type="Warning", component="kubelet", host=self.node_name,
                       message=f"Error: {msg}")
            raise
        t.attempt = attempt
        t.waiting = None
        self.events.record(pod, reason="Created", message=f"Created container: {name}")
        self.events.record(pod, reason="Started", message=f"Started container {name}")
        view.container_id = cid
        view.restart_count = attempt
        view.last_state = {"terminated": t.last_terminated} if t.last_terminated else {}
        view.state = {"running": {"startedAt": st.started_at}} if st.state == "running" else view.state
        hook = (c.get("lifecycle") or {}).get("postStart")
        if hook and st.state == "running":
            ok, msg = await self._run_hook(hook, pod, c, net.ip, st.pid, timeout=30)
            if not ok:
                await emit(self.client, pod, reason="FailedPostStartHook", type="Warning", component="kubelet",
                           host=self.node_name, message=f"PostStartHook failed: {msg}")
                await self.runtime.stop(cid, grace_seconds=float(pod["spec"].get("terminationGracePeriodSeconds", 30)))
                self.queue.add(key_of(pod))
        self._ensure_probes(pod, c, t, cid)
        assert t.probe is not None
        view.ready, view.started = t.probe.ready and t.probe.started, t.probe.started
        if st.state != "running":
            self.queue.add(key_of(pod))
        return view

    async def _pid_ns(self, pod: Obj, track: PodTrack, c: Obj, net: Any) -> str | None:
        """The pid namespace a container joins: the pod's (its pause process's) with
        shareProcessNamespace; an ephemeral container's target container's; else its own (None)."""
        uid = pod["metadata"]["uid"]
        if pod["spec"].get("shareProcessNamespace"):
            return await asyncio.to_thread(self.runtime.pause_pid_ns, uid, net.netns_path or None,
                                           cgroup=self._pod_cgroup(uid))
        target = track.containers.get(c.get("targetContainerName") or "")
        if target is not None and target.attempt >= 0:
            st = await self.runtime.status(podspec.container_id(uid, c["targetContainerName"], target.attempt))
            if st.state == "running" and st.pid:
                return f"/proc/{st.pid}/ns/pid"
        return None

    def _pod_files(self, pod: Obj, ip: str) -> Path:
        d = self.state_dir / "pods" / pod["metadata"]["uid"]
        d.mkdir(parents=True, exist_ok=True)
        host_resolv = Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
        for name, text in (("hosts", podspec.hosts_file(pod, ip)), ("resolv.conf", podspec.resolv_conf(pod, host_resolv=host_resolv)),
                           ("hostname", podspec.hostname(pod) + "\n")):
            f = d / name
            if not f.exists() or f.read_text() != text:
                f.write_text(text)
        return d

    # ConfigMaps and Secrets referenced by env are read from the API just before a start.
    async def _prefetch(self, pod: Obj, c: Obj) -> None:
        ns = pod["metadata"]["namespace"]
        refs = set()
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            for kind, res in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
                if kind in vf:
                    refs.add((res, vf[kind]["name"]))
        for src in c.get("envFrom") or []:
            for kind, res in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if kind in src:
                    refs.add((res, src[kind]["name"]))
        cache = self._refs.setdefault(ns, {})
        for res, name in refs:
            try:
                cache[(res, name)] = await self.client.get(res, name, namespace=ns)
            except ApiError as e:
                if e.code != 404:
                    raise
                cache[(res, name)] = None

    def _lookup_cache(self, ns: str):
        cache = self._refs.get(ns, {})

        def lookup(kind: str, name: str, key: str) -> Any:
            res = "configmaps" if kind.startswith("configMap") else "secrets"
            obj = cache.get((res, name))
            if obj is None:
                return None
            if res == "secrets":
                data = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
                data.update(obj.get("stringData") or {})
            else:
                data = dict(obj.get("data") or {})
            return data if key == "*" else data.get(key)
        return lookup

    async def _write_status(self, pod: Obj, new_status: Obj) -> None:
        old = pod.get("status") or {}
        merged = {**old, **new_status}
        if merged == old:
            return
        p = copy.deepcopy(pod)
        p["status"] = merged
        try:
            await self.client.update("pods", p, namespace=pod["metadata"]["namespace"], subresource="status")
        except ApiError as e:
            if e.code == 409:
                self.queue.add_after(key_of(pod), 0.05)
            elif e.code != 404:
                raise

    async def _stop_with_prestop(self, pod: Obj, cid: str, grace: float, track: PodTrack) -> None:
        """preStop first (within the grace period), then SIGTERM, then SIGKILL at the deadline."""
        started = time.monotonic()
        name = self.runtime.meta(cid).get("name")
        c = next((x for x in pod["spec"].get("containers") or [] if x["name"] == name), None)
        hook = ((c or {}).get("lifecycle") or {}).get("preStop")
        st = await self.runtime.status(cid)
        if hook and c is not None and st.state == "running":
            try:
                ok, msg = await asyncio.wait_for(self._run_hook(hook, pod, c, track.pod_ip or "", st.pid, timeout=grace),
                                                 timeout=max(grace, 0.1))
            except asyncio.TimeoutError:
                ok, msg = False, f"timed out after {grace:.0f}s"
            if not ok:
                await emit(self.client, pod, reason="FailedPreStopHook", type="Warning", component="kubelet",
                           host=self.node_name, message=f"PreStopHook failed: {msg}")
        await self.runtime.stop(cid, grace_seconds=max(0.0, grace - (time.monotonic() - started)))

    async def _terminate(self, pod: Obj, track: PodTrack, *, finalize: bool = True) -> None:
        md = pod["metadata"]
        for t in track.containers.values():
            self._stop_probes(t)
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        try:
            running = [cid for cid in self.runtime.list() if self.runtime.meta(cid).get("pod_uid") == md["uid"]]
            for c in pod["spec"].get("containers") or []:
                t = track.containers.get(c["name"])
                if t and t.attempt >= 0:
                    await emit(self.client, pod, reason="Killing", component="kubelet", host=self.node_name,
                               message=f"Stopping container {c['name']}")
            await asyncio.gather(*(self._stop_with_prestop(pod, cid, float(grace), track) for cid in running))
            for cid in running:
                await self.runtime.remove(cid)
            self.runtime.remove_pause(md["uid"])
            await asyncio.to_thread(self.network.teardown_pod, md["uid"])
            self._remove_pod_cgroup(md["uid"])
            self._remove_pod_dir(md["uid"])
            if finalize:
                try:
                    await self.client.delete("pods", md["name"], namespace=md["namespace"], grace_period_seconds=0,
                                             preconditions={"uid": md["uid"]})
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            self.tracks.pop(md["uid"], None)
        except Exception:  # noqa: BLE001 - retried by the next sync
            log.exception("terminating pod %s/%s", md["namespace"], md["name"])
            track.terminating = None
            self.queue.add_after(key_of(pod), 1)

    # -- memory-pressure eviction ---------------------------------------------------------------
    async def _eviction_loop(self) -> None:
        """After each stats sample: observe memory.available; under the hard threshold, hand
        one pod (upstream's ranking) to its sync to be evicted; post a pressure change at once."""
        while True:
            await asyncio.sleep(self.stats.interval)
            try:
                node = self.stats.series.get(("node",))
                if node is None or node.cur is None:
                    continue
                was = self.evictor.memory_pressure
                crossed = self.evictor.observe(node.cur.usage.working_set_bytes)
                if self.evictor.memory_pressure != was:
                    await nodestatus.heartbeat(self.client, node_name=self.node_name, node_ip=self.node_ip,
                                               capacity=self.capacity, kubelet_port=self.kubelet_port,
                                               allocatable=self.allocatable, memory_pressure=self.evictor.memory_pressure)
                if crossed is None or any(t.evict for t in self.tracks.values()):
                    continue   # one eviction at a time, as upstream
                usage, per_container = [], {}
                for t in self.stats.targets:
                    pod, ser = self.pods.get(f"{t.namespace}/{t.name}"), self.stats.series.get(("pod", t.uid))
                    if pod is None or ser is None or ser.cur is None:
                        continue
                    usage.append((pod, ser.cur.usage.working_set_bytes))
                    per_container[t.uid] = {c.name: cs.cur.usage.working_set_bytes for c in t.containers
                                            if (cs := self.stats.series.get(("container", t.uid, c.name))) and cs.cur}
                victim = self.evictor.pick(usage)
                if victim is None:
                    continue
                uid = victim["metadata"]["uid"]
                track = self.tracks.setdefault(uid, PodTrack(uid))
                track.evict = eviction.message(crossed, self.evictor.available or 0, victim, per_container.get(uid, {}))
                log.warning("memory pressure: evicting %s: %s", key_of(victim), track.evict)
                self.queue.add(key_of(victim))
            except Exception as e:  # noqa: BLE001 - try again after the next sample
                log.warning("eviction check: %r", e)

    async def _evict(self, pod: Obj, track: PodTrack) -> None:
        """Fail the pod with reason Evicted (so nothing restarts it), then stop its containers at
        once (a hard threshold has no grace period) and free its resources."""
        msg = track.evict or ""
        md = pod["metadata"]
        for _ in range(5):
            cur = copy.deepcopy(self.pods.get(key_of(pod)) or pod)
            st = cur.setdefault("status", {})
            now = _now()
            conds = [c for c in st.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady",
                                                                                     "DisruptionTarget")]
            conds += [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                       "message": msg, "lastProbeTime": None, "lastTransitionTime": now},
                      {"type": "Ready", "status": "False", "reason": "PodFailed", "lastProbeTime": None,
                       "lastTransitionTime": now},
                      {"type": "ContainersReady", "status": "False", "reason": "PodFailed", "lastProbeTime": None,
                       "lastTransitionTime": now}]
            for cs in st.get("containerStatuses") or []:
                started = (cs.get("state") or {}).get("running", {}).get("startedAt")
                cs["state"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": started, "finishedAt": now}}
                cs["ready"], cs["started"] = False, False
            st.update(phase="Failed", reason="Evicted", message=msg, conditions=conds)
            try:
                await self.client.update("pods", cur, namespace=md["namespace"], subresource="status")
                break
            except ApiError as e:
                if e.code == 404:
                    break
                if e.code != 409:
                    raise
                await asyncio.sleep(0.05)
        await emit(self.client, pod, reason="Evicted", type="Warning", component="kubelet", host=self.node_name,
                   message=msg)
        now_dead = copy.deepcopy(pod)
        now_dead["metadata"]["deletionGracePeriodSeconds"] = 0
        await self._terminate(now_dead, track, finalize=False)

    # -- main ----------------------------------------------------------------------------------
    async def run(self) -> None:
        delay = 0.05
        while True:
            try:
                await nodestatus.register(self.client, node_name=self.node_name, node_ip=self.node_ip,
                                          capacity=self.capacity, kubelet_port=self.kubelet_port,
                                          allocatable=self.allocatable)
                await nodestatus.renew_lease(self.client, self.node_name)
                await volumes.publish_local_path_root(self.client, self.node_name, self.local_path_root)
                break
            except Exception as e:  # noqa: BLE001 - the apiserver may not be up yet
                log.info("registering node %s: %r; retrying", self.node_name, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._adopt()
        tasks = [asyncio.create_task(x) for x in (self.pods.run(), self.nodes.run(), self._node_loop(),
                                                   self._routes_loop(), self._ticker(), self.stats.run(),
                                                   self._eviction_loop(),
                                                   volumes.local_path_gc(self.client, self.local_path_root, lambda: {
                                                       p for t in self.tracks.values() for p in t.volumes.values()}))]
        try:
            await asyncio.gather(self.pods.wait_synced(), self.nodes.wait_synced())
            self._routes_dirty.set()
            await self._cleanup_orphans()
            await run_workers(self.queue, self.sync, workers=4, name="kubelet")
        finally:
            for t in tasks:
                t.cancel()

"""The Deployment controller's arithmetic against upstream's numbers (sync_test.go,
rolling_test.go, progress_test.go, deployment_util_test.go): fenceposts, proportional
scaling, rolling scale-down, status and the progress deadline — pure functions, no server."""
import datetime as dt

import pytest

from nanokube.controllers import deployment as dep
from nanokube.controllers.replicaset import is_pod_available

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def deploy(replicas, *, surge=0, unavail=0, strategy="RollingUpdate", pds=600, status=None, generation=1):
    d = {"metadata": {"name": "foo", "namespace": "default", "generation": generation},
         "spec": {"replicas": replicas, "strategy": {"type": strategy}, "progressDeadlineSeconds": pds,
                  "revisionHistoryLimit": 10, "template": {"metadata": {"labels": {"a": "b"}}}},
         "status": status or {}}
    if strategy == "RollingUpdate":
        d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavail}
    return d


def rs(name, replicas, *, available=None, created="2026-01-01T00:00:00Z", max_replicas=None, desired=None, rev=1):
    ann = {dep.REVISION: str(rev)}
    if max_replicas is not None:
        ann[dep.MAX_REPLICAS] = str(max_replicas)
    if desired is not None:
        ann[dep.DESIRED] = str(desired)
    available = replicas if available is None else available
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": created, "annotations": ann,
                         "generation": 1},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available,
                       "observedGeneration": 1}}


@pytest.mark.parametrize("surge,unavail,desired,want", [
    ("25%", "25%", 10, (3, 2)),      # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    ("0%", "0%", 4, (0, 1)),         # both zero: one may be unavailable
    (0, "30%", 3, (0, 1)),           # floor(0.9) = 0 with surge 0 -> 1
    ("1%", "1%", 10, (1, 0)),
    (1, 0, 4, (1, 0)),
    ("50%", "50%", 5, (3, 2)),
])
def test_fenceposts_round_as_upstream(surge, unavail, desired, want):
    assert dep.resolve_fenceposts(surge, unavail, desired) == want


def test_max_unavailable_capped_and_zero_for_recreate():
    assert dep.max_unavailable(deploy(2, unavail=5)) == 2
    assert dep.max_unavailable(deploy(0, unavail=1)) == 0
    assert dep.max_unavailable(deploy(3, strategy="Recreate")) == 0
    assert dep.max_surge(deploy(3, strategy="Recreate")) == 0
    with pytest.raises(ValueError):
        dep.scaled_value("3", 10, round_up=True)


def test_round_half_away_from_zero_like_go():
    assert [dep.round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 1.2)] == [1, 2, 3, -1, -3, 1]


@pytest.mark.parametrize("old_size,new_size,new_rs,old_rss,want_new,want_old", [
    # sync_test.go TestScale (maxSurge 0, annotations from the old size)
    (5, 10, 2, [3], 4, [6]),
    (5, 3, 2, [3], 1, [2]),
    (9, 4, 3, [6], 1, [3]),
    (3, 4, 1, [1, 1], 2, [1, 1]),   # leftover goes to the largest / newest
    (10, 5, 0, [5, 5], 0, [2, 3]),  # scale down: the leftover comes off the older of equals
])
def test_proportional_scaling(old_size, new_size, new_rs, old_rss, want_new, want_old):
    d = deploy(new_size)
    new = rs("foo-v3", new_rs, created="2026-01-01T00:03:00Z", max_replicas=old_size, desired=old_size)
    old = [rs(f"foo-v{i + 1}", n, created=f"2026-01-01T00:0{i}:00Z", max_replicas=old_size, desired=old_size)
           for i, n in enumerate(old_rss)]
    plan = dep.plan_scale(d, new, old)
    sizes = {r["metadata"]["name"]: plan.get(r["metadata"]["name"], r["spec"]["replicas"]) for r in [new] + old}
    assert sizes["foo-v3"] == want_new
    assert [sizes[r["metadata"]["name"]] for r in old] == want_old
    assert sum(sizes.values()) == new_size


def test_scale_single_active_and_saturated():
    d = deploy(5)
    assert dep.plan_scale(d, rs("n", 3, max_replicas=3, desired=3), [rs("o", 0)]) == {"n": 5}
    # A saturated new ReplicaSet: the old ones go to zero.
    d = deploy(3)
    new = rs("n", 3, desired=3, max_replicas=3, created="2026-01-01T00:01:00Z")
    assert dep.plan_scale(d, new, [rs("o", 1, desired=3)]) == {"o": 0}


def test_new_rs_replicas_within_surge():
    d = deploy(4, surge=1, unavail=0)
    new = rs("n", 0)
    assert dep.new_rs_new_replicas(d, [rs("o", 4), new], new) == 1
    new = rs("n", 1, available=0)
    assert dep.new_rs_new_replicas(d, [rs("o", 4), new], new) == 1     # already at 5 = 4 + surge
    assert dep.new_rs_new_replicas(d, [rs("o", 3), rs("n", 2)], rs("n", 2)) == 2
    assert dep.new_rs_new_replicas(deploy(4, strategy="Recreate"), [], rs("n", 0)) == 4


@pytest.mark.parametrize("replicas,unavail,old,old_avail,new,new_avail,want", [
    # maxUnavailable 0, surge 1: an old pod goes only once a new one is available.
    (4, 0, 4, 4, 1, 0, {}),
    (4, 0, 4, 4, 1, 1, {"o": 3}),
    # No room below minAvailable: not even unhealthy old replicas go.
    (4, 0, 4, 2, 1, 0, {}),
    # Room for one: an unhealthy old replica goes first, no healthy one follows.
    (4, 1, 4, 2, 1, 0, {"o": 3}),
    # maxUnavailable 2 of 10 (rolling_test.go style).
    (10, 2, 10, 10, 0, 0, {"o": 8}),
    (10, 2, 8, 8, 2, 0, {}),
])
def test_rolling_scale_down(replicas, unavail, old, old_avail, new, new_avail, want):
    d = deploy(replicas, surge=1, unavail=unavail)
    assert dep.plan_rolling_scale_down(d, rs("n", new, available=new_avail, created="2026-01-01T00:01:00Z"),
                                       [rs("o", old, available=old_avail)]) == want


def test_cleanup_keeps_history_limit_and_live_sets():
    d = deploy(1)
    d["spec"]["revisionHistoryLimit"] = 1
    old = [rs("a", 0, rev=1), rs("b", 0, rev=2), rs("c", 1, rev=3)]
    assert [r["metadata"]["name"] for r in dep.plan_cleanup(d, old)] == ["a", "b"]
    d["spec"]["revisionHistoryLimit"] = 0
    assert [r["metadata"]["name"] for r in dep.plan_cleanup(d, old)] == ["a", "b"]   # c still has a pod


def _cond(status, typ):
    return dep.get_condition(status, typ)


def test_progress_conditions_and_deadline():
    new = rs("foo-n", 1, available=0, created="2026-01-01T00:01:00Z")
    old = rs("foo-o", 4)
    d = deploy(4, surge=1, pds=10, status={"replicas": 5, "updatedReplicas": 1, "readyReplicas": 4,
                                             "availableReplicas": 4, "observedGeneration": 1})
    dep.set_condition(d["status"], dep.new_condition("Progressing", "True", dep.NEW_RS_CREATED, "x", T0))
    # No progress within the deadline: still progressing.
    st = dep.rollout_status(d, new, [new, old], now=T0 + dt.timedelta(seconds=5))
    assert _cond(st, "Progressing")["reason"] == dep.NEW_RS_CREATED
    assert _cond(st, "Available")["reason"] == dep.MIN_AVAILABLE
    assert dep.stuck_requeue_after(d, st, now=T0 + dt.timedelta(seconds=5)) == pytest.approx(6.0)
    # Past the deadline: ProgressDeadlineExceeded, status False.
    st = dep.rollout_status(d, new, [new, old], now=T0 + dt.timedelta(seconds=11))
    c = _cond(st, "Progressing")
    assert (c["status"], c["reason"]) == ("False", dep.TIMED_OUT)
    assert c["message"] == 'ReplicaSet "foo-n" has timed out progressing.'
    # Progress (the new pod is available) refreshes lastUpdateTime, keeps the transition time.
    new2 = rs("foo-n", 1, created="2026-01-01T00:01:00Z")
    st = dep.rollout_status(d, new2, [new2, old], now=T0 + dt.timedelta(seconds=8))
    c = _cond(st, "Progressing")
    assert (c["reason"], c["lastUpdateTime"], c["lastTransitionTime"]) == (dep.RS_UPDATED, "2026-01-01T12:00:08Z",
                                                                         "2026-01-01T12:00:00Z")
    # Complete: NewReplicaSetAvailable.
    done = rs("foo-n", 4, created="2026-01-01T00:01:00Z")
    st = dep.rollout_status(d, done, [done, rs("foo-o", 0)], now=T0 + dt.timedelta(seconds=9))
    assert _cond(st, "Progressing")["reason"] == dep.NEW_RS_AVAILABLE
    assert dep.stuck_requeue_after(d, st, now=T0) is None


def test_available_condition_false_below_minimum():
    d = deploy(4, surge=1, unavail=1)
    st = dep.calculate_status(d, None, [rs("o", 4, available=2)], now=T0)
    c = _cond(st, "Available")
    assert (c["status"], c["reason"]) == ("False", dep.MIN_UNAVAILABLE)
    assert st["unavailableReplicas"] == 2 and "updatedReplicas" not in st


def test_no_progress_deadline_drops_the_condition():
    d = deploy(1, pds=dep.MAX_INT32)
    dep.set_condition(d["status"], dep.new_condition("Progressing", "True", dep.RS_UPDATED, "x", T0))
    assert _cond(dep.rollout_status(d, None, [rs("o", 1)], now=T0), "Progressing") is None


def test_pod_available_after_min_ready_seconds():
    pod = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T12:00:00Z"}]}}
    assert is_pod_available(pod, 0, T0)
    assert not is_pod_available(pod, 5, T0 + dt.timedelta(seconds=5))
    assert is_pod_available(pod, 5, T0 + dt.timedelta(seconds=6))
    assert not is_pod_available({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, 0, T0)


# -- the controllers together over a memory store (no kubelets: the test plays the kubelet) ---------
import asyncio  # noqa: E402

from nanokube.apiserver.registry import Registry  # noqa: E402
from nanokube.client.local import LocalClient  # noqa: E402
from nanokube.controllers.deployment import DeploymentController  # noqa: E402
from nanokube.controllers.replicaset import ReplicaSetController  # noqa: E402
from nanokube.store import MemoryStore  # noqa: E402
from .helpers import until as _until


async def _harness(schemas):
    c = LocalClient(Registry(MemoryStore(), schemas=schemas))
    await c.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await c.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
                   namespace="default")
    tasks = [asyncio.create_task(DeploymentController(c).run()), asyncio.create_task(ReplicaSetController(c).run())]
    return c, tasks


async def _kubelet(c, *, ready_at: str | None = None):
    """Bind, run and ready every live pod; finish deleted ones — what kubelets would do."""
    for p in (await c.list("pods", namespace="default"))["items"]:
        if p["metadata"].get("deletionTimestamp"):
            await c.delete("pods", p["metadata"]["name"], namespace="default", grace_period_seconds=0)
        elif not p["status"].get("conditions"):
            p["status"].update(phase="Running", podIP="10.244.1.9", conditions=[
                {"type": "Ready", "status": "True", "lastTransitionTime": ready_at or dep._ts(dt.datetime.now(dt.timezone.utc))}])
            await c.update("pods", p, namespace="default", subresource="status")


def _d(replicas=2, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, **spec,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}}


async def test_recreate_scales_old_to_zero_before_the_new_set(schemas):
    c, tasks = await _harness(schemas)
    try:
        await c.create("deployments", _d(strategy={"type": "Recreate"}), namespace="default")

        async def pods(n):
            await _kubelet(c)
            got = (await c.list("pods", namespace="default"))["items"]
            return got if len(got) == n else None
        await _until(lambda: pods(2))
        seen: list[tuple[str, int, int]] = []   # (name, spec.replicas, status.replicas) in watch order
        rv = (await c.list("replicasets", namespace="default"))["metadata"]["resourceVersion"]

        async def watch():
            async for _typ, rs in c.watch("replicasets", namespace="default", resource_version=rv):
                seen.append((rs["metadata"]["name"], rs["spec"]["replicas"], (rs.get("status") or {}).get("replicas", 0)))
        w = asyncio.create_task(watch())
        old_name = (await c.list("replicasets", namespace="default"))["items"][0]["metadata"]["name"]
        await c.patch("deployments", "web", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}},
                      namespace="default", patch_type="strategic")

        async def rolled():
            await _kubelet(c)
            d = await c.get("deployments", "web", namespace="default")
            return dep.deployment_complete(d, d.get("status") or {}) and \
                dep.get_condition(d["status"], "Progressing")["reason"] == dep.NEW_RS_AVAILABLE
        await _until(rolled)
        images = {p["spec"]["containers"][0]["image"] for p in (await c.list("pods", namespace="default"))["items"]}
        assert images == {"busybox:2"}
        w.cancel()
        # The new ReplicaSet first appears only after the old one is down to no pods at all.
        first_new = next(i for i, (n, _, _) in enumerate(seen) if n != old_name)
        assert (old_name, 0, 0) in seen[:first_new], seen
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_min_ready_seconds_delays_availability_and_pause_sets_condition(schemas):
    c, tasks = await _harness(schemas)
    try:
        await c.create("deployments", _d(minReadySeconds=2), namespace="default")

        async def ready():
            await _kubelet(c)
            rs = (await c.list("replicasets", namespace="default"))["items"]
            return rs[0] if rs and rs[0].get("status", {}).get("readyReplicas") == 2 else None
        rs = await _until(ready)
        # Ready, but not yet for minReadySeconds: not available; the Deployment is not Available.
        assert rs["status"].get("availableReplicas", 0) == 0 and rs["spec"]["minReadySeconds"] == 2
        d = await c.get("deployments", "web", namespace="default")
        assert dep.get_condition(d["status"], "Available")["reason"] == dep.MIN_UNAVAILABLE

        async def available():
            d = await c.get("deployments", "web", namespace="default")
            return d if d["status"].get("availableReplicas") == 2 else None
        d = await _until(available, timeout=8)
        assert dep.get_condition(d["status"], "Available")["reason"] == dep.MIN_AVAILABLE
        assert dep.get_condition(d["status"], "Progressing")["reason"] == dep.NEW_RS_AVAILABLE

        await c.patch("deployments", "web", {"spec": {"paused": True}}, namespace="default", patch_type="merge")

        async def paused():
            d = await c.get("deployments", "web", namespace="default")
            cond = dep.get_condition(d["status"], "Progressing")
            return cond if cond["reason"] == dep.PAUSED else None
        assert (await _until(paused))["status"] == "Unknown"
        # A template change while paused rolls nothing; scaling still works.
        await c.patch("deployments", "web", {"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}},
                      namespace="default", patch_type="merge")

        async def scaled():
            rss = (await c.list("replicasets", namespace="default"))["items"]
            return len(rss) == 1 and rss[0]["spec"]["replicas"] == 3
        await _until(scaled)
        await c.patch("deployments", "web", {"spec": {"paused": False}}, namespace="default", patch_type="merge")

        async def resumed():
            await _kubelet(c)
            rss = (await c.list("replicasets", namespace="default"))["items"]
            return len(rss) == 2
        await _until(resumed)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

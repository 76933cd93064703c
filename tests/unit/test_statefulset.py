"""StatefulSets, PersistentVolumes/Claims and the local-path provisioner: the pure planners,
API defaulting/validation/tables, the volume-binding filter, the kubelet's claim volumes, and
both controllers against the real registry over a memory store (the test plays scheduler
and kubelet: it binds pods to nodes and marks them ready)."""
import asyncio
import copy

import pytest

from nanokube.api.errors import ApiError
from nanokube.api.table import to_table
from nanokube.apiserver.registry import Registry
from nanokube.client.local import LocalClient
from nanokube.controllers.endpoints import plan_endpoints
from nanokube.controllers.statefulset import (POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, StatefulSetController,
                                              compute_status, new_pod, ordinal_of, plan)
from nanokube.controllers.volumes import (PROVISIONER, ROOT_ANNOTATION, VolumeController, default_storage_class,
                                          find_volume, provisioned_volume)
from nanokube.kubelet import volumes as kvolumes
from nanokube.scheduler.framework import NodeInfo
from nanokube.scheduler.plugins.volume_binding import make_filter, volume_fits_node
from nanokube.store import MemoryStore
from .helpers import until

NS = "default"


def sts(name="web", replicas=3, **spec):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": NS, "uid": "u-" + name, "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "nginx", "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}],
                     **spec}}


def pod(i, *, rev="r1", ready=True, phase="Running", terminating=False, name="web"):
    p = {"metadata": {"name": f"{name}-{i}", "uid": f"p{i}", "labels": {REVISION_LABEL: rev}},
         "spec": {}, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def names(objs):
    return [o["metadata"]["name"] for o in objs]


# -- pure ----------------------------------------------------------------------------------
def test_ordinals_and_pod_identity():
    assert ordinal_of("web", "web-2") == 2 and ordinal_of("web", "web-0") == 0
    assert ordinal_of("web", "web-02") is None and ordinal_of("web", "webx-1") is None
    assert ordinal_of("web", "web-a") is None
    p = new_pod(sts(), sts()["spec"]["template"], 1, "web-abc")
    assert p["metadata"]["name"] == "web-1"
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "nginx"
    assert p["metadata"]["labels"] == {"app": "web", POD_NAME_LABEL: "web-1", POD_INDEX_LABEL: "1",
                                       REVISION_LABEL: "web-abc"}
    assert p["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-1"}}]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"


def test_plan_ordered_ready():
    s = sts()
    assert plan(s, {}, "r1").create == [0]
    assert plan(s, {0: pod(0, ready=False)}, "r1").create == []  # wait for web-0 to be ready
    assert plan(s, {0: pod(0, phase="Pending", ready=False)}, "r1").create == []
    assert plan(s, {0: pod(0)}, "r1").create == [1]
    assert plan(s, {0: pod(0), 1: pod(1)}, "r1").create == [2]
    full = {i: pod(i) for i in range(3)}
    assert plan(s, full, "r1").create == [] and plan(s, full, "r1").delete == []
    # A failed pod is deleted (and recreated with the same name next round).
    assert names(plan(s, {0: pod(0), 1: pod(1, phase="Failed", ready=False)}, "r1").delete) == ["web-1"]
    # Scale down: the highest ordinal first, one at a time, only when the rest are healthy.
    s1 = sts(replicas=1)
    assert names(plan(s1, full, "r1").delete) == ["web-2"]
    assert names(plan(s1, {0: pod(0), 1: pod(1), 2: pod(2, terminating=True)}, "r1").delete) == []
    assert names(plan(s1, {0: pod(0), 1: pod(1)}, "r1").delete) == ["web-1"]
    assert names(plan(s1, {0: pod(0, ready=False), 1: pod(1)}, "r1").delete) == []


def test_plan_parallel():
    s = sts(podManagementPolicy="Parallel")
    assert plan(s, {}, "r1").create == [0, 1, 2]
    assert plan(s, {1: pod(1, ready=False)}, "r1").create == [0, 2]
    s0 = sts(replicas=0, podManagementPolicy="Parallel")
    assert sorted(names(plan(s0, {i: pod(i) for i in range(3)}, "r1").delete)) == ["web-0", "web-1", "web-2"]


def test_plan_rolling_update_with_partition():
    full = {i: pod(i, rev="old") for i in range(3)}
    s = sts()
    assert names(plan(s, full, "new").delete) == ["web-2"]  # highest first
    full[2] = pod(2, rev="new", ready=False)
    assert plan(s, full, "new").delete == []  # wait for the updated pod to be ready
    full[2] = pod(2, rev="new")
    assert names(plan(s, full, "new").delete) == ["web-1"]
    sp = sts(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    full = {0: pod(0, rev="old"), 1: pod(1, rev="old"), 2: pod(2, rev="new")}
    assert plan(sp, full, "new").delete == []  # ordinals below the partition keep the old revision
    ondelete = sts(updateStrategy={"type": "OnDelete"})
    assert plan(ondelete, {i: pod(i, rev="old") for i in range(3)}, "new").delete == []


def test_status_and_revisions():
    s = sts()
    st = compute_status(s, {0: pod(0, rev="a"), 1: pod(1, rev="b"), 2: pod(2, rev="b", ready=False)}, current="a",
                        update="b")
    assert (st["replicas"], st["readyReplicas"], st["currentReplicas"], st["updatedReplicas"]) == (3, 2, 1, 2)
    assert st["currentRevision"] == "a" and st["updateRevision"] == "b" and st["availableReplicas"] == 2
    done = compute_status(s, {i: pod(i, rev="b") for i in range(3)}, current="a", update="b")
    assert done["currentRevision"] == "b" and done["currentReplicas"] == 3


def pvc(name="c", request="1Gi", cls="local-path", uid="c-uid", modes=("ReadWriteOnce",)):
    return {"metadata": {"name": name, "namespace": NS, "uid": uid},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": request}},
                     "storageClassName": cls, "volumeMode": "Filesystem"}}


def pv(name, size, cls="local-path", node=None, claim=None, modes=("ReadWriteOnce",)):
    v = {"metadata": {"name": name}, "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                                              "storageClassName": cls, "hostPath": {"path": "/x"}}}
    if node:
        v["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    if claim:
        v["spec"]["claimRef"] = claim
    return v


def node(name, annotations=None):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "annotations": annotations or {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def test_find_volume_and_provisioned_volume():
    vols = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "512Mi"), pv("other", "1Gi", cls="slow"),
            pv("rox", "1Gi", modes=("ReadOnlyMany",)),
            pv("taken", "1Gi", claim={"namespace": NS, "name": "x", "uid": "x-uid"})]
    assert find_volume(pvc(), vols)["metadata"]["name"] == "small"  # the smallest that fits
    assert find_volume(pvc(request="20Gi"), vols) is None
    assert find_volume(pvc(cls="slow", request="1Gi"), vols)["metadata"]["name"] == "other"
    vols.append(pv("mine", "5Gi", claim={"namespace": NS, "name": "c", "uid": "c-uid"}))
    assert find_volume(pvc(request="1Gi"), vols)["metadata"]["name"] == "small"
    assert find_volume(pvc(request="3Gi"), vols)["metadata"]["name"] == "mine"  # pre-bound to this claim
    local = [pv("on-a", "1Gi", node="a"), pv("on-b", "1Gi", node="b")]
    assert find_volume(pvc(), local, node=node("b"))["metadata"]["name"] == "on-b"
    v = provisioned_volume(pvc(), default_storage_class(), "node1", "/data/n1/volumes/")
    assert v["metadata"]["name"] == "pvc-c-uid"
    assert v["spec"]["hostPath"] == {"path": "/data/n1/volumes/pvc-c-uid", "type": "DirectoryOrCreate"}
    assert v["spec"]["claimRef"]["uid"] == "c-uid" and v["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert volume_fits_node(v, node("node1")) and not volume_fits_node(v, node("node2"))


def test_volume_binding_filter():
    claims = {"bound": {**pvc("bound"), "spec": {**pvc()["spec"], "volumeName": "v1"}},
              "wffc": pvc("wffc"), "imm": pvc("imm", cls="fast"),
              "gone": {**pvc("gone"), "metadata": {**pvc()["metadata"], "deletionTimestamp": "x"}}}
    classes = {"local-path": default_storage_class(), "fast": {"metadata": {"name": "fast"}, "provisioner": "x",
                                                                "volumeBindingMode": "Immediate"}}
    f = make_filter(lambda ns, n: claims.get(n), {"v1": pv("v1", "1Gi", node="a")}.get, classes.get)

    def with_claims(*cs):
        return {"metadata": {"namespace": NS}, "spec": {"volumes": [
            {"name": c, "persistentVolumeClaim": {"claimName": c}} for c in cs]}}
    a, b = NodeInfo(node("a")), NodeInfo(node("b"))
    assert f(with_claims("bound"), a) is None
    assert f(with_claims("bound"), b) == "node(s) had volume node affinity conflict"
    assert f(with_claims("wffc"), b) is None  # scheduled on resources; provisioned where it lands
    assert f(with_claims("imm"), a) == "pod has unbound immediate PersistentVolumeClaims"
    assert f(with_claims("missing"), a) == 'persistentvolumeclaim "missing" not found'
    assert f(with_claims("gone"), a) == 'persistentvolumeclaim "gone" is being deleted'
    assert f({"metadata": {"namespace": NS}, "spec": {}}, a) is None


def test_endpoints_hostname_from_subdomain():
    svc = {"metadata": {"name": "nginx", "namespace": NS}, "spec": {"selector": {"app": "web"}, "clusterIP": "None",
                                                                    "ports": [{"port": 80}]}}

    def p(name, sub):
        return {"metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}, "uid": name},
                "spec": {"hostname": name, "subdomain": sub, "nodeName": "n"},
                "status": {"podIP": f"10.0.0.{len(name)}" if sub else "10.0.0.99", "phase": "Running",
                           "conditions": [{"type": "Ready", "status": "True"}]}}
    addrs = plan_endpoints(svc, [p("web-0", "nginx"), p("other", "elsewhere")])[0]["addresses"]
    by_name = {a["targetRef"]["name"]: a for a in addrs}
    assert by_name["web-0"]["hostname"] == "web-0" and "hostname" not in by_name["other"]


def test_kubelet_claim_volume(tmp_path):
    root = tmp_path / "volumes"
    bound = {**pvc(), "spec": {**pvc()["spec"], "volumeName": "pvc-1"}}
    vol = pv("pvc-1", "1Gi", node="n1")
    vol["spec"]["hostPath"] = {"path": str(root / "pvc-1"), "type": "DirectoryOrCreate"}
    p = {"metadata": {"uid": "u"}, "spec": {"nodeName": "n1", "volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}}
    assert kvolumes.referenced(p) == {("persistentvolumeclaims", "c")}
    out = kvolumes.prepare(p, tmp_path / "pod", {("persistentvolumeclaims", "c"): bound, ("persistentvolumes", "pvc-1"): vol})
    assert out == {"data": str(root / "pvc-1")} and (root / "pvc-1").is_dir()
    with pytest.raises(kvolumes.VolumeError, match="not bound"):
        kvolumes.prepare(p, tmp_path / "pod", {("persistentvolumeclaims", "c"): pvc()})
    with pytest.raises(kvolumes.VolumeError, match="not found"):
        kvolumes.prepare(p, tmp_path / "pod", {("persistentvolumeclaims", "c"): None})
    other = copy.deepcopy(p)
    other["spec"]["nodeName"] = "n2"
    with pytest.raises(kvolumes.VolumeError, match="not available on node n2"):
        kvolumes.prepare(other, tmp_path / "pod", {("persistentvolumeclaims", "c"): bound,
                                                   ("persistentvolumes", "pvc-1"): vol})
    (root / "pvc-gone").mkdir()
    (root / "pvc-mounted").mkdir()
    (root / "not-a-volume").mkdir()
    stale = kvolumes.stale_local_paths(root, {"pvc-1"}, {str(root / "pvc-mounted")})
    assert stale == [root / "pvc-gone"]


# -- against the registry ------------------------------------------------------------------


async def setup(schemas):
    c = LocalClient(Registry(MemoryStore(), schemas=schemas))
    await c.create("namespaces", {"metadata": {"name": NS}})
    await c.create("serviceaccounts", {"metadata": {"name": "default"}}, namespace=NS)
    await c.create("storageclasses", default_storage_class())
    return c


async def test_api_defaults_validation_tables(schemas):
    c = await setup(schemas)
    claim = await c.create("persistentvolumeclaims", {"metadata": {"name": "c"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, namespace=NS)
    assert claim["spec"]["storageClassName"] == "local-path"  # the default class
    assert claim["spec"]["volumeMode"] == "Filesystem" and claim["status"]["phase"] == "Pending"
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    with pytest.raises(ApiError) as e:
        await c.patch("persistentvolumeclaims", "c", {"spec": {"accessModes": ["ReadWriteMany"]}}, namespace=NS)
    assert e.value.code == 422 and "immutable" in e.value.message
    grown = await c.patch("persistentvolumeclaims", "c", {"spec": {"resources": {"requests": {"storage": "2Gi"}}}},
                          namespace=NS)
    assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    with pytest.raises(ApiError) as e:
        await c.create("persistentvolumeclaims", {"metadata": {"name": "bad"}, "spec": {}}, namespace=NS)
    assert e.value.code == 422 and "spec.accessModes: Required value" in e.value.message
    s = sts()
    del s["metadata"]["uid"], s["metadata"]["generation"]
    created = await c.create("statefulsets", s, namespace=NS)
    sp = created["spec"]
    assert sp["podManagementPolicy"] == "OrderedReady" and sp["revisionHistoryLimit"] == 10
    assert sp["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sp["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert created["metadata"]["generation"] == 1
    bad = sts(name="bad")
    del bad["metadata"]["uid"]
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiError) as e:
        await c.create("statefulsets", bad, namespace=NS)
    assert "`selector` does not match template `labels`" in e.value.message
    with pytest.raises(ApiError) as e:
        await c.patch("statefulsets", "web", {"spec": {"selector": {"matchLabels": {"app": "x"}}}}, namespace=NS)
    assert e.value.code == 422
    with pytest.raises(ApiError) as e:
        await c.patch("statefulsets", "web", {"spec": {"serviceName": "other"}}, namespace=NS)
    assert e.value.code == 422 and "updates to statefulset spec for fields other than" in e.value.message
    scale = await c.patch("statefulsets", "web", {"spec": {"replicas": 5}}, namespace=NS, subresource="scale")
    assert scale["spec"]["replicas"] == 5 and scale["status"]["selector"] == "app=web"
    t = to_table("persistentvolumeclaims", [grown])
    assert [col["name"] for col in t["columnDefinitions"]][:8] == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age"]
    assert t["rows"][0]["cells"][:3] == ["c", "Pending", ""]
    t = to_table("storageclasses", [default_storage_class()])
    assert t["rows"][0]["cells"][:5] == ["local-path (default)", PROVISIONER, "Delete", "WaitForFirstConsumer", False]
    assert [col["name"] for col in to_table("persistentvolumes", [])["columnDefinitions"]][:10] == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age"]
    assert to_table("statefulsets", [created])["rows"][0]["cells"][:2] == ["web", "0/3"]


async def play_cluster(c, stop):
    """Scheduler + kubelet stand-in: bind pods round-robin, run them once their claims are bound,
    finish deletions."""
    n = 0
    while not stop.is_set():
        for p in (await c.list("pods", namespace=NS))["items"]:
            md = p["metadata"]
            if md.get("deletionTimestamp"):
                await c.delete("pods", md["name"], namespace=NS, grace_period_seconds=0)
            elif not p["spec"].get("nodeName"):
                n += 1
                nodes = sorted(x["metadata"]["name"] for x in (await c.list("nodes"))["items"])
                await c.create_subresource("pods", md["name"], "binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": md["name"]},
                    "target": {"kind": "Node", "name": nodes[n % len(nodes)]}}, namespace=NS)
            elif p["status"].get("phase") != "Running":
                claims = [v["persistentVolumeClaim"]["claimName"] for v in p["spec"].get("volumes") or []
                          if "persistentVolumeClaim" in v]
                got = [await c.get("persistentvolumeclaims", cn, namespace=NS) for cn in claims]
                if all(g["status"].get("phase") == "Bound" for g in got):
                    p = copy.deepcopy(p)
                    p["status"].update(phase="Running", conditions=[{"type": "Ready", "status": "True"}])
                    await c.update("pods", p, namespace=NS, subresource="status")
        await asyncio.sleep(0.02)


async def test_controllers_statefulset_with_local_path(schemas):
    c = await setup(schemas)
    for n in ("n1", "n2"):
        await c.create("nodes", node(n, {ROOT_ANNOTATION: f"/data/{n}/volumes"}))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(x) for x in (StatefulSetController(c).run(), VolumeController(c).run(),
                                              play_cluster(c, stop))]
    try:
        s = sts()
        del s["metadata"]["uid"], s["metadata"]["generation"]
        await c.create("statefulsets", s, namespace=NS)

        async def status(**want):
            st = (await c.get("statefulsets", "web", namespace=NS)).get("status") or {}
            return st if all(st.get(k) == v for k, v in want.items()) else None
        st = await until(lambda: status(replicas=3, readyReplicas=3, observedGeneration=1))
        pods = {p["metadata"]["name"]: p for p in (await c.list("pods", namespace=NS))["items"]}
        order = sorted(pods, key=lambda n: int(pods[n]["metadata"]["resourceVersion"]))
        assert order == ["web-0", "web-1", "web-2"]
        assert st["currentRevision"] == st["updateRevision"] == pods["web-0"]["metadata"]["labels"][REVISION_LABEL]
        claims = {x["metadata"]["name"]: x for x in (await c.list("persistentvolumeclaims", namespace=NS))["items"]}
        assert sorted(claims) == ["www-web-0", "www-web-1", "www-web-2"]
        for i in range(3):
            cl = claims[f"www-web-{i}"]
            assert cl["status"]["phase"] == "Bound" and cl["status"]["capacity"] == {"storage": "1Mi"}
            v = await c.get("persistentvolumes", cl["spec"]["volumeName"])
            node_name = pods[f"web-{i}"]["spec"]["nodeName"]
            assert v["spec"]["hostPath"]["path"] == f"/data/{node_name}/volumes/{v['metadata']['name']}"
            assert v["spec"]["claimRef"]["name"] == f"www-web-{i}"
            assert v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node_name]
        await until(lambda: _all_bound_volumes(c, 3))
        # Scale down: web-2 goes, then web-1; the claims stay.
        await c.patch("statefulsets", "web", {"spec": {"replicas": 1}}, namespace=NS, subresource="scale")
        await until(lambda: status(replicas=1, readyReplicas=1))
        assert len((await c.list("persistentvolumeclaims", namespace=NS))["items"]) == 3
        # A template change with partition 2 updates web-2 only, after scaling back up.
        await c.patch("statefulsets", "web", {"spec": {"replicas": 3, "updateStrategy": {
            "rollingUpdate": {"partition": 2}}}}, namespace=NS)
        await until(lambda: status(replicas=3, readyReplicas=3))
        await c.patch("statefulsets", "web", {"spec": {"template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}},
                      namespace=NS)
        st = await until(lambda: status(updatedReplicas=1, readyReplicas=3, observedGeneration=4))
        assert st["currentRevision"] != st["updateRevision"] and st["currentReplicas"] == 2
        labels = {p["metadata"]["name"]: p["metadata"]["labels"] for p in (await c.list("pods", namespace=NS))["items"]}
        assert labels["web-2"].get("v") == "2" and "v" not in labels["web-0"] and "v" not in labels["web-1"]
        # A deleted pod below the partition comes back at the current (old) revision.
        old_uid = (await c.get("pods", "web-0", namespace=NS))["metadata"]["uid"]
        await c.delete("pods", "web-0", namespace=NS, grace_period_seconds=0)

        async def back():
            items = (await c.list("pods", namespace=NS, field_selector="metadata.name=web-0"))["items"]
            return items[0] if items and items[0]["metadata"]["uid"] != old_uid else None
        p0 = await until(back)
        await until(lambda: status(readyReplicas=3))
        assert "v" not in p0["metadata"]["labels"] and p0["metadata"]["labels"][REVISION_LABEL] == st["currentRevision"]
        revs = (await c.list("controllerrevisions", namespace=NS))["items"]
        assert sorted(r["revision"] for r in revs) == [1, 2]
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _all_bound_volumes(c, n):
    vols = (await c.list("persistentvolumes"))["items"]
    return len(vols) == n and all(v["status"].get("phase") == "Bound" for v in vols)


async def test_controllers_static_binding_protection_and_reclaim(schemas):
    c = await setup(schemas)
    await c.create("nodes", node("n1", {ROOT_ANNOTATION: "/data/n1/volumes"}))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(x) for x in (VolumeController(c).run(), play_cluster(c, stop))]
    try:
        # A static hostPath volume binds a claim of the same (empty) class.
        await c.create("persistentvolumes", {"metadata": {"name": "static"}, "spec": {
            "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
            "hostPath": {"path": "/srv/static"}}})
        await c.create("persistentvolumeclaims", {"metadata": {"name": "s"}, "spec": {
            "storageClassName": "", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
            namespace=NS)

        async def claim(name, phase):
            x = await c.get("persistentvolumeclaims", name, namespace=NS)
            return x if x["status"].get("phase") == phase else None
        s = await until(lambda: claim("s", "Bound"))
        assert s["spec"]["volumeName"] == "static" and s["status"]["capacity"] == {"storage": "5Gi"}
        await until(lambda: _phase("static", "Bound", c))
        # Deleting the claim: the Retain volume is Released, kept.
        await c.delete("persistentvolumeclaims", "s", namespace=NS)
        await until(lambda: _phase("static", "Released", c))
        # A default-class claim waits for its first consumer, then is provisioned on its node.
        await c.create("persistentvolumeclaims", {"metadata": {"name": "d"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}, namespace=NS)
        await asyncio.sleep(0.3)
        assert (await c.get("persistentvolumeclaims", "d", namespace=NS))["status"]["phase"] == "Pending"
        await c.create("pods", {"metadata": {"name": "user"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "d"}}]}}, namespace=NS)
        d = await until(lambda: claim("d", "Bound"))
        vname = d["spec"]["volumeName"]
        assert (await c.get("persistentvolumes", vname))["spec"]["hostPath"]["path"] == f"/data/n1/volumes/{vname}"
        # pvc-protection: the claim stays (Terminating) while the pod uses it.
        await c.delete("persistentvolumeclaims", "d", namespace=NS)
        await asyncio.sleep(0.3)
        assert (await c.get("persistentvolumeclaims", "d", namespace=NS))["metadata"]["deletionTimestamp"]
        await c.delete("pods", "user", namespace=NS, grace_period_seconds=0)

        async def gone():
            try:
                await c.get("persistentvolumes", vname)
            except ApiError as e:
                return e.code == 404
            return False
        await until(gone)  # reclaim Delete
        with pytest.raises(ApiError):
            await c.get("persistentvolumeclaims", "d", namespace=NS)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _phase(name, phase, c):
    return (await c.get("persistentvolumes", name))["status"].get("phase") == phase

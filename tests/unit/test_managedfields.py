"""Server-side apply field ownership (nanokube.api.managedfields), table-driven, including the
examples of the upstream "Server-Side Apply" docs page: two managers, a conflict, force,
field removal and the hand-over of a field to another manager."""
import copy

import pytest

from nanokube.api import managedfields as mf

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def deploy(replicas=None, image="nginx:1.14.2", labels=None, containers=None):
    spec = {"selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                         "spec": {"containers": containers or [{"name": "nginx", "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    md = {"name": "nginx"}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md, "spec": spec}


def do_apply(live, cfg, manager, *, force=False, now=NOW):
    return mf.apply(live, cfg, manager=manager, api_version=cfg["apiVersion"], kind=cfg["kind"], now=now,
                    force=force).obj


def owners(obj):
    return {(e["manager"], e["operation"]): mf.decode_fields(e["fieldsV1"]) for e in obj["metadata"].get("managedFields", [])}


def P(s):
    """'spec.replicas' → ("f:spec", "f:replicas"); a segment starting with k:/v: is kept as is."""
    return tuple(x if x[:2] in ("k:", "v:") else "f:" + x for x in s.split("|"))


# -- the FieldsV1 encoding ----------------------------------------------------------------------
def test_docs_configmap_example_encodes_as_upstream():
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
          "data": {"key": "some value"}}
    out = do_apply(None, cm, "kubectl")
    (entry,) = out["metadata"]["managedFields"]
    assert entry == {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": NOW,
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}}


@pytest.mark.parametrize("obj,path,expected", [
    # list-map items by merge key, the item itself as ".", children as f:
    (deploy(), "spec|template|spec|containers",
     {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}),
    # container ports are keyed by containerPort and protocol (defaulted to TCP), as upstream
    (deploy(containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 80}]}]),
     "spec|template|spec|containers",
     {'k:{"name":"c"}': {".": {}, "f:image": {}, "f:name": {},
                         "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}),
    # atomic LabelSelector: the selector is one leaf
    (deploy(), "spec|selector", {}),
    # a set-like list: members as v:
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a/b", "c"]}},
     "metadata|finalizers", {'v:"a/b"': {}, 'v:"c"': {}}),
])
def test_field_set_encoding(obj, path, expected):
    fs = mf.to_field_set(mf.strip(obj), kind=obj["kind"])
    trie = mf.encode_fields(fs)
    for e in P(path):
        trie = trie[e]
    assert trie == expected
    assert mf.decode_fields(mf.encode_fields(fs)) == fs


def test_system_metadata_is_never_owned():
    obj = deploy(replicas=1)
    obj["metadata"].update(uid="u", resourceVersion="3", namespace="d", generation=2, creationTimestamp=NOW)
    fs = mf.to_field_set(mf.strip(obj), kind="Deployment")
    assert not any(p[0] in ("f:apiVersion", "f:kind") or p[:1] == ("f:metadata",) for p in fs)


@pytest.mark.parametrize("path,text", [
    (P("spec|replicas"), ".spec.replicas"),
    (P('spec|template|spec|containers|k:{"name":"nginx"}|image'), '.spec.template.spec.containers[name="nginx"].image'),
    (P('spec|ports|k:{"port":80,"protocol":"TCP"}'), '.spec.ports[port=80,protocol="TCP"]'),
    (P('metadata|finalizers|v:"x"'), '.metadata.finalizers[="x"]'),
])
def test_path_string_as_upstream(path, text):
    assert mf.path_string(path) == text


# -- apply --------------------------------------------------------------------------------------
def test_apply_creates_and_merges_into_live():
    out = do_apply(None, deploy(replicas=2), "kubectl")
    assert out["spec"]["replicas"] == 2 and out["metadata"]["name"] == "nginx" and out["kind"] == "Deployment"
    live = copy.deepcopy(out)
    live["spec"]["strategy"] = {"type": "RollingUpdate"}  # e.g. defaulted: nobody's
    out2 = do_apply(live, deploy(replicas=2, image="nginx:1.16.1"), "kubectl", now=LATER)
    assert out2["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.16.1"
    assert out2["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert out2["metadata"]["managedFields"][0]["time"] == LATER


@pytest.mark.parametrize("first,second,second_manager,force,message,replicas", [
    # the docs' conflict: another applier changes a field someone else applied
    (2, 5, "other", False, 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas', 2),
    # forced: the value changes and ownership moves
    (2, 5, "other", True, None, 5),
    # the same value is no conflict: the field becomes shared
    (2, 2, "other", False, None, 2),
])
def test_two_appliers(first, second, second_manager, force, message, replicas):
    live = do_apply(None, deploy(replicas=first), "kubectl")
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": second}}
    if message:
        with pytest.raises(mf.ApplyConflict) as e:
            do_apply(live, cfg, second_manager, force=force)
        assert str(e.value) == message
        assert mf.conflict_causes(e.value.conflicts) == [
            {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"}]
        return
    out = do_apply(live, cfg, second_manager, force=force)
    assert out["spec"]["replicas"] == replicas
    own = owners(out)
    assert P("spec|replicas") in own[(second_manager, "Apply")]
    assert (P("spec|replicas") in own[("kubectl", "Apply")]) == (first == second)


def test_conflict_with_an_updater_names_its_version_and_lists_several():
    live = deploy(replicas=1, labels={"a": "1"})
    mf.record_update(None, live, manager="kubectl-client-side-apply", api_version="apps/v1", kind="Deployment", now=NOW)
    cfg = deploy(replicas=3, labels={"a": "2"})
    with pytest.raises(mf.ApplyConflict) as e:
        do_apply(live, cfg, "mine")
    assert str(e.value) == ('Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
                            "- .metadata.labels.a\n- .spec.replicas")


def test_dropped_field_is_removed_unless_another_manager_owns_it():
    live = do_apply(None, deploy(replicas=3, labels={"a": "1", "b": "2"}), "kubectl")
    # The docs' hand-over: a second manager applies the same replicas, then the first drops it.
    live = do_apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
                           "spec": {"replicas": 3}}, "handover-to-hpa")
    out = do_apply(live, deploy(labels={"a": "1"}), "kubectl", now=LATER)
    assert out["spec"]["replicas"] == 3  # still owned by handover-to-hpa
    assert out["metadata"]["labels"] == {"a": "1"}  # b was only kubectl's: gone
    own = owners(out)
    assert P("spec|replicas") not in own[("kubectl", "Apply")]
    assert own[("handover-to-hpa", "Apply")] == {P("spec|replicas")}


def test_dropped_list_items_go_others_stay():
    two = [{"name": "nginx", "image": "nginx"}, {"name": "side", "image": "busybox"}]
    live = do_apply(None, deploy(containers=two), "kubectl")
    extra = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
             "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}}
    live = do_apply(live, extra, "other")
    names = [c["name"] for c in live["spec"]["template"]["spec"]["containers"]]
    assert names == ["nginx", "side", "log"]
    out = do_apply(live, deploy(containers=[two[0]]), "kubectl")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx", "log"]


def test_apply_to_an_unmanaged_object_keeps_its_fields_as_before_first_apply():
    live = deploy(replicas=4)  # stored before managedFields existed
    with pytest.raises(mf.ApplyConflict) as e:
        do_apply(live, deploy(replicas=1), "kubectl")
    assert 'conflict with "before-first-apply" using apps/v1: .spec.replicas' in str(e.value)
    out = do_apply(live, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx",
                                                                                      "labels": {"x": "y"}}}, "kubectl")
    assert out["spec"]["replicas"] == 4 and ("before-first-apply", "Update") in owners(out)


def test_apply_config_that_cannot_be_keyed_is_an_error():
    bad = deploy(containers=[{"name": "a", "image": "x"}, {"name": "a", "image": "y"}])
    with pytest.raises(mf.ApplyError):
        do_apply(None, bad, "kubectl")


# -- updates ------------------------------------------------------------------------------------
def test_updates_take_changed_fields_and_drop_removed_ones():
    obj = deploy(replicas=1, labels={"a": "1"})
    mf.record_update(None, obj, manager="kubectl-create", api_version="apps/v1", kind="Deployment", now=NOW)
    own = owners(obj)[("kubectl-create", "Update")]
    assert P("spec|replicas") in own and P('spec|template|spec|containers|k:{"name":"nginx"}|image') in own
    # A create does not own the always-present spec/template nodes (upstream compares with the
    # Go zero value), but does own the labels map it added.
    assert P("spec") not in own and P("spec|template|spec|containers") not in own and P("metadata|labels") in own
    new = copy.deepcopy(obj)
    new["spec"]["replicas"] = 3
    del new["metadata"]["labels"]["a"]
    mf.record_update(obj, new, manager="kubectl-scale", api_version="apps/v1", kind="Deployment", now=LATER)
    own = owners(new)
    assert own[("kubectl-scale", "Update")] == {P("spec|replicas")}
    assert P("spec|replicas") not in own[("kubectl-create", "Update")]
    assert P("metadata|labels|a") not in own[("kubectl-create", "Update")]
    times = {e["manager"]: e["time"] for e in new["metadata"]["managedFields"]}
    assert times == {"kubectl-create": NOW, "kubectl-scale": LATER}


def test_noop_update_changes_nothing_and_status_writes_are_their_own_entry():
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    mf.record_update(None, obj, manager="kubectl", api_version="v1", kind="Pod", now=NOW)
    same = copy.deepcopy(obj)
    mf.record_update(obj, same, manager="other", api_version="v1", kind="Pod", now=LATER)
    assert same == obj
    st = copy.deepcopy(obj)
    st["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    mf.record_update(obj, st, manager="kubelet", api_version="v1", kind="Pod", now=LATER, subresource="status")
    (e,) = [e for e in st["metadata"]["managedFields"] if e["manager"] == "kubelet"]
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {"f:status": {".": {}, "f:conditions": {".": {}, 'k:{"type":"Ready"}': {
        ".": {}, "f:status": {}, "f:type": {}}}, "f:phase": {}}}


@pytest.mark.parametrize("sent,kept", [
    ([{}], False),   # upstream's reset: strip them all
    ([], False),
    (None, True),    # a client that does not know managedFields cannot drop them
])
def test_reset_of_managed_fields(sent, kept):
    obj = do_apply(None, deploy(replicas=1), "kubectl")
    new = copy.deepcopy(obj)
    if sent is None:
        new["metadata"].pop("managedFields")
    else:
        new["metadata"]["managedFields"] = sent
    mf.record_update(obj, new, manager="x", api_version="apps/v1", kind="Deployment", now=LATER)
    assert ("managedFields" in new["metadata"]) == kept


def test_client_may_rewrite_managed_fields():
    """kubectl's CSA→SSA upgrade sends a JSON patch replacing managedFields: they are taken."""
    obj = deploy(replicas=1)
    mf.record_update(None, obj, manager="kubectl-client-side-apply", api_version="apps/v1", kind="Deployment", now=NOW)
    new = copy.deepcopy(obj)
    new["metadata"]["managedFields"][0].update(manager="kubectl", operation="Apply")
    mf.record_update(obj, new, manager="kubectl", api_version="apps/v1", kind="Deployment", now=LATER)
    assert list(owners(new)) == [("kubectl", "Apply")]


def test_last_applied_allows_takeover_of_unchanged_fields_only():
    import json
    cfg = deploy(replicas=2, labels={"a": "1"})
    live = copy.deepcopy(cfg)
    live["metadata"]["annotations"] = {mf.LAST_APPLIED: json.dumps(cfg)}
    live["metadata"]["labels"]["a"] = "edited"
    allowed = mf.last_applied_allowed(live, kind="Deployment")
    assert P("spec|replicas") in allowed and P("metadata|labels|a") not in allowed
    mf.set_last_applied(live, deploy(replicas=3))
    assert json.loads(live["metadata"]["annotations"][mf.LAST_APPLIED])["spec"]["replicas"] == 3


# -- through the registry (the same code the HTTP handlers call) ---------------------------------
async def test_registry_apply_create_conflict_force_and_dry_run():
    from nanokube.api.errors import ApiError
    from nanokube.apiserver.registry import Registry
    from nanokube.store import MemoryStore
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"metadata": {"name": "d"}})
    dry = await reg.apply("deployments", "nginx", deploy(replicas=2), namespace="d", field_manager="kubectl", dry_run=True)
    assert dry["metadata"]["managedFields"][0]["manager"] == "kubectl"
    with pytest.raises(ApiError):
        reg.get("deployments", "nginx", namespace="d")  # a dry run stores nothing
    out = await reg.apply("deployments", "nginx", deploy(replicas=2), namespace="d", field_manager="kubectl")
    assert out["metadata"]["generation"] == 1 and out["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted
    assert [(e["manager"], e["operation"]) for e in out["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    cfg = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "spec": {"replicas": 5}}
    with pytest.raises(ApiError) as e:
        await reg.apply("deployments", "nginx", cfg, namespace="d", field_manager="other")
    st = e.value.status()
    assert st["code"] == 409 and st["reason"] == "Conflict"
    assert st["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas'
    assert st["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"',
                                        "field": ".spec.replicas"}]
    out = await reg.apply("deployments", "nginx", cfg, namespace="d", field_manager="other", force=True)
    assert out["spec"]["replicas"] == 5 and out["metadata"]["generation"] == 2
    # a scale is an Update through the scale subresource; status writes are their own entries
    await reg.patch("deployments", "nginx", {"spec": {"replicas": 1}}, namespace="d", subresource="scale",
                    field_manager="kubectl-scale")
    cur = reg.get("deployments", "nginx", namespace="d")
    await reg.update("deployments", dict(cur, status={"replicas": 1}), namespace="d", subresource="status",
                     field_manager="kube-controller-manager")
    got = reg.get("deployments", "nginx", namespace="d")
    ids = {(e["manager"], e["operation"], e.get("subresource", "")) for e in got["metadata"]["managedFields"]}
    assert ids == {("kubectl", "Apply", ""), ("kubectl-scale", "Update", "scale"),
                   ("kube-controller-manager", "Update", "status")}  # "other" lost its only field to the scale
    with pytest.raises(ApiError) as e:
        await reg.apply("deployments", "nginx", cfg, namespace="d", field_manager="other")
    assert 'conflict with "kubectl-scale" with subresource "scale" using apps/v1' in e.value.message


@pytest.mark.parametrize("kind,obj", [
    ("Pod", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x"]},
             "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}),
    ("Deployment", deploy(replicas=1, labels={"a": "b"})),
    ("ConfigMap", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}),
])
def test_fast_create_path_says_what_compare_says(kind, obj):
    from nanokube.api import defaults
    obj = copy.deepcopy(obj)
    defaults.apply_defaults({"Pod": "pods", "Deployment": "deployments", "ConfigMap": "configmaps"}[kind], obj)
    fast = copy.deepcopy(obj)
    mf.record_update(None, fast, manager="m", api_version="v1", kind=kind, now=NOW)
    slow = mf.compare(mf._zero_like(obj), mf.strip(obj), kind=kind).changed()
    assert mf.decode_fields(fast["metadata"]["managedFields"][0]["fieldsV1"]) == slow


async def test_http_apply_options_and_default_manager(tmp_path):
    """Over HTTP: apply needs fieldManager, only apply may force (upstream's PatchOptions
    errors), and a write without fieldManager is recorded under the User-Agent's program name."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from nanokube.apiserver.app import ApiServer
    from nanokube.apiserver.registry import Registry
    from nanokube.store import MemoryStore
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"metadata": {"name": "default"}})
    server = TestServer(ApiServer(reg, token="t").app(), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}/api/v1/namespaces/default/configmaps"
    hdr = {"Authorization": "Bearer t", "User-Agent": "kubectl/v1.37.1 (linux/amd64) kubernetes/abc"}
    cm = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}'
    try:
        async with aiohttp.ClientSession(headers=hdr) as s:
            async with s.patch(base + "/a", data=cm, headers={"Content-Type": "application/apply-patch+yaml"}) as r:
                st = await r.json()
            assert r.status == 422 and st["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                                                         "Required value: is required for apply patch")
            async with s.post(base, data=cm, headers={"Content-Type": "application/json"}) as r:
                assert r.status == 201
                assert [e["manager"] for e in (await r.json())["metadata"]["managedFields"]] == ["kubectl"]
            async with s.patch(base + "/a?force=true", data='{"data":{"k":"w"}}',
                               headers={"Content-Type": "application/merge-patch+json"}) as r:
                st = await r.json()
            assert r.status == 422 and "force: Forbidden: may not be specified for non-apply patch" in st["message"]
            async with s.patch(base + "/a?fieldManager=tool", data="data:\n  k: w\n",
                               headers={"Content-Type": "application/apply-patch+yaml"}) as r:
                st = await r.json()
            assert r.status == 409 and st["message"] == ('Apply failed with 1 conflict: conflict with "kubectl" '
                                                         'using v1: .data.k')
            async with s.patch(base + "/b?fieldManager=tool", data="apiVersion: v1\nkind: ConfigMap\ndata:\n  k: w\n",
                               headers={"Content-Type": "application/apply-patch+yaml"}) as r:
                assert r.status == 201 and (await r.json())["metadata"]["name"] == "b"  # apply creates: 201, as upstream
    finally:
        await server.close()

"""The HTTP layer with the real HttpClient, over loopback: status errors, watches."""
import asyncio

import pytest
from aiohttp.test_utils import TestServer

from nanokube.api.errors import ApiError, Conflict, NotFound
from nanokube.api.schema import load_schemas
from nanokube.apiserver.app import ApiServer
from nanokube.apiserver.registry import Registry
from nanokube.client.http import HttpClient
from nanokube.store import MemoryStore


@pytest.fixture
async def client(tmp_path):
    reg = Registry(MemoryStore(), schemas=load_schemas(tmp_path))
    server = TestServer(ApiServer(reg, token="t").app(), host="127.0.0.1")
    await server.start_server()
    c = HttpClient(f"http://127.0.0.1:{server.port}", token="t")
    await c.create("namespaces", {"metadata": {"name": "default"}})
    yield c
    await c.close()
    await server.close()


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}


async def test_errors_are_status_objects(client):
    with pytest.raises(NotFound):
        await client.get("configmaps", "missing", namespace="default")
    await client.create("configmaps", CM, namespace="default")
    with pytest.raises(Conflict) as e:
        await client.create("configmaps", CM, namespace="default")
    assert e.value.reason == "AlreadyExists"
    stale = await client.get("configmaps", "a", namespace="default")
    await client.patch("configmaps", "a", {"data": {"k": "w"}}, namespace="default")
    with pytest.raises(Conflict) as e:
        await client.update("configmaps", stale, namespace="default")
    assert e.value.reason == "Conflict"
    with pytest.raises(ApiError) as e:
        await client.create("configmaps", {**CM, "metadata": {"name": "Bad_Name"}}, namespace="default")
    assert e.value.code == 422 and e.value.details["causes"][0]["field"] == "metadata.name"
    assert (await client.get("configmaps", "a", namespace="default"))["data"] == {"k": "w"}


async def test_watch_stays_open_and_delivers_later_events(client):
    lst = await client.list("configmaps", namespace="default")
    got = []

    async def watch():
        async for typ, obj in client.watch("configmaps", namespace="default",
                                           resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=5):
            got.append((typ, obj["metadata"]["name"]))
            if len(got) == 2:
                return
    task = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # well past any internal poll interval: the stream must still be open
    await client.create("configmaps", CM, namespace="default")
    await asyncio.sleep(0.3)
    await client.delete("configmaps", "a", namespace="default")
    await asyncio.wait_for(task, 5)
    assert got == [("ADDED", "a"), ("DELETED", "a")]


async def test_unauthenticated_is_rejected(client):
    anon = HttpClient(client.server)
    with pytest.raises(ApiError) as e:
        await anon.list("pods", namespace="default")
    await anon.close()
    assert e.value.code == 401


async def test_oversized_body_is_413_and_stores_nothing(client):
    big = {**CM, "metadata": {"name": "big"}, "data": {"k": "x" * (3 * 1024 * 1024 + 1)}}
    with pytest.raises(ApiError) as e:
        await client.create("configmaps", big, namespace="default")
    assert e.value.code == 413 and e.value.reason == "RequestEntityTooLarge"
    with pytest.raises(NotFound):
        await client.get("configmaps", "big", namespace="default")


async def test_field_selectors_are_per_resource(client):
    await client.create("configmaps", CM, namespace="default")
    await client.create("secrets", {"metadata": {"name": "s"}, "type": "Opaque", "data": {}}, namespace="default")
    # every resource: metadata.name (and metadata.namespace when namespaced)
    got = await client.list("configmaps", namespace="default", field_selector="metadata.name=a,metadata.namespace=default")
    assert [o["metadata"]["name"] for o in got["items"]] == ["a"]
    # a type's own labels: secrets by type
    assert len((await client.list("secrets", namespace="default", field_selector="type=Opaque"))["items"]) == 1
    assert (await client.list("secrets", namespace="default", field_selector="type!=Opaque"))["items"] == []
    # an unset boolean selects as "false", as upstream formats it
    await client.create("nodes", {"metadata": {"name": "n1"}})
    assert len((await client.list("nodes", field_selector="spec.unschedulable=false"))["items"]) == 1
    # anything else is a 400 that names the label, for lists and watches alike
    for plural, sel, ns in (("configmaps", "data.k=v", "default"), ("nodes", "metadata.namespace=x", None),
                            ("pods", "spec.containers=x", "default")):
        with pytest.raises(ApiError) as e:
            await client.list(plural, namespace=ns, field_selector=sel)
        assert e.value.code == 400 and e.value.reason == "BadRequest"
        assert e.value.message == f"field label not supported: {sel.split('=')[0]}"
    with pytest.raises(ApiError) as e:
        async for _ in client.watch("configmaps", namespace="default", field_selector="data.k=v", timeout_seconds=1):
            pass
    assert e.value.code == 400


async def test_server_side_apply_answers_201_when_it_creates(client):
    import aiohttp
    url = f"{client.server}/api/v1/namespaces/default/configmaps/applied?fieldManager=me"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: applied}\ndata: {k: v}\n"
    headers = {"Authorization": "Bearer t", "Content-Type": "application/apply-patch+yaml"}
    async with aiohttp.ClientSession() as s:
        codes = []
        for _ in range(2):
            async with s.patch(url, data=body, headers=headers) as r:
                codes.append(r.status)
                assert (await r.json())["data"] == {"k": "v"}
    assert codes == [201, 200]


async def test_aggregated_discovery_matches_the_legacy_documents(client):
    import aiohttp
    from nanokube.apiserver import discovery
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as s:
        async def get(path, acc):
            async with s.get(client.server + path, headers={"Accept": acc}) as r:
                assert r.status == 200
                return r.headers["Content-Type"], await r.json(content_type=None)
        ctype, core = await get("/api", accept)
        assert ctype == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ctype, apis = await get("/apis", accept)
        assert apis["kind"] == "APIGroupDiscoveryList" and apis["apiVersion"] == "apidiscovery.k8s.io/v2"
        # only v2beta1 asked for: that version; plain JSON: the legacy documents
        assert (await get("/apis", accept.split(",", 1)[1]))[1]["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
        assert (await get("/apis", "application/json"))[1]["kind"] == "APIGroupList"
        assert (await get("/api", "application/json, */*"))[1]["kind"] == "APIVersions"
    # every legacy resource list entry is in the aggregated documents, with the same facts
    items = core["items"] + apis["items"]
    assert [i["metadata"].get("name", "") for i in items][:1] == [""]
    for item in items:
        for v in item["versions"]:
            gv = f"{item['metadata']['name']}/{v['version']}" if item["metadata"].get("name") else v["version"]
            legacy = {e["name"]: e for e in discovery.resource_list(gv)["resources"]}
            seen = set()
            for r in v["resources"]:
                e = legacy[r["resource"]]
                seen.add(r["resource"])
                assert r["scope"] == ("Namespaced" if e["namespaced"] else "Cluster") and r["verbs"] == e["verbs"]
                assert r["responseKind"]["kind"] == e["kind"] and r.get("shortNames") == e.get("shortNames")
                for sub in r.get("subresources", []):
                    name = f"{r['resource']}/{sub['subresource']}"
                    seen.add(name)
                    assert sub["responseKind"]["kind"] == legacy[name]["kind"]
            assert seen == set(legacy), gv
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    subs = {s["subresource"]: s["responseKind"] for s in pods["subresources"]}
    assert subs["eviction"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert subs["status"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["singularResource"] == "pod" and "all" in pods["categories"]


async def test_list_serves_the_stored_json_of_the_current_revisions(tmp_path):
    """LIST joins each object's stored JSON; it must be exactly the current objects, after
    updates, status writes, patches and deletes, on SQLite (JSON made at persist) too."""
    import aiohttp
    import json as _json
    from nanokube.store.sqlite import SqliteStore
    reg = Registry(SqliteStore(tmp_path / "s.db"), schemas=load_schemas(tmp_path))
    server = TestServer(ApiServer(reg, token="t").app(), host="127.0.0.1")
    await server.start_server()
    c = HttpClient(f"http://127.0.0.1:{server.port}", token="t")
    try:
        await c.create("namespaces", {"metadata": {"name": "default"}})
        for i in range(5):
            await c.create("configmaps", {**CM, "metadata": {"name": f"c{i}", "labels": {"n": str(i)}}},
                           namespace="default")
        await c.patch("configmaps", "c1", {"data": {"k": "patched"}}, namespace="default")
        await c.delete("configmaps", "c2", namespace="default")
        got = await c.get("configmaps", "c3", namespace="default")
        got["data"] = {"k": "updated"}
        await c.update("configmaps", got, namespace="default")
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as s:
            async with s.get(f"{c.server}/api/v1/namespaces/default/configmaps?labelSelector=n!=4") as r:
                assert r.status == 200 and r.content_type == "application/json"
                body = _json.loads(await r.read())
        want = reg.list("configmaps", namespace="default", label_selector="n!=4")
        assert body == want
        assert [o["data"]["k"] for o in body["items"]] == ["v", "patched", "updated"]
        assert body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"] == want["metadata"]["resourceVersion"]
    finally:
        await c.close()
        await server.close()


async def test_ephemeral_containers_subresource(client):
    """pods/ephemeralcontainers only adds debugging containers (kubectl debug's strategic merge
    patch); everything else about them is refused with field paths, and nothing changes."""
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    eph = {"name": "dbg", "image": "busybox", "targetContainerName": "app", "stdin": True, "tty": True}
    await client.create("serviceaccounts", {"metadata": {"name": "default"}}, namespace="default")
    with pytest.raises(ApiError) as e:
        await client.create("pods", {**pod, "spec": {**pod["spec"], "ephemeralContainers": [eph]}}, namespace="default")
    assert e.value.code == 422 and e.value.details["causes"][0]["field"] == "spec.ephemeralContainers"
    await client.create("pods", pod, namespace="default")
    with pytest.raises(ApiError) as e:  # not through the pod itself
        await client.patch("pods", "p", {"spec": {"ephemeralContainers": [eph]}}, namespace="default", patch_type="strategic")
    assert e.value.code == 422
    bad = [({**eph, "ports": [{"containerPort": 80}]}, "spec.ephemeralContainers[0].ports"),
           ({**eph, "targetContainerName": "nope"}, "spec.ephemeralContainers[0].targetContainerName"),
           ({**eph, "name": "app"}, "spec.ephemeralContainers[0].name"),
           ({**eph, "readinessProbe": {"exec": {"command": ["true"]}}}, "spec.ephemeralContainers[0].readinessProbe")]
    for c, field in bad:
        with pytest.raises(ApiError) as e:
            await client.patch("pods", "p", {"spec": {"ephemeralContainers": [c]}}, namespace="default",
                               subresource="ephemeralcontainers", patch_type="strategic")
        assert e.value.code == 422 and field in [x["field"] for x in e.value.details["causes"]], e.value.details
    assert "ephemeralContainers" not in (await client.get("pods", "p", namespace="default"))["spec"]
    got = await client.patch("pods", "p", {"spec": {"ephemeralContainers": [eph]}}, namespace="default",
                             subresource="ephemeralcontainers", patch_type="strategic")
    assert got["kind"] == "Pod" and got["spec"]["ephemeralContainers"][0]["terminationMessagePolicy"] == "File"
    # added ones are never removed or changed
    for change in ([], [{**eph, "image": "nginx"}]):
        cur = await client._do("GET", client._url("pods", "default", "p", "ephemeralcontainers"))
        cur["spec"]["ephemeralContainers"] = change
        with pytest.raises(ApiError) as e:
            await client.update("pods", cur, namespace="default", subresource="ephemeralcontainers")
        assert e.value.code == 422 and "may not be" in e.value.details["causes"][0]["message"]
    assert len((await client.get("pods", "p", namespace="default"))["spec"]["ephemeralContainers"]) == 1


async def test_events_repeat_into_one_and_list_in_order(tmp_path):
    from nanokube.client.events import emit
    from nanokube.client.local import LocalClient
    c = LocalClient(Registry(MemoryStore(), schemas=load_schemas(tmp_path)))
    await c.create("namespaces", {"metadata": {"name": "default"}})
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "default", "uid": "u1"}}
    for reason in ("Scheduled", "Pulled", "Created", "Started", "Pulled"):
        await emit(c, pod, reason=reason, message=f"{reason} it", component="kubelet")
    items = (await c.list("events", namespace="default"))["items"]
    assert [(e["reason"], e["count"]) for e in items] == [("Scheduled", 1), ("Pulled", 2), ("Created", 1), ("Started", 1)]
    assert all(e["metadata"]["name"].startswith("p.") for e in items)

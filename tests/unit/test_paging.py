"""Chunked LISTs (limit / continue), as kubectl get --chunk-size uses them; EndpointSlices mirrored
from Endpoints."""
import pytest

from nanokube.api.errors import ApiError
from nanokube.apiserver.registry import Registry
from nanokube.store import MemoryStore


async def test_limit_and_continue_walk_every_item_once():
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"metadata": {"name": "d"}})
    for i in range(7):
        await reg.create("configmaps", {"metadata": {"name": f"c{i}", "labels": {"odd": str(i % 2)}}}, namespace="d")
    seen, token, pages = [], None, 0
    while True:
        page = reg.list("configmaps", namespace="d", limit=3, continue_token=token)
        seen += [o["metadata"]["name"] for o in page["items"]]
        pages += 1
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 7 - len(seen)
    assert seen == [f"c{i}" for i in range(7)] and pages == 3
    odd = reg.list("configmaps", namespace="d", label_selector="odd=1", limit=2)
    assert [o["metadata"]["name"] for o in odd["items"]] == ["c1", "c3"] and odd["metadata"]["remainingItemCount"] == 1
    assert "continue" not in reg.list("configmaps", namespace="d", limit=100)["metadata"]
    with pytest.raises(ApiError) as e:
        reg.list("configmaps", namespace="d", continue_token="not-base64!")
    assert e.value.code == 400


def test_endpoint_slices_mirror_endpoints():
    from nanokube.controllers.endpointslices import plan_slices
    svc = {"metadata": {"name": "web", "namespace": "d", "uid": "u1"}}
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.2", "nodeName": "n1"}], "notReadyAddresses": [{"ip": "10.0.0.1"}],
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}
    (s,) = plan_slices(svc, ep)
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web" and s["metadata"]["name"].startswith("web-")
    assert [(e["addresses"], e["conditions"]["ready"]) for e in s["endpoints"]] == [(["10.0.0.1"], False), (["10.0.0.2"], True)]
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert plan_slices(svc, ep)[0]["metadata"]["name"] == s["metadata"]["name"]  # idempotent
    assert plan_slices(svc, None) == []

"""Regressions for requests the schemathesis fuzz (tests/integration/test_fuzz.py) found
answered with 500: each must be a Kubernetes ``Status`` with a 4xx code instead.

Drives the real aiohttp app over loopback with raw requests, as the fuzz did."""
from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from nanokube.api.schema import load_schemas
from nanokube.apiserver.app import ApiServer
from nanokube.apiserver.registry import Registry
from nanokube.store import MemoryStore


@pytest.fixture
async def raw(tmp_path):
    """(session, base URL) of a fresh apiserver with namespace ``fuzz``."""
    reg = Registry(MemoryStore(), schemas=load_schemas(tmp_path))
    server = TestServer(ApiServer(reg, token="t").app(), host="127.0.0.1")
    await server.start_server()
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as s:
        r = await s.post(f"{base}/api/v1/namespaces", json={"metadata": {"name": "fuzz"}})
        assert r.status == 201, await r.text()
        r = await s.post(f"{base}/api/v1/namespaces/fuzz/serviceaccounts", json={"metadata": {"name": "default"}})
        assert r.status == 201, await r.text()
        yield s, base
    await server.close()


async def _status(s: aiohttp.ClientSession, method: str, url: str, body: object,
                  ctype: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    async with s.request(method, url, data=data, headers={"Content-Type": ctype}) as r:
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("method,path,body", [
    # no metadata.name on a namespace: the namespace defaulter read it unconditionally
    ("POST", "/api/v1/namespaces", {}),
    ("PUT", "/api/v1/namespaces/fuzz", {}),
    # fields of the wrong JSON type reached validation/defaulting code (len() of an int, ...)
    ("POST", "/api/v1/namespaces/fuzz/configmaps", {"metadata": {"name": 5}}),
    ("POST", "/api/v1/namespaces/fuzz/configmaps", {"metadata": {"name": "a", "labels": ["x"]}}),
    ("POST", "/api/v1/namespaces/fuzz/configmaps", ["not", "an", "object"]),
    ("PUT", "/api/v1/namespaces/fuzz/configmaps/a", {"metadata": []}),
    # "spec": null reached the service defaulter's setdefault
    ("POST", "/api/v1/namespaces/fuzz/services", {"metadata": {"name": "s"}, "spec": None}),
    ("POST", "/apis/apps/v1/namespaces/fuzz/deployments",
     {"metadata": {"name": "d"}, "spec": {"replicas": "two", "template": {"spec": {"containers": {}}}}}),
])
async def test_fuzz_found_requests_are_4xx_status(raw, method, path, body):
    s, base = raw
    code, st = await _status(s, method, base + path, body)
    assert 400 <= code < 500, st
    assert st["kind"] == "Status" and st["code"] == code


async def test_wrong_type_is_a_decode_error_naming_the_field(raw):
    s, base = raw
    code, st = await _status(s, "POST", f"{base}/apis/apps/v1/namespaces/fuzz/deployments",
                             {"metadata": {"name": "d"}, "spec": {"replicas": "two"}})
    assert code == 400 and st["reason"] == "BadRequest"
    assert "spec.replicas of type integer" in st["message"], st["message"]


async def test_numbers_for_quantities_are_still_accepted(raw):
    """Upstream's Quantity decodes from a number too (``cpu: 1`` in YAML)."""
    s, base = raw
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
        "limits": {"cpu": 1, "memory": "64Mi"}, "requests": {"cpu": 0.5}}}]}}
    code, st = await _status(s, "POST", f"{base}/api/v1/namespaces/fuzz/pods", pod)
    assert code == 201, st["message"]

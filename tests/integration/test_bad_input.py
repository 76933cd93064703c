"""Bad input against a real cluster (issue 11): each refused with a Kubernetes ``Status`` —
the code and reason upstream gives, the field path where there is one — and nothing stored.

Two ways in, as users come: raw HTTP (curl from the cluster's host side, with the admin
token; the only way to send malformed bodies, wrong kinds or garbage query parameters) and
the real kubectl (whose error line quotes the server's Status). test_foundation covers a bad
name, an unknown field and a missing image through kubectl; the 413 for huge bodies is in the
unit tests and repeated here over the wire.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import Cluster

pytestmark = [pytest.mark.integration]

NS_PATH = "/api/v1/namespaces/default"


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def raw(c: Cluster, method: str, path: str, body: str | None = None, *, ctype: str = "application/json",
        body_file: Path | None = None) -> tuple[int, dict]:
    """One request with curl from the host side: (HTTP code, the parsed response body)."""
    info = json.loads((c.state_dir / c.name / "cluster.json").read_text())
    token = next(l.split(":", 1)[1].strip() for l in Path(info["kubeconfig"]).read_text().splitlines()
                 if l.strip().startswith("token:"))
    argv = ["curl", "-s", "--cacert", str(c.state_dir / c.name / "server" / "pki" / "ca.crt"),
            "-H", f"Authorization: Bearer {token}", "-X", method, "-w", "\n%{http_code}"]
    if body is not None or body_file is not None:
        argv += ["-H", f"Content-Type: {ctype}", "--data-binary", f"@{body_file}" if body_file else body]
    r = c.host(*argv, info["server"] + path, timeout=60)
    text, _, code = r.stdout.rpartition("\n")
    return int(code), json.loads(text)


def assert_status(st: dict, code: int, reason: str, *, field: str | None = None, message: str | None = None) -> None:
    assert st["kind"] == "Status" and st["status"] == "Failure", st
    assert (st["code"], st["reason"]) == (code, reason), st
    if field is not None:
        assert field in [c.get("field") for c in st["details"]["causes"]], st
    if message is not None:
        assert re.search(message, st["message"]), st


def absent(c: Cluster, resource: str, name: str) -> bool:
    return raw(c, "GET", f"{NS_PATH}/{resource}/{name}")[0] == 404


def pod(name: str, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", **container}]}}


# -- bodies the server cannot take: 400 (or 404 for no such resource), nothing stored ------------
MALFORMED = {
    "truncated json": ("configmaps", '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"mal1"', "application/json",
                       400, "BadRequest", "error decoding request body"),
    "broken yaml": ("configmaps", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mal2\n", "application/yaml",
                    400, "BadRequest", "error decoding request body"),
    "not an object": ("configmaps", '["mal3"]', "application/json", 400, "BadRequest", "not a JSON object"),
    "wrong kind": ("configmaps", '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"mal4"}}', "application/json",
                   400, "BadRequest", r'Pod in version "v1" cannot be handled as a ConfigMap'),
    "wrong apiVersion": ("configmaps", '{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"mal5"}}',
                         "application/json", 400, "BadRequest",
                         r"the API version in the data \(apps/v1\) does not match the expected API version \(v1\)"),
    "no such resource": ("frobnicates", '{"apiVersion":"v1","kind":"Frobnicate","metadata":{"name":"mal6"}}',
                         "application/json", 404, "NotFound", "the server could not find the requested resource"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bodies_are_400_and_nothing_stored(cluster, case):
    resource, body, ctype, code, reason, message = MALFORMED[case]
    got, st = raw(cluster, "POST", f"{NS_PATH}/{resource}", body, ctype=ctype)
    assert got == code
    assert_status(st, code, reason, message=message)
    name = re.search(r"mal\d", body).group(0)
    assert absent(cluster, "configmaps", name) and absent(cluster, "pods", name)


def test_huge_body_is_413_over_the_wire(cluster, tmp_path):
    body = tmp_path / "huge.json"
    body.write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                                "data": {"blob": "x" * (3 * 1024 * 1024 + 1024)}}))
    got, st = raw(cluster, "POST", f"{NS_PATH}/configmaps", body_file=body)
    assert got == 413
    assert_status(st, 413, "RequestEntityTooLarge")
    assert absent(cluster, "configmaps", "huge")


# -- objects that decode but do not validate: 422 Invalid with the field path ---------------------
INVALID = {
    "namespace name not DNS-1123": ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                           "metadata": {"name": "Bad.NS"}}, "metadata.name"),
    "label key not a qualified name": (f"{NS_PATH}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "badlabel", "labels": {"bad key!": "v"}}},
        "metadata.labels"),
    "bad quantity": (f"{NS_PATH}/pods", pod("badqty", resources={"requests": {"cpu": "2fish"}}),
                     "spec.containers[0].resources.requests[cpu]"),
    "negative quantity": (f"{NS_PATH}/pods", pod("negqty", resources={"limits": {"memory": "-64Mi"}}),
                          "spec.containers[0].resources.limits[memory]"),
    "limits below requests": (f"{NS_PATH}/pods", pod("lowlimit", resources={"requests": {"cpu": "2"},
                                                                             "limits": {"cpu": "1"}}),
                              "spec.containers[0].resources.requests"),
    "duplicate port name": (f"{NS_PATH}/pods", pod("dupport", ports=[{"name": "http", "containerPort": 80},
                                                                     {"name": "http", "containerPort": 8080}]),
                            "spec.containers[0].ports[1].name"),
    "duplicate host port": (f"{NS_PATH}/pods", pod("duphost", ports=[{"containerPort": 80, "hostPort": 8080},
                                                                     {"containerPort": 81, "hostPort": 8080}]),
                            "spec.containers[0].ports[1].hostPort"),
    "selector not matching template": ("/apis/apps/v1/namespaces/default/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nomatch"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        "spec.template.metadata.labels"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_objects_are_422_with_the_field_and_nothing_stored(cluster, case):
    path, obj, field = INVALID[case]
    got, st = raw(cluster, "POST", path, json.dumps(obj))
    assert got == 422
    assert_status(st, 422, "Invalid", field=field)
    assert st["details"]["name"] == obj["metadata"]["name"]
    assert raw(cluster, "GET", f"{path}/{obj['metadata']['name']}")[0] == 404


KUBECTL_INVALID = {
    "bad quantity": ("""
apiVersion: v1
kind: Pod
metadata: {name: kqty}
spec:
  containers:
  - {name: c, image: busybox, resources: {requests: {memory: lots}}}
""", r'The Pod "kqty" is invalid: spec\.containers\[0\]\.resources\.requests\[memory\]: Invalid value: "lots": '
     r"quantities must match the regular expression"),
    "limits below requests": ("""
apiVersion: v1
kind: Pod
metadata: {name: klimit}
spec:
  containers:
  - {name: c, image: busybox, resources: {requests: {memory: 128Mi}, limits: {memory: 64Mi}}}
""", r'The Pod "klimit" is invalid: spec\.containers\[0\]\.resources\.requests: Invalid value: "128Mi": '
     r"must be less than or equal to memory limit of 64Mi"),
    "duplicate port name": ("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: kports}
spec:
  selector: {matchLabels: {app: k}}
  template:
    metadata: {labels: {app: k}}
    spec:
      containers:
      - name: c
        image: busybox
        ports: [{name: web, containerPort: 80}, {name: web, containerPort: 81}]
""", r'The Deployment "kports" is invalid: spec\.template\.spec\.containers\[0\]\.ports\[1\]\.name: '
     r'Duplicate value: "web"'),
    "label value too long": ("""
apiVersion: v1
kind: ConfigMap
metadata:
  name: klabel
  labels: {app: %s}
""" % ("v" * 64), r'The ConfigMap "klabel" is invalid: metadata\.labels: Invalid value: "v{64}": '
   r"must be no more than 63 characters"),
}


@pytest.mark.parametrize("case", sorted(KUBECTL_INVALID))
def test_kubectl_shows_the_status_and_nothing_stored(cluster, case):
    manifest, pattern = KUBECTL_INVALID[case]
    r = cluster.kubectl("apply", "-f", "-", input=manifest, check=False)
    assert r.returncode != 0
    assert re.search(pattern, r.stderr), r.stderr
    kind = re.search(r"kind: (\w+)", manifest).group(1).lower()
    name = re.search(r"name: (\w+)", manifest).group(1)
    got = cluster.kubectl("get", kind, name, check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


# -- bad query parameters: selectors, watch resourceVersions ---------------------------------------
QUERIES = {
    "label selector": ("pods?labelSelector=a%20in%20(b", 400, "BadRequest", "unable to parse requirement"),
    "label selector value": ("pods?labelSelector=app%3D%25bad%25", 400, "BadRequest", "unable to parse requirement"),
    "field selector": ("pods?fieldSelector=nonsense", 400, "BadRequest", "invalid selector"),
    "watch rv garbage": ("configmaps?watch=1&resourceVersion=abc", 400, "BadRequest", "invalid resource version: abc"),
    "watch rv negative": ("configmaps?watch=1&resourceVersion=-5", 400, "BadRequest", "invalid resource version: -5"),
    "watch rv signed": ("configmaps?watch=1&resourceVersion=%2B7", 400, "BadRequest", r"invalid resource version: \+7"),
}


@pytest.mark.parametrize("case", sorted(QUERIES))
def test_bad_query_parameters_are_400(cluster, case):
    query, code, reason, message = QUERIES[case]
    got, st = raw(cluster, "GET", f"{NS_PATH}/{query}")
    assert got == code
    assert_status(st, code, reason, message=message)


def test_kubectl_bad_selector_is_refused(cluster):
    r = cluster.kubectl("get", "pods", "-l", "a in (b", check=False)
    assert r.returncode != 0
    assert "Error from server (BadRequest)" in r.stderr and "unable to parse requirement" in r.stderr, r.stderr

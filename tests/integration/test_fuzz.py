"""Fuzz the apiserver with schemathesis, driven by the OpenAPI v3 documents it serves itself.

What it proves: for a bounded, reproducible set of generated requests (valid and invalid) against
the core/v1 and apps/v1 operations a user drives most, the server never answers 5xx, never
drops a connection, keeps running, and everything it stored reads back and passes our own
validation (``nanokube.api.validation.validate``) — no 500, no crash, no stored corruption.

Key design choices:
- The fuzz runs in this process, in a thread that has entered the cluster's host-side network
  namespace (``nanokube.host.netns.run_in``), so the test talks HTTPS to the real server with the
  admin token and cluster CA from the kubeconfig, exactly as kubectl does.
- Reproducible and bounded: Hypothesis is derandomized (fixed seed), a fixed number of examples
  per operation and mode, no example database, no shrinking (each failure is reported as the
  first failing request, as a curl command). A total time budget caps the run on a slow
  machine; operations it leaves out are listed in the output (no timing is asserted).
- Failures are collected per operation instead of stopping at the first, so one run reports
  every distinct 5xx.
- Only sensible operations are fuzzed, in one namespace (``fuzz``); cluster-wide destructive or
  streaming ones (watch, exec/attach/portforward/proxy, namespace deletion) are excluded. The
  node is cordoned first so fuzzed pods never start containers.
The selection of operations is pure (``select_operations``) and unit-tested below without a
cluster.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

NS = "fuzz"
PINNED = "fz"        # name of the seed object of each kind; positive item operations target it
NS_PINNED = "fz-ns"  # the namespace that namespace item operations target (never a system one)
EXAMPLES = int(os.environ.get("NK_FUZZ_EXAMPLES", "6"))      # per operation and generation mode
# Bodies of these kinds are big (a PodSpec): each generated one costs seconds, so they get half.
HEAVY = ("/pods", "/deployments")
BUDGET_S = float(os.environ.get("NK_FUZZ_BUDGET", "120"))    # whole fuzz; CI stays bounded

# group-version document -> resources fuzzed in it
TARGETS: dict[str, tuple[str, ...]] = {
    "api/v1": ("configmaps", "secrets", "services", "pods", "namespaces"),
    "apis/apps/v1": ("deployments",),
}
# (path suffix after the resource, method) never fuzzed: cluster-wide damage or not a plain request
EXCLUDED: set[tuple[str, str, str]] = {
    ("namespaces", "", "delete"),        # deletecollection of namespaces: kube-system, default, ...
    ("namespaces", "/{name}", "delete"),  # would delete the fuzz namespace under the fuzz itself
}

SEEDS: dict[str, dict[str, Any]] = {
    "configmaps": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PINNED}, "data": {"k": "v"}},
    "secrets": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": PINNED}, "stringData": {"k": "v"}},
    "services": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": PINNED},
                 "spec": {"selector": {"app": PINNED}, "ports": [{"port": 80}]}},
    "pods": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": PINNED},
             "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}},
    "deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": PINNED},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": PINNED}},
                             "template": {"metadata": {"labels": {"app": PINNED}},
                                          "spec": {"containers": [{"name": "c", "image": "busybox",
                                                                   "command": ["sleep", "3600"]}]}}}},
}


# ---------------------------------------------------------------------------------------------
# pure: which operations, with which fixed path parameters


def _resource_of(path: str, doc: str) -> tuple[str, str] | None:
    """('/api/v1/namespaces/{namespace}/pods/{name}/status', 'api/v1') -> ('pods', '/{name}/status')."""
    prefix = "/" + doc + "/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    if rest.startswith("namespaces/{namespace}/"):
        rest = rest[len("namespaces/{namespace}/"):]
    res, _, tail = rest.partition("/")
    return res, ("/" + tail if tail else "")


def select_operations(doc: dict[str, Any], gv: str, resources: tuple[str, ...], *,
                      namespace: str = NS) -> dict[str, Any]:
    """A copy of one group-version document with only ``resources``' operations (minus the
    EXCLUDED ones), every ``{namespace}`` path parameter bound to ``namespace``."""
    out = copy.deepcopy(doc)
    paths: dict[str, Any] = {}
    for path, item in doc.get("paths", {}).items():
        rs = _resource_of(path, gv)
        if rs is None or rs[0] not in resources:
            continue
        res, tail = rs
        kept = {}
        for method, op in item.items():
            if method == "parameters":
                continue
            if (res, tail, method) in EXCLUDED:
                continue
            kept[method] = copy.deepcopy(op)
        if not kept:
            continue
        params = [p for p in item.get("parameters", []) if p.get("name") != "namespace"]
        if params:
            kept["parameters"] = params
        paths[path.replace("{namespace}", namespace)] = kept
    out["paths"] = paths
    return out


def test_select_operations_binds_namespace_and_drops_excluded():
    doc = {"openapi": "3.0.0", "paths": {
        "/api/v1/namespaces/{namespace}/pods": {"get": {}, "post": {}, "delete": {},
                                                "parameters": [{"name": "namespace", "in": "path"}]},
        "/api/v1/namespaces/{namespace}/pods/{name}/status": {
            "get": {}, "parameters": [{"name": "name", "in": "path"}, {"name": "namespace", "in": "path"}]},
        "/api/v1/namespaces": {"get": {}, "post": {}, "delete": {}},
        "/api/v1/namespaces/{name}": {"get": {}, "delete": {}, "parameters": [{"name": "name", "in": "path"}]},
        "/api/v1/nodes": {"get": {}, "delete": {}},
    }}
    got = select_operations(doc, "api/v1", ("pods", "namespaces"), namespace="x")
    assert set(got["paths"]) == {"/api/v1/namespaces/x/pods", "/api/v1/namespaces/x/pods/{name}/status",
                                 "/api/v1/namespaces", "/api/v1/namespaces/{name}"}
    assert set(got["paths"]["/api/v1/namespaces/x/pods"]) == {"get", "post", "delete"}
    assert got["paths"]["/api/v1/namespaces/x/pods/{name}/status"]["parameters"] == [{"name": "name", "in": "path"}]
    assert set(got["paths"]["/api/v1/namespaces"]) == {"get", "post"}
    assert set(got["paths"]["/api/v1/namespaces/{name}"]) == {"get", "parameters"}
    assert doc["paths"]["/api/v1/namespaces"]["delete"] == {}  # the input is left alone


# ---------------------------------------------------------------------------------------------
# I/O: the fuzz run against a real cluster


def _connection(c) -> tuple[str, str, str, str]:
    """(host netns, server URL, CA file, token) of a cluster, from its cluster.json and kubeconfig."""
    info = json.loads((c.state_dir / c.name / "cluster.json").read_text())
    kc = yaml.safe_load(Path(info["kubeconfig"]).read_text())
    cluster = kc["clusters"][0]["cluster"]
    return info["host_netns"], cluster["server"], cluster["certificate-authority"], kc["users"][0]["user"]["token"]


def _fuzz(server: str, ca: str, token: str) -> dict[str, Any]:
    """Run schemathesis over the selected operations; return failures, counts and what the
    budget left out. Runs inside the cluster's host netns."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE / proxy variables override the cluster CA
    session.verify = ca
    session.headers["Authorization"] = f"Bearer {token}"
    root = session.get(f"{server}/openapi/v3", timeout=30)
    root.raise_for_status()
    index = root.json()["paths"]
    failures: list[str] = []
    skipped: list[str] = []
    counts = {"requests": 0, "operations": 0}
    status_seen: dict[int, int] = {}
    timings: dict[str, float] = {}
    deadline = time.monotonic() + BUDGET_S
    for gv, resources in TARGETS.items():
        r = session.get(server + index[gv]["serverRelativeURL"], timeout=30)
        r.raise_for_status()
        raw = select_operations(r.json(), gv, resources)
        schema = schemathesis.openapi.from_dict(raw)
        schema.config.update(base_url=server, tls_verify=ca, request_timeout=30)
        for result in schema.get_all_operations():
            op = result.ok()
            label = f"{op.method.upper()} {op.path}"
            pinned = NS_PINNED if op.path.startswith(f"/{gv}/namespaces/{{name}}") else PINNED
            # Every parameter is a free-form string: only a body can be made schema-invalid.
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if len(op.body) else [])
            for mode in modes:
                if time.monotonic() > deadline:
                    skipped.append(f"{label} [{mode.value}]")
                    continue
                fixed = {"name": pinned} if "{name}" in op.path and mode is GenerationMode.POSITIVE else None
                strategy = op.as_strategy(generation_mode=mode, path_parameters=fixed)
                heavy = len(op.body) and any(h in op.path for h in HEAVY)
                hyp = settings(max_examples=max(2, EXAMPLES // 2) if heavy else EXAMPLES, derandomize=True,
                               database=None, deadline=None, phases=[Phase.explicit, Phase.generate],
                               suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
                counts["operations"] += 1
                t0 = time.monotonic()

                @hyp
                @given(case=strategy)
                def run(case) -> None:
                    counts["requests"] += 1
                    try:
                        resp = case.call(session=session, verify=ca, timeout=30)
                    except requests.RequestException as e:  # a dropped connection is a crash
                        raise AssertionError(f"request failed: {e!r}\n{case.as_curl_command(verify=False)}") from e
                    status_seen[resp.status_code] = status_seen.get(resp.status_code, 0) + 1
                    case.validate_response(resp, checks=[not_a_server_error])

                try:
                    run()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Unsatisfiable:
                    pass  # nothing to negate (e.g. only free-form string parameters): no request to make
                except BaseException as e:  # noqa: BLE001 - schemathesis raises a FailureGroup; collected
                    failures.append(f"{label} [{mode.value}]: {str(e)[:1500]}")
                timings[f"{label} [{mode.value}]"] = round(time.monotonic() - t0, 2)
    return {"failures": failures, "skipped": skipped, "counts": counts, "statuses": status_seen,
            "timings": timings}


def _seed(c) -> None:
    c.kubectl("create", "namespace", NS)
    c.kubectl("create", "namespace", NS_PINNED)
    # Cordoned: fuzzed pods are stored and validated, never started.
    for node in c.kjson("get", "nodes")["items"]:
        c.kubectl("cordon", node["metadata"]["name"])
    for obj in SEEDS.values():
        c.kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(obj))


def _read_back(c, before_ns: set[str]) -> list[str]:
    """Every object in the fuzz namespace (and every namespace the fuzz made) must LIST and GET
    with 200 and pass our own validation."""
    from nanokube.api.validation import validate
    bad: list[str] = []
    for res in ("configmaps", "secrets", "services", "pods", "deployments.apps"):
        plain = res.split(".")[0]
        r = c.kubectl("get", "--raw", f"/{'apis/apps/v1' if plain == 'deployments' else 'api/v1'}"
                                      f"/namespaces/{NS}/{plain}", check=False)
        if r.returncode != 0:
            bad.append(f"LIST {plain}: {r.stderr.strip()}")
            continue
        for obj in json.loads(r.stdout)["items"]:
            name = obj["metadata"]["name"]
            g = c.kubectl("get", res, name, "-n", NS, "-o", "json", check=False)
            if g.returncode != 0:
                bad.append(f"GET {plain}/{name}: {g.stderr.strip()}")
                continue
            causes = validate(plain, json.loads(g.stdout))
            if causes:
                bad.append(f"stored {plain}/{name} fails validation: {causes}")
    for ns in c.kjson("get", "namespaces")["items"]:
        name = ns["metadata"]["name"]
        if name in before_ns:
            continue
        causes = validate("namespaces", ns)
        if causes:
            bad.append(f"stored namespace {name} fails validation: {causes}")
    return bad


def test_fuzz_no_5xx_no_crash_no_corruption(one_node_cluster):
    from nanokube.host import netns
    c = one_node_cluster
    _seed(c)
    before_ns = {n["metadata"]["name"] for n in c.kjson("get", "namespaces")["items"]} - {NS, NS_PINNED}
    host_ns, server, ca, token = _connection(c)
    pid = int((c.state_dir / c.name / "pids" / "server.pid").read_text())
    out = netns.run_in(host_ns, lambda: _fuzz(server, ca, token))
    print(f"fuzz: {out['counts']['operations']} operation/mode runs, {out['counts']['requests']} requests, "
          f"statuses {dict(sorted(out['statuses'].items()))}, left out by the budget: {len(out['skipped'])}")
    if out["skipped"]:  # a slow machine: reported, not failed (no timing assertions)
        print("left out by the time budget:\n  " + "\n  ".join(out["skipped"]))
    assert out["counts"]["requests"] > 0
    assert Path(f"/proc/{pid}").exists(), "the apiserver process died\n" + c.logs_tail()
    assert c.kubectl("get", "--raw", "/readyz", check=False).returncode == 0
    assert not out["failures"], "\n\n".join(out["failures"])
    bad = _read_back(c, before_ns)
    assert not bad, "\n".join(bad)

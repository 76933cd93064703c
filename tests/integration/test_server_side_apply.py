"""Server-side apply with the real kubectl: `kubectl apply --server-side` records field managers,
a second manager changing an owned field gets upstream's conflict, `--force-conflicts` takes
the field over, fields dropped from a config are removed, `--dry-run=server` stores nothing,
and a client-side `kubectl apply` followed by `--server-side` migrates ownership."""
from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = pytest.mark.integration

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels: {{app: ssa{extra_label}}}
spec:
{replicas}  selector: {{matchLabels: {{app: ssa}}}}
  template:
    metadata: {{labels: {{app: ssa}}}}
    spec:
      containers:
      - {{name: main, image: busybox, command: ["sleep", "3600"]}}
"""
REPLICAS_ONLY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ssa}}
spec: {{replicas: {n}}}
"""


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def deploy(*, replicas: int | None = 2, tier: bool = True) -> str:
    return DEPLOY.format(extra_label=", tier: front" if tier else "",
                         replicas=f"  replicas: {replicas}\n" if replicas is not None else "")


def managers(c, *args: str) -> dict[tuple[str, str], dict]:
    obj = c.kjson("get", *args, "--show-managed-fields")
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


def test_server_side_apply_managers_conflicts_force_and_removal(cluster):
    c = cluster
    out = c.kubectl("apply", "--server-side", "-f", "-", input=deploy())
    assert "deployment.apps/ssa serverside-applied" in out.stdout
    mine = managers(c, "deployment", "ssa")[("kubectl", "Apply")]
    assert mine["f:spec"]["f:replicas"] == {} and mine["f:metadata"]["f:labels"] == {"f:app": {}, "f:tier": {}}
    assert mine["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main"}']["."] == {}
    # kubectl hides managedFields unless asked
    assert "managedFields" not in c.kjson("get", "deployment", "ssa")["metadata"]

    # A second manager changing replicas: upstream's conflict, nothing changes.
    r = c.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=REPLICAS_ONLY.format(n=3),
                  check=False)
    assert r.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in r.stderr
    assert "--force-conflicts" in r.stderr
    assert c.kjson("get", "deployment", "ssa")["spec"]["replicas"] == 2

    # Forced: the value changes (and the ReplicaSet follows), ownership moves to "other".
    c.kubectl("apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-",
              input=REPLICAS_ONLY.format(n=3))
    owners = managers(c, "deployment", "ssa")
    assert owners[("other", "Apply")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("kubectl", "Apply")]["f:spec"]
    c.wait_for("3 ready replicas", lambda: c.kjson("get", "deployment", "ssa").get("status", {}).get("readyReplicas") == 3,
               timeout=90)

    # The first manager drops the tier label and replicas: the label (only its own) goes,
    # replicas stays (now "other"'s).
    c.kubectl("apply", "--server-side", "-f", "-", input=deploy(replicas=None, tier=False))
    d = c.kjson("get", "deployment", "ssa")
    assert d["metadata"]["labels"] == {"app": "ssa"} and d["spec"]["replicas"] == 3

    # Both managers in `kubectl get -o yaml --show-managed-fields`.
    text = c.kubectl("get", "deployment", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: kubectl\n" in text and "manager: other\n" in text and "operation: Apply" in text
    assert "managedFields" not in c.kubectl("get", "deployment", "ssa", "-o", "yaml").stdout


def test_server_side_dry_run_stores_nothing(cluster):
    c = cluster
    c.kubectl("apply", "--server-side", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: dry}
        data: {k: v1}
        """))
    before = c.kjson("get", "configmap", "dry", "--show-managed-fields")
    out = c.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=planner", "--force-conflicts",
                    "-o", "json", "--show-managed-fields", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: dry}
        data: {k: v2, extra: x}
        """))
    preview = json.loads(out.stdout)
    assert preview["data"] == {"k": "v2", "extra": "x"}
    assert {e["manager"] for e in preview["metadata"]["managedFields"]} == {"planner"}  # took k from kubectl
    after = c.kjson("get", "configmap", "dry", "--show-managed-fields")
    assert after == before
    # a dry run of a new object creates nothing
    c.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: never}
        data: {k: v}
        """))
    assert c.kubectl("get", "configmap", "never", check=False).returncode != 0


def test_client_side_apply_then_server_side(cluster):
    c = cluster
    cm = textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: migrate, labels: {{a: "1"}}}}
        data: {{k1: {k1}, k2: v2}}
        """)
    c.kubectl("apply", "-f", "-", input=cm.format(k1="v1"))
    assert list(managers(c, "configmap", "migrate")) == [("kubectl-client-side-apply", "Update")]
    # Changing a field client-side apply owns is no conflict for kubectl's server-side apply:
    # the field is still as last applied, so kubectl takes it over (upstream's upgrade path).
    c.kubectl("apply", "--server-side", "-f", "-", input=cm.format(k1="changed"))
    got = c.kjson("get", "configmap", "migrate", "--show-managed-fields")
    assert got["data"] == {"k1": "changed", "k2": "v2"}
    owners = {(e["manager"], e["operation"]): e["fieldsV1"] for e in got["metadata"]["managedFields"]}
    assert ("kubectl-client-side-apply", "Update") not in owners
    assert owners[("kubectl", "Apply")]["f:data"] == {"f:k1": {}, "f:k2": {}}
    last = json.loads(got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["data"]["k1"] == "changed"
    # ... and client-side apply keeps working afterwards: dropping k2 removes it.
    c.kubectl("apply", "-f", "-", input=cm.format(k1="changed").replace(", k2: v2", ""))
    assert c.kjson("get", "configmap", "migrate")["data"] == {"k1": "changed"}

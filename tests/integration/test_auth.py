"""Authentication and RBAC, driven with the real kubectl: who am I, can I, impersonation,
ServiceAccount tokens mounted in pods and used against the API through the ``kubernetes``
Service, Roles and bindings granting exactly what they say, revocation, aggregation."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    c = one_node_cluster
    c.kubectl("create", "namespace", "authz")
    c.kubectl("apply", "-n", "authz", "-f", "-", input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: client}
        spec:
          containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: quiet}
        automountServiceAccountToken: false
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: quiet}
        spec:
          serviceAccountName: quiet
          containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
    """))
    c.kubectl("wait", "-n", "authz", "--for=condition=Ready", "pod/client", "pod/quiet", "--timeout=60s")
    return c


def test_whoami_and_can_i(cluster):
    who = cluster.kubectl("auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["groups"] == ["system:masters", "system:authenticated"]
    assert cluster.kubectl("auth", "can-i", "delete", "nodes").stdout.strip() == "yes"
    r = cluster.kubectl("auth", "can-i", "create", "pods", "--as=jane", check=False)
    assert r.returncode == 1 and r.stdout.strip() == "no"
    r = cluster.kubectl("get", "pods", "--as=jane", check=False)
    assert 'User "jane" cannot list resource "pods" in API group "" in the namespace "default"' in r.stderr


def test_every_namespace_gets_default_account_and_ca(cluster):
    assert cluster.kjson("get", "sa", "default", "-n", "authz")["metadata"]["name"] == "default"
    ca = cluster.kjson("get", "cm", "kube-root-ca.crt", "-n", "authz")["data"]["ca.crt"]
    assert ca.startswith("-----BEGIN CERTIFICATE-----")


def test_pod_token_rbac_and_revocation(cluster):
    k = lambda *a: cluster.kubectl("exec", "-n", "authz", "client", "--", *a).stdout  # noqa: E731
    assert sorted(k("ls", SA_DIR).split()) == ["ca.crt", "namespace", "token"]
    assert k("cat", f"{SA_DIR}/namespace") == "authz"
    token = k("cat", f"{SA_DIR}/token")
    as_pod = lambda *a: cluster.kubectl(f"--token={token}", *a, check=False)  # noqa: E731
    who = json.loads(as_pod("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == "system:serviceaccount:authz:default"
    assert who["extra"]["authentication.kubernetes.io/pod-name"] == ["client"]
    r = as_pod("get", "pods", "-n", "authz")
    assert r.returncode == 1 and "cannot list resource \"pods\"" in r.stderr
    cluster.kubectl("create", "role", "reader", "-n", "authz", "--verb=get,list", "--resource=pods")
    cluster.kubectl("create", "rolebinding", "reader", "-n", "authz", "--role=reader", "--serviceaccount=authz:default")
    cluster.wait_for("the binding to apply", lambda: as_pod("get", "pods", "-n", "authz", "-o", "name").returncode == 0)
    assert "pod/client" in as_pod("get", "pods", "-n", "authz", "-o", "name").stdout
    assert as_pod("get", "pods", "-n", "default").returncode == 1  # a Role binds in its namespace only
    assert as_pod("delete", "pod", "quiet", "-n", "authz").returncode == 1  # and only its verbs
    assert cluster.kubectl("auth", "can-i", "list", "pods", "-n", "authz",
                           "--as=system:serviceaccount:authz:default").stdout.strip() == "yes"
    r = as_pod("get", "pods", "-n", "authz", "--as=system:admin")
    assert 'cannot impersonate resource "users"' in r.stderr

    # The token reaches the API from inside the cluster, through the kubernetes Service.
    ca = k("cat", f"{SA_DIR}/ca.crt")
    script = textwrap.dedent(f"""
        import ssl, urllib.request, json
        ctx = ssl.create_default_context(cadata={ca!r})
        req = urllib.request.Request("https://10.96.0.1/api/v1/namespaces/authz/pods",
                                     headers={{"Authorization": "Bearer {token}"}})
        print(",".join(p["metadata"]["name"] for p in json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["items"]))
    """)
    r = cluster.host(sys.executable, "-c", script, node="node1", timeout=60)
    assert sorted(r.stdout.strip().split(",")) == ["client", "quiet"], r.stderr

    # Deleting the pod the token is bound to revokes it.
    cluster.kubectl("delete", "pod", "client", "-n", "authz", "--grace-period=0", "--force")
    cluster.wait_for("the token to stop working", lambda: "Unauthorized" in as_pod("get", "pods", "-n", "authz").stderr)


def test_opt_out_and_created_tokens(cluster):
    vols = cluster.kjson("get", "pod", "quiet", "-n", "authz")["spec"].get("volumes") or []
    assert not any(v["name"].startswith("kube-api-access-") for v in vols)
    token = cluster.kubectl("create", "token", "quiet", "-n", "authz", "--duration=15m").stdout.strip()
    who = json.loads(cluster.kubectl(f"--token={token}", "auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:authz:quiet"
    r = cluster.kubectl("create", "token", "quiet", "-n", "authz", "--duration=1m", check=False)
    assert "may not specify a duration less than 10 minutes" in r.stderr
    r = cluster.kubectl("run", "ghost", "-n", "authz", "--image=busybox", "--overrides",
                        '{"spec": {"serviceAccountName": "nobody"}}', check=False)
    assert 'error looking up service account authz/nobody: serviceaccount "nobody" not found' in r.stderr
    bad = cluster.kubectl("--token=not-a-token", "get", "pods", check=False)
    assert "Unauthorized" in bad.stderr


def test_aggregated_roles_pick_up_labelled_rules(cluster):
    cluster.kubectl("apply", "-f", "-", input=textwrap.dedent("""
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata:
          name: nodes-view
          labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
        rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list]}]
    """))
    cluster.wait_for("view (and so edit and admin) to aggregate the rule", lambda: any(
        "nodes" in (r.get("resources") or []) for r in cluster.kjson("get", "clusterrole", "view").get("rules") or []))
    assert cluster.kubectl("auth", "can-i", "list", "nodes", "--as=jane", check=False).stdout.strip() == "no"
    cluster.kubectl("create", "clusterrolebinding", "jane-view", "--clusterrole=view", "--user=jane")
    assert cluster.kubectl("auth", "can-i", "list", "nodes", "--as=jane").stdout.strip() == "yes"
    assert "node1" in cluster.kubectl("get", "nodes", "--as=jane").stdout
    assert cluster.kubectl("auth", "can-i", "list", "secrets", "--as=jane", check=False).stdout.strip() == "no"
    r = cluster.kubectl("create", "clusterrole", "a/b", "--verb=get", "--resource=pods", check=False)
    assert "may not contain '/'" in r.stderr

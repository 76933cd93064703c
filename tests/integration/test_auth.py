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


def test_user_client_certificate_from_a_csr(cluster, tmp_path):
    """The Kubernetes docs' "normal user" recipe: openssl key + CSR, a CertificateSigningRequest
    for kubernetes.io/kube-apiserver-client, kubectl certificate approve, then a kubeconfig with
    the issued certificate authenticates as the CN (groups from O) and RBAC applies to it."""
    import base64
    import subprocess
    key, csr = tmp_path / "myuser.key", tmp_path / "myuser.csr"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-out", str(csr), "-subj", "/O=devs/CN=myuser"],
                   check=True, capture_output=True)
    request = base64.b64encode(csr.read_bytes()).decode()
    r = cluster.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""
        apiVersion: certificates.k8s.io/v1
        kind: CertificateSigningRequest
        metadata: {{name: myuser}}
        spec:
          request: {request}
          signerName: kubernetes.io/kube-apiserver-client
          expirationSeconds: 86400
          usages: [client auth]
    """))
    assert "certificatesigningrequest.certificates.k8s.io/myuser created" in r.stdout
    row = cluster.kubectl("get", "csr", "myuser").stdout.splitlines()
    assert row[0].split() == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"]
    assert row[1].split()[2:] == ["kubernetes.io/kube-apiserver-client", "system:admin", "24h", "Pending"], row
    # the requestor is the server's record of who asked, not the body's
    assert cluster.kjson("get", "csr", "myuser")["spec"]["groups"] == ["system:masters", "system:authenticated"]
    r = cluster.kubectl("certificate", "approve", "myuser")
    assert "certificatesigningrequest.certificates.k8s.io/myuser approved" in r.stdout
    cert = cluster.wait_for("the certificate", lambda: cluster.kjson("get", "csr", "myuser").get("status", {}).get("certificate"))
    assert cluster.kubectl("get", "csr", "myuser").stdout.splitlines()[1].split()[-1] == "Approved,Issued"
    crt = tmp_path / "myuser.crt"
    crt.write_bytes(base64.b64decode(cert))
    dates = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "extendedKeyUsage", "-in", str(crt)],
                           capture_output=True, text=True, check=True).stdout
    assert "CN = myuser" in dates and "TLS Web Client Authentication" in dates
    # an issued certificate is never replaced, and a decision is never taken back
    deny = '[{"op": "add", "path": "/status/conditions/-", "value": {"type": "Denied", "status": "True"}}]'
    r = cluster.kubectl("patch", "csr", "myuser", "--subresource=approval", "--type=json", "-p", deny, check=False)
    assert r.returncode != 0 and "Approved and Denied conditions are mutually exclusive" in r.stderr, r.stderr
    r = cluster.kubectl("patch", "csr", "myuser", "--subresource=status", "--type=merge", "-p",
                        '{"status": {"certificate": "' + base64.b64encode(b"other").decode() + '"}}', check=False)
    assert r.returncode != 0 and "updates may not modify existing certificate content" in r.stderr, r.stderr

    conf = tmp_path / "config"
    conf.write_text(cluster.kubectl("config", "view", "--raw").stdout)
    kc = lambda *a, check=True: cluster.kubectl("--kubeconfig", str(conf), *a, check=check)  # noqa: E731
    kc("config", "set-credentials", "myuser", f"--client-key={key}", f"--client-certificate={crt}", "--embed-certs=true")
    cluster_name = kc("config", "view", "-o", "jsonpath={.clusters[0].name}").stdout
    kc("config", "set-context", "myuser", f"--cluster={cluster_name}", "--user=myuser", "--namespace=authz")
    kc("config", "use-context", "myuser")
    who = json.loads(kc("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert who["username"] == "myuser" and who["groups"] == ["devs", "system:authenticated"]
    r = kc("get", "pods", check=False)
    assert r.returncode != 0 and 'User "myuser" cannot list resource "pods"' in r.stderr
    cluster.kubectl("create", "role", "developer", "-n", "authz", "--verb=get", "--verb=list", "--resource=pods")
    cluster.kubectl("create", "rolebinding", "developer-devs", "-n", "authz", "--role=developer", "--group=devs")
    names = cluster.wait_for("RBAC to allow the group", lambda: kc("get", "pods", "-o", "name", check=False).stdout)
    assert sorted(names.split()) == sorted(cluster.kubectl("get", "pods", "-n", "authz", "-o", "name").stdout.split())
    r = kc("delete", "pod", "quiet", check=False)  # only get and list were granted
    assert r.returncode != 0 and 'cannot delete resource "pods"' in r.stderr, r.stderr


def test_bad_certificate_requests_are_rejected(cluster):
    import base64
    bad = {"no signer": ("request: " + base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n"
                                                         b"-----END CERTIFICATE REQUEST-----\n").decode() +
                         "\n  usages: [client auth]", "spec.signerName: Required value"),
           "not a CSR": ("request: " + base64.b64encode(b"hello").decode() +
                         "\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]",
                         "spec.request: Invalid value"),
           "bad usage": ("request: " + base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n"
                                                        b"-----END CERTIFICATE REQUEST-----\n").decode() +
                         "\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [flying]",
                         'spec.usages[0]: Unsupported value: "flying"')}
    for what, (spec, message) in bad.items():
        r = cluster.kubectl("create", "-f", "-", check=False,
                            input=f"apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\n"
                                  f"metadata: {{name: bad}}\nspec:\n  {spec}\n")
        assert r.returncode != 0 and message in r.stderr, (what, r.stderr)
    assert cluster.kubectl("get", "csr", "bad", check=False).returncode != 0


def test_agents_joined_with_their_own_certificates(cluster):
    """``nanokube up``'s agents join with the bootstrap token: each asked for a kubelet client
    certificate, the approver approved it (the requestor is a bootstrapper), and the node now
    acts as system:node:<name>."""
    csrs = [c for c in cluster.kjson("get", "csr")["items"] if c["spec"]["signerName"] ==
            "kubernetes.io/kube-apiserver-client-kubelet"]
    nodes = {n["metadata"]["name"] for n in cluster.kjson("get", "nodes")["items"]}
    assert csrs and len(csrs) >= len(nodes)
    for c in csrs:
        assert c["spec"]["username"].startswith("system:bootstrap:")
        assert "system:bootstrappers" in c["spec"]["groups"]
        conds = {x["type"]: x for x in c["status"]["conditions"]}
        assert conds["Approved"]["reason"] == "AutoApproved" and c["status"]["certificate"]
    # the node's identity may create its own node-client CSRs (renewal) but not act as the admin
    node = sorted(nodes)[0]
    r = cluster.kubectl("auth", "can-i", "create", "certificatesigningrequests/selfnodeclient",
                        f"--as=system:node:{node}", "--as-group=system:nodes")
    assert r.stdout.strip() == "yes"
    r = cluster.kubectl("auth", "can-i", "delete", "namespaces", f"--as=system:node:{node}",
                        "--as-group=system:nodes", check=False)
    assert r.stdout.strip() == "no"
    # the bootstrap token itself is a Secret of the documented type
    secrets = cluster.kjson("get", "secrets", "-n", "kube-system", "--field-selector",
                            "type=bootstrap.kubernetes.io/token")["items"]
    assert [s["metadata"]["name"].startswith("bootstrap-token-") for s in secrets] == [True]

"""Authentication and RBAC, pure: request attributes as kube-apiserver derives them, rule
matching, bindings, upstream's Forbidden messages, ServiceAccount JWTs and token files."""
from __future__ import annotations

import asyncio

import pytest
from multidict import MultiDict

from nanokube.apiserver import authn, policy, rbac
from nanokube.apiserver.authn import TokenSigner, UserInfo
from nanokube.store.sqlite import MemoryStore


@pytest.mark.parametrize("method,path,query,want", [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "ns", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "ns", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"fieldSelector": "metadata.name=x"}, ("list", "ns", "", "pods", "", "x")),
    ("GET", "/api/v1/namespaces/ns/pods/x/log", {}, ("get", "ns", "", "pods", "log", "x")),
    ("GET", "/api/v1/namespaces/ns/pods/x/exec", {}, ("create", "ns", "", "pods", "exec", "x")),
    ("DELETE", "/apis/apps/v1/namespaces/ns/deployments", {}, ("deletecollection", "ns", "apps", "deployments", "", "")),
    ("PATCH", "/api/v1/nodes/n1/status", {}, ("patch", "", "", "nodes", "status", "n1")),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "ns", "", "namespaces", "", "ns")),
    ("POST", "/api/v1/namespaces", {}, ("create", "", "", "namespaces", "", "")),
])
def test_attributes(method, path, query, want):
    a = rbac.attributes(method, path, MultiDict(query))
    assert a.resource_request and (a.verb, a.namespace, a.api_group, a.resource, a.subresource, a.name) == want


def test_non_resource_attributes():
    for path in ("/api", "/apis", "/apis/apps", "/version", "/openapi/v3", "/api/v1"):
        a = rbac.attributes("GET", path, {})
        assert not a.resource_request and a.path == path and a.verb == "get"


def _index(objs):
    r = rbac.Rbac(MemoryStore())
    for o in objs:
        md = o["metadata"]
        plural = {"Role": "roles", "ClusterRole": "clusterroles", "RoleBinding": "rolebindings",
                  "ClusterRoleBinding": "clusterrolebindings"}[o["kind"]]
        key = f"/registry/{plural}/{md['namespace']}/{md['name']}" if "namespace" in md else f"/registry/{plural}/{md['name']}"
        r.index[plural][key] = o
    return r


JANE = authn.with_authenticated("jane", ["dev"])
POD_READER = {"kind": "Role", "metadata": {"name": "pod-reader", "namespace": "a"},
              "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
                        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"], "resourceNames": ["web"]}]}


def test_role_binding_grants_in_its_namespace_only():
    r = _index([POD_READER, {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "a"},
                             "roleRef": {"kind": "Role", "name": "pod-reader"},
                             "subjects": [{"kind": "Group", "name": "dev"}]}])
    ok, why = r.authorize(JANE, rbac.Attributes("list", True, "a", "", "v1", "pods"))
    assert ok and why == 'RBAC: allowed by RoleBinding "rb/a" of Role "pod-reader" to Group "dev"'
    assert r.authorize(JANE, rbac.Attributes("get", True, "a", "", "v1", "pods", "log", "x"))[0]
    assert not r.authorize(JANE, rbac.Attributes("list", True, "b", "", "v1", "pods"))[0]
    assert not r.authorize(JANE, rbac.Attributes("delete", True, "a", "", "v1", "pods", "", "x"))[0]
    assert not r.authorize(JANE, rbac.Attributes("get", True, "a", "", "v1", "pods", "exec", "x"))[0]
    assert r.authorize(JANE, rbac.Attributes("get", True, "a", "apps", "v1", "deployments", "", "web"))[0]
    assert not r.authorize(JANE, rbac.Attributes("get", True, "a", "apps", "v1", "deployments", "", "other"))[0]
    assert not r.authorize(JANE, rbac.Attributes("list", True, "a", "apps", "v1", "deployments"))[0]
    assert not r.authorize(authn.with_authenticated("bob", []), rbac.Attributes("list", True, "a", "", "v1", "pods"))[0]


def test_cluster_binding_service_accounts_and_masters():
    r = _index([{"kind": "ClusterRole", "metadata": {"name": "any-scale"},
                 "rules": [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["update"]},
                           {"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]}]},
                {"kind": "ClusterRoleBinding", "metadata": {"name": "crb"}, "roleRef": {"kind": "ClusterRole", "name": "any-scale"},
                 "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "ops"}]}])
    bot = authn.service_account_user("ops", "bot")
    assert r.authorize(bot, rbac.Attributes("update", True, "x", "apps", "v1", "deployments", "scale", "d"))[0]
    assert not r.authorize(bot, rbac.Attributes("update", True, "x", "apps", "v1", "deployments", "", "d"))[0]
    assert r.authorize(bot, rbac.Attributes("get", False, path="/logs/kube.log"))[0]
    assert not r.authorize(bot, rbac.Attributes("get", False, path="/metrics"))[0]
    assert not r.authorize(authn.service_account_user("dev", "bot"), rbac.Attributes("get", False, path="/healthz"))[0]
    admin = UserInfo("system:admin", "", ("system:masters",))
    assert r.authorize(admin, rbac.Attributes("delete", True, "", "", "v1", "nodes", "", "n1"))[0]


def test_forbidden_messages_as_upstream():
    u = UserInfo("jane")
    assert rbac.describe_forbidden(u, rbac.Attributes("list", True, "default", "", "v1", "pods")) == \
        'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"'
    assert rbac.describe_forbidden(u, rbac.Attributes("get", True, "", "", "v1", "nodes", "", "n1")) == \
        'nodes "n1" is forbidden: User "jane" cannot get resource "nodes" in API group "" at the cluster scope'
    assert rbac.describe_forbidden(u, rbac.Attributes("create", True, "a", "", "v1", "pods", "exec", "p")) == \
        'pods/exec is forbidden: User "jane" cannot create resource "pods/exec" in API group "" in the namespace "a"'
    assert rbac.describe_forbidden(u, rbac.Attributes("get", False, path="/metrics")) == \
        'forbidden: User "jane" cannot get path "/metrics"'


async def test_index_follows_the_store_and_default_policy():
    from nanokube.apiserver.registry import Registry
    reg = Registry(MemoryStore())
    await policy.ensure(reg)
    r = rbac.Rbac(reg.store)
    r.start()
    user = authn.with_authenticated("jane", [])
    discovery = rbac.Attributes("get", False, path="/apis")
    assert r.authorize(user, discovery)[0]  # system:discovery for every authenticated user
    assert not r.authorize(user, rbac.Attributes("list", True, "d", "", "v1", "pods"))[0]
    await reg.create("clusterrolebindings", {"metadata": {"name": "jane-admin"},
                                             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                                             "subjects": [{"kind": "User", "name": "jane"}]})
    for _ in range(100):
        if r.authorize(user, rbac.Attributes("list", True, "d", "", "v1", "pods"))[0]:
            break
        await asyncio.sleep(0.01)
    assert r.authorize(user, rbac.Attributes("list", True, "d", "", "v1", "pods"))[0]
    await reg.delete("clusterrolebindings", "jane-admin")
    for _ in range(100):
        if not r.authorize(user, rbac.Attributes("list", True, "d", "", "v1", "pods"))[0]:
            break
        await asyncio.sleep(0.01)
    assert not r.authorize(user, rbac.Attributes("list", True, "d", "", "v1", "pods"))[0]
    r.close()


def test_service_account_tokens():
    now = [1000.0]
    s = TokenSigner(b"k" * 24, clock=lambda: now[0])
    tok, exp = s.issue(namespace="ns", sa_name="sa", sa_uid="u1", expiration_seconds=600,
                       bound={"kind": "Pod", "name": "p", "uid": "pu"})
    assert exp == 1600
    objs = {("serviceaccounts", "sa", "ns"): {"metadata": {"uid": "u1"}}, ("pods", "p", "ns"): {"metadata": {"uid": "pu"}}}
    a = authn.Authenticator({}, s, lambda plural, name, ns: objs.get((plural, name, ns)))
    who = a.authenticate(tok)
    assert who.name == "system:serviceaccount:ns:sa" and "system:serviceaccounts:ns" in who.groups
    assert who.extra["authentication.kubernetes.io/pod-name"] == ["p"]
    assert a.authenticate(tok[:-2] + ("A" if tok[-2] != "A" else "B") + tok[-1]) is None  # tampered
    assert a.authenticate(tok, ["https://elsewhere"]) is None  # another audience
    objs[("pods", "p", "ns")] = {"metadata": {"uid": "other"}}  # the pod was replaced
    assert a.authenticate(tok) is None
    objs[("pods", "p", "ns")] = {"metadata": {"uid": "pu"}}
    now[0] = 1600
    assert a.authenticate(tok) is None  # expired
    assert TokenSigner(b"x" * 24).claims(tok) is None


def test_token_file(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text('# comment\nt1,alice,u-1,"dev,ops"\nt2,bob,u-2\n')
    users = authn.load_token_file(f)
    assert users["t1"] == UserInfo("alice", "u-1", ("dev", "ops", "system:authenticated"))
    assert users["t2"].groups == ("system:authenticated",)


def test_bootstrap_tokens_and_client_certificates():
    import base64

    def secret(**data):
        return {"type": "bootstrap.kubernetes.io/token", "metadata": {"name": "bootstrap-token-abcdef"},
                "data": {k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    good = dict(token_id="abcdef", token_secret="0123456789abcdef", usage_bootstrap_authentication="true",
                auth_extra_groups="system:bootstrappers:workers,system:masters")
    store = {}
    a = authn.Authenticator({}, None, lambda plural, name, ns: store.get((plural, name, ns)))
    store[("secrets", "bootstrap-token-abcdef", "kube-system")] = secret(**good)
    who = a.authenticate("abcdef.0123456789abcdef")
    assert who.name == "system:bootstrap:abcdef"
    # extra groups only within system:bootstrappers: a token cannot make its holder a master
    assert who.groups == ("system:bootstrappers", "system:bootstrappers:workers", "system:authenticated")
    assert a.authenticate("abcdef.0123456789abcdee") is None  # wrong secret
    assert a.authenticate("abcdeg.0123456789abcdef") is None  # no such token
    for bad in ({"usage_bootstrap_authentication": "false"}, {"expiration": "2020-01-01T00:00:00Z"},
                {"token_id": "zzzzzz"}):
        store[("secrets", "bootstrap-token-abcdef", "kube-system")] = secret(**{**good, **bad})
        assert a.authenticate("abcdef.0123456789abcdef") is None, bad
    store[("secrets", "bootstrap-token-abcdef", "kube-system")] = {**secret(**good), "type": "Opaque"}
    assert a.authenticate("abcdef.0123456789abcdef") is None
    # a verified peer certificate: CN the user, each O a group
    cert = {"subject": ((("organizationName", "system:nodes"),), (("organizationName", "b"),),
                        (("commonName", "system:node:n1"),))}
    u = authn.x509_user(cert)
    assert u.name == "system:node:n1" and u.groups == ("system:nodes", "b", "system:authenticated")
    assert authn.x509_user(None) is None and authn.x509_user({"subject": ((("organizationName", "x"),),)}) is None


def test_csr_cleaner_ages_and_node_client_checks():
    import datetime as dt
    from nanokube.controllers import certificates as C
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.timezone.utc)

    def csr(age_s, **status):
        created = (now - dt.timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"metadata": {"creationTimestamp": created}, "status": status}
    issued = {"certificate": "eA==", "conditions": [{"type": "Approved"}]}
    assert not C.expired(csr(3000, **issued), now) and C.expired(csr(3700, **issued), now)
    assert C.expired(csr(3700, conditions=[{"type": "Denied"}]), now)
    assert not C.expired(csr(80000), now) and C.expired(csr(90000), now)  # pending: a day
    # a condition that does not hold is no decision
    assert not C.expired(csr(3700, conditions=[{"type": "Denied", "status": "False"}]), now)
    assert C.conditions(csr(0, conditions=[{"type": "Approved", "status": "False"}, {"type": "Failed"}])).keys() == {"Failed"}
    ok = ("system:node:n1", ["system:nodes"])
    assert C.node_client_problem(ok, ["digital signature", "client auth"]) is None
    assert C.node_client_problem(("system:node:n1", ["system:nodes", "x"]), ["client auth"])
    assert C.node_client_problem(("alice", ["system:nodes"]), ["client auth"])
    assert C.node_client_problem(ok, ["client auth", "server auth"])
    assert C.node_client_problem(None, ["client auth"])

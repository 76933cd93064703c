"""Who is asking: bearer tokens to users, ServiceAccount tokens, and impersonation.

Client certificates signed by the cluster CA authenticate first (CN is the user, each O a
group; see ``x509_user``). Then bearer tokens, as with kube-apiserver's token authenticators:
static tokens (the admin token in the kubeconfig, the agents' node token, and an optional
``--token-auth-file`` CSV ``token,user,uid,"group1,group2"``), bootstrap tokens
(``<id>.<secret>``, Secrets of type bootstrap.kubernetes.io/token in kube-system, with which
agents ask for their client certificate), and ServiceAccount tokens —
JWTs this server issues through the TokenRequest API (``kubectl create token``, and the
kubelet for the token it mounts in pods). Key design choice: the JWTs are signed with HMAC-
SHA256 and a secret of this server (``pki/sa.secret``), not RS256: only this apiserver ever
verifies them (others ask it with a TokenReview), and the standard library can do it. A token
is valid while it has not expired and the ServiceAccount (and the pod it is bound to, if any)
still exists with the same uid — deleting either revokes it, as upstream.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ISSUER = "https://kubernetes.default.svc.cluster.local"
BOOTSTRAP_TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
AUDIENCES = [ISSUER]
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def with_authenticated(name: str, groups: list[str] | tuple[str, ...], uid: str = "",
                       extra: dict[str, list[str]] | None = None) -> UserInfo:
    gs = list(groups)
    if name != "system:anonymous" and "system:authenticated" not in gs:
        gs.append("system:authenticated")
    return UserInfo(name, uid, tuple(gs), extra or {})


def service_account_user(namespace: str, name: str, uid: str = "", extra: dict[str, list[str]] | None = None) -> UserInfo:
    return with_authenticated(f"{SA_PREFIX}{namespace}:{name}",
                              ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"], uid, extra)


def parse_service_account(username: str) -> tuple[str, str] | None:
    if not username.startswith(SA_PREFIX):
        return None
    ns, _, name = username[len(SA_PREFIX):].partition(":")
    return (ns, name) if ns and name else None


def load_token_file(path: Path) -> dict[str, UserInfo]:
    """kube-apiserver's --token-auth-file format: token,user,uid[,"group1,group2"]."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#") or len(row) < 3:
                continue
            groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
            out[row[0].strip()] = with_authenticated(row[1].strip(), groups, row[2].strip())
    return out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenSigner:
    """Issues and checks ServiceAccount JWTs (HS256)."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time):
        self.secret, self.clock = secret, clock
        self._header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())

    def issue(self, *, namespace: str, sa_name: str, sa_uid: str, audiences: list[str] | None = None,
              expiration_seconds: int = 3600, bound: dict[str, Any] | None = None) -> tuple[str, int]:
        now = int(self.clock())
        exp = now + expiration_seconds
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
        if bound and bound.get("kind") in ("Pod", "Secret", "Node"):
            k8s[bound["kind"].lower()] = {"name": bound.get("name", ""), "uid": bound.get("uid", "")}
        claims = {"aud": audiences or AUDIENCES, "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
                  "jti": _b64(hashlib.sha256(f"{now}{sa_uid}{self.clock()}".encode()).digest()[:12]),
                  "kubernetes.io": k8s, "sub": f"{SA_PREFIX}{namespace}:{sa_name}"}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(self.secret, f"{self._header}.{body}".encode(), hashlib.sha256).digest()
        return f"{self._header}.{body}.{_b64(sig)}", exp

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this server signed that is valid now; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        want = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(want, _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, TypeError):
            return None
        now = self.clock()
        if not isinstance(claims, dict) or claims.get("iss") != ISSUER or now >= claims.get("exp", 0) or now + 60 < claims.get("nbf", 0):
            return None
        return claims


class Authenticator:
    """Bearer token → UserInfo, or None (401)."""

    def __init__(self, static: dict[str, UserInfo], signer: TokenSigner | None, lookup: Callable[[str, str, str | None], dict | None]):
        self.static = static
        self.signer = signer
        self.lookup = lookup  # (plural, name, namespace) -> object or None

    def authenticate(self, token: str | None, audiences: list[str] | None = None) -> UserInfo | None:
        if not token:
            return None
        user = self.static.get(token)
        if user is None and BOOTSTRAP_TOKEN.fullmatch(token):
            return self._bootstrap(token)
        if user is not None or self.signer is None or token.count(".") != 2:
            return user
        claims = self.signer.claims(token)
        if claims is None:
            return None
        aud = claims.get("aud") or []
        if not set(audiences or AUDIENCES) & set(aud if isinstance(aud, list) else [aud]):
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns, sa = k8s.get("namespace", ""), k8s.get("serviceaccount") or {}
        obj = self.lookup("serviceaccounts", sa.get("name", ""), ns)
        if obj is None or obj["metadata"].get("uid") != sa.get("uid") or obj["metadata"].get("deletionTimestamp"):
            return None
        extra: dict[str, list[str]] = {}
        if "pod" in k8s:
            pod = self.lookup("pods", k8s["pod"].get("name", ""), ns)
            if pod is None or pod["metadata"].get("uid") != k8s["pod"].get("uid"):
                return None
            extra = {"authentication.kubernetes.io/pod-name": [k8s["pod"]["name"]],
                     "authentication.kubernetes.io/pod-uid": [k8s["pod"]["uid"]]}
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = [f"JTI={claims['jti']}"]
        return service_account_user(ns, sa["name"], sa["uid"], extra)

    def _bootstrap(self, token: str) -> UserInfo | None:
        """A bootstrap token ``<id>.<secret>``: the Secret ``kube-system/bootstrap-token-<id>``
        (type bootstrap.kubernetes.io/token) with that secret, usable for authentication and
        not expired → ``system:bootstrap:<id>`` in ``system:bootstrappers`` (+ its extra groups)."""
        tid, tsecret = token.split(".")
        obj = self.lookup("secrets", f"bootstrap-token-{tid}", "kube-system")
        if obj is None or obj.get("type") != BOOTSTRAP_TYPE or obj["metadata"].get("deletionTimestamp"):
            return None
        data = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items() if isinstance(v, str)}
        if data.get("token-id") != tid or not hmac.compare_digest(data.get("token-secret", ""), tsecret):
            return None
        if data.get("usage-bootstrap-authentication") != "true":
            return None
        exp = data.get("expiration")
        if exp:
            try:
                if time.time() >= _parse_time(exp):
                    return None
            except ValueError:
                return None
        groups = ["system:bootstrappers"] + [g.strip() for g in data.get("auth-extra-groups", "").split(",")
                                             if g.strip().startswith("system:bootstrappers:")]
        return with_authenticated(f"system:bootstrap:{tid}", groups)


def _parse_time(s: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def x509_user(peercert: dict[str, Any] | None) -> UserInfo | None:
    """A verified client certificate (ssl's getpeercert()): CN is the user, each O a group."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject") or ():
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    return with_authenticated(cn, orgs) if cn else None


async def ensure_bootstrap_token(registry: Any, path: Path) -> str:
    """The cluster's join token: a bootstrap token (no expiry) whose Secret exists in
    kube-system and whose ``ID.SECRET`` is in ``path`` (written only once the Secret is stored,
    so an agent that reads the file can use it). Agents started by ``nanokube up`` join with it."""
    import secrets as pysecrets
    from nanokube.api.errors import ApiError
    if path.exists():
        token = path.read_text().strip()
    else:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        token = "".join(pysecrets.choice(alphabet) for _ in range(6)) + "." + \
            "".join(pysecrets.choice(alphabet) for _ in range(16))
    tid, tsecret = token.split(".")
    data = {"token-id": tid, "token-secret": tsecret, "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true", "description": "nanokube join token (agents of this cluster)"}
    for plural, obj, ns in (
            ("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}, None),
            ("secrets", {"apiVersion": "v1", "kind": "Secret", "type": BOOTSTRAP_TYPE,
                         "metadata": {"name": f"bootstrap-token-{tid}", "namespace": "kube-system"},
                         "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}, "kube-system")):
        try:
            await registry.create(plural, obj, namespace=ns)
        except ApiError as e:
            if e.code != 409:
                raise
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(token + "\n")
        tmp.chmod(0o600)
        from .certs import durable
        durable(tmp)
        tmp.replace(path)
        durable(path)
    return token

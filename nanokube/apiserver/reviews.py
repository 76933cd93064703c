"""The API objects that are answered, not stored: access reviews (``kubectl auth can-i``,
``--list``, ``--as``), SelfSubjectReview (``kubectl auth whoami``), TokenReview, and
TokenRequest (``kubectl create token``; the kubelet's pod tokens).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from nanokube.api.errors import ApiError, Invalid, bad_request
from .authn import Authenticator, TokenSigner, UserInfo, with_authenticated
from .rbac import Attributes, Rbac

Obj = dict[str, Any]


def _invalid(kind: str, reason: str, field: str, message: str, *, group: str) -> Invalid:
    prefix = {"FieldValueRequired": "Required value", "FieldValueInvalid": "Invalid value"}[reason]
    return Invalid(kind, "", [{"reason": reason, "field": field, "message": f"{prefix}: {message}"}], group=group)


def _attrs(spec: Obj, *, namespace: str | None = None) -> Attributes:
    if spec.get("nonResourceAttributes"):
        n = spec["nonResourceAttributes"]
        return Attributes(n.get("verb", ""), False, path=n.get("path", ""))
    r = spec.get("resourceAttributes")
    if not r:
        raise _invalid("SubjectAccessReview", "FieldValueRequired", "spec.resourceAttributes",
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                       group="authorization.k8s.io")
    return Attributes(r.get("verb", ""), True, namespace if namespace is not None else r.get("namespace", ""),
                      r.get("group", ""), r.get("version", ""), r.get("resource", ""), r.get("subresource", ""),
                      r.get("name", ""))


def _answer(review: Obj, allowed: bool, reason: str) -> Obj:
    out = dict(review)
    out.setdefault("metadata", {})
    out["status"] = {"allowed": allowed}
    if reason:
        out["status"]["reason"] = reason
    return out


def _rules(rbac: Rbac, user: UserInfo, namespace: str) -> Obj:
    from .rbac import SUPERUSER_GROUP
    rules = [_rule for _rule, _ in rbac.bound_rules(user, namespace)]
    if SUPERUSER_GROUP in user.groups:
        rules.insert(0, {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
        rules.insert(1, {"verbs": ["*"], "nonResourceURLs": ["*"]})
    res, nonres = [], []
    for r in rules:
        if r.get("nonResourceURLs"):
            nonres.append({"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]})
        else:
            out = {k: r.get(k) or [] for k in ("verbs", "apiGroups", "resources")}
            if r.get("resourceNames"):
                out["resourceNames"] = r["resourceNames"]
            res.append(out)
    return {"resourceRules": res, "nonResourceRules": nonres, "incomplete": False}


def review(plural: str, body: Obj, *, user: UserInfo, rbac: Rbac, authn: Authenticator,
           namespace: str | None = None) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the body of the request was not a JSON object")
    spec = body.get("spec") or {}
    if plural == "selfsubjectaccessreviews":
        return _answer(body, *rbac.authorize(user, _attrs(spec)))
    if plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
        if plural == "localsubjectaccessreviews":
            ra_ns = (spec.get("resourceAttributes") or {}).get("namespace", namespace)
            if ra_ns != namespace:
                raise _invalid("LocalSubjectAccessReview", "FieldValueInvalid", "spec.resourceAttributes.namespace",
                               "must match metadata.namespace", group="authorization.k8s.io")
        if not spec.get("user") and not spec.get("groups"):
            raise _invalid("SubjectAccessReview", "FieldValueRequired", "spec.user",
                           "at least one of user or group must be specified", group="authorization.k8s.io")
        subject = UserInfo(spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or []), spec.get("extra") or {})
        return _answer(body, *rbac.authorize(subject, _attrs(spec, namespace=namespace if plural.startswith("local") else None)))
    if plural == "selfsubjectrulesreviews":
        out = dict(body)
        out["status"] = _rules(rbac, user, spec.get("namespace") or "")
        return out
    if plural == "selfsubjectreviews":
        return {**body, "status": {"userInfo": user.to_api()}}
    if plural == "tokenreviews":
        who = authn.authenticate(spec.get("token"), spec.get("audiences") or None)
        status: Obj = {"authenticated": who is not None, "audiences": spec.get("audiences") or ["https://kubernetes.default.svc.cluster.local"]}
        if who is not None:
            status["user"] = who.to_api()
        else:
            status["error"] = "invalid bearer token"
        return {**body, "status": status}
    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def token_request(body: Obj, *, sa: Obj, signer: TokenSigner, lookup: Any) -> Obj:
    """TokenRequest for ServiceAccount ``sa``; a bound object (pod/secret) must exist with that uid."""
    spec = (body or {}).get("spec") or {}
    exp = spec.get("expirationSeconds") or 3600
    if not isinstance(exp, int) or exp < 600:
        raise _invalid("TokenRequest", "FieldValueInvalid", "spec.expirationSeconds",
                       "may not specify a duration less than 10 minutes", group="authentication.k8s.io")
    exp = min(exp, 2 ** 32)
    bound = spec.get("boundObjectRef")
    if bound:
        obj = lookup(bound.get("kind", "").lower() + "s", bound.get("name", ""), sa["metadata"]["namespace"])
        if obj is None or (bound.get("uid") and obj["metadata"].get("uid") != bound["uid"]):
            raise ApiError(404, "NotFound", f'{bound.get("kind", "").lower()}s "{bound.get("name")}" not found')
        bound = {**bound, "uid": obj["metadata"]["uid"]}
    token, exp_at = signer.issue(namespace=sa["metadata"]["namespace"], sa_name=sa["metadata"]["name"],
                                 sa_uid=sa["metadata"]["uid"], audiences=spec.get("audiences") or None,
                                 expiration_seconds=exp, bound=bound)
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"],
                         "creationTimestamp": None},
            "spec": {**spec, "expirationSeconds": exp, "boundObjectRef": bound} if bound else {**spec, "expirationSeconds": exp},
            "status": {"token": token, "expirationTimestamp": dt.datetime.fromtimestamp(exp_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def impersonate(headers: Any) -> tuple[str | None, list[str], str, dict[str, list[str]]]:
    """The Impersonate-* headers: (user, groups, uid, extra)."""
    groups = headers.getall("Impersonate-Group", []) if hasattr(headers, "getall") else []
    extra: dict[str, list[str]] = {}
    for k, v in headers.items():
        if k.lower().startswith("impersonate-extra-"):
            extra.setdefault(k[len("Impersonate-Extra-"):].lower(), []).append(v)
    return headers.get("Impersonate-User"), list(groups), headers.get("Impersonate-Uid", ""), extra


def impersonated_user(name: str, groups: list[str], uid: str, extra: dict[str, list[str]]) -> UserInfo:
    from .authn import parse_service_account, service_account_user
    sa = parse_service_account(name)
    if sa and not groups:
        return service_account_user(sa[0], sa[1], uid, extra)
    return with_authenticated(name, groups, uid, extra)

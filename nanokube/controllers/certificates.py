"""CertificateSigningRequests: upstream's csrapproving and csrsigning controllers in one.

Approving: a kubelet client request (signer ``kubernetes.io/kube-apiserver-client-kubelet``,
subject ``O=system:nodes, CN=system:node:<name>``, usages within digital signature, key
encipherment and client auth) is approved when its requestor may create
``certificatesigningrequests/nodeclient`` — or ``/selfnodeclient`` when renewing its own —
as the sarapprover decides with a SubjectAccessReview. The default policy grants the first to
``system:bootstrappers`` (joining agents) and the second to ``system:nodes``. Everything else
waits for a person: ``kubectl certificate approve|deny``.

Signing: approved requests for ``kubernetes.io/kube-apiserver-client`` and
``...-client-kubelet`` get a client certificate from the cluster CA (``openssl ca``), valid for
``spec.expirationSeconds`` or a year. A request a signer cannot honour (unparseable, a kubelet
subject that is not a node's, server usages) gets a ``Failed`` condition instead.

Cleaning: as upstream's csrcleaner, issued and decided requests are deleted after an hour,
pending ones after a day.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from pathlib import Path
from typing import Any, Callable

from nanokube.api.errors import ApiError
from nanokube.apiserver import certs
from .base import Controller, Obj

log = logging.getLogger("nanokube.certificates")
CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
NODE_USAGES = {"digital signature", "key encipherment", "client auth"}
DEFAULT_SECONDS = 365 * 24 * 3600
# (requestor name, groups, subresource) → may it create certificatesigningrequests/<subresource>?
Authorize = Callable[[str, list[str], str], bool]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(csr: Obj) -> dict[str, Obj]:
    """The request's conditions that hold (status True, or unset as older clients write them)."""
    return {c.get("type"): c for c in (csr.get("status") or {}).get("conditions") or []
            if c.get("status", "True") == "True"}


def request_pem(csr: Obj) -> str:
    try:
        return base64.b64decode((csr.get("spec") or {}).get("request") or "").decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def node_client_problem(subject: tuple[str, list[str]] | None, usages: list[str]) -> str | None:
    """Why this is not a kubelet client request (None: it is one)."""
    if subject is None:
        return "the request does not parse"
    cn, orgs = subject
    if orgs != ["system:nodes"]:
        return 'subject organization is not exactly "system:nodes"'
    if not cn.startswith("system:node:") or cn == "system:node:":
        return 'subject common name does not begin with "system:node:"'
    if "client auth" not in usages or not set(usages) <= NODE_USAGES:
        return f"usages must be within {sorted(NODE_USAGES)} and include client auth"
    return None


# csrcleaner: how long requests are kept, by state (upstream's durations).
KEEP_ISSUED, KEEP_DECIDED, KEEP_PENDING = 3600, 3600, 24 * 3600


def expired(csr: Obj, now: dt.datetime) -> bool:
    """Upstream's csrcleaner: issued, denied or failed requests go after an hour, pending ones
    after a day."""
    try:
        created = dt.datetime.strptime(csr["metadata"].get("creationTimestamp", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    age = (now - created.replace(tzinfo=dt.timezone.utc)).total_seconds()
    conds = conditions(csr)
    if (csr.get("status") or {}).get("certificate"):
        return age > KEEP_ISSUED
    if "Denied" in conds or "Failed" in conds:
        return age > KEEP_DECIDED
    return age > KEEP_PENDING


class CertificatesController(Controller):
    name = "certificates"
    clean_every = 600.0

    def __init__(self, client: Any, *, ca_crt: Path, ca_key: Path, authorize: Authorize | None = None):
        super().__init__(client)
        self.ca_crt, self.ca_key = ca_crt, ca_key
        self.authorize = authorize
        self.csrs = self.informer("certificatesigningrequests")
        self.csrs.add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))

    async def run(self) -> None:
        await asyncio.gather(super().run(), self._cleaner())

    async def _cleaner(self) -> None:
        while True:
            await asyncio.sleep(self.clean_every)
            now = dt.datetime.now(dt.timezone.utc)
            for csr in self.csrs.list():
                if expired(csr, now):
                    try:
                        await self.client.delete("certificatesigningrequests", csr["metadata"]["name"])
                    except ApiError as e:
                        if e.code != 404:
                            log.warning("removing %s: %s", csr["metadata"]["name"], e)

    async def sync(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or (csr.get("status") or {}).get("certificate"):
            return
        conds = conditions(csr)
        if "Denied" in conds or "Failed" in conds:
            return
        spec = csr.get("spec") or {}
        if spec.get("signerName") not in (CLIENT, KUBELET_CLIENT):
            return  # another signer's
        subject = await asyncio.to_thread(certs.csr_subject, request_pem(csr))
        if "Approved" not in conds:
            await self._maybe_approve(csr, subject)
            return
        problem = None
        if subject is None:
            problem = "the request does not parse"
        elif spec["signerName"] == KUBELET_CLIENT:
            problem = node_client_problem(subject, spec.get("usages") or [])
        elif "client auth" not in (spec.get("usages") or []) or "server auth" in (spec.get("usages") or []):
            problem = "usages must include client auth and not server auth"
        if problem:
            await self._set_status(csr, {"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                                         "message": problem})
            return
        secs = spec.get("expirationSeconds") or DEFAULT_SECONDS
        pem = await asyncio.to_thread(certs.sign_client_csr, request_pem(csr), ca_crt=self.ca_crt, ca_key=self.ca_key,
                                      seconds=min(int(secs), DEFAULT_SECONDS))
        await self._set_status(csr, None, certificate=base64.b64encode(pem.encode()).decode())
        log.info("signed %s for %s", csr["metadata"]["name"], subject[0])

    async def _maybe_approve(self, csr: Obj, subject: tuple[str, list[str]] | None) -> None:
        spec = csr["spec"]
        if spec["signerName"] != KUBELET_CLIENT or self.authorize is None:
            return
        if node_client_problem(subject, spec.get("usages") or []):
            return
        assert subject is not None
        user, groups = spec.get("username", ""), spec.get("groups") or []
        sub = "selfnodeclient" if user == subject[0] else "nodeclient"
        if not self.authorize(user, groups, sub):
            return
        conds = list((csr.get("status") or {}).get("conditions") or [])
        conds.append({"type": "Approved", "status": "True", "reason": "AutoApproved", "lastUpdateTime": _now(),
                      "lastTransitionTime": _now(),
                      "message": "Auto approving kubelet client certificate after SubjectAccessReview."})
        try:
            await self.client.update("certificatesigningrequests", {**csr, "status": {**(csr.get("status") or {}),
                                     "conditions": conds}}, subresource="approval")
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    async def _set_status(self, csr: Obj, condition: Obj | None, certificate: str | None = None) -> None:
        status = dict(csr.get("status") or {})
        if condition is not None:
            condition = {**condition, "lastUpdateTime": _now(), "lastTransitionTime": _now()}
            status["conditions"] = list(status.get("conditions") or []) + [condition]
        if certificate is not None:
            status["certificate"] = certificate
        try:
            await self.client.update("certificatesigningrequests", {**csr, "status": status}, subresource="status")
        except ApiError as e:
            if e.code not in (404, 409):
                raise

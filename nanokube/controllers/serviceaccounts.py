"""Every namespace gets a ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap
(the cluster CA, for pods to verify the apiserver), and gets them back if they are deleted
— upstream's serviceaccounts-controller and root-ca-cert-publisher in one small controller.
"""
from __future__ import annotations

from typing import Any

from nanokube.api.errors import ApiError
from .base import Controller, Obj, split_key

CA_CONFIGMAP = "kube-root-ca.crt"


class ServiceAccountsController(Controller):
    name = "serviceaccounts"

    def __init__(self, client: Any, *, ca_pem: str):
        super().__init__(client)
        self.ca_pem = ca_pem
        self.namespaces = self.informer("namespaces")
        self.accounts = self.informer("serviceaccounts")
        self.configmaps = self.informer("configmaps")
        self.namespaces.add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))
        for inf in (self.accounts, self.configmaps):
            inf.add_handler(on_delete=lambda o: self.queue.add(o["metadata"]["namespace"]),
                            on_update=lambda o, n: self.queue.add(n["metadata"]["namespace"]))

    async def sync(self, key: str) -> None:
        _, ns = split_key(key)
        nsobj = self.namespaces.get(ns)
        if nsobj is None or nsobj["metadata"].get("deletionTimestamp") or (nsobj.get("status") or {}).get("phase") == "Terminating":
            return
        if self.accounts.get(f"{ns}/default") is None:
            await self._create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                   "metadata": {"name": "default", "namespace": ns}}, ns)
        cm = self.configmaps.get(f"{ns}/{CA_CONFIGMAP}")
        data = {"ca.crt": self.ca_pem}
        if cm is None:
            await self._create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "data": data, "metadata": {
                "name": CA_CONFIGMAP, "namespace": ns,
                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the "
                                "kube-apiserver when using internal endpoints such as the internal service IP or "
                                "kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes "
                                "clusters."}}}, ns)
        elif cm.get("data") != data:
            new = dict(cm, data=data)
            await self.client.update("configmaps", new, namespace=ns)

    async def _create(self, plural: str, obj: Obj, ns: str) -> None:
        try:
            await self.client.create(plural, obj, namespace=ns)
        except ApiError as e:
            if e.code not in (409, 403, 404):  # exists / namespace going or gone
                raise

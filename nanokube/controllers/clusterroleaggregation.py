"""ClusterRoles with an ``aggregationRule`` get the union of the rules of every ClusterRole
its selectors match (upstream's clusterrole-aggregation controller): this is how ``admin``,
``edit`` and ``view`` pick up rules that anyone adds with an ``aggregate-to-*`` label.
"""
from __future__ import annotations

from typing import Any

from nanokube.api.selectors import from_label_selector, matches
from .base import Controller, Obj


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"

    def __init__(self, client: Any):
        super().__init__(client)
        self.roles = self.informer("clusterroles")
        # Any change can feed any aggregated role: re-check all of those.
        self.roles.add_handler(on_add=self._all, on_update=lambda o, n: self._all(n), on_delete=self._all)

    def _all(self, _obj: Obj) -> None:
        for r in self.roles.list():
            if r.get("aggregationRule"):
                self.enqueue(r)

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        selectors = role["aggregationRule"].get("clusterRoleSelectors") or []
        rules: list[Obj] = []
        for other in sorted(self.roles.list(), key=lambda r: r["metadata"]["name"]):
            if other["metadata"]["name"] == role["metadata"]["name"]:
                continue
            labels = other["metadata"].get("labels") or {}
            if any(matches(labels, from_label_selector(sel)) for sel in selectors):
                for rule in other.get("rules") or []:
                    if rule not in rules:
                        rules.append(rule)
        if role.get("rules") != rules:
            await self.client.update("clusterroles", dict(role, rules=rules))

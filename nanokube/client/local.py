"""LocalClient: the Client protocol over the in-process registry, no sockets.

The scheduler and controllers run inside ``nanokube server``; they get exactly the API
semantics kubectl gets (the registry is the same code the HTTP handlers call), without
serialising every object through HTTP and JSON.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

from nanokube.apiserver.registry import Registry

Obj = dict[str, Any]


class LocalClient:
    def __init__(self, registry: Registry):
        self.registry = registry

    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        return self.registry.get(resource, name, namespace=namespace)

    async def list(self, resource: str, *, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> Obj:
        return self.registry.list(resource, namespace=namespace, label_selector=label_selector,
                                  field_selector=field_selector)

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        return await self.registry.create(resource, obj, namespace=namespace)

    async def update(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        return await self.registry.update(resource, obj, namespace=namespace, subresource=subresource)

    async def patch(self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
                    subresource: str | None = None, patch_type: str = "merge") -> Obj:
        return await self.registry.patch(resource, name, patch, namespace=namespace, subresource=subresource,
                                         patch_type=patch_type)

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: Obj | None = None) -> Obj:
        return await self.registry.delete(resource, name, namespace=namespace, grace_period_seconds=grace_period_seconds,
                                          propagation_policy=propagation_policy, preconditions=preconditions)

    async def create_subresource(self, resource: str, name: str, subresource: str, obj: Obj, *,
                                 namespace: str | None = None) -> Obj:
        if (resource, subresource) == ("pods", "binding"):
            return await self.registry.bind(name, obj, namespace=namespace or "default")
        raise ValueError(f"unsupported subresource {resource}/{subresource}")

    async def watch(self, resource: str, *, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None
                    ) -> AsyncIterator[tuple[str, Obj]]:
        async for ev in self.registry.watch(resource, namespace=namespace, resource_version=resource_version,
                                            label_selector=label_selector, field_selector=field_selector):
            yield ev

    async def close(self) -> None:
        pass

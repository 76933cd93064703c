"""The Client protocol every component talks to the API through.

Objects are plain JSON dicts, exactly as the API serves them. Resources are named by
plural (see ``nanokube.api.resources``). Two implementations share this interface:
``HttpClient`` (agents, over HTTPS with a bearer token) and ``LocalClient`` (in-process
components of ``nanokube server``, calling the apiserver's registry with no sockets).
Errors are ``nanokube.api.errors.ApiError`` subclasses (NotFound, Conflict, Invalid).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Protocol

Obj = dict[str, Any]


class Client(Protocol):
    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj: ...

    async def list(self, resource: str, *, namespace: str | None = None,
                   label_selector: str | None = None, field_selector: str | None = None) -> Obj:
        """A ``<Kind>List``: ``{"items": [...], "metadata": {"resourceVersion": "N"}}``."""
        ...

    async def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj: ...

    async def update(self, resource: str, obj: Obj, *, namespace: str | None = None,
                     subresource: str | None = None) -> Obj:
        """PUT; ``obj.metadata.resourceVersion`` (if set) is the compare-and-swap guard."""
        ...

    async def patch(self, resource: str, name: str, patch: Obj | list, *, namespace: str | None = None,
                    subresource: str | None = None, patch_type: str = "merge") -> Obj:
        """patch_type: "merge" (RFC 7386), "strategic", or "json" (RFC 6902, patch is a list)."""
        ...

    async def delete(self, resource: str, name: str, *, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: Obj | None = None) -> Obj: ...

    async def create_subresource(self, resource: str, name: str, subresource: str, obj: Obj, *,
                                 namespace: str | None = None) -> Obj:
        """POST to a subresource, e.g. pods/binding."""
        ...

    def watch(self, resource: str, *, namespace: str | None = None, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None) -> AsyncIterator[tuple[str, Obj]]:
        """Yields (type, object) with type ADDED / MODIFIED / DELETED / BOOKMARK, starting after
        ``resource_version`` (or now). Raises ApiError(410, "Expired") if that revision was compacted."""
        ...

    async def close(self) -> None: ...

"""Kubernetes-style API errors: each carries the ``Status`` object the apiserver returns.

The apiserver raises these, the HTTP client rebuilds them from a response body, and the
local client passes them through untouched, so callers handle one type everywhere.
"""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            st["details"] = self.details
        return st

    @classmethod
    def from_status(cls, st: dict[str, Any], code: int | None = None) -> "ApiError":
        code = st.get("code") or code or 500
        klass = {404: NotFound, 409: Conflict, 422: Invalid}.get(code, ApiError)
        err = ApiError.__new__(klass)
        ApiError.__init__(err, code, st.get("reason", ""), st.get("message", ""), details=st.get("details"))
        return err


def _details(resource: str, name: str, group: str = "", causes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    if causes is not None:
        d["causes"] = causes
    return d


class NotFound(ApiError):
    def __init__(self, resource: str, name: str, *, group: str = ""):
        qual = f"{resource}.{group}" if group else resource
        super().__init__(404, "NotFound", f'{qual} "{name}" not found', details=_details(resource, name, group))


class Conflict(ApiError):
    """409: AlreadyExists on create, Conflict on a stale resourceVersion."""

    def __init__(self, resource: str, name: str, *, group: str = "", already_exists: bool = False, message: str | None = None):
        qual = f"{resource}.{group}" if group else resource
        if already_exists:
            super().__init__(409, "AlreadyExists", f'{qual} "{name}" already exists', details=_details(resource, name, group))
        else:
            msg = message or (f'Operation cannot be fulfilled on {qual} "{name}": the object has been modified; '
                              "please apply your changes to the latest version and try again")
            super().__init__(409, "Conflict", msg, details=_details(resource, name, group))


class Invalid(ApiError):
    """422 with one cause per bad field, as ``field.ErrorList`` renders them upstream."""

    def __init__(self, kind: str, name: str, causes: list[dict[str, Any]], *, group: str = ""):
        msgs = ", ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
        qual = f"{kind}.{group}" if group else kind
        super().__init__(422, "Invalid", f'{qual} "{name}" is invalid: {msgs}',
                         details={"name": name, "group": group, "kind": kind, "causes": causes})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)

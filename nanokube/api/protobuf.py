"""Decode Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON objects.

kubectl's typed clients (create deployment/configmap/secret/namespace/service, run, auth can-i,
drain's Eviction, ...) send request bodies as protobuf, and client-go has no JSON fallback for
them. This module turns such a body into exactly the dict kubectl would have sent as JSON, so the
rest of the apiserver only ever sees JSON objects.

Wire format: b"k8s\\x00", then a runtime.Unknown {1: TypeMeta{1: apiVersion, 2: kind}, 2: raw
object, 3: contentEncoding, 4: contentType}; the object is a proto2 message from k8s.io/api.

Key design choice: no generated code and no protobuf dependency. A small wire-format reader is
driven by a data table, `proto_fields.json.gz` (written by scripts/gen-proto-fields from the
upstream .proto files and Go structs): per message, field number -> (json name, type, flags).
The JSON side follows Go's encoding/json on the upstream structs: Go's generated Marshal writes
non-pointer scalars even when zero, and JSON drops them only when the field has `omitempty`,
so a zero scalar is dropped unless the table says "keep zero" (a pointer, or no omitempty).
A handful of apimachinery types with custom JSON (Time, MicroTime, Duration, Quantity,
IntOrString, RawExtension, FieldsV1) are decoded by hand.
"""
from __future__ import annotations

import base64
import datetime as _dt
import functools
import gzip
import json
import struct
from pathlib import Path
from typing import Any, Callable

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
TABLE_PATH = Path(__file__).with_name("proto_fields.json.gz")

REPEATED, KEEP_ZERO, INLINE, OMIT_ZERO = 1, 2, 4, 8
MAX_DEPTH = 64

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
TIME, MICROTIME, DURATION, FIELDSV1 = _META + "Time", _META + "MicroTime", _META + "Duration", _META + "FieldsV1"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INTORSTRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
RAWEXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"

_VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool"}
_FIXED64 = {"fixed64": "<Q", "sfixed64": "<q", "double": "<d"}
_FIXED32 = {"fixed32": "<I", "sfixed32": "<i", "float": "<f"}
_ZERO = ("", 0, False, b"", 0.0)


@functools.cache
def table() -> dict:
    """The field table (loaded once)."""
    return json.loads(gzip.decompress(TABLE_PATH.read_bytes()))


# -- wire format --------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Split one message into (field number, wire type, value): int for varint/fixed, bytes for
    length-delimited."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError("invalid field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > end:
                raise ValueError("truncated 64-bit field")
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError(f"field {num}: length {n} runs past the end of the message")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            if pos + 4 > end:
                raise ValueError("truncated 32-bit field")
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"field {num}: unsupported wire type {wt}")
        out.append((num, wt, val))
    return out


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(t: str, wt: int, val: Any) -> Any:
    if t == "string":
        if wt != 2:
            raise ValueError(f"expected a length-delimited string, got wire type {wt}")
        try:
            return val.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"string field is not valid UTF-8: {e}") from None
    if t == "bytes":
        if wt != 2:
            raise ValueError(f"expected length-delimited bytes, got wire type {wt}")
        return bytes(val)
    if t in _VARINT_TYPES:
        if wt != 0:
            raise ValueError(f"expected a varint {t}, got wire type {wt}")
        if t == "bool":
            return val != 0
        if t in ("int32", "int64"):
            return _signed64(val) if t == "int64" else _int32(val)
        if t in ("sint32", "sint64"):
            return (val >> 1) ^ -(val & 1)
        return val & ((1 << 32) - 1) if t == "uint32" else val
    if t in _FIXED64:
        if wt != 1:
            raise ValueError(f"expected a 64-bit {t}, got wire type {wt}")
        return struct.unpack(_FIXED64[t], val)[0]
    if t in _FIXED32:
        if wt != 5:
            raise ValueError(f"expected a 32-bit {t}, got wire type {wt}")
        return struct.unpack(_FIXED32[t], val)[0]
    raise ValueError(f"unknown scalar type {t}")


def _int32(v: int) -> int:
    v = _signed64(v)
    if not -(1 << 31) <= v < (1 << 31):
        v = (v + (1 << 31)) % (1 << 32) - (1 << 31)  # Go truncates to int32
    return v


def _packed(t: str, buf: bytes) -> list:
    """Packed repeated scalars (not emitted by Kubernetes' proto2 code, but legal on the wire)."""
    out, pos = [], 0
    if t in _VARINT_TYPES:
        while pos < len(buf):
            v, pos = _varint(buf, pos)
            out.append(_scalar(t, 0, v))
        return out
    size = 8 if t in _FIXED64 else 4
    if len(buf) % size:
        raise ValueError(f"packed {t} field has a bad length")
    return [_scalar(t, 1 if size == 8 else 5, buf[i:i + size]) for i in range(0, len(buf), size)]


# -- special types --------------------------------------------------------------------------------
def _timestamp(buf: bytes) -> tuple[int, int] | None:
    if not buf:
        return None
    secs = nanos = 0
    for num, wt, val in fields(buf):
        if num == 1:
            secs = _scalar("int64", wt, val)
        elif num == 2:
            nanos = _scalar("int32", wt, val)
    return secs, nanos


def _utc(secs: int, micros: int = 0) -> _dt.datetime:
    try:
        return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=secs, microseconds=micros)
    except OverflowError:
        raise ValueError(f"timestamp {secs} is out of range") from None


def _time(buf: bytes, depth: int) -> str | None:
    ts = _timestamp(buf)
    return None if ts is None else _utc(ts[0]).strftime("%Y-%m-%dT%H:%M:%SZ")  # JSON keeps seconds only


def _microtime(buf: bytes, depth: int) -> str | None:
    ts = _timestamp(buf)
    if ts is None:
        return None
    secs, nanos = ts
    return _utc(secs, nanos // 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)

    def frac(v: int, unit: int) -> str:
        whole, rest = divmod(v, unit)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{frac(u, 1_000)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{frac(u, 1_000_000)}ms"
    h, rest = divmod(u, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    s = frac(rest, 1_000_000_000) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return f"{sign}{s}"


def _duration(buf: bytes, depth: int) -> str:
    ns = 0
    for num, wt, val in fields(buf):
        if num == 1:
            ns = _scalar("int64", wt, val)
    return go_duration(ns)


def _quantity(buf: bytes, depth: int) -> str:
    s = "0"  # Go's zero Quantity marshals as "0"
    for num, wt, val in fields(buf):
        if num == 1:
            s = _scalar("string", wt, val)
    return s


def _intorstring(buf: bytes, depth: int) -> int | str:
    typ, ival, sval = 0, 0, ""
    for num, wt, val in fields(buf):
        if num == 1:
            typ = _scalar("int64", wt, val)
        elif num == 2:
            ival = _scalar("int32", wt, val)
        elif num == 3:
            sval = _scalar("string", wt, val)
    return sval if typ == 1 else ival


def _raw_json(buf: bytes, depth: int) -> Any:
    """RawExtension / FieldsV1 / Unknown: field 1 (Unknown: 2) holds the raw object."""
    raw = b""
    for num, wt, val in fields(buf):
        if num == 1 and wt == 2:
            raw = val
    return _parse_raw(raw, depth)


def _parse_raw(raw: bytes, depth: int) -> Any:
    if not raw:
        return None
    if raw.startswith(MAGIC):
        return _decode(raw, depth + 1)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ValueError(f"embedded raw object is not JSON: {e}") from None


def _unknown(buf: bytes, depth: int) -> Any:
    return _decode(MAGIC + bytes(buf), depth + 1)


SPECIAL: dict[str, Callable[[bytes, int], Any]] = {
    TIME: _time, MICROTIME: _microtime, DURATION: _duration, QUANTITY: _quantity,
    INTORSTRING: _intorstring, RAWEXTENSION: _raw_json, FIELDSV1: _raw_json, UNKNOWN: _unknown,
}


# -- messages -----------------------------------------------------------------------------------
def _json_scalar(t: str, v: Any) -> Any:
    return base64.b64encode(v).decode("ascii") if t == "bytes" else v


def _value(t: str, wt: int, val: Any, depth: int) -> Any:
    """One value of type t (scalar or message) in its JSON form."""
    if t in SPECIAL or t in table()["messages"]:
        if wt != 2:
            raise ValueError(f"{t}: expected a length-delimited message, got wire type {wt}")
        return message(t, val, depth=depth + 1)
    return _json_scalar(t, _scalar(t, wt, val))


def message(name: str, buf: bytes, *, depth: int = 0) -> Any:
    """Decode one message `name` (full proto name) into its JSON value."""
    if depth > MAX_DEPTH:
        raise ValueError("protobuf message nested too deeply")
    if name in SPECIAL:
        return SPECIAL[name](buf, depth)
    tbl = table()
    spec = tbl["messages"].get(name)
    if spec is None:
        raise ValueError(f"unknown protobuf message {name}")
    wrapper = name in _wrappers()
    out: dict[str, Any] = {}
    repeated: dict[str, list] = {}
    maps: dict[str, dict] = {}
    for num, wt, val in fields(buf):
        f = spec.get(str(num))
        if f is None:
            continue  # unknown field: skipped, as Go's Unmarshal does
        jname, t, flags = f[0], f[1], (f[2] if len(f) > 2 else 0)
        try:
            if isinstance(t, list):  # map entry {1: key, 2: value}
                if wt != 2:
                    raise ValueError(f"expected a map entry, got wire type {wt}")
                key: Any = "" if t[0] == "string" else 0
                value: Any = None
                for enum_, ewt, ev in fields(val):
                    if enum_ == 1:
                        key = _scalar(t[0], ewt, ev)
                    elif enum_ == 2:
                        value = _value(t[1], ewt, ev, depth)
                if value is None:
                    value = _value(t[1], 2, b"", depth) if t[1] in SPECIAL or t[1] in tbl["messages"] \
                        else _json_scalar(t[1], _scalar(t[1], *_zero_wire(t[1])))
                maps.setdefault(jname, {})[str(key) if not isinstance(key, str) else key] = value
            elif flags & REPEATED:
                if wt == 2 and t not in ("string", "bytes") and t not in tbl["messages"] and t not in SPECIAL:
                    repeated.setdefault(jname, []).extend(_json_scalar(t, v) for v in _packed(t, val))
                else:
                    repeated.setdefault(jname, []).append(_value(t, wt, val, depth))
            elif flags & INLINE and t in tbl["messages"]:
                inner = message(t, val, depth=depth + 1)
                if isinstance(inner, dict):
                    out.update(inner)
            else:
                v = _value(t, wt, val, depth)
                if not flags & KEEP_ZERO and t not in tbl["messages"] and t not in SPECIAL \
                        and any(v is z or (type(v) is type(z) and v == z) for z in _ZERO):
                    out.pop(jname, None)
                    continue
                if flags & OMIT_ZERO and (v is None or v == {} or any(type(v) is type(z) and v == z for z in _ZERO)):
                    out.pop(jname, None)  # json `omitzero`: a zero struct (e.g. Time) is dropped too
                    continue
                out[jname] = v
        except ValueError as e:
            raise ValueError(f"{name.rsplit('.', 1)[-1]}.{jname or num}: {e}") from None
    if wrapper:
        return next(iter(repeated.values()), [])
    out.update(repeated)
    out.update(maps)
    return out


def _zero_wire(t: str) -> tuple[int, Any]:
    if t in ("string", "bytes"):
        return 2, b""
    if t in _FIXED64:
        return 1, b"\0" * 8
    if t in _FIXED32:
        return 5, b"\0" * 4
    return 0, 0


@functools.cache
def _wrappers() -> frozenset[str]:
    return frozenset(table()["wrappers"])


def message_for(api_version: str, kind: str) -> str:
    """The proto message of a top-level object; meta.k8s.io kinds (DeleteOptions, ...) are
    registered in every group version, as in client-go."""
    kinds = table()["kinds"]
    name = kinds.get(f"{api_version}/{kind}") or kinds.get(f"meta.k8s.io/v1/{kind}")
    if name is None:
        raise ValueError(f"no protobuf type known for apiVersion {api_version!r}, kind {kind!r}")
    return name


def _decode(body: bytes, depth: int) -> dict:
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body (missing the k8s\\x00 prefix)")
    api_version = kind = encoding = ctype = ""
    raw = b""
    for num, wt, val in fields(body[len(MAGIC):]):
        if wt != 2:
            raise ValueError(f"runtime.Unknown field {num}: unexpected wire type {wt}")
        if num == 1:
            for tnum, twt, tval in fields(val):
                if tnum == 1:
                    api_version = _scalar("string", twt, tval)
                elif tnum == 2:
                    kind = _scalar("string", twt, tval)
        elif num == 2:
            raw = val
        elif num == 3:
            encoding = _scalar("string", wt, val)
        elif num == 4:
            ctype = _scalar("string", wt, val)
    if encoding:
        raise ValueError(f"unsupported contentEncoding {encoding!r}")
    if not kind or not api_version:
        raise ValueError("protobuf body has no apiVersion/kind in its envelope")
    if ctype and ctype != CONTENT_TYPE:
        if "json" not in ctype:
            raise ValueError(f"unsupported embedded contentType {ctype!r}")
        obj = _parse_raw(raw, depth)
        if not isinstance(obj, dict):
            raise ValueError("embedded JSON is not an object")
    else:
        obj = message(message_for(api_version, kind), raw, depth=depth)
    return {"apiVersion": api_version, "kind": kind, **obj}


def decode(body: bytes) -> dict:
    """A Kubernetes protobuf body -> the JSON object kubectl would have sent. Raises ValueError."""
    try:
        return _decode(bytes(body), 0)
    except RecursionError:
        raise ValueError("protobuf message nested too deeply") from None

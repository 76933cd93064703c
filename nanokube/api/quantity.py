"""Resource quantities (``100m``, ``1.5``, ``64Mi``, ``1G``, ``1e3``) as numbers.

CPU is handled in milli-cores and memory in bytes, the units the scheduler and the cgroup
drivers compute with; parsing follows ``resource.Quantity``'s suffixes.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1), "k": Decimal(10**3),
        "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}


def parse(q: str | int | float) -> Decimal:
    if isinstance(q, (int, float)):
        return Decimal(str(q))
    s = str(q).strip()
    try:
        for suf, mul in _BIN.items():
            if s.endswith(suf):
                return Decimal(s[:-2]) * mul
        if s and s[-1] in _DEC and not s[-1].isdigit():
            return Decimal(s[:-1]) * _DEC[s[-1]]
        return Decimal(s)
    except InvalidOperation:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {q!r}") from None


def cpu_milli(q: str | int | float | None) -> int:
    if q is None:
        return 0
    v = parse(q) * 1000
    return int(v.to_integral_value(rounding="ROUND_CEILING"))


def bytes_(q: str | int | float | None) -> int:
    if q is None:
        return 0
    return int(parse(q).to_integral_value(rounding="ROUND_CEILING"))

"""The compiled half of the shim (monitor.c): where it is, and building it.

``scripts/setup`` builds ``nk-monitor`` next to its source; an agent that finds it missing or
older than the source builds it itself (a C compiler is in the node's packages). Without one,
shims stay in Python for their whole life and cost ~5 MB more per container — the agent says so.

    python -m nanokube.runtime.monitor      # build (or rebuild) it, print its path
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("nanokube.runtime")
SOURCE = Path(__file__).with_name("monitor.c")
BINARY = Path(__file__).with_name("nk-monitor")


def _fresh(binary: Path) -> bool:
    try:
        return os.access(binary, os.X_OK) and binary.stat().st_mtime >= SOURCE.stat().st_mtime
    except OSError:
        return False


def build(binary: Path = BINARY) -> Path:
    """Compile monitor.c into ``binary`` (atomically: agents starting together may race)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc/gcc) to build the shim's monitor")
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")
    r = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {SOURCE.name} failed: {r.stderr.strip()[-2000:]}")
    os.replace(tmp, binary)
    return binary


def binary(fallback_dir: Path | None = None) -> str | None:
    """The monitor's path, built first if missing or stale (next to the source, or in
    ``fallback_dir`` when the package directory is read-only); None if it cannot be had."""
    for candidate in (BINARY, fallback_dir / "nk-monitor" if fallback_dir else None):
        if candidate is None:
            continue
        if _fresh(candidate):
            return str(candidate)
        try:
            return str(build(candidate))
        except (OSError, RuntimeError) as e:
            err = e
    log.warning("shims stay in Python (~5 MB more per container): %s", err)
    return None


if __name__ == "__main__":
    print(build())
    sys.exit(0)

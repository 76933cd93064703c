"""conntrack entries in the caller's network namespace, through the ``conntrack`` tool.

kube-proxy deletes the entries of UDP flows whose endpoint went away: UDP has no
connection to close, so without this a client keeps sending to a dead pod for as long as
its conntrack entry lives. The tool is used (not libnetfilter_conntrack through ctypes)
because, as upstream, the deletions are rare and the filters are exactly its options.
"""
from __future__ import annotations

import re
import shutil
import subprocess


def delete(args: list[str]) -> int:
    """Run ``conntrack <args>`` (a ``-D`` filter); returns how many entries were deleted.
    "No entries matched" (exit 1 with 0 deletions) is not an error."""
    exe = shutil.which("conntrack") or "conntrack"
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
    out = r.stderr + r.stdout
    m = re.search(r"(\d+) flow entries have been deleted", out)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"conntrack {' '.join(args)} failed: {out.strip()}")
    return int(m.group(1)) if m else 0

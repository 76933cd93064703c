"""Process liveness as the rest of nanokube needs it: a zombie counts as gone."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int, *, reap: bool = False) -> bool:
    """True while ``pid`` runs. ``reap`` first collects it if it is our exited child."""
    if reap:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False

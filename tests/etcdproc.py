"""A throwaway etcd for tests and benchmarks: Debian's ``etcd`` binary on 127.0.0.1.

Free ports, a fresh data directory, default durability (etcd fsyncs its WAL before it
answers a write); stopped by pid and its directory removed afterwards. ``etcd_binary()`` is
None when the etcd-server package is missing, so callers can skip with a clear reason.
"""
from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SKIP_REASON = "etcd binary not found (install Debian's etcd-server; scripts/setup does)"


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


@contextmanager
def local_etcd(*, data_dir: Path | None = None, client_port: int | None = None,
               timeout: float = 30.0) -> Iterator[str]:
    """Start etcd, yield its ``etcd://127.0.0.1:PORT`` URL, stop it and remove its data.

    With ``data_dir`` (kept afterwards) and ``client_port``, the same etcd can be restarted."""
    binary = etcd_binary()
    if binary is None:
        raise RuntimeError(SKIP_REASON)
    own_dir = data_dir is None
    base = Path(tempfile.mkdtemp(prefix="nk-etcd-")) if own_dir else data_dir
    assert base is not None
    client, peer = client_port or _free_port(), _free_port()
    log = open(base / "etcd.log", "ab")
    proc = subprocess.Popen(
        [binary, "--name", "nk", "--data-dir", str(base / "data"),
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"nk=http://127.0.0.1:{peer}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(client):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not start: {(base / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"etcd://127.0.0.1:{client}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)

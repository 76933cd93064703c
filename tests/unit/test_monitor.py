"""The shim's compiled half (nanokube/runtime/monitor.c), driven directly: a small Python
starter forks a stand-in container and execs the monitor in its place, as shim.py does."""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from nanokube.runtime import monitor

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")

STARTER = textwrap.dedent("""
    import os, socket, sys
    d, script, stdin, listen = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
    out_r, out_w = os.pipe(); err_r, err_w = os.pipe()
    in_r = in_w = None
    if stdin:
        in_r, in_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(in_r if stdin else os.open("/dev/null", os.O_RDONLY), 0)
        os.dup2(out_w, 1); os.dup2(err_w, 2)
        os.execv("/bin/sh", ["sh", "-c", script])
    os.close(out_w); os.close(err_w)
    lfd = -1
    if listen:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(listen); s.listen(4)
        lfd = s.detach()
    fds = [out_r, err_r, -1, in_w if stdin else -1, lfd]
    for fd in fds:
        if fd >= 0:
            os.set_inheritable(fd, True)
    mon = os.environ["MONITOR"]
    os.execv(mon, [mon, d, str(pid), *map(str, fds), "0", d + "/container.log", os.environ.get("MAXB", "1000000"),
                   "3", "0"])
""")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return str(monitor.build(tmp_path_factory.mktemp("mon") / "nk-monitor"))


def run(binary, d, script, *, stdin=False, listen="", maxb="1000000"):
    return subprocess.Popen([sys.executable, "-c", STARTER, str(d), script, "1" if stdin else "0", listen],
                            env={**os.environ, "MONITOR": binary, "MAXB": maxb})


def log(d):
    return [l.split(" ", 3)[1:] for l in (d / "container.log").read_text().splitlines()]


def test_lines_streams_and_exit(binary, tmp_path):
    p = run(binary, tmp_path, "echo one; echo two >&2; printf 'cr\\r\\n'; printf 'x%.0s' $(seq 16385); echo; printf end; exit 3")
    assert p.wait(10) == 0
    assert json.loads((tmp_path / "exit.json").read_text())["exitCode"] == 3
    lines = log(tmp_path)
    assert ["stderr", "F", "two"] in lines
    out = [(t, x) for s, t, x in lines if s == "stdout"]  # the two pipes' lines interleave as they come
    assert out[:2] == [("F", "one"), ("F", "cr")]
    assert [(t, len(x)) for t, x in out[2:4]] == [("P", 16384), ("F", 1)]
    assert out[4:] == [("F", "end")]  # the unterminated last line is kept


def test_signal_and_rotation(binary, tmp_path):
    p = run(binary, tmp_path, "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; kill -9 $$", maxb="4000")
    assert p.wait(10) == 0
    ex = json.loads((tmp_path / "exit.json").read_text())
    assert (ex["exitCode"], ex["signal"], ex["oomKilled"]) == (137, 9, False)
    names = sorted(f.name for f in tmp_path.iterdir() if f.name.startswith("container.log"))
    assert names == ["container.log", "container.log.1", "container.log.2"]
    assert all((tmp_path / n).stat().st_size <= 4000 for n in names)
    assert log(tmp_path)[-1] == ["stdout", "F", "line-399"]


def test_attach_frames(binary, tmp_path):
    sock = str(tmp_path / "attach.sock")
    p = run(binary, tmp_path, "read x; echo got-$x; read y; echo end-$y", stdin=True, listen=sock)
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.01)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock)
    c.sendall(struct.pack(">BI", 0, 6) + b"hello\n" + struct.pack(">BI", 255, 0))  # input, then its end
    got = b""
    c.settimeout(10)
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        got += chunk
    out = b""
    while got:  # frames of (type, length, payload): the container's stdout, as it came
        typ, n = struct.unpack(">BI", got[:5])
        assert typ == 1
        out, got = out + got[5:5 + n], got[5 + n:]
    assert out == b"got-hello\nend-\n"
    assert p.wait(10) == 0
    assert log(tmp_path) == [["stdout", "F", "got-hello"], ["stdout", "F", "end-"]]
    assert not os.path.exists(sock)  # removed when the container ends

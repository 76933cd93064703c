"""The container runtime on the real kernel: isolation, logs, exit codes, stop, OOM, and
re-adoption by a new Runtime over the same state (a restarted agent)."""
from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest

from nanokube.host import netns
from nanokube.host.cgroups import detect
from nanokube.runtime.images import ImageStore
from nanokube.runtime.runtime import ContainerConfig, Mount, Runtime

pytestmark = pytest.mark.integration
IMAGES = Path(os.environ.get("NANOKUBE_IMAGES", "/var/lib/nanokube/images"))


@pytest.fixture
def env(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = "nkp-t" + secrets.token_hex(4)
    netns.create(name)
    cg_root = "nanokube-rt" + secrets.token_hex(3)
    rt = Runtime(state_dir=tmp_path / "state", images=ImageStore(IMAGES), cgroups=detect())
    yield rt, name, cg_root
    async def clean():
        for cid in rt.list():
            await rt.remove(cid)
    asyncio.run(clean())
    rt.cgroups.remove(cg_root)
    netns.delete(name)
    assert not [l for l in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in l]
    assert not any(d.exists() for d in rt.cgroups.dirs(cg_root))


def cfg(rt_env, cid, argv, **kw):
    rt, ns, cg = rt_env
    return ContainerConfig(id=cid, pod_uid="u", namespace="default", pod_name="p", name=cid, image="busybox",
                           argv=argv, env=[("PATH", "/bin:/usr/bin")], netns_path=netns.path(ns),
                           cgroup=f"{cg}/{cid}", **kw)


async def until_exited(rt, cid, timeout=20):
    for _ in range(int(timeout / 0.05)):
        st = await rt.status(cid)
        if st.state == "exited":
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"{cid} still running")


async def test_isolated_container_logs_and_exit_code(env, tmp_path):
    rt = env[0]
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\n")
    script = "echo hello; echo oops >&2; hostname; echo pid=$$; ps | wc -l; cat /etc/resolv.conf; exit 3"
    await rt.start(cfg(env, "c1", ["sh", "-c", script], hostname="mypod",
                       mounts=[Mount(str(resolv), "/etc/resolv.conf", True)]))
    st = await until_exited(rt, "c1")
    assert (st.exit_code, st.reason) == (3, "Error")
    lines = rt.log_path("c1").read_text().splitlines()
    streams = [(l.split(" ", 3)[1], l.split(" ", 3)[3]) for l in lines]
    assert ("stdout", "hello") in streams and ("stderr", "oops") in streams
    assert ("stdout", "mypod") in streams and ("stdout", "pid=1") in streams
    # ps sees only the container: a header, sh, ps and wc (no host processes)
    assert int(next(t for s, t in streams if t.strip().isdigit())) <= 5
    assert ("stdout", "nameserver 10.96.0.10") in streams


async def test_stop_readopt_and_oom(env):
    rt = env[0]
    await rt.start(cfg(env, "c2", ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 0.1; done']))
    await asyncio.sleep(0.3)
    again = Runtime(state_dir=rt.state_dir, images=rt.images, cgroups=rt.cgroups)
    st = await again.status("c2")
    assert st.state == "running"
    await again.stop("c2", grace_seconds=10)
    st = await again.status("c2")
    assert (st.state, st.exit_code, st.reason) == ("exited", 0, "Completed")
    await rt.start(cfg(env, "c3", ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
                       memory_limit_bytes=16 << 20))
    st = await until_exited(rt, "c3")
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


async def test_logs_rotate_by_size(env):
    rt = env[0]
    c = cfg(env, "rot" + secrets.token_hex(3), ["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"],
            log_max_bytes=20000, log_max_files=3)
    await rt.start(c)
    await until_exited(rt, c.id)
    log = rt.log_path(c.id)
    rotated = sorted(p.name for p in log.parent.glob(log.name + ".*"))
    assert rotated == [log.name + ".1", log.name + ".2"]  # at most 3 files: the oldest went
    for p in [log, log.with_name(log.name + ".1"), log.with_name(log.name + ".2")]:
        assert p.stat().st_size < 20000 + 200
    last = log.read_text().splitlines()[-1]
    assert last.endswith("F line-2999")  # the current file ends with the last line
    older = log.with_name(log.name + ".1").read_text().splitlines()
    assert int(older[-1].split("line-")[1]) + 1 == int(log.read_text().splitlines()[0].split("line-")[1])  # no gap


async def test_monitor_runs_the_container_life(env):
    """Once the container runs, its shim is the compiled monitor (monitor.c), not CPython; it
    splits lines over 16 KiB into P(artial) CRI pieces and writes a last line without newline;
    the container starts with no signal ignored (CPython ignores SIGPIPE and SIGXFSZ)."""
    rt = env[0]
    assert rt.monitor
    c = cfg(env, "mon" + secrets.token_hex(3), ["sh", "-c", "grep SigIgn /proc/self/status; "
                                                "head -c 40000 /dev/zero | tr '\\0' x; echo; printf tail; sleep 2"])
    await rt.start(c)
    shim_pid = int((rt.dir(c.id) / "shim.pid").read_text())
    for _ in range(100):  # the shim execs the monitor right after writing the container's pid
        exe = os.readlink(f"/proc/{shim_pid}/exe")
        if exe == rt.monitor:
            break
        await asyncio.sleep(0.01)
    assert exe == rt.monitor
    await until_exited(rt, c.id)
    lines = [l.split(" ", 3) for l in rt.log_path(c.id).read_text().splitlines()]
    assert lines[0][3] == "SigIgn:\t0000000000000000"
    assert [(s, t, len(x)) for _, s, t, x in lines[1:]] == [
        ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 40000 - 2 * 16384), ("stdout", "F", 4)]
    assert lines[-1][3] == "tail"


async def test_python_only_shim_without_the_monitor(env):
    """Hosts without a C compiler keep the whole shim in Python: same log and exit status."""
    rt = env[0]
    rt.monitor = None
    c = cfg(env, "py" + secrets.token_hex(3), ["sh", "-c", "echo hi; sleep 0.5; head -c 40000 /dev/zero | tr '\\0' x; "
                                               "echo; printf tail >&2; exit 3"])
    await rt.start(c)
    shim_pid = int((rt.dir(c.id) / "shim.pid").read_text())
    assert "python" in os.path.basename(os.readlink(f"/proc/{shim_pid}/exe"))
    st = await until_exited(rt, c.id)
    assert (st.exit_code, st.reason) == (3, "Error")
    assert [(s, t, x if len(x) < 100 else len(x)) for s, t, x in
            (l.split(" ", 3)[1:] for l in rt.log_path(c.id).read_text().splitlines())] == [
        ("stdout", "F", "hi"), ("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 40000 - 2 * 16384),
        ("stderr", "F", "tail")]

"""The per-container shim (like conmon): starts one container and outlives the agent.

Run as ``python3 -S shim.py <container-dir>``: standard library only, nothing else imported,
because its memory is paid per container. It reads ``config.json`` from the container dir,
joins the pod's network namespace, unshares a pid namespace and forks the container init
(pid 1 there), which unshares mount/uts/ipc, mounts an overlay of the image plus /proc
(kernel files masked as runc does), /dev, /sys and the bind mounts (all nodev, so a device
node made with mknod cannot be opened), pivots into it, drops capabilities, sets
no_new_privs and execs. The shim writes ``pid`` and ``started``, copies stdout/stderr into
the log in CRI format, and when the container exits writes ``exit.json`` — so a restarted
kubelet can find running containers and learn how finished ones ended. Once the container
runs, the shim normally execs the compiled monitor (monitor.c, ``cfg["monitor"]``), which does
that copying and waiting for the rest of the container's life at a fraction of CPython's
memory; the Python loop below remains for hosts without a C compiler.

A container with ``stdin`` or ``tty`` (``kubectl run -it``) gets a pipe or a pseudo-terminal
(opened inside the container's own devpts and handed to the shim over a socketpair) as its
standard streams, and the shim listens on ``attach.sock`` in the container dir: ``kubectl
attach`` clients (through the kubelet) send input and window sizes and receive the output as
it comes, in frames of (type byte, 4-byte length, payload): 0 stdin, 1 stdout, 2 stderr,
4 resize (JSON), 255 end of input.

``shim.py --exec <container-dir> -- CMD...`` is ``kubectl exec``'s way in: it joins the
container's cgroup and namespaces, takes its root, environment and working directory, drops
the same capabilities, and runs CMD there, exiting with CMD's status.
"""
import ctypes
import json
import os
import select
import signal
import sys
import time
import warnings  # noqa: F401 - os.execvpe imports it lazily, after the host root is gone

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE, MS_REMOUNT = 1, 2, 4, 8, 4096, 16384, 1 << 18, 32
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
# The capabilities container runtimes keep by default (containerd/Docker); all others drop.
DEFAULT_CAPS = {0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31}  # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
# SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
LAST_CAP = 40
MAX_LINE = 16 * 1024  # longer log lines are written in P(artial) pieces, as containerd does
# As runc's defaults: kernel files a container must not read (host timers, keys, firmware
# tables) are covered up, and knobs it could turn are read-only.
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def mount(src, dst, fstype, flags=0, data=None):
    check(libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None), f"mount {dst}")


def now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)


def mask_kernel_files(root):
    """MASKED_PATHS: /dev/null over files, an empty read-only tmpfs over directories;
    READONLY_PATHS: read-only bind mounts of themselves."""
    for path in MASKED_PATHS:
        target = root + path
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        elif os.path.exists(target):
            mount("/dev/null", target, None, MS_BIND)
    for path in READONLY_PATHS:
        target = root + path
        if os.path.exists(target):
            mount(target, target, None, MS_BIND | MS_REC)
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def open_beneath(source, within):
    """An O_PATH descriptor of ``source`` that provably lies inside ``within`` (a subPath of a
    volume): resolved once, checked on what was opened, and then mounted through
    /proc/self/fd, so that a symlink swapped in by the container cannot redirect the mount."""
    fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
    real = os.readlink(f"/proc/self/fd/{fd}")
    if real != within and not real.startswith(within.rstrip("/") + "/"):
        os.close(fd)
        raise PermissionError(f"subPath {source} resolves to {real}, outside of its volume")
    return fd


def setup_root(cfg, root):
    """In the container's own mount namespace: build its root filesystem and pivot into it.
    Unless privileged, every filesystem the container can write to is nodev (what the devices
    cgroup does for runc): a node it makes with mknod cannot be opened."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    d = cfg["dir"]
    privileged = bool((cfg.get("security") or {}).get("privileged"))
    nodev = 0 if privileged else MS_NODEV
    mount("overlay", root, "overlay", nodev, f"lowerdir={cfg['lower']},upperdir={d}/upper,workdir={d}/work")
    for sub in ("proc", "dev", "sys", "tmp", "etc"):
        os.makedirs(f"{root}/{sub}", exist_ok=True)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # As runc: the kernel's knobs are read-only in a container.
    mount(f"{root}/proc/sys", f"{root}/proc/sys", None, MS_BIND | MS_REC)
    mount(None, f"{root}/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | nodev, "mode=755,size=65536k")  # the nodes below are binds
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{root}/dev/{dev}", "w").close()
        mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
    for sub in ("pts", "shm", "mqueue"):
        os.makedirs(f"{root}/dev/{sub}", exist_ok=True)
    mount("devpts", f"{root}/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", f"{root}/dev/ptmx")
    mount("shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    try:
        mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a sysfs of another network namespace may be refused; the container goes without
    if not privileged:
        mask_kernel_files(root)
    for m in cfg.get("mounts", []):
        target = root + m["target"]
        fd = open_beneath(m["source"], m["within"]) if m.get("within") else None
        source = f"/proc/self/fd/{fd}" if fd is not None else m["source"]
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "w").close()
        mount(source, target, None, MS_BIND | MS_REC)
        if fd is not None:
            os.close(fd)
        if m.get("readonly") or nodev:  # a remount sets all flags: keep the source's nosuid/noexec
            kept = os.statvfs(target).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # ST_* bits equal MS_*
            mount(None, target, None, MS_BIND | MS_REMOUNT | kept | nodev | (MS_RDONLY if m.get("readonly") else 0))
    os.makedirs(f"{root}/.oldroot", exist_ok=True)
    check(libc.syscall(155, root.encode(), f"{root}/.oldroot".encode()), "pivot_root")  # SYS_pivot_root
    os.chdir("/")
    check(libc.umount2(b"/.oldroot", MNT_DETACH), "umount oldroot")
    os.rmdir("/.oldroot")


def container_init(cfg, out_w, err_w, go_r, stdin_r=None, pty_sock=None):
    """The child: wait for the shim to place us in the cgroup, then become the container."""
    try:
        if pty_sock is not None:
            import fcntl, socket, termios  # before pivot_root takes the host's modules out of reach
        os.read(go_r, 1)
        check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC), "unshare")
        if cfg.get("hostname"):
            check(libc.sethostname(cfg["hostname"].encode(), len(cfg["hostname"].encode())), "sethostname")
        setup_root(cfg, cfg["dir"] + "/rootfs")
        sec = cfg.get("security") or {}
        if sec.get("readonly_root"):
            mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | (0 if sec.get("privileged") else MS_NODEV))
        os.chdir(cfg.get("cwd") or "/")
        if pty_sock is not None:
            master, slave = os.openpty()  # /dev/ptmx here is the container's own devpts
            socket.send_fds(pty_sock, [b"m"], [master])
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
        else:
            os.dup2(stdin_r if stdin_r is not None else os.open("/dev/null", os.O_RDONLY), 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
        set_oom_score_adj(cfg.get("oom_score_adj"))
        drop_privileges(sec)
        default_signals()
        env = dict(cfg["env"])
        os.execvpe(cfg["argv"][0], cfg["argv"], env)
    except FileNotFoundError as e:
        os.write(err_w, f"exec: {cfg['argv'][0]}: {e.strerror}\n".encode())
        os._exit(127)
    except BaseException as e:  # noqa: BLE001 - report anything to the log, never return
        os.write(err_w, f"container init: {e}\n".encode())
        os._exit(126 if isinstance(e, PermissionError) else 128)


class Attach:
    """attach.sock: input from attached clients to the container, its output to them."""

    def __init__(self, path, stdin_fd, master, stdin_once):
        import socket
        import struct
        self.struct = struct
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A socket path is limited to 107 bytes; state dirs can be longer: bind through a
        # short /proc/self/fd/N alias of the directory.
        dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.sock.bind(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
        finally:
            os.close(dfd)
        self.sock.listen(8)
        self.stdin_fd, self.master, self.stdin_once = stdin_fd, master, stdin_once
        self.clients = {}  # fd -> [socket, unparsed bytes]

    def fds(self):
        return [self.sock.fileno()] + list(self.clients)

    def handle(self, fd):
        if fd == self.sock.fileno():
            c, _ = self.sock.accept()
            self.clients[c.fileno()] = [c, b""]
            return
        c, buf = self.clients[fd]
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(fd)
            return
        buf += data
        while len(buf) >= 5:
            typ, n = self.struct.unpack(">BI", buf[:5])
            if len(buf) < 5 + n:
                break
            payload, buf = buf[5:5 + n], buf[5 + n:]
            if typ == 0 and self.stdin_fd is not None:
                try:
                    os.write(self.stdin_fd, payload)
                except OSError:
                    pass  # the container no longer reads its input
            elif typ == 4 and self.master is not None:
                import fcntl, termios
                try:
                    size = json.loads(payload)
                    fcntl.ioctl(self.master, termios.TIOCSWINSZ,
                                self.struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
                except (ValueError, KeyError, TypeError, OSError):
                    pass
            elif typ == 255:
                self.end_input()
        if fd in self.clients:
            self.clients[fd][1] = buf

    def end_input(self):
        if self.master is None and self.stdin_fd is not None:  # a pipe: the container sees EOF
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def drop(self, fd):
        c, _ = self.clients.pop(fd)
        c.close()
        if self.stdin_once:  # stdinOnce: input ends with the first attach session
            self.end_input()

    def broadcast(self, typ, data):
        frame = self.struct.pack(">BI", typ, len(data)) + data
        for fd, (c, _) in list(self.clients.items()):
            try:
                c.sendall(frame)
            except OSError:
                self.drop(fd)

    def close(self):
        for fd in list(self.clients):
            self.clients.pop(fd)[0].close()
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def write_lines(log, lines, cfg):
    """Append log lines, rotating first whenever the next line would take the file past
    log_max_bytes (a big read is split at line boundaries, so no file exceeds the limit by
    more than one line). Returns the file now being written."""
    limit = cfg.get("log_max_bytes", 10 << 20)
    buf, size = [], log.tell()
    for line in lines:
        if size and size + len(line) > limit:
            log.write(b"".join(buf))
            log = rotate(log, cfg["log"], cfg.get("log_max_files", 5))
            buf, size = [], 0
        buf.append(line)
        size += len(line)
    log.write(b"".join(buf))
    return log


def rotate(log, path, max_files):
    """containerLogMaxSize / containerLogMaxFiles: the log becomes path.1 (older ones shift up,
    the oldest beyond max_files goes) and a new one starts, as the kubelet rotates CRI logs."""
    log.close()
    for i in range(max_files - 1, 0, -1):
        if os.path.exists(f"{path}.{i}"):
            if i + 1 >= max_files:
                os.unlink(f"{path}.{i}")
            else:
                os.rename(f"{path}.{i}", f"{path}.{i + 1}")
    os.rename(path, f"{path}.1")
    return open(path, "ab", buffering=0)


def default_signals():
    """CPython ignores SIGPIPE and SIGXFSZ, and exec keeps what is ignored: a container's
    process starts with every signal at its default, as under any other runtime."""
    for s in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)


def set_oom_score_adj(value):
    """The QoS class's OOM score; lowering it needs CAP_SYS_RESOURCE, which some hosts (and
    sandboxes) do not give even to root: then the container keeps the inherited score."""
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        pass


def drop_privileges(sec):
    """The securityContext, resolved by the kubelet: capability bounding set, no_new_privs,
    then groups, group and user (last: changing them needs the capabilities still held)."""
    keep = set(sec["caps"]) if "caps" in sec else DEFAULT_CAPS
    for cap in range(LAST_CAP + 1):
        if cap not in keep:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if sec.get("no_new_privs"):
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.setgroups(sec.get("groups", []))
    os.setgid(sec.get("gid", 0))
    os.setuid(sec.get("uid", 0))


def exec_in(d, argv):
    """Run ``argv`` inside the running container of ``d``; return its exit status."""
    import fcntl  # imported here, before chroot takes the host's modules out of reach
    import termios
    with open(f"{d}/config.json") as f:
        cfg = json.load(f)
    with open(f"{d}/pid") as f:
        pid = int(f.read().split()[0])
    for procs in cfg.get("cgroup_procs", []):
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass  # the exec still runs; only its accounting is off
    try:
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        nss = [(os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY), flag) for ns, flag in
               (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID),
                ("mnt", CLONE_NEWNS))]
    except OSError:
        sys.stderr.write("container is not running\n")
        return 126
    for fd, flag in nss:
        check(libc.setns(fd, flag), "setns")
        os.close(fd)
    os.fchdir(root)
    os.chroot(".")
    child = os.fork()  # the pid namespace applies to children only
    if child == 0:
        try:
            if os.isatty(0):
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            try:
                os.chdir(cfg.get("cwd") or "/")
            except OSError:
                os.chdir("/")
            set_oom_score_adj(cfg.get("oom_score_adj"))  # the container's, not the agent's
            drop_privileges(cfg.get("security") or {})
            default_signals()
            os.execvpe(argv[0], argv, dict(cfg["env"]))
        except FileNotFoundError:
            os.write(2, f'exec: "{argv[0]}": executable file not found in $PATH\n'.encode())
            os._exit(127)
        except BaseException as e:  # noqa: BLE001 - never return into the parent's code
            os.write(2, f"exec {argv[0]}: {e}\n".encode())
            os._exit(126)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, lambda sig, _f: os.kill(child, sig))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def become_monitor(cfg, pid, out_r, err_r, master, stdin_fd, attach):
    """Exec the compiled monitor (monitor.c) in this process: it inherits the container as its
    child and the descriptors passed, and does the rest of the shim's life — log copy and
    rotation, attach.sock, exit.json — in a few hundred kilobytes instead of CPython's ~5 MB."""
    fds = [out_r, err_r, master, stdin_fd, attach.sock.fileno() if attach else None]
    for fd in fds:
        if fd is not None:
            os.set_inheritable(fd, True)
    argv = [cfg["monitor"], cfg["dir"], str(pid), *("-1" if fd is None else str(fd) for fd in fds),
            "1" if cfg.get("stdinOnce") else "0", cfg["log"], str(cfg.get("log_max_bytes", 10 << 20)),
            str(cfg.get("log_max_files", 5)), str(cfg.get("oom_before", 0)), *cfg.get("oom_files", [])]
    os.execv(argv[0], argv)


def pause(d, netns="", monitor=""):
    """A pod's shared pid namespace (shareProcessNamespace): pid 1 there does nothing but reap
    the orphans of the pod's containers, as Kubernetes' pause container does."""
    if netns:
        fd = os.open(netns, os.O_RDONLY)
        check(libc.setns(fd, CLONE_NEWNET), "setns net")
        os.close(fd)
    check(libc.unshare(CLONE_NEWPID), "unshare pid")
    pid = os.fork()
    if pid == 0:
        os.setsid()
        # let go of the starter's stdio: it waits for their end (the kubelet captures them)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        if monitor:
            os.execv(monitor, [monitor, "--pause"])
        for s in (signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        # a handler, so that signal.pause() returns when a later orphan exits (SIGCHLD's
        # default disposition would leave it sleeping and the zombie unreaped)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            try:
                os.wait()
            except ChildProcessError:
                signal.pause()
            except InterruptedError:
                pass
    with open(f"{d}/pid.tmp", "w") as f:
        f.write(str(pid))
    os.rename(f"{d}/pid.tmp", f"{d}/pid")


def main():
    if sys.argv[1] == "--exec":
        sys.exit(exec_in(sys.argv[2], sys.argv[4:]))
    if sys.argv[1] == "--pause":
        sys.exit(pause(*sys.argv[2:5]))
    d = sys.argv[1]
    with open(f"{d}/config.json") as f:
        cfg = json.load(f)
    cfg["dir"] = d
    log = open(cfg["log"], "ab", buffering=0)
    if cfg.get("netns"):
        fd = os.open(cfg["netns"], os.O_RDONLY)
        check(libc.setns(fd, CLONE_NEWNET), "setns net")
        os.close(fd)
    if cfg.get("pid_ns"):  # shareProcessNamespace: the pod's pause process holds the namespace
        fd = os.open(cfg["pid_ns"], os.O_RDONLY)
        check(libc.setns(fd, CLONE_NEWPID), "setns pid")
        os.close(fd)
    else:
        check(libc.unshare(CLONE_NEWPID), "unshare pid")
    tty, want_stdin = bool(cfg.get("tty")), bool(cfg.get("stdin"))
    if tty or want_stdin:
        import socket  # only interactive containers pay for it
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    go_r, go_w = os.pipe()
    in_r = in_w = psock = csock = None
    if tty:
        psock, csock = socket.socketpair()
    elif want_stdin:
        in_r, in_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r), os.close(err_r), os.close(go_w)
        if in_w is not None:
            os.close(in_w)
        container_init(cfg, out_w, err_w, go_r, stdin_r=in_r, pty_sock=csock)
    os.close(out_w), os.close(err_w), os.close(go_r)
    if in_r is not None:
        os.close(in_r)
    if csock is not None:
        csock.close()
    for procs in cfg.get("cgroup_procs", []):
        try:
            with open(procs, "w") as f:
                f.write(str(pid))
        except OSError as e:
            log.write(f"{now()} stderr F shim: joining cgroup {procs}: {e}\n".encode())
    os.write(go_w, b"x")
    os.close(go_w)
    master = None
    if psock is not None:
        _, fds, _, _ = socket.recv_fds(psock, 1, 1)  # empty if the container failed before its tty
        master = fds[0] if fds else None
        psock.close()
    attach = Attach(f"{d}/attach.sock", master if master is not None else in_w, master,
                    bool(cfg.get("stdinOnce"))) if (tty or want_stdin) else None
    with open(f"{d}/pid.tmp", "w") as f:
        f.write(f"{pid} {now()}")
    os.rename(f"{d}/pid.tmp", f"{d}/pid")
    if cfg.get("monitor"):
        become_monitor(cfg, pid, out_r, err_r, master, master if master is not None else in_w, attach)
    # The shim ignores the signals meant for the container (stop() signals the container itself).
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    names = {out_r: b"stdout", err_r: b"stderr"}
    if master is not None:
        names[master] = b"stdout"
    partial = {fd: b"" for fd in names}
    open_fds = list(names)
    while open_fds:
        ready, _, _ = select.select(open_fds + (attach.fds() if attach else []), [], [])
        for fd in ready:
            if fd not in names:
                attach.handle(fd)
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the last holder of the pty's other side is gone
                chunk = b""
            if not chunk:
                open_fds.remove(fd)
                if partial[fd]:
                    log.write(now().encode() + b" " + names[fd] + b" F " + partial[fd] + b"\n")
                continue
            if attach:
                attach.broadcast(1 if names[fd] == b"stdout" else 2, chunk)
            lines = (partial[fd] + chunk).split(b"\n")
            rest = lines.pop()
            head = now().encode() + b" " + names[fd]
            out = []
            for line in lines:  # over MAX_LINE: P(artial) pieces, as monitor.c and containerd
                while len(line) > MAX_LINE:
                    out.append(head + b" P " + line[:MAX_LINE] + b"\n")
                    line = line[MAX_LINE:]
                out.append(head + b" F " + line.rstrip(b"\r") + b"\n")
            while len(rest) >= MAX_LINE:
                out.append(head + b" P " + rest[:MAX_LINE] + b"\n")
                rest = rest[MAX_LINE:]
            partial[fd] = rest
            log = write_lines(log, out, cfg)
    if attach:
        attach.close()
    _, status = os.waitpid(pid, 0)
    finished = now()
    result = {"finishedAt": finished}
    if os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
        result["exitCode"] = 128 + result["signal"]
    else:
        result["exitCode"] = os.WEXITSTATUS(status)
    oom = False
    for f in cfg.get("oom_files", []):
        try:
            with open(f) as fh:
                for line in fh:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and int(v) > cfg.get("oom_before", 0):
                        oom = True
        except OSError:
            pass
    result["oomKilled"] = oom
    with open(f"{d}/exit.tmp", "w") as f:
        json.dump(result, f)
    os.rename(f"{d}/exit.tmp", f"{d}/exit.json")


if __name__ == "__main__":
    main()

"""iptables in the caller's network namespace: read state, rewrite chains, manage jumps.

Two kernel backends, one per node: ``nft`` (the nf_tables kernel API through ``iptables-nft*``,
the default wherever it is installed, as on Debian 12 and most current hosts) or ``legacy``
(x_tables, ``iptables-legacy*``); same rule language, same ``iptables-save`` text. The
choice is made once per process (``set_mode``, or the environment variable
``NANOKUBE_IPTABLES``; ``nanokube agent --iptables-backend``) and must be
the same for every user of this module in a namespace: the proxier and the NetworkPolicy
agent share the filter and nat tables, and legacy and nft tables are two separate worlds.

Two interchangeable ways to apply a set of chain rewrites/deletions. ``RestoreBackend``
(the default, like upstream kube-proxy) sends one ``iptables-restore --noflush`` per sync;
``IptcBackend`` uses python-iptables (libiptc, legacy only) chain by chain. Both leave
byte-identical ``iptables-save`` output (tests/integration/test_proxier.py). State is read with
``iptables-save``. Each node's rules live in its own namespace, so the host's own firewall is
never involved.

Costs (bench/bench_proxy.py, 1,000 NodePort services x 5 endpoints = 7,009 chains, 20k rules):
- legacy: a whole restore ~0.2 s, but every commit replaces the whole table blob in the
  kernel, so even a one-chain ``--noflush`` change costs ~100 ms. python-iptables is far slower
  for full syncs (libiptc builds each rule through ctypes and re-validates the blob).
- nft, large applies: one big restore is quadratic in userspace (1.3-2 s for everything):
  iptables-nft-restore files the name of every chain a transaction mentions, and every jump
  target, into a list sorted ascending and walked from the head. So applies touching more
  than ``CHUNK_CHAINS`` chains are chunked: several ``*table ... COMMIT`` blocks of about
  ``CHUNK_LINES`` lines in one restore run, every chain after the chains it jumps to (so
  jumps resolve and no block needs a later one): ~0.4 s. Each block is atomic, the whole
  apply is not: every chain goes from its old content to its new one in one step and only
  ever jumps to complete chains, but for a moment some services may have new rules and others
  old ones — acceptable for what gets chunked: the first sync into empty tables, large
  resyncs, clean-up. Created in that order rather than sorted, the chains also keep
  ``iptables-nft-save`` fast (it quicksorts them with the first as pivot: 0.2 s, not 0.86 s).
- nft, small changes (endpoints, a service added or removed) stay one transaction. One is live
  when the kernel has committed it (~10-15 ms here, nearly all of it nf_tables validating the
  whole jump graph); a restore process then closes its netlink socket, and that close waits
  for the kernel's deferred clean-up of the transaction (an RCU grace period, ~10 ms more) —
  as does the next commit in the namespace. So RestoreBackend feeds them to one long-lived
  iptables-nft-restore (``Restorer``) and returns on the kernel's commit notification for it
  (NFT_MSG_NEWGEN carrying its pid, on the nftables multicast group, joined only while it
  waits); without one (lost, or a failed line) the process's exit decides.
- Jumps from the built-in chains go into the same restore input (``-I CHAIN 1``) instead
  of one ``iptables -C``/``-I`` each: with legacy each of those reads or rewrites the whole
  table (~50-100 ms apiece at this size; that was 1 s of a 1.25 s full sync).
"""
from __future__ import annotations

import logging
import os
import re
import select
import shlex
import shutil
import socket
import struct
import subprocess
import threading
from typing import Iterable, Protocol

log = logging.getLogger("nanokube.iptables")

Chains = dict[tuple[str, str], list[str]]  # (table, chain) → rules as after "-A CHAIN"
Jump = tuple[str, str, str]                # (table, built-in chain, rule)
BUILTIN = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}
MODES = ("legacy", "nft")
TABLES = ("filter", "nat")
CHUNK_CHAINS = 256  # nft: applies touching more chains than this are chunked
CHUNK_LINES = 1000  # nft: lines per ``*table ... COMMIT`` block of a chunked apply (bench: 500-2000 alike)

_mode = "legacy"
_bins: dict[tuple[str, str], str] = {}


def set_mode(mode: str) -> None:
    """Choose the kernel backend for this process: ``legacy`` or ``nft``. Call it once, at
    start-up, before anything touches the tables."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"iptables backend must be one of {', '.join(MODES)}, not {mode!r}")
    _mode = mode


def mode() -> str:
    return _mode


def default_mode() -> str:
    """nft where iptables-nft is installed (one endpoint change is then a small kernel
    transaction, not a rewrite of the whole table), else legacy."""
    return "nft" if shutil.which("iptables-nft-restore") and shutil.which("iptables-nft-save") else "legacy"


set_mode(os.environ.get("NANOKUBE_IPTABLES") or default_mode())


def binary(name: str) -> str:
    """``iptables{name}`` of the chosen backend (``-save``, ``-restore`` or ``""``)."""
    key = (_mode, name)
    if key not in _bins:
        if _mode == "nft":
            _bins[key] = shutil.which(f"iptables-nft{name}") or f"iptables-nft{name}"
        else:
            _bins[key] = (shutil.which(f"iptables-legacy{name}") or shutil.which(f"iptables{name}")
                          or f"iptables{name}")
    return _bins[key]


def parse_save(text: str, table: str) -> Chains:
    """Parse ``iptables-save -t table`` output."""
    out: Chains = {}
    for line in text.splitlines():
        if line.startswith(":"):
            out.setdefault((table, line[1:].split()[0]), [])
        elif line.startswith("-A "):
            chain, _, rule = line[3:].partition(" ")
            out.setdefault((table, chain), []).append(rule)
    return out


_PROB = re.compile(r"--probability (\S+)")


def canonical(rule: str) -> str:
    """``rule`` as iptables-save prints it back: statistic keeps the probability as a 31-bit
    fraction and prints it with 11 decimals (libxt_statistic), so 0.3333333333 → 0.33333333349."""
    if "--probability" not in rule:
        return rule
    return _PROB.sub(lambda m: f"--probability {round(float(m.group(1)) * 0x80000000) / 0x80000000:.11f}", rule)


def canonical_chains(chains: Chains) -> Chains:
    return {k: [canonical(r) for r in v] for k, v in chains.items()}


def save(tables: tuple[str, ...] = TABLES) -> Chains:
    """Current chains and rules of ``tables``."""
    out: Chains = {}
    for table in tables:
        r = subprocess.run([binary("-save"), "-t", table], capture_output=True, text=True, check=True)
        out.update(parse_save(r.stdout, table))
    return out


def _jump_lines(jumps: Iterable[Jump], table: str) -> list[str]:
    # each at the top, in order: the result is what one ensure_jump after another leaves
    return [f"-I {chain} 1 {rule}" for t, chain, rule in jumps if t == table]


def render_restore(chains: Chains, *, changed: set[tuple[str, str]], delete: set[tuple[str, str]],
                   jumps: Iterable[Jump] = ()) -> str:
    """``iptables-restore --noflush`` input rewriting ``changed`` chains, deleting ``delete``
    and inserting ``jumps`` (at the top of their built-in chains), one transaction per table."""
    out = []
    jumps = list(jumps)
    for table in TABLES:
        # in descending name order: iptables-nft-restore files every chain name a transaction
        # mentions (and every jump target) into a list sorted ascending, walking it from the
        # head, so this way KUBE-SERVICES' rules do not walk past every KUBE-EXT-* name that
        # KUBE-NODEPORTS' rules put there (a service added or removed: 3x fewer strcmp)
        ch = sorted((c for t, c in changed if t == table), reverse=True)
        dl = sorted((c for t, c in delete if t == table), reverse=True)
        js = _jump_lines(jumps, table)
        if not ch and not dl and not js:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in ch + dl]
        for c in ch:
            out += [f"-A {c} {r}" for r in chains[(table, c)]]
        out += [f"-X {c}" for c in dl]
        out += js
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


_TARGET = re.compile(r"(?:^| )-[jg] (\S+)")


def fill_order(chains: Chains, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``keys`` so that every chain comes after the chains (among ``keys``) it jumps to: a
    depth-first post-order from the sorted keys, which also keeps each service's chains
    together (its endpoints, then its KUBE-SVC, then its KUBE-EXT). iptables refuses loops, so
    the order always exists."""
    keys = set(keys)
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []

    def targets(k: tuple[str, str]) -> Iterable[tuple[str, str]]:
        return [(k[0], t) for r in chains.get(k, ()) for t in _TARGET.findall(r)]

    for root in sorted(keys):
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(targets(root)))]
        while stack:
            k, it = stack[-1]
            for t in it:
                if t in keys and t not in seen:
                    seen.add(t)
                    stack.append((t, iter(targets(t))))
                    break
            else:
                stack.pop()
                out.append(k)
    return out


def chunks(keys: list[tuple[str, str]], cost: dict[tuple[str, str], int] | None = None, *,
           max_lines: int = CHUNK_LINES) -> list[list[tuple[str, str]]]:
    """``keys`` cut, in order, into runs of at most ``max_lines`` (a key's cost: ``cost[key]``,
    default 1; a key dearer than that gets a run of its own)."""
    out: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    n = 0
    for k in keys:
        c = cost[k] if cost else 1
        if cur and n + c > max_lines:
            out.append(cur)
            cur, n = [], 0
        cur.append(k)
        n += c
    if cur:
        out.append(cur)
    return out


def render_restore_chunked(chains: Chains, *, changed: set[tuple[str, str]], delete: set[tuple[str, str]],
                           jumps: Iterable[Jump] = (), max_lines: int = CHUNK_LINES) -> str:
    """The same change as ``render_restore``, as several transactions (``*table ... COMMIT``
    blocks of about ``max_lines`` lines) for one restore run: per table, first the changed
    chains in ``fill_order`` (each block declares — creates or flushes — and fills its own
    chains; what they jump to is complete in the same or an earlier block), then the chains to
    delete are flushed (nothing live refers to them any more) and then deleted, then the jumps.
    Atomic per block only — see the module docstring for when that is acceptable."""
    out: list[str] = []
    jumps = list(jumps)
    order = fill_order(chains, changed)
    for table in TABLES:
        ch = [k for k in order if k[0] == table]
        for run in chunks(ch, {k: 1 + len(chains[k]) for k in ch}, max_lines=max_lines):
            out.append(f"*{table}")
            out += [f":{c} - [0:0]" for _, c in run]
            for k in run:
                out += [f"-A {k[1]} {r}" for r in chains[k]]
            out.append("COMMIT")
        dl = sorted(k for k in delete if k[0] == table)
        for fmt in (":{} - [0:0]", "-X {}"):
            for run in chunks(dl, max_lines=max_lines):
                out += [f"*{table}", *(fmt.format(c) for _, c in run), "COMMIT"]
        js = _jump_lines(jumps, table)
        if js:
            out += [f"*{table}", *js, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def restore(text: str) -> None:
    if not text.strip():
        return
    r = subprocess.run([binary("-restore"), "--noflush", "-w"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iptables-restore failed: {r.stderr.strip()}\n--- input ---\n{text[:4000]}")


def ensure_jump(table: str, chain: str, rule: str) -> None:
    """Insert ``rule`` at the top of built-in ``chain`` unless it is already there."""
    args = shlex.split(rule)
    if subprocess.run([binary(""), "-w", "-t", table, "-C", chain, *args], capture_output=True).returncode != 0:
        subprocess.run([binary(""), "-w", "-t", table, "-I", chain, "1", *args], capture_output=True, text=True, check=True)


def delete_jump(table: str, chain: str, rule: str) -> None:
    """Remove every copy of ``rule`` from ``chain`` (no error if absent)."""
    args = shlex.split(rule)
    for _ in range(100):
        if subprocess.run([binary(""), "-w", "-t", table, "-D", chain, *args], capture_output=True).returncode != 0:
            return


NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP = 1, 2
NFT_MSG_NEWGEN = (10 << 8) | 15  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN
NFTA_GEN_PROC_PID = 2
SO_RCVBUFFORCE = 33


def newgen_pids(data: bytes) -> list[int]:
    """The committing process of every NFT_MSG_NEWGEN (one per committed nf_tables
    transaction) in a buffer of netlink messages from the nftables group."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == NFT_MSG_NEWGEN:
            a, end = off + 16 + 4, off + length  # after nlmsghdr and nfgenmsg
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == NFTA_GEN_PROC_PID and alen >= 8:
                    out.append(struct.unpack_from("!I", data, a + 4)[0])
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
    return out


class _CommitWatch:
    """A netlink socket on the nftables multicast group of this process's network namespace,
    joined only while waiting for a commit (with a listener, the kernel builds a
    notification for every rule of every transaction). Kept open: closing a netfilter netlink
    socket waits for the kernel's pending transaction clean-up."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setblocking(False)
        try:  # room for the notifications of a big transaction by someone else meanwhile
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except OSError:
            pass
        self.lost = 0

    def join(self, on: bool) -> None:
        self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP if on else NETLINK_DROP_MEMBERSHIP, NFNLGRP_NFTABLES)

    def read(self) -> list[int]:
        """NEWGEN pids of everything queued; ``lost`` counts queue overflows (ENOBUFS)."""
        out = []
        while True:
            try:
                out += newgen_pids(self.sock.recv(1 << 20))
            except BlockingIOError:
                return out
            except OSError:  # ENOBUFS: the queue overflowed; what is lost is lost
                self.lost += 1


class Restorer:
    """One long-lived ``iptables-nft-restore --noflush`` fed transaction after transaction
    through its stdin (it commits each block as it reads its COMMIT), and told apart from
    other writers by its pid in the kernel's commit notifications. Long-lived because a
    restore process's exit — the close of its netlink socket — waits for the kernel's
    clean-up of the transaction (an RCU grace period, ~10 ms), and the next commit in the
    namespace waits for that too. A failed line makes it print the error and exit: the
    failed block is not committed (each is one nf_tables transaction), the apply raises, and
    the next one starts a new process. If a notification may have been lost (the socket's
    queue overflowed) or none comes, stdin is closed and the exit status decides."""

    def __init__(self) -> None:
        self.watch: _CommitWatch | None = None
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self.proc = subprocess.Popen([binary("-restore"), "--noflush", "-w"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self.proc

    def apply(self, text: str, *, timeout: float = 60.0) -> None:
        need = sum(1 for line in text.splitlines() if line == "COMMIT")
        if not need:
            return
        if self.watch is None:
            self.watch = _CommitWatch()
        watch = self.watch
        watch.join(True)
        err = b""
        try:
            watch.read()  # whatever was queued before
            proc = self._start()
            assert proc.stdin is not None and proc.stderr is not None
            sent = True
            try:
                proc.stdin.write(text.encode())
                proc.stdin.flush()
            except BrokenPipeError:  # it has exited: its stderr may say why
                sent = False
            fd = proc.stderr.fileno()
            while need > 0:
                ready, _, _ = select.select([watch.sock, fd], [], [], timeout)
                if not ready:
                    break
                if watch.sock in ready:
                    before = watch.lost
                    need -= watch.read().count(proc.pid)
                    if watch.lost != before and need > 0:
                        break  # ours may be among the lost: let the exit status tell
                if fd in ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:  # it has exited
                        break
                    err += chunk  # an error (then it exits) or a warning
        finally:
            watch.join(False)
        if need <= 0:
            if err:
                log.warning("iptables-restore: %s", err.decode(errors="replace").strip())
            return
        # failed, or not known: end this process and ask its exit status
        self.proc = None
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err += proc.stderr.read()
        proc.stderr.close()
        if proc.returncode != 0 or not sent:
            raise RuntimeError(f"iptables-restore failed: {err.decode(errors='replace').strip()}\n--- input ---\n"
                               f"{text[:4000]}")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            assert proc.stdin is not None and proc.stderr is not None
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            proc.wait()
            proc.stderr.close()


class Backend(Protocol):
    def read(self) -> Chains: ...
    def apply(self, chains: Chains, *, changed: set[tuple[str, str]], delete: set[tuple[str, str]],
              jumps: Iterable[Jump] = ()) -> None: ...
    def ensure_jump(self, table: str, chain: str, rule: str) -> None: ...
    def delete_jump(self, table: str, chain: str, rule: str) -> None: ...


class _Base:
    def read(self) -> Chains:
        return save()

    def ensure_jump(self, table: str, chain: str, rule: str) -> None:
        ensure_jump(table, chain, rule)

    def delete_jump(self, table: str, chain: str, rule: str) -> None:
        delete_jump(table, chain, rule)


class RestoreBackend(_Base):
    """One ``iptables-restore --noflush`` per apply: one transaction per table, or, when it
    rewrites or deletes more than ``chunk_chains`` chains, chunked (``render_restore_chunked``,
    blocks of ``chunk_lines``). By default chunked only in nft mode (``CHUNK_CHAINS``,
    ``CHUNK_LINES``): with legacy every commit rewrites the whole table, so one is cheapest.
    Everyday changes — endpoints, a service added or removed — stay one transaction."""

    def __init__(self, *, chunk_chains: int | None = None, chunk_lines: int = CHUNK_LINES):
        self.chunk_chains, self.chunk_lines = chunk_chains, chunk_lines
        self._restorer = Restorer()  # nft, small changes
        self._lock = threading.Lock()

    def _limit(self) -> int | None:
        if self.chunk_chains is not None:
            return self.chunk_chains
        return CHUNK_CHAINS if _mode == "nft" else None

    def apply(self, chains: Chains, *, changed: set[tuple[str, str]], delete: set[tuple[str, str]],
              jumps: Iterable[Jump] = ()) -> None:
        limit = self._limit()
        with self._lock:
            if limit is not None and len(changed) + len(delete) > limit:
                restore(render_restore_chunked(chains, changed=changed, delete=delete, jumps=jumps,
                                               max_lines=self.chunk_lines))
                return
            text = render_restore(chains, changed=changed, delete=delete, jumps=jumps)
            if _mode == "nft":
                self._restorer.apply(text)
            else:
                restore(text)

    def close(self) -> None:
        """End the long-lived restore process (nft), if any."""
        with self._lock:
            self._restorer.close()


def iptc_rule(spec: str):
    """Build a python-iptables Rule from iptables-save rule text (the subset kube-proxy uses)."""
    import iptc
    rule, cur, neg = iptc.Rule(), None, False
    toks = shlex.split(spec)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "!":
            neg, i = True, i + 1
            continue
        val = toks[i + 1] if i + 1 < len(toks) else ""
        bang = "!" if neg else ""
        if t in ("-s", "-d", "-p", "-i", "-o"):
            setattr(rule, {"-s": "src", "-d": "dst", "-p": "protocol", "-i": "in_interface", "-o": "out_interface"}[t],
                    bang + val)
            i += 2
        elif t == "-m":
            cur = rule.create_match(val)
            i += 2
        elif t == "-j":
            cur = rule.create_target(val)
            i += 2
        elif t.startswith("--"):
            args = []
            i += 1
            while i < len(toks) and not toks[i].startswith("-") and toks[i] != "!":
                args.append(toks[i])
                i += 1
            cur.set_parameter(t[2:], bang + " ".join(args) if args else None)
        else:
            raise ValueError(f"cannot parse {t!r} in {spec!r}")
        neg = False
    return rule


class IptcBackend(_Base):
    """python-iptables (libiptc), chain by chain, one commit per table; then the jumps, one
    ``ensure_jump`` each. libiptc speaks only the legacy kernel API."""

    def __init__(self) -> None:
        if _mode != "legacy":
            raise RuntimeError("python-iptables (libiptc) drives only the legacy backend; this process uses "
                               f"{_mode!r}")

    def apply(self, chains: Chains, *, changed: set[tuple[str, str]], delete: set[tuple[str, str]],
              jumps: Iterable[Jump] = ()) -> None:
        import iptc
        for tname in TABLES:
            ch = sorted(c for t, c in changed if t == tname)
            dl = sorted(c for t, c in delete if t == tname)
            if not ch and not dl:
                continue
            table = iptc.Table(tname)  # a per-process singleton: re-read, others may have changed it
            table.autocommit = False
            table.refresh()
            for c in ch + dl:  # create/flush first so jumps between new chains resolve
                chain = iptc.Chain(table, c)
                if table.is_chain(c):
                    chain.flush()
                else:
                    table.create_chain(c)
            for c in ch:
                chain = iptc.Chain(table, c)
                for r in chains[(tname, c)]:
                    chain.append_rule(iptc_rule(r))
            for c in dl:
                table.delete_chain(c)
            table.commit()
            table.refresh()
            table.autocommit = True
        for table_name, chain_name, rule in jumps:
            self.ensure_jump(table_name, chain_name, rule)

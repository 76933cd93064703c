"""host/iptables.py's pure parts: backend choice, restore text (one transaction, chunked),
fill order, the commit-notification parser; and the proxier's incremental diff and jumps
against a recording backend. No kernel."""
import random
import struct

import pytest

from nanokube.host import iptables
from nanokube.proxy import rules
from nanokube.proxy.proxier import Proxier


def world(n: int, *, bump: int = -1, gone: int = -1, no_rv: int = -1, hostports: int = 0, empty: int = -1,
          flip: int = -1, udp: int = -1):
    """``n`` services; ``bump`` has an endpoint more, ``gone`` is missing, ``no_rv`` has no
    resourceVersions, ``empty`` no endpoints, ``flip`` the other type, ``udp`` a UDP port too;
    ``hostports`` pods with a hostPort each."""
    svcs, eps = [], []
    for i in range(n):
        if i == gone:
            continue
        md = {"namespace": "b", "name": f"s{i}"}
        if i != no_rv:
            md["resourceVersion"] = "2" if i in (flip, udp) else "1"
        ports = [{"name": "http", "port": 80, "nodePort": 30000 + i, "protocol": "TCP"}]
        if i == udp:
            ports.append({"name": "dns", "port": 53, "nodePort": 31000 + i, "protocol": "UDP"})
        svcs.append({"metadata": dict(md), "spec": {
            "type": "NodePort" if (i % 2) != (i == flip) else "ClusterIP", "clusterIP": f"10.96.0.{i + 1}",
            "ports": ports}})
        k = 0 if i == empty else 3 + (i == bump)
        emd = dict(md)
        if i != no_rv:
            emd["resourceVersion"] = str(k)
        eps.append({"metadata": emd, "subsets": [{"addresses": [{"ip": f"10.244.{j}.{i + 1}"} for j in range(k)],
                                                  "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                                            {"name": "dns", "port": 5353, "protocol": "UDP"}]}]})
    pods = [{"metadata": {"namespace": "b", "name": f"hp{j}"},
             "spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8000 + j}]}]},
             "status": {"podIP": f"10.244.9.{j + 1}", "phase": "Running"}} for j in range(hostports)]
    return svcs, eps, pods


# -- backend choice ---------------------------------------------------------------------------
def test_mode_is_chosen_once_and_checked(monkeypatch):
    monkeypatch.setattr(iptables, "_mode", "legacy")
    with pytest.raises(ValueError):
        iptables.set_mode("nftables")
    iptables.set_mode("nft")
    assert iptables.mode() == "nft"
    assert "iptables-nft-restore" in iptables.binary("-restore")
    with pytest.raises(RuntimeError):
        iptables.IptcBackend()  # libiptc is legacy only
    iptables.set_mode("legacy")
    assert "iptables-nft" not in iptables.binary("-restore")
    assert iptables.RestoreBackend()._limit() is None           # legacy: one transaction, always
    assert iptables.RestoreBackend(chunk_chains=10)._limit() == 10
    iptables.set_mode("nft")
    assert iptables.RestoreBackend()._limit() == iptables.CHUNK_CHAINS


def test_agent_flag_sets_the_backend(monkeypatch):
    from nanokube.cli.main import build_parser
    args = build_parser().parse_args(["agent", "--server", "https://x", "--token-file", "/t", "--ca-file", "/c",
                                      "--node-name", "n", "--node-ip", "1.2.3.4", "--iptables-backend", "nft"])
    assert args.iptables_backend == "nft"
    args = build_parser().parse_args(["up", "--iptables-backend", "nft"])
    from nanokube.cluster.local import _eviction_argv
    assert _eviction_argv(args)[-2:] == ["--iptables-backend", "nft"]
    assert "--iptables-backend" not in _eviction_argv(build_parser().parse_args(["up"]))


# -- restore text -----------------------------------------------------------------------------
def test_render_restore_puts_jumps_last_in_order():
    chains = {("nat", "KUBE-A"): ["-j KUBE-B"], ("nat", "KUBE-B"): ["-j RETURN"]}
    text = iptables.render_restore(chains, changed=set(chains), delete={("nat", "KUBE-OLD")},
                                   jumps=[("nat", "PREROUTING", "-j KUBE-A"), ("nat", "OUTPUT", "-j KUBE-A"),
                                          ("filter", "FORWARD", "-j KUBE-X")])
    assert text.splitlines() == [
        "*filter", "-I FORWARD 1 -j KUBE-X", "COMMIT",
        "*nat", ":KUBE-B - [0:0]", ":KUBE-A - [0:0]", ":KUBE-OLD - [0:0]", "-A KUBE-B -j RETURN",
        "-A KUBE-A -j KUBE-B", "-X KUBE-OLD", "-I PREROUTING 1 -j KUBE-A", "-I OUTPUT 1 -j KUBE-A", "COMMIT"]
    assert iptables.render_restore({}, changed=set(), delete=set()) == ""


def test_fill_order_puts_targets_first_and_keeps_services_together():
    svcs, eps, _ = world(30)
    rs = rules.render(svcs, eps)
    order = iptables.fill_order(rs.chains, set(rs.chains))
    assert sorted(order) == sorted(rs.chains)
    pos = {k: i for i, k in enumerate(order)}
    for k, rs_ in rs.chains.items():
        for r in rs_:
            for t in iptables._TARGET.findall(r):
                if (k[0], t) in pos:
                    assert pos[(k[0], t)] < pos[k], (k, t)
    # one service's KUBE-SEP chains sit right before its KUBE-SVC chain
    spn = "b/s7:http"
    svc = ("nat", rules.svc_chain(spn, "TCP"))
    seps = {("nat", rules.sep_chain(spn, "TCP", f"10.244.{j}.8:8080")) for j in range(3)}
    assert set(order[pos[svc] - 3:pos[svc]]) == seps
    # only the keys asked for, even when a chain jumps elsewhere
    assert iptables.fill_order(rs.chains, [svc]) == [svc]


def test_chunks_cut_in_order_within_the_budget():
    keys = [("nat", f"C{i}") for i in range(10)]
    cost = {k: c for k, c in zip(keys, [3, 3, 3, 12, 1, 1, 1, 1, 1, 1])}
    runs = iptables.chunks(keys, cost, max_lines=6)
    assert [k for run in runs for k in run] == keys
    assert [[k[1] for k in run] for run in runs] == [["C0", "C1"], ["C2"], ["C3"], ["C4", "C5", "C6", "C7", "C8", "C9"]]
    assert iptables.chunks([], max_lines=5) == []
    assert iptables.chunks(keys, max_lines=4) == [keys[0:4], keys[4:8], keys[8:10]]


def simulate(text: str, state: dict) -> list[int]:
    """Apply restore ``text`` to ``state`` ((table, chain) → rules) block by block, checking
    what the kernel checks at each COMMIT (jump targets exist, deleted chains are empty and
    unreferenced). Returns the size of each block."""
    sizes, table, block = [], None, []
    for line in text.splitlines():
        if line.startswith("*"):
            table, block = line[1:], []
        elif line == "COMMIT":
            new = {k: list(v) for k, v in state.items()}
            for b in block:
                if b.startswith(":"):
                    new[(table, b[1:].split()[0])] = []
                elif b.startswith("-A "):
                    chain, _, rule = b[3:].partition(" ")
                    new[(table, chain)].append(iptables.canonical(rule))  # as iptables-save prints it
                elif b.startswith("-X "):
                    key = (table, b[3:])
                    assert new[key] == [], f"{key} deleted while not empty"
                    del new[key]
                elif b.startswith("-I "):
                    chain, _, rest = b[3:].partition(" ")
                    new.setdefault((table, chain), []).insert(int(rest.split(" ", 1)[0]) - 1, rest.split(" ", 1)[1])
            for k, rs_ in new.items():
                for r in rs_:
                    for t in iptables._TARGET.findall(r):
                        if t.startswith(("KUBE-", "NANOKUBE-")):
                            assert (k[0], t) in new, f"{k} jumps to missing {t}"
            state.clear()
            state.update(new)
            sizes.append(len(block))
        else:
            block.append(line)
    return sizes


def test_chunked_restore_is_valid_after_every_block_and_ends_like_one_transaction():
    svcs, eps, pods = world(60, hostports=2)
    rs = rules.render(svcs, eps, pods=pods)
    jumps = [j for j in rules.JUMPS]
    # from empty
    one, chunked = {}, {}
    simulate(iptables.render_restore(rs.chains, changed=set(rs.chains), delete=set(), jumps=jumps), one)
    sizes = simulate(iptables.render_restore_chunked(rs.chains, changed=set(rs.chains), delete=set(), jumps=jumps,
                                                     max_lines=100), chunked)
    assert one == chunked == {**rs.canonical, **{(t, c): [r for t2, c2, r in reversed(jumps) if (t2, c2) == (t, c)]
                                              for t, c, _ in jumps}}
    assert len(sizes) > 5 and max(sizes) <= 100
    # then a big change: half the services gone, endpoints moved; the rest deleted
    svcs2, eps2, _ = world(30, bump=3)
    rs2 = rules.render(svcs2, eps2)
    changed = {k for k, v in rs2.canonical.items() if one.get(k) != v}
    stale = {k for k in rs.chains if k not in rs2.chains}
    simulate(iptables.render_restore(rs2.chains, changed=changed, delete=stale), one)
    simulate(iptables.render_restore_chunked(rs2.chains, changed=changed, delete=stale, max_lines=50), chunked)
    assert one == chunked
    assert {k: v for k, v in one.items() if k[1] not in iptables.BUILTIN} == rs2.canonical


class RecordingBackend:
    """What a RestoreBackend would send, applied to a dict; counts restores."""

    def __init__(self, **kw):
        self.state: dict = {}
        self.texts: list[str] = []
        self.kw = kw

    def read(self):
        return {k: list(v) for k, v in self.state.items()}

    def apply(self, chains, *, changed, delete, jumps=()):
        b = iptables.RestoreBackend(**self.kw)
        limit = b._limit()
        if limit is not None and len(changed) + len(delete) > limit:
            text = iptables.render_restore_chunked(chains, changed=changed, delete=delete, jumps=jumps,
                                                   max_lines=b.chunk_lines)
        else:
            text = iptables.render_restore(chains, changed=changed, delete=delete, jumps=jumps)
        self.texts.append(text)
        simulate(text, self.state)

    def ensure_jump(self, table, chain, rule):
        if rule not in self.state.get((table, chain), []):
            self.state.setdefault((table, chain), []).insert(0, rule)

    def delete_jump(self, table, chain, rule):
        self.state[(table, chain)] = [r for r in self.state.get((table, chain), []) if r != rule]


def random_world(rnd: random.Random):
    kw = rnd.choice([{}, {"bump": rnd.randrange(50)}, {"gone": rnd.randrange(50)}, {"no_rv": rnd.randrange(50)},
                     {"hostports": rnd.randrange(3)}, {"gone": rnd.randrange(50), "bump": rnd.randrange(50)},
                     {"empty": rnd.randrange(50)}, {"flip": rnd.randrange(50)}, {"udp": rnd.randrange(50)},
                     {"flip": rnd.randrange(50), "empty": rnd.randrange(50), "hostports": 1}])
    return world(rnd.choice([50, 50, 50, 45]), **kw)


def test_cached_render_equals_a_fresh_render():
    rnd = random.Random(3)
    cache = rules.RenderCache()
    for step in range(80):
        svcs, eps, pods = random_world(rnd)
        rnd.shuffle(svcs)  # informers list in any order
        got = rules.render(svcs, eps, node_name="n1", pods=pods, cache=cache)
        fresh = rules.render(svcs, eps, node_name="n1", pods=pods)
        assert got.chains == fresh.chains and got.canonical == fresh.canonical, step
        assert list(got.chains[("nat", "KUBE-SERVICES")]) == fresh.chains[("nat", "KUBE-SERVICES")]
        assert got.udp == fresh.udp and got.owners == fresh.owners and got.loose == fresh.loose, step
    # another cluster CIDR: every part and the egress rule follow
    svcs, eps, pods = world(10)
    rules.render(svcs, eps, cache=cache)
    assert rules.render(svcs, eps, cache=cache, cluster_cidr="10.42.0.0/16").chains == \
        rules.render(svcs, eps, cluster_cidr="10.42.0.0/16").chains
    # a UDP service going away takes its flows along
    for kw in ({"udp": 3}, {"udp": 3, "gone": 3}, {"udp": 3}, {"udp": 3, "gone": 5}):
        svcs, eps, pods = world(10, **kw)
        assert rules.render(svcs, eps, cache=cache).udp == rules.render(svcs, eps).udp, kw


def test_proxier_incremental_diff_matches_a_full_diff():
    """Random changes (endpoints, services coming and going, a service without
    resourceVersion, hostPorts): after every sync the tables hold exactly the render, and
    the proxier rewrote exactly the chains a full diff finds."""
    rnd = random.Random(7)
    be = RecordingBackend(chunk_chains=40, chunk_lines=200)
    p = Proxier(None, node_name="n1", node_ips=[], backend=be)
    prev = None
    for step in range(60):
        svcs, eps, pods = random_world(rnd)
        expect = rules.render(svcs, eps, node_name="n1", pods=pods)
        full = step % 13 == 0
        if prev is not None and not full:
            want_changed = {k for k, v in expect.canonical.items() if prev.get(k) != v}
            want_stale = {k for k in prev if k not in expect.chains}
        got = p.apply(svcs, eps, pods=pods, full=full)
        ours = {k: v for k, v in be.state.items() if k[1] not in iptables.BUILTIN}
        assert ours == expect.canonical, step
        if prev is not None and not full:
            assert got == len(want_changed) + len(want_stale), step
        prev = expect.canonical
    # a restarted proxier finds nothing to do and no jump missing
    q = Proxier(None, node_name="n1", node_ips=[], backend=be)
    before = len(be.texts)
    assert q.apply(svcs, eps, pods=pods) == 0
    assert len(be.texts) == before + 1 and be.texts[-1] == ""


def test_proxier_jumps_go_into_the_restore_once():
    be = RecordingBackend(chunk_chains=0)
    svcs, eps, _ = world(5)
    p = Proxier(None, node_name="n1", node_ips=[], backend=be)
    p.apply(svcs, eps)
    first = be.texts[-1]
    assert sum(line.startswith("-I ") for line in first.splitlines()) == len(rules.JUMPS)
    for table, chain, rule in rules.JUMPS:
        assert be.state[(table, chain)].count(rule) == 1
    # the same order one ensure_jump after another leaves
    assert be.state[("nat", "PREROUTING")] == [r for t, c, r in reversed(rules.JUMPS) if (t, c) == ("nat", "PREROUTING")]
    p.apply(svcs, eps, full=True)
    assert not any(line.startswith("-I ") for line in be.texts[-1].splitlines())
    # a jump printed differently (say, by another iptables version) is checked, not copied
    be.state[("nat", "OUTPUT")] = ['-m comment --comment "kubernetes  service portals" -j KUBE-SERVICES'
                                   if r.endswith("-j KUBE-SERVICES") else r for r in be.state[("nat", "OUTPUT")]]
    calls = []
    be.ensure_jump = lambda *a: calls.append(a)
    p.apply(svcs, eps, full=True)
    assert calls == [j for j in rules.JUMPS if j[:2] == ("nat", "OUTPUT") and j[2].endswith("-j KUBE-SERVICES")]
    assert not any(line.startswith("-I ") for line in be.texts[-1].splitlines())


def test_render_reports_touched_chains():
    cache = rules.RenderCache()
    svcs, eps, _ = world(10)
    first = rules.render(svcs, eps, cache=cache)
    assert first.touched == set(first.chains) - first.loose
    svcs2, eps2, _ = world(10, bump=4, gone=7)
    second = rules.render(svcs2, eps2, cache=cache)
    diff = {k for k in set(first.chains) | set(second.chains) if first.chains.get(k) != second.chains.get(k)}
    assert diff - second.loose <= second.touched
    assert second.touched == first.owners["b/s4"] | second.owners["b/s4"] | first.owners["b/s7"]
    assert rules.render(svcs2, eps2).touched is None


# -- the commit notification ------------------------------------------------------------------
def _nlmsg(kind: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = bytes([2, 0, 0, 0])  # nfgenmsg
    for t, v in attrs:
        a = struct.pack("=HH", 4 + len(v), t) + v
        body += a + b"\0" * (-len(a) % 4)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_newgen_pids_parses_commit_notifications():
    gen = _nlmsg(iptables.NFT_MSG_NEWGEN, [(1, struct.pack("!I", 99)), (2, struct.pack("!I", 4242)),
                                           (3, b"iptables-nft-re\0")])
    rule = _nlmsg((10 << 8) | 6, [(2, struct.pack("!I", 1))])  # a NEWRULE: not a commit
    other = _nlmsg(iptables.NFT_MSG_NEWGEN, [(2 | 0x4000, struct.pack("!I", 7))])
    assert iptables.newgen_pids(rule + gen + other) == [4242, 7]
    assert iptables.newgen_pids(b"") == [] and iptables.newgen_pids(gen[:10]) == []

"""render(): upstream chain names, balancing, endpoint selection, REJECT, restore text."""
from nanokube.host.iptables import parse_save, render_restore
from nanokube.proxy import rules


def svc(name, ip="10.96.0.5", *, ns="ns1", ports=None, type_="ClusterIP"):
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "type": type_,
                     "ports": ports or [{"name": "p80", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def eps(name, ready, *, ns="ns1", not_ready=(), port=8080, pname="p80"):
    return {"metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": [{"ip": i} for i in ready], "notReadyAddresses": [{"ip": i} for i in not_ready],
                         "ports": [{"name": pname, "port": port, "protocol": "TCP"}]}]}


def test_chain_names_match_upstream():
    # values from upstream pkg/proxy/iptables/proxier_test.go
    assert rules.svc_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert rules.sep_chain("ns1/svc1:p80", "TCP", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert rules.port_name("ns", "s", "") == "ns/s"


def test_balancing_probabilities_and_ready_only():
    rs = rules.render([svc("svc1")], [eps("svc1", ["10.244.1.2", "10.244.1.3", "10.244.2.4"],
                                          not_ready=["10.244.9.9"])])
    c = rules.svc_chain("ns1/svc1:p80", "TCP")
    r = rs.chains[("nat", c)]
    assert r[0].startswith("! -s 10.244.0.0/16 -d 10.96.0.5/32 -p tcp") and r[0].endswith("-j KUBE-MARK-MASQ")
    assert "--probability 0.3333333333 -j" in r[1] and "--probability 0.5000000000 -j" in r[2]
    assert "statistic" not in r[3] and len(r) == 4
    seps = [x.rsplit("-j ", 1)[1] for x in r[1:]]
    assert seps[0] == rules.sep_chain("ns1/svc1:p80", "TCP", "10.244.1.2:8080")
    assert rs.chains[("nat", seps[0])] == [
        '-s 10.244.1.2/32 -m comment --comment "ns1/svc1:p80" -j KUBE-MARK-MASQ',
        '-p tcp -m comment --comment "ns1/svc1:p80" -m tcp -j DNAT --to-destination 10.244.1.2:8080']
    assert not any("10.244.9.9" in x for rules_ in rs.chains.values() for x in rules_)
    assert f'-d 10.96.0.5/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j {c}' \
        in rs.chains[("nat", "KUBE-SERVICES")]
    assert rs.chains[("nat", "KUBE-SERVICES")][-1].endswith("--dst-type LOCAL -j KUBE-NODEPORTS")
    assert rs.owners["ns1/svc1"] == {("nat", c), *(("nat", s) for s in seps)}


def test_headless_and_no_endpoints():
    rs = rules.render([svc("h", ip="None"), svc("empty", ip="10.96.0.7", type_="NodePort",
                                               ports=[{"name": "p80", "port": 80, "nodePort": 30080}])],
                      [eps("h", ["10.244.1.2"]), eps("empty", [], not_ready=["10.244.1.5"])])
    assert not [k for k in rs.chains if k[1].startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-"))]
    assert rs.chains[("filter", "KUBE-SERVICES")] == [
        '-d 10.96.0.7/32 -p tcp -m comment --comment "ns1/empty:p80 has no endpoints" -m tcp --dport 80 '
        '-j REJECT --reject-with icmp-port-unreachable']
    assert "--dport 30080 -j REJECT" in rs.chains[("filter", "KUBE-EXTERNAL-SERVICES")][0]


def test_nodeport_and_named_ports():
    s = svc("web", type_="NodePort", ports=[{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080},
                                            {"name": "dns", "port": 53, "protocol": "UDP"}])
    e = {"metadata": {"namespace": "ns1", "name": "web"},
         "subsets": [{"addresses": [{"ip": "10.244.1.2"}],
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                {"name": "dns", "port": 5353, "protocol": "UDP"}]}]}
    rs = rules.render([s], [e])
    ext = rules.ext_chain("ns1/web:http", "TCP")
    assert rs.chains[("nat", "KUBE-NODEPORTS")] == [
        f'-p tcp -m comment --comment "ns1/web:http" -m tcp --dport 30080 -j {ext}']
    assert rs.chains[("nat", ext)][-1] == f"-j {rules.svc_chain('ns1/web:http', 'TCP')}"
    assert "KUBE-MARK-MASQ" in rs.chains[("nat", ext)][0]
    udp_sep = rules.sep_chain("ns1/web:dns", "UDP", "10.244.1.2:5353")
    assert rs.chains[("nat", udp_sep)][1].endswith("-m udp -j DNAT --to-destination 10.244.1.2:5353")
    assert not any("30080" in r and "udp" in r for r in rs.chains[("nat", "KUBE-NODEPORTS")])


def test_base_chains_and_masquerade():
    rs = rules.render([], [])
    assert rs.chains[("nat", "KUBE-MARK-MASQ")] == ["-j MARK --set-xmark 0x4000/0x4000"]
    post = rs.chains[("nat", "KUBE-POSTROUTING")]
    assert post[0] == "-m mark ! --mark 0x4000/0x4000 -j RETURN" and post[1] == "-j MARK --set-xmark 0x4000/0x0"
    assert "MASQUERADE" in post[2]
    assert any("RELATED,ESTABLISHED -j ACCEPT" in r for r in rs.chains[("filter", "KUBE-FORWARD")])


def test_restore_text_roundtrip_and_partial():
    rs = rules.render([svc("svc1")], [eps("svc1", ["10.244.1.2"])])
    text = rules.restore_input(rs)
    assert text.startswith("*filter\n") and text.count("COMMIT") == 2
    nat = text[text.index("*nat"):]
    assert parse_save(nat, "nat") == {k: v for k, v in rs.chains.items() if k[0] == "nat"}
    part = render_restore(rs.chains, changed={("nat", "KUBE-SERVICES")}, delete={("nat", "KUBE-SVC-OLD")})
    assert part.splitlines()[0] == "*nat" and ":KUBE-SVC-OLD - [0:0]" in part and "-X KUBE-SVC-OLD" in part
    assert "*filter" not in part
    assert render_restore(rs.chains, changed=set(), delete=set()) == ""


def test_canonical_probability_matches_iptables_save():
    from nanokube.host.iptables import canonical
    assert canonical("-m statistic --mode random --probability 0.3333333333 -j X") == \
        "-m statistic --mode random --probability 0.33333333349 -j X"
    assert canonical("--probability 0.5000000000 -j X") == "--probability 0.50000000000 -j X"


class MemBackend:
    """Records what the proxier applies; no kernel."""

    def __init__(self):
        self.chains, self.jumps, self.applies = {}, set(), []

    def read(self):
        out = {k: list(v) for k, v in self.chains.items()}
        for table, chain, rule in sorted(self.jumps):  # the built-in chains, as iptables-save shows them
            out.setdefault((table, chain), []).append(rule)
        return out

    def apply(self, chains, *, changed, delete, jumps=()):
        self.applies.append((set(changed), set(delete)))
        for k in delete:
            self.chains.pop(k, None)
        for k in changed:
            self.chains[k] = list(chains[k])
        self.jumps |= set(jumps)

    def ensure_jump(self, table, chain, rule):
        self.jumps.add((table, chain, rule))

    def delete_jump(self, table, chain, rule):
        self.jumps.discard((table, chain, rule))


async def test_proxier_run_watches_and_applies_only_changes(tmp_path):
    import asyncio
    from nanokube.api.schema import load_schemas
    from nanokube.apiserver.registry import Registry
    from nanokube.client.local import LocalClient
    from nanokube.proxy.proxier import Proxier
    from nanokube.store import MemoryStore

    c = LocalClient(Registry(MemoryStore(), schemas=load_schemas(tmp_path)))
    be = MemBackend()
    lb_calls = []
    p = Proxier(c, node_name="n1", node_ips=["172.30.0.11"], min_sync_period=0.01, backend=be,
                conntrack_delete=lambda a: 0, set_lb_addresses=lambda w: lb_calls.append(w) or w)
    task = asyncio.create_task(p.run())

    async def until(fn, timeout=5.0):
        for _ in range(int(timeout / 0.02)):
            if fn():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("timed out")

    try:
        await until(lambda: p.syncs >= 1)
        assert len(be.jumps) == len(rules.JUMPS)
        await c.create("namespaces", {"metadata": {"name": "default"}})
        s = svc("web", ip="10.96.0.9")
        s["metadata"]["namespace"] = "default"
        await c.create("services", {**s, "spec": {**s["spec"], "clusterIP": "10.96.0.9"}}, namespace="default")
        e = eps("web", ["10.244.1.2"], ns="default")
        await c.create("endpoints", e, namespace="default")
        svc_c = rules.svc_chain("default/web:p80", "TCP")
        await until(lambda: ("nat", svc_c) in be.chains)
        n = len(be.applies)
        e2 = await c.get("endpoints", "web", namespace="default")
        e2["subsets"][0]["addresses"].append({"ip": "10.244.1.3"})
        await c.update("endpoints", e2, namespace="default")
        await until(lambda: len(be.chains[("nat", svc_c)]) == 3)
        changed, deleted = be.applies[-1]
        assert changed == {("nat", svc_c), ("nat", rules.sep_chain("default/web:p80", "TCP", "10.244.1.3:8080"))}
        assert len(be.applies) > n and not deleted
        await c.delete("services", "web", namespace="default")
        await until(lambda: not any(k[1].startswith("KUBE-S") and k[1] != "KUBE-SERVICES" for k in be.chains))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    p.cleanup()
    assert not be.jumps and not be.chains


def _ep_nodes(name, pairs, *, ns="ns1", port=8080, pname="p80", proto="TCP"):
    return {"metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": [{"ip": i, "nodeName": n} for i, n in pairs],
                         "ports": [{"name": pname, "port": port, "protocol": proto}]}]}


def test_external_traffic_policy_local():
    s = svc("web", type_="NodePort", ports=[{"name": "p80", "port": 80, "nodePort": 30080, "protocol": "TCP"}])
    s["spec"]["externalTrafficPolicy"] = "Local"
    e = _ep_nodes("web", [("10.244.1.2", "n1"), ("10.244.2.2", "n2"), ("10.244.2.3", "n2")])
    spn = "ns1/web:p80"
    ext, svc_c, svl = rules.ext_chain(spn, "TCP"), rules.svc_chain(spn, "TCP"), rules.svl_chain(spn, "TCP")
    rs = rules.render([s], [e], node_name="n2")
    r = rs.chains[("nat", ext)]
    assert r[0] == f'-s 10.244.0.0/16 -m comment --comment "pod traffic for {spn} external destinations" -j {svc_c}'
    assert "--src-type LOCAL -j KUBE-MARK-MASQ" in r[1] and f"--src-type LOCAL -j {svc_c}" in r[2]
    assert r[3] == f"-j {svl}" and len(r) == 4
    assert not any("KUBE-MARK-MASQ" in x for x in rs.chains[("nat", svl)])  # source IP kept
    assert [x.rsplit("-> ", 1)[1].split('"')[0] for x in rs.chains[("nat", svl)]] == ["10.244.2.2:8080", "10.244.2.3:8080"]
    assert len(rs.chains[("nat", svc_c)]) == 4  # the cluster chain still has all three (+ masq rule)
    # a node without a local endpoint: no KUBE-SVL, outside traffic dropped in the filter table
    rs3 = rules.render([s], [e], node_name="n3")
    assert ("nat", svl) not in rs3.chains and rs3.chains[("nat", ext)][-1].endswith(f"-j {svc_c}")
    assert rs3.chains[("filter", "KUBE-EXTERNAL-SERVICES")] == [
        f'-p tcp -m comment --comment "{spn} has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DROP']


def test_session_affinity_recent():
    s = svc("web")
    s["spec"].update(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rs = rules.render([s], [eps("web", ["10.244.1.2", "10.244.1.3"])])
    spn = "ns1/web:p80"
    r = rs.chains[("nat", rules.svc_chain(spn, "TCP"))]
    sep = rules.sep_chain(spn, "TCP", "10.244.1.2:8080")
    assert r[1] == (f'-m comment --comment "{spn} -> 10.244.1.2:8080" -m recent --rcheck --seconds 60 --reap '
                    f'--name {sep} --mask 255.255.255.255 --rsource -j {sep}')
    assert "statistic" in r[3] and len(r) == 5
    assert f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource -m tcp -j DNAT" in rs.chains[("nat", sep)][1]


def test_external_ips_load_balancer_and_no_endpoints():
    s = svc("lb", type_="LoadBalancer", ports=[{"name": "p80", "port": 80, "nodePort": 30081, "protocol": "TCP"}])
    s["spec"]["externalIPs"] = ["192.0.2.9"]
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}}
    spn = "ns1/lb:p80"
    ext = rules.ext_chain(spn, "TCP")
    rs = rules.render([s], [eps("lb", ["10.244.1.2"])])
    nat = rs.chains[("nat", "KUBE-SERVICES")]
    assert f'-d 192.0.2.9/32 -p tcp -m comment --comment "{spn} external IP" -m tcp --dport 80 -j {ext}' in nat
    assert f'-d 172.30.0.200/32 -p tcp -m comment --comment "{spn} loadbalancer IP" -m tcp --dport 80 -j {ext}' in nat
    assert nat[-1].endswith("-j KUBE-NODEPORTS")
    rs0 = rules.render([s], [eps("lb", [])])
    fe = rs0.chains[("filter", "KUBE-EXTERNAL-SERVICES")]
    assert [x.split("-p")[0] for x in fe] == ["-d 192.0.2.9/32 ", "-d 172.30.0.200/32 ", ""]
    assert all(x.endswith("-j REJECT --reject-with icmp-port-unreachable") for x in fe)


def test_multiport_named_targets_and_manual_endpoints():
    # no selector: the user's own Endpoints object, with two named ports
    s = svc("ext", ports=[{"name": "a", "port": 80, "targetPort": "web"}, {"name": "b", "port": 81, "targetPort": "alt"}])
    e = {"metadata": {"namespace": "ns1", "name": "ext"},
         "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 9090}]}]}
    rs = rules.render([s], [e])
    dn = [r for k, v in rs.chains.items() if k[1].startswith("KUBE-SEP-") for r in v if "DNAT" in r]
    assert sorted(x.rsplit(" ", 1)[1] for x in dn) == ["192.0.2.1:8080", "192.0.2.1:9090"]


def test_stale_udp_conntrack():
    s = svc("dns", ports=[{"name": "p53", "port": 53, "protocol": "UDP"}])
    s["spec"]["type"] = "NodePort"
    s["spec"]["ports"][0]["nodePort"] = 30053
    e = eps("dns", ["10.244.1.2", "10.244.1.3"], port=5353, pname="p53")
    e["subsets"][0]["ports"][0]["protocol"] = "UDP"
    two = rules.render([s], [e]).udp
    e["subsets"][0]["addresses"].pop()
    one = rules.render([s], [e]).udp
    assert rules.stale_udp(two, one) == [
        ["-D", "-p", "udp", "--orig-port-dst", "30053", "--dst-nat", "10.244.1.3"],
        ["-D", "-p", "udp", "--orig-dst", "10.96.0.5", "--orig-port-dst", "53", "--dst-nat", "10.244.1.3"]]
    none = rules.render([s], []).udp
    assert rules.stale_udp(none, one) == [["-D", "-p", "udp", "--orig-dst", "10.96.0.5", "--orig-port-dst", "53"]]
    assert rules.stale_udp(one, one) == []


def test_lb_owner_is_first_ready_node():
    def node(name, ready=True):
        return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}
    s = svc("lb", type_="LoadBalancer")
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "172.30.0.200"}]}}
    nodes = [node("node2"), node("node1", ready=False), node("node3")]
    assert rules.lb_addresses([s], [], nodes, node_name="node2") == {"172.30.0.200"}
    assert rules.lb_addresses([s], [], nodes, node_name="node3") == set()
    s["spec"]["externalTrafficPolicy"] = "Local"
    e = _ep_nodes("lb", [("10.244.3.2", "node3")])
    assert rules.lb_addresses([s], [e], nodes, node_name="node3") == {"172.30.0.200"}
    assert rules.lb_addresses([s], [e], nodes, node_name="node2") == set()


def test_per_service_cache_renders_only_what_changed(monkeypatch):
    def world(bump: int):
        ss, es = [], []
        for i in range(20):
            s = svc(f"s{i}", ip=f"10.96.1.{i + 1}", type_="NodePort")
            s["spec"]["ports"][0]["nodePort"] = 30100 + i
            s["metadata"]["resourceVersion"] = "1"
            e = eps(f"s{i}", [f"10.244.1.{j + 2}" for j in range(3 + (i == bump))])
            e["metadata"]["resourceVersion"] = "3" if i == bump else "2"
            ss.append(s)
            es.append(e)
        return ss, es
    cache = rules.RenderCache()
    ss, es = world(-1)
    first = rules.render(ss, es, cache=cache)
    assert first.chains == rules.render(ss, es).chains        # the cache changes nothing
    calls = []
    real = rules.render_service
    monkeypatch.setattr(rules, "render_service", lambda *a, **k: calls.append(a[0]["metadata"]["name"]) or real(*a, **k))
    ss, es = world(7)
    second = rules.render(ss, es, cache=cache)
    assert calls == ["s7"]
    assert second.chains == rules.render(ss, es).chains and second.canonical == rules.render(ss, es).canonical
    assert {k for k in second.chains if second.chains[k] != first.chains.get(k)} == {
        ("nat", rules.svc_chain("ns1/s7:p80", "TCP")), ("nat", rules.sep_chain("ns1/s7:p80", "TCP", "10.244.1.5:8080"))}
    rules.render(ss[:5], es[:5], cache=cache)                  # deleted services leave the cache
    assert set(cache.parts) == {("ns1", f"s{i}") for i in range(5)}


def test_host_ports_dnat_to_the_pod():
    def pod(name, ip, ports, **extra):
        return {"metadata": {"namespace": "ns1", "name": name},
                "spec": {"containers": [{"name": "c", "ports": ports}], **extra},
                "status": {"podIP": ip, "phase": "Running"}}
    pods = [pod("web", "10.244.1.5", [{"containerPort": 8080, "hostPort": 18080},
                                      {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "172.30.0.11"},
                                      {"containerPort": 9090}]),
            pod("hostnet", "172.30.0.11", [{"containerPort": 9100, "hostPort": 9100}], hostNetwork=True),
            pod("pending", None, [{"containerPort": 80, "hostPort": 8081}])]
    rs = rules.render([], [], pods=pods)
    tcp, udp = rules.hostport_chain("ns1_web", "tcp", 18080), rules.hostport_chain("ns1_web", "udp", 5353)
    assert rs.chains[("nat", "KUBE-HOSTPORTS")] == [
        f'-p tcp -m comment --comment "ns1_web hostport 18080" -m tcp --dport 18080 -j {tcp}',
        f'-d 172.30.0.11/32 -p udp -m comment --comment "ns1_web hostport 5353" -m udp --dport 5353 -j {udp}']
    assert rs.chains[("nat", tcp)] == [
        '-s 10.244.1.5/32 -m comment --comment "ns1_web hostport 18080" -j KUBE-MARK-MASQ',
        '-p tcp -m comment --comment "ns1_web hostport 18080" -m tcp -j DNAT --to-destination 10.244.1.5:8080']
    assert ("nat", "PREROUTING", '-m comment --comment "kube hostport portals" -m addrtype --dst-type LOCAL '
                                 '-j KUBE-HOSTPORTS') in rules.JUMPS
    assert rules.render([], []).chains[("nat", "KUBE-HOSTPORTS")] == []

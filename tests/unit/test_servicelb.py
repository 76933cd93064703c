"""servicelb: pool parsing and the pure allocation plan."""
import pytest

from nanokube.controllers.servicelb import parse_pool, plan_allocation


def svc(name, *, type_="LoadBalancer", ip=None, asked=None, created="2026-01-01T00:00:00Z"):
    s = {"metadata": {"namespace": "d", "name": name, "creationTimestamp": created}, "spec": {"type": type_}}
    if asked:
        s["spec"]["loadBalancerIP"] = asked
    s["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]} if ip else {}}
    return s


def test_parse_pool():
    assert parse_pool("172.30.0.200-172.30.0.202") == ["172.30.0.200", "172.30.0.201", "172.30.0.202"]
    assert parse_pool("10.0.0.0/30") == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(ValueError):
        parse_pool("10.0.0.5-10.0.0.1")


def test_allocation_keeps_fills_releases_and_honours_requests():
    pool = parse_pool("172.30.0.200-172.30.0.202")
    have = [svc("a", ip="172.30.0.201"), svc("b", created="2026-01-02T00:00:00Z"),
            svc("c", asked="172.30.0.202"), svc("gone", type_="ClusterIP", ip="172.30.0.200")]
    assert plan_allocation(have, pool) == {"d/b": "172.30.0.200", "d/c": "172.30.0.202", "d/gone": None}
    # idempotent: once written, nothing to do
    done = [svc("a", ip="172.30.0.201"), svc("b", ip="172.30.0.200"), svc("c", ip="172.30.0.202")]
    assert plan_allocation(done, pool) == {}
    # pool exhausted: the newcomer waits (no entry), nobody loses an address
    assert plan_allocation(done + [svc("z", created="2026-02-01T00:00:00Z")], pool) == {}
    # a request for a taken or outside address is not granted
    assert plan_allocation([svc("a", ip="172.30.0.201"), svc("x", asked="172.30.0.201")], pool) == {}
    assert plan_allocation([svc("x", asked="192.0.2.1")], pool) == {}

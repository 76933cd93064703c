"""The kubelet's eviction manager, pure: thresholds, allocatable, ranking, messages, pressure."""
import pytest

from nanokube.kubelet import eviction

Mi = 1024 * 1024


def pod(name, *, req=None, prio=0, phase="Running"):
    res = {"requests": {"memory": req}} if req else {}
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": prio, "containers": [{"name": "c", "resources": res}]}, "status": {"phase": phase}}


@pytest.mark.parametrize("spec, capacity, want", [
    ("memory.available<100Mi", 4096 * Mi, [100 * Mi]),
    ("memory.available<10%", 4000 * Mi, [400 * Mi]),
    ("memory.available<1Gi,memory.available<5%", 1000 * Mi, [1024 * Mi, 50 * Mi]),
    ("", 1, []),
])
def test_thresholds(spec, capacity, want):
    assert [t.value(capacity) for t in eviction.parse_thresholds(spec)] == want


@pytest.mark.parametrize("bad", ["memory.available>1Gi", "nodefs.available<1Gi", "memory.available<", "memory.available<120%",
                                 "memory.available<lots"])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError):
        eviction.parse_thresholds(bad)


def test_allocatable_subtracts_reservations_and_the_hard_threshold():
    cap = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "10Gi"}
    got = eviction.allocatable(cap, reserved=[eviction.parse_reserved("cpu=500m,memory=1Gi"),
                                              eviction.parse_reserved("cpu=100m,memory=512Mi")],
                               thresholds=eviction.parse_thresholds("memory.available<100Mi"))
    assert got == {"cpu": "3400m", "memory": f"{(8192 - 1024 - 512 - 100) * 1024}Ki", "pods": "110",
                   "ephemeral-storage": "10Gi"}
    assert eviction.allocatable({"cpu": "1", "memory": "1Gi"}, reserved=[{"cpu": "2", "memory": "2Gi"}]) == \
        {"cpu": "0m", "memory": "0Ki"}
    with pytest.raises(ValueError):
        eviction.parse_reserved("gpu=1")
    with pytest.raises(ValueError):
        eviction.parse_reserved("memory=much")


def test_rank_as_upstream():
    best_effort_small = (pod("be-small"), 10 * Mi)
    best_effort_big = (pod("be-big"), 50 * Mi)
    burstable_over = (pod("burst-over", req="20Mi"), 60 * Mi)        # 40Mi above its request
    burstable_under = (pod("burst-under", req="200Mi"), 100 * Mi)    # within its request
    important_over = (pod("vip-over", req="1Mi", prio=1000), 500 * Mi)
    order = [p["metadata"]["name"] for p, _ in eviction.rank(
        [burstable_under, best_effort_small, important_over, burstable_over, best_effort_big])]
    assert order == ["be-big", "burst-over", "be-small", "vip-over", "burst-under"]


def test_message_names_the_consumers():
    t = eviction.parse_thresholds("memory.available<500Mi")[0]
    msg = eviction.message(t, 400 * Mi, pod("hog"), {"c": 300 * Mi})
    assert msg == ("The node was low on resource: memory. Threshold quantity: 500Mi, available: 409600Ki. "
                   "Container c was using 307200Ki, request is 0, has larger consumption of memory. ")


def test_pressure_holds_for_the_transition_period_and_one_pod_per_pass():
    now = [0.0]
    m = eviction.EvictionManager(eviction.parse_thresholds("memory.available<100Mi"), 1024 * Mi,
                                 transition_period=30, clock=lambda: now[0])
    assert m.observe(500 * Mi) is None and not m.memory_pressure
    assert m.observe(950 * Mi).text == "100Mi" and m.memory_pressure and m.available == 74 * Mi
    now[0] = 20
    assert m.observe(100 * Mi) is None and m.memory_pressure   # recovered, but not for long enough
    now[0] = 51
    assert not m.memory_pressure
    done = pod("done", phase="Succeeded")
    going = pod("going")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert m.pick([(done, 900 * Mi), (going, 900 * Mi), (pod("a", req="1Gi"), 5 * Mi), (pod("b"), 1 * Mi)]) \
        ["metadata"]["name"] == "b"
    assert m.pick([(done, 1)]) is None


def test_pressure_conditions_become_no_schedule_taints_and_go_away():
    from nanokube.controllers.nodelifecycle import wanted_taints

    def node(memory_pressure, taints=()):
        return {"metadata": {"name": "n"}, "spec": {"taints": list(taints)},
                "status": {"conditions": [{"type": "Ready", "status": "True"},
                                          {"type": "MemoryPressure", "status": memory_pressure}]}}
    mine = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    tainted = wanted_taints(node("True", [mine]), now="t")
    assert tainted == [mine, {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]
    assert wanted_taints(node("True", tainted), now="t") == tainted          # stable
    assert wanted_taints(node("False", tainted), now="t") == [mine]          # relieved

"""PriorityClass validation and Priority admission: the pure rules with upstream's messages,
and the registry using them over a memory store (create, update, the one-default rule)."""
import pytest

from nanokube.api import defaults, validation
from nanokube.api.errors import ApiError
from nanokube.api.table import to_table
from nanokube.apiserver import admission
from nanokube.apiserver.registry import Registry
from nanokube.store import MemoryStore


def pc(name, value=0, **kw):
    o = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, **kw}
    defaults.apply_defaults("priorityclasses", o)
    return o


def pod(name="p", **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def messages(causes):
    return [f"{c['field']}: {c['message']}" for c in causes]


# -- validation -----------------------------------------------------------------------------------
def test_defaults_fill_value_and_policy():
    o = {"metadata": {"name": "x"}}
    defaults.apply_defaults("priorityclasses", o)
    assert o["value"] == 0 and o["preemptionPolicy"] == "PreemptLowerPriority"
    o = pc("y", 5, preemptionPolicy="Never")
    assert o["preemptionPolicy"] == "Never"


def test_user_value_limit_and_reserved_names():
    assert validation.validate("priorityclasses", pc("ok", 1_000_000_000)) == []
    assert messages(validation.validate("priorityclasses", pc("big", 1_000_000_001))) == [
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    assert messages(validation.validate("priorityclasses", pc("system-mine", 5))) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
        "error: system-mine is not a known system priority class"]
    assert messages(validation.validate("priorityclasses", pc("system-node-critical", 7))) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
        "error: value of system-node-critical PriorityClass must be 2000001000"]
    assert messages(validation.validate("priorityclasses", pc("system-cluster-critical", 2_000_000_000,
                                                                  globalDefault=True))) == [
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. "
        "error: globalDefault of system-cluster-critical PriorityClass must be false"]
    for name, (value, _) in validation.SYSTEM_PRIORITY_CLASSES.items():
        assert validation.validate("priorityclasses", pc(name, value)) == []


def test_preemption_policy_and_value_type():
    assert messages(validation.validate("priorityclasses", pc("x", 1, preemptionPolicy="Sometimes"))) == [
        'preemptionPolicy: Unsupported value: "Sometimes": supported values: "PreemptLowerPriority", "Never"']
    assert [c["field"] for c in validation.validate("priorityclasses", pc("x", "high"))] == ["value"]
    assert [c["field"] for c in validation.validate("priorityclasses", pc("x", 2**31))] == ["value"]


def test_value_and_policy_are_immutable():
    old = pc("x", 10)
    assert validation.priorityclass_update(old, pc("x", 10, description="new")) == []
    assert messages(validation.priorityclass_update(old, pc("x", 11, preemptionPolicy="Never"))) == [
        "value: Forbidden: may not be changed in an update.",
        'preemptionPolicy: Invalid value: "Never": field is immutable']


def test_table_columns_as_upstream():
    t = to_table("priorityclasses", [pc("high", 1000, globalDefault=True)])
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    cells = t["rows"][0]["cells"]
    assert cells[:3] == ["high", 1000, True] and cells[4] == "PreemptLowerPriority"


# -- admission (pure) -----------------------------------------------------------------------------
def test_pod_gets_value_and_policy_of_its_class():
    p = pod(priorityClassName="high")
    admission.admit_priority(p, [pc("low", 1), pc("high", 1000, preemptionPolicy="Never")])
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (1000, "Never")


def test_pod_without_class_gets_global_default_or_zero():
    p = pod()
    admission.admit_priority(p, [pc("low", 1)])
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert "priorityClassName" not in p["spec"]
    p = pod()
    # Two defaults (a race upstream also tolerates): the lowest value wins.
    admission.admit_priority(p, [pc("d2", 20, globalDefault=True), pc("d1", 10, globalDefault=True)])
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"]) == ("d1", 10)


def test_missing_class_and_conflicting_priority_are_forbidden():
    with pytest.raises(ApiError) as e:
        admission.admit_priority(pod("x", priorityClassName="foo"), [pc("high", 1000)])
    assert (e.value.code, e.value.reason) == (403, "Forbidden")
    assert e.value.message == 'pods "x" is forbidden: no PriorityClass with name foo was found'
    with pytest.raises(ApiError) as e:
        admission.admit_priority(pod("x", priorityClassName="high", priority=5), [pc("high", 1000)])
    assert e.value.message == ('pods "x" is forbidden: the integer value of priority (5) must not be provided in pod '
                               'spec; priority admission controller computed 1000 from the given PriorityClass name')
    with pytest.raises(ApiError) as e:
        admission.admit_priority(pod("x", preemptionPolicy="Never"), [])
    assert e.value.message == ('pods "x" is forbidden: the string value of PreemptionPolicy (Never) must not be '
                               'provided in pod spec; priority admission controller computed PreemptLowerPriority '
                               'from the given PriorityClass name')
    p = pod(priorityClassName="high", priority=1000)  # the same value is fine
    admission.admit_priority(p, [pc("high", 1000)])
    assert p["spec"]["priority"] == 1000


def test_only_one_global_default():
    classes = [pc("first", 10, globalDefault=True), pc("other", 5)]
    with pytest.raises(ApiError) as e:
        admission.check_default_class(pc("second", 20, globalDefault=True), classes, update=False)
    assert e.value.code == 403
    assert e.value.message == ('priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass first is '
                               'already marked as default. Only one default can exist')
    with pytest.raises(ApiError):
        admission.check_default_class(pc("other", 5, globalDefault=True), classes, update=True)
    admission.check_default_class(pc("first", 10, globalDefault=True), classes, update=True)
    admission.check_default_class(pc("second", 20), classes, update=False)


# -- through the registry -------------------------------------------------------------------------
async def _registry():
    reg = Registry(MemoryStore())
    await reg.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    await reg.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                         "metadata": {"name": "default", "namespace": "default"},
                                         "automountServiceAccountToken": False})
    return reg


async def test_registry_admits_pods_and_keeps_priority_immutable():
    reg = await _registry()
    await reg.create("priorityclasses", {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                         "metadata": {"name": "high"}, "value": 1000})
    got = await reg.create("pods", pod("a", priorityClassName="high"))
    assert (got["spec"]["priority"], got["spec"]["preemptionPolicy"]) == (1000, "PreemptLowerPriority")
    plain = await reg.create("pods", pod("b"))
    assert plain["spec"]["priority"] == 0
    # An update that omits the admitted fields keeps them; one that changes them is refused.
    upd = dict(got, spec={k: v for k, v in got["spec"].items() if k not in ("priority", "preemptionPolicy")})
    kept = await reg.update("pods", upd, namespace="default")
    assert kept["spec"]["priority"] == 1000
    with pytest.raises(ApiError) as e:
        await reg.patch("pods", "a", {"spec": {"priority": 7}}, namespace="default")
    assert e.value.code == 422 and "pod updates may not change fields" in e.value.message
    with pytest.raises(ApiError) as e:
        await reg.create("pods", pod("c", priorityClassName="nope"))
    assert e.value.code == 403


async def test_registry_priority_class_rules():
    reg = await _registry()
    base = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass"}
    made = await reg.create("priorityclasses", {**base, "metadata": {"name": "d"}, "value": 1, "globalDefault": True})
    assert made["preemptionPolicy"] == "PreemptLowerPriority"
    with pytest.raises(ApiError) as e:
        await reg.create("priorityclasses", {**base, "metadata": {"name": "d2"}, "value": 2, "globalDefault": True})
    assert e.value.code == 403 and "PriorityClass d is already marked as default" in e.value.message
    await reg.create("priorityclasses", {**base, "metadata": {"name": "o"}, "value": 2})
    with pytest.raises(ApiError) as e:
        await reg.patch("priorityclasses", "o", {"globalDefault": True})
    assert e.value.code == 403
    with pytest.raises(ApiError) as e:
        await reg.patch("priorityclasses", "o", {"value": 3})
    assert e.value.code == 422
    assert e.value.message == ('PriorityClass.scheduling.k8s.io "o" is invalid: value: Forbidden: may not be changed '
                               'in an update.')
    # description may change; re-marking the default itself is fine
    assert (await reg.patch("priorityclasses", "o", {"description": "x"}))["description"] == "x"
    await reg.patch("priorityclasses", "d", {"globalDefault": True, "description": "y"})
    # a pod without a class now gets the default
    got = await reg.create("pods", pod("p"))
    assert (got["spec"]["priorityClassName"], got["spec"]["priority"]) == ("d", 1)
    with pytest.raises(ApiError) as e:
        await reg.create("priorityclasses", {**base, "metadata": {"name": "huge"}, "value": 2_000_000_000})
    assert e.value.code == 422


async def test_system_classes_cannot_be_deleted():
    reg = await _registry()
    for name, (value, description) in validation.SYSTEM_PRIORITY_CLASSES.items():
        await reg.create("priorityclasses", {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                             "metadata": {"name": name}, "value": value, "description": description})
    with pytest.raises(ApiError) as e:
        await reg.delete("priorityclasses", "system-node-critical")
    assert e.value.code == 403
    assert e.value.message == ('priorityclasses.scheduling.k8s.io "system-node-critical" is forbidden: this is a '
                               'system priority class and cannot be deleted')
    assert reg.get("priorityclasses", "system-node-critical")["value"] == 2_000_001_000

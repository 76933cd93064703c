"""PriorityClasses and Priority admission through the real cluster, driven by the real kubectl:
the built-in system classes, `kubectl create priorityclass` and `kubectl get pc`, pods (bare
and from a Deployment's template) getting their class's priority, and upstream's refusals
(unknown class, a second global default, a changed value, deleting a system class)."""
from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.integration

SYSTEM = {"system-cluster-critical": "2000000000", "system-node-critical": "2000001000"}


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    return one_node_cluster


def apply(c, text, *, check=True):
    return c.kubectl("apply", "-f", "-", input=textwrap.dedent(text), check=check)


def pod_manifest(name, extra=""):
    return f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: Never
          {extra}
          containers: [{{name: c, image: busybox, command: ["sleep", "3600"]}}]
        """


def pc_rows(c):
    lines = c.kubectl("get", "pc").stdout.strip().splitlines()
    return lines[0].split(), {l.split()[0]: l.split() for l in lines[1:]}


def test_system_classes_listed_with_upstream_columns(cluster):
    header, rows = cluster.wait_for("the two system PriorityClasses",
                                    lambda: (lambda h, r: (h, r) if set(SYSTEM) <= set(r) else None)(*pc_rows(cluster)))
    assert header == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    for name, value in SYSTEM.items():
        assert rows[name][1:3] == [value, "false"] and rows[name][4] == "PreemptLowerPriority", rows
    desc = cluster.kubectl("get", "priorityclass", "system-node-critical", "-o", "jsonpath={.description}").stdout
    assert desc == "Used for system critical pods that must not be moved from their current node."


def test_create_class_and_pod_gets_its_priority(cluster):
    out = cluster.kubectl("create", "priorityclass", "high", "--value=1000", "--description=for the important pods")
    assert "priorityclass.scheduling.k8s.io/high created" in out.stdout
    _, rows = pc_rows(cluster)
    assert rows["high"][1:3] == ["1000", "false"] and rows["high"][4] == "PreemptLowerPriority"
    apply(cluster, pod_manifest("important", "priorityClassName: high"))
    got = cluster.kubectl("get", "pod", "important", "-o",
                          "jsonpath={.spec.priority} {.spec.priorityClassName} {.spec.preemptionPolicy}").stdout
    assert got == "1000 high PreemptLowerPriority"
    desc = cluster.kubectl("describe", "pod", "important").stdout
    lines = {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in desc.splitlines() if ":" in l}
    assert lines["Priority"] == "1000" and lines["Priority Class Name"] == "high", desc
    # A pod naming no class gets priority 0 and no class name.
    apply(cluster, pod_manifest("ordinary"))
    assert cluster.kubectl("get", "pod", "ordinary", "-o", "jsonpath={.spec.priority}|{.spec.priorityClassName}"
                           ).stdout == "0|"


def test_pods_from_a_template_get_the_priority(cluster):
    apply(cluster, """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: prio}
        spec:
          replicas: 2
          selector: {matchLabels: {app: prio}}
          template:
            metadata: {labels: {app: prio}}
            spec:
              priorityClassName: high
              containers: [{name: c, image: busybox, command: ["sleep", "3600"]}]
        """)
    pods = cluster.wait_for("2 pods of the Deployment", lambda: (
        lambda items: items if len(items) == 2 else None)(cluster.kjson("get", "pods", "-l", "app=prio")["items"]),
        timeout=60)
    assert [p["spec"]["priority"] for p in pods] == [1000, 1000]
    cluster.kubectl("delete", "deployment", "prio", "--wait=false")


def test_unknown_class_and_own_priority_are_refused(cluster):
    r = apply(cluster, pod_manifest("lost", "priorityClassName: foo"), check=False)
    assert r.returncode != 0
    assert 'pods "lost" is forbidden: no PriorityClass with name foo was found' in r.stderr
    r = apply(cluster, pod_manifest("cheat", "priorityClassName: high\n          priority: 5"), check=False)
    assert r.returncode != 0
    assert ("the integer value of priority (5) must not be provided in pod spec; priority admission controller "
            "computed 1000 from the given PriorityClass name") in r.stderr
    assert cluster.kubectl("get", "pod", "lost", "cheat", check=False).returncode != 0


def test_one_global_default_which_pods_then_get(cluster):
    cluster.kubectl("create", "priorityclass", "fallback", "--value=7", "--global-default")
    r = cluster.kubectl("create", "priorityclass", "second", "--value=8", "--global-default", check=False)
    assert r.returncode != 0
    assert ('priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass fallback is already marked as '
            "default. Only one default can exist") in r.stderr
    _, rows = pc_rows(cluster)
    assert rows["fallback"][2] == "true" and "second" not in rows
    apply(cluster, pod_manifest("defaulted"))
    assert cluster.kubectl("get", "pod", "defaulted", "-o", "jsonpath={.spec.priority} {.spec.priorityClassName}"
                           ).stdout == "7 fallback"
    cluster.kubectl("delete", "priorityclass", "fallback")


def test_value_limits_and_immutability(cluster):
    r = cluster.kubectl("create", "priorityclass", "huge", "--value=1000000001", check=False)
    assert r.returncode != 0
    assert "value: Forbidden: maximum allowed value of a user defined priority is 1000000000" in r.stderr
    r = cluster.kubectl("create", "priorityclass", "system-mine", "--value=1", check=False)
    assert r.returncode != 0 and "prefix are reserved for system use only" in r.stderr
    r = cluster.kubectl("patch", "priorityclass", "high", "--type=merge", "-p", '{"value": 2000}', check=False)
    assert r.returncode != 0 and "value: Forbidden: may not be changed in an update." in r.stderr
    cluster.kubectl("patch", "priorityclass", "high", "--type=merge", "-p", '{"description": "changed"}')
    assert cluster.kubectl("get", "pc", "high", "-o", "jsonpath={.value} {.description}").stdout == "1000 changed"
    r = cluster.kubectl("patch", "pod", "important", "-p", '{"spec": {"priority": 1}}', check=False)
    assert r.returncode != 0 and "pod updates may not change fields" in r.stderr
    r = cluster.kubectl("delete", "priorityclass", "system-node-critical", check=False)
    assert r.returncode != 0 and "this is a system priority class and cannot be deleted" in r.stderr

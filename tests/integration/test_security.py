"""securityContext, checked from inside the containers: the "Configure a Security Context"
tutorial (runAsUser / runAsGroup / fsGroup, allowPrivilegeEscalation), a read-only root
filesystem, capabilities dropped and added, and runAsNonRoot refusing a root image."""
from __future__ import annotations

import textwrap

import pytest

PODS = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: security-context-demo}
    spec:
      securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}
      volumes: [{name: sec-ctx-vol, emptyDir: {}}]
      containers:
      - name: sec-ctx-demo
        image: busybox:1.28
        command: [sh, -c, sleep 1h]
        volumeMounts: [{name: sec-ctx-vol, mountPath: /data/demo}]
        securityContext: {allowPrivilegeEscalation: false}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: locked}
    spec:
      containers:
      - name: c
        image: busybox
        command: [sleep, "3600"]
        securityContext: {readOnlyRootFilesystem: true, capabilities: {drop: [ALL], add: [NET_ADMIN]}}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: nonroot}
    spec:
      securityContext: {runAsNonRoot: true}
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
""")


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    c = one_node_cluster
    c.kubectl("apply", "-f", "-", input=PODS)
    c.kubectl("wait", "--for=condition=Ready", "pod/security-context-demo", "pod/locked", "--timeout=60s")
    return c


def test_user_group_and_fs_group(cluster):
    out = cluster.kubectl("exec", "security-context-demo", "--", "sh", "-c",
                          "id; ps -o user,comm | sed -n 2p; cd /data/demo && echo hello > testfile && ls -ln testfile; "
                          "grep NoNewPrivs /proc/self/status").stdout.splitlines()
    assert out[0] == "uid=1000 gid=3000 groups=2000,3000"
    assert out[1].split()[0] == "1000"  # the container's own process runs as the user too
    assert out[2].split()[2:4] == ["1000", "2000"]  # files in the fsGroup volume belong to group 2000
    assert out[3].split() == ["NoNewPrivs:", "1"]


def test_read_only_root_and_capabilities(cluster):
    r = cluster.kubectl("exec", "locked", "--", "sh", "-c", "touch /x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    bnd = cluster.kubectl("exec", "locked", "--", "sh", "-c", "grep CapBnd /proc/1/status").stdout.split()[1]
    assert int(bnd, 16) == 1 << 12  # CAP_NET_ADMIN only
    r = cluster.kubectl("exec", "locked", "--", "sh", "-c", "grep NoNewPrivs /proc/self/status")
    assert r.stdout.split() == ["NoNewPrivs:", "0"]  # allowPrivilegeEscalation defaults to true, as upstream


def test_run_as_non_root_refuses_a_root_image(cluster):
    def waiting():
        st = cluster.kjson("get", "pod", "nonroot")["status"].get("containerStatuses") or []
        return st and st[0]["state"].get("waiting")
    w = cluster.wait_for("CreateContainerConfigError", waiting)
    assert w["reason"] == "CreateContainerConfigError"
    assert w["message"].startswith("container has runAsNonRoot and image will run as root")
    events = cluster.kjson("get", "events", "--field-selector", "involvedObject.name=nonroot")["items"]
    assert any(e["reason"] == "Failed" and "runAsNonRoot" in e["message"] for e in events)

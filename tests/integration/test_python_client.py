"""The official ``kubernetes`` Python client against a real cluster: list, watch from a
resourceVersion, create, strategic-merge patch, exec (WebSocket stream), watch bookmarks and
the watch-list (``sendInitialEvents``) flow.

The client runs where a user's program would: in the cluster's host-side namespace (where
the apiserver is), loading the cluster's kubeconfig; each test runs one small script there
and checks the JSON it prints. The cluster is started with a 2 s bookmark interval
(``NANOKUBE_WATCH_BOOKMARK_SECONDS``) so periodic bookmarks show up in a short watch.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from .conftest import start_cluster, stop_cluster

PRELUDE = textwrap.dedent("""
    import json, sys, threading, time
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
    from kubernetes.stream import stream
    config.load_kube_config(config_file=sys.argv[1])
    v1 = client.CoreV1Api()
    apps = client.AppsV1Api()
    out = {}
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    old = os.environ.get("NANOKUBE_WATCH_BOOKMARK_SECONDS")
    os.environ["NANOKUBE_WATCH_BOOKMARK_SECONDS"] = "2"
    try:
        c = start_cluster(tmp_path_factory, nodes=1)
    finally:
        if old is None:
            os.environ.pop("NANOKUBE_WATCH_BOOKMARK_SECONDS", None)
        else:
            os.environ["NANOKUBE_WATCH_BOOKMARK_SECONDS"] = old
    yield c
    stop_cluster(c)


def run(cluster, body: str, *, timeout: float = 90) -> dict:
    script = cluster.state_dir / f"client-{abs(hash(body))}.py"
    script.write_text(PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n")
    kubeconfig = json.loads((cluster.state_dir / cluster.name / "cluster.json").read_text())["kubeconfig"]
    r = cluster.host(sys.executable, str(script), kubeconfig, timeout=timeout)
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_list_create_watch_from_resource_version(cluster):
    out = run(cluster, """
        rv = v1.list_namespaced_config_map("default", label_selector="t=pc").metadata.resource_version
        out["nodes"] = [n.metadata.name for n in v1.list_node().items]
        out["namespaces"] = sorted(n.metadata.name for n in v1.list_namespace().items)
        cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="pc-cm", labels={"t": "pc"}), data={"a": "1"}))
        out["created_uid"] = bool(cm.metadata.uid)
        v1.patch_namespaced_config_map("pc-cm", "default", {"data": {"b": "2"}})
        v1.delete_namespaced_config_map("pc-cm", "default")
        w = watch.Watch()
        out["events"] = []
        for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="t=pc", resource_version=rv,
                           timeout_seconds=20):
            out["events"].append([ev["type"], ev["object"].metadata.name, ev["object"].data])
            if len(out["events"]) == 3:
                w.stop()
        try:
            v1.read_namespaced_config_map("pc-cm", "default")
        except ApiException as e:
            out["after_delete"] = [e.status, json.loads(e.body)["reason"]]
    """)
    assert out["nodes"] == ["node1"]
    assert {"default", "kube-system"} <= set(out["namespaces"])
    assert out["created_uid"]
    assert out["events"] == [["ADDED", "pc-cm", {"a": "1"}], ["MODIFIED", "pc-cm", {"a": "1", "b": "2"}],
                             ["DELETED", "pc-cm", {"a": "1", "b": "2"}]]
    assert out["after_delete"] == [404, "NotFound"]


def test_strategic_merge_patch_merges_lists_by_key(cluster):
    out = run(cluster, """
        dep = client.V1Deployment(
            metadata=client.V1ObjectMeta(name="pc-dep"),
            spec=client.V1DeploymentSpec(
                replicas=1, selector=client.V1LabelSelector(match_labels={"app": "pc-dep"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "pc-dep"}),
                    spec=client.V1PodSpec(containers=[client.V1Container(
                        name="main", image="busybox", command=["sleep", "3600"],
                        env=[client.V1EnvVar(name="A", value="1")])]))))
        apps.create_namespaced_deployment("default", dep)
        # a dict body is sent as application/strategic-merge-patch+json: containers merge by
        # name and env by name, so A stays and B is added
        patched = apps.patch_namespaced_deployment("pc-dep", "default", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}})
        c = patched.spec.template.spec.containers
        out["containers"] = [[x.name, x.image, [[e.name, e.value] for e in x.env]] for x in c]
        out["generation"] = patched.metadata.generation
        apps.delete_namespaced_deployment("pc-dep", "default")
    """)
    assert out["containers"] == [["main", "busybox", [["A", "1"], ["B", "2"]]]]
    assert out["generation"] == 2


def test_exec_stream(cluster):
    out = run(cluster, """
        v1.create_namespaced_pod("default", client.V1Pod(
            metadata=client.V1ObjectMeta(name="pc-exec"),
            spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="busybox",
                                                                 command=["sleep", "3600"])])))
        deadline = time.time() + 60
        while v1.read_namespaced_pod("pc-exec", "default").status.phase != "Running":
            assert time.time() < deadline, "pod never ran"
            time.sleep(0.5)
        # output only: the client's convenience form returns stdout+stderr
        out["simple"] = stream(v1.connect_get_namespaced_pod_exec, "pc-exec", "default",
                               command=["sh", "-c", "echo hello; hostname"], stderr=True, stdin=False, stdout=True,
                               tty=False)
        # separate channels, stdin and the exit code
        resp = stream(v1.connect_get_namespaced_pod_exec, "pc-exec", "default",
                      command=["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 3"], stderr=True, stdin=True,
                      stdout=True, tty=False, _preload_content=False)
        resp.write_stdin("ping\\n")
        so, se = "", ""
        while resp.is_open():
            resp.update(timeout=1)
            so += resp.read_stdout() if resp.peek_stdout() else ""
            se += resp.read_stderr() if resp.peek_stderr() else ""
        resp.close()
        out["stdout"], out["stderr"], out["rc"] = so, se, resp.returncode
        v1.delete_namespaced_pod("pc-exec", "default", grace_period_seconds=0)
    """)
    assert out["simple"] == "hello\npc-exec\n"
    assert out["stdout"] == "got-ping\n" and out["stderr"] == "oops\n" and out["rc"] == 3


def test_watch_bookmarks(cluster):
    out = run(cluster, """
        first_rv = []
        def writer():
            time.sleep(0.5)  # objects the watch does not select: only a bookmark can tell it their revision
            cm = v1.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="pc-other", labels={"t": "other"})))
            first_rv.append(int(cm.metadata.resource_version))
        start_rv = v1.list_namespaced_config_map("default", label_selector="t=none").metadata.resource_version
        threading.Thread(target=writer).start()
        w = watch.Watch()
        out["events"] = []
        for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="t=none", resource_version=start_rv,
                           allow_watch_bookmarks=True, timeout_seconds=7):
            out["events"].append([ev["type"], ev["raw_object"]])
        out["created_rv"] = first_rv[0]
        out["start_rv"] = int(start_rv)
        out["client_rv"] = w.resource_version
        # without allowWatchBookmarks: no bookmark at all
        out["plain"] = [ev["type"] for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="t=none",
                                                      resource_version=start_rv, timeout_seconds=5)]
    """)
    evs = out["events"]
    assert len(evs) >= 2 and all(t == "BOOKMARK" for t, _ in evs), evs
    for _, obj in evs:
        assert set(obj) == {"kind", "apiVersion", "metadata"} and obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
        assert set(obj["metadata"]) == {"resourceVersion"}
    rvs = [int(o["metadata"]["resourceVersion"]) for _, o in evs]
    assert rvs == sorted(rvs) and rvs[0] >= out["start_rv"]
    assert rvs[-1] >= out["created_rv"]  # moved past a change it never saw
    assert int(out["client_rv"]) == rvs[-1]  # the client keeps the bookmark's revision to resume from
    assert out["plain"] == []


def test_watch_list_initial_events_end_with_a_bookmark(cluster):
    out = run(cluster, """
        for i in range(3):
            v1.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"pc-wl-{i}", labels={"t": "wl"})))
        w = watch.Watch()
        out["events"] = []
        for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="t=wl", send_initial_events=True,
                           resource_version_match="NotOlderThan", allow_watch_bookmarks=True, timeout_seconds=20):
            o = ev["raw_object"]
            out["events"].append([ev["type"], o["metadata"].get("name"), o["metadata"].get("annotations"),
                                  o["metadata"]["resourceVersion"]])
            if ev["type"] == "BOOKMARK":
                v1.create_namespaced_config_map("default", client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name="pc-wl-late", labels={"t": "wl"})))
            if ev["type"] == "ADDED" and o["metadata"]["name"] == "pc-wl-late":
                w.stop()
        try:
            v1.list_namespaced_config_map("default", watch=True, send_initial_events=True, _preload_content=False)
        except ApiException as e:
            out["invalid"] = [e.status, json.loads(e.body)["message"]]
    """)
    evs = out["events"]
    assert [e[:2] for e in evs[:3]] == [["ADDED", f"pc-wl-{i}"] for i in range(3)]
    assert evs[3][0] == "BOOKMARK" and evs[3][2] == {"k8s.io/initial-events-end": "true"}
    assert int(evs[3][3]) >= max(int(e[3]) for e in evs[:3])
    assert evs[4][:2] == ["ADDED", "pc-wl-late"] and len(evs) == 5
    assert out["invalid"][0] == 422
    assert "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" in out["invalid"][1]

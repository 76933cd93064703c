"""Unit tests for nanokube.api.protobuf: bodies hand-encoded the way client-go's generated Marshal
writes them (non-pointer scalars always written, even when zero)."""
from __future__ import annotations

import base64
import json

import pytest

from nanokube.api import protobuf
from nanokube.api.protobuf import decode, go_duration


# -- a tiny proto2 encoder ----------------------------------------------------------------------
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vf(num: int, n: int) -> bytes:
    """varint field"""
    return varint(num << 3) + varint(n)


def bf(num: int, data: bytes | str) -> bytes:
    """length-delimited field"""
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def entry(k: str, v: bytes | str) -> bytes:
    return bf(1, k) + bf(2, v)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + bf(1, bf(1, api_version) + bf(2, kind)) + bf(2, raw) + bf(3, "") + bf(4, "")


def objectmeta(name: str, *, namespace: str = "", labels: dict[str, str] | None = None) -> bytes:
    # ObjectMeta as Go writes it: strings 1..6 always, generation 7, creationTimestamp 8 (empty Time)
    out = bf(1, name) + bf(2, "") + bf(3, namespace) + bf(4, "") + bf(5, "") + bf(6, "") + vf(7, 0) + bf(8, b"")
    for k, v in (labels or {}).items():
        out += bf(11, entry(k, v))
    return out


def quantity(s: str) -> bytes:
    return bf(1, s)


def container(name: str, image: str, *, command: list[str] = (), ports: bytes = b"", resources: bytes = b"") -> bytes:
    out = bf(1, name) + bf(2, image)
    for c in command:
        out += bf(3, c)
    out += bf(5, "") + ports + bf(8, resources) + bf(13, "/dev/termination-log") + bf(14, "IfNotPresent")
    out += vf(16, 0) + vf(17, 0) + vf(18, 0) + bf(20, "File")  # stdin, stdinOnce, tty: false
    return out


def podspec(*containers: bytes) -> bytes:
    out = b"".join(bf(2, c) for c in containers) + bf(3, "Always") + bf(7, "") + bf(8, "") + vf(11, 0)
    out += vf(12, 0) + vf(13, 0) + bf(19, "default-scheduler")
    return out


# -- tests ---------------------------------------------------------------------------------------
def test_deployment_keeps_pointer_zero_replicas_and_drops_omitempty_zeros():
    template = bf(1, objectmeta("", labels={"app": "web"})) + bf(2, podspec(
        container("busybox", "busybox", command=["sleep", "3600"])))
    selector = bf(1, entry("app", "web"))
    spec = vf(1, 0) + bf(2, selector) + bf(3, template) + bf(4, b"") + vf(5, 0) + vf(7, 0)
    body = envelope("apps/v1", "Deployment", bf(1, objectmeta("web", namespace="default",
                                                                labels={"app": "web"})) + bf(2, spec) + bf(3, b""))
    got = decode(body)
    assert got["apiVersion"] == "apps/v1" and got["kind"] == "Deployment"
    # creationTimestamp is `json:",omitempty,omitzero"`: kubectl's JSON drops the zero Time (no null)
    assert got["metadata"] == {"name": "web", "namespace": "default", "labels": {"app": "web"}}
    s = got["spec"]
    assert s["replicas"] == 0                      # *int32: an explicit 0 is kept
    assert "minReadySeconds" not in s and "paused" not in s   # non-pointer omitempty zeros are dropped
    assert s["selector"] == {"matchLabels": {"app": "web"}}
    assert s["strategy"] == {}
    c = s["template"]["spec"]["containers"][0]
    assert c == {"name": "busybox", "image": "busybox", "command": ["sleep", "3600"], "resources": {},
                 "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                 "terminationMessagePolicy": "File"}
    assert s["template"]["spec"]["schedulerName"] == "default-scheduler"
    assert got["status"] == {}


def test_configmap_data_map_and_binary_data():
    raw = bf(1, objectmeta("x", namespace="default")) + bf(2, entry("a", "b")) + bf(2, entry("c", "")) \
        + bf(3, entry("bin", b"\x00\xff"))
    got = decode(envelope("v1", "ConfigMap", raw))
    assert got["data"] == {"a": "b", "c": ""}
    assert got["binaryData"] == {"bin": base64.b64encode(b"\x00\xff").decode()}
    assert "immutable" not in got


def test_secret_bytes_are_base64_and_pointer_bool_false_is_kept():
    raw = bf(1, objectmeta("s", namespace="default")) + bf(2, entry("password", b"hunter2")) + bf(3, "Opaque") + vf(5, 0)
    got = decode(envelope("v1", "Secret", raw))
    assert got["data"] == {"password": base64.b64encode(b"hunter2").decode()}
    assert got["type"] == "Opaque"
    assert got["immutable"] is False   # *bool


def test_pod_resources_quantities_intstr_ports_and_probe_durations():
    resources = bf(1, entry("cpu", quantity("500m"))) + bf(1, entry("memory", quantity("64Mi"))) \
        + bf(2, entry("cpu", quantity("100m")))
    ports = bf(6, vf(2, 0) + vf(3, 8080) + bf(4, "TCP") + bf(1, "http") + bf(5, ""))
    # readiness probe: httpGet with a named port (intstr string), liveness tcpSocket with an int port
    http_get = bf(1, "/healthz") + bf(2, vf(1, 1) + vf(2, 0) + bf(3, "http")) + bf(4, "HTTP")
    tcp = bf(1, vf(1, 0) + vf(2, 8080) + bf(3, ""))
    readiness = bf(1, bf(2, http_get)) + vf(2, 5) + vf(3, 1) + vf(4, 10) + vf(5, 1) + vf(6, 3)
    liveness = bf(1, bf(3, tcp)) + vf(2, 0) + vf(3, 1)
    c = container("app", "busybox", ports=ports, resources=resources) + bf(10, liveness) + bf(11, readiness)
    got = decode(envelope("v1", "Pod", bf(1, objectmeta("p", namespace="default")) + bf(2, podspec(c))))
    ct = got["spec"]["containers"][0]
    assert ct["resources"] == {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}
    assert ct["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]  # hostPort 0 dropped
    assert ct["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                    "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 10,
                                    "successThreshold": 1, "failureThreshold": 3}
    assert ct["livenessProbe"] == {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1}


def test_service_nodeport_intstr_target_port():
    port = bf(1, "80-8080") + bf(2, "TCP") + vf(3, 80) + bf(4, vf(1, 0) + vf(2, 8080) + bf(3, "")) + vf(5, 0)
    spec = bf(1, port) + bf(2, entry("app", "x")) + bf(3, "") + bf(4, "NodePort")
    got = decode(envelope("v1", "Service", bf(1, objectmeta("x", namespace="default")) + bf(2, spec) + bf(3, b"")))
    assert got["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    assert got["spec"]["type"] == "NodePort" and got["spec"]["selector"] == {"app": "x"}
    assert "clusterIP" not in got["spec"]


def test_timestamps_microtime_duration_and_negative_ints():
    ts = vf(1, 1700000000) + vf(2, 123456789)
    meta = bf(1, "ev") + bf(3, "default") + bf(8, ts) + bf(9, ts) + vf(10, (-1) & ((1 << 64) - 1))
    got = decode(envelope("v1", "ConfigMap", bf(1, meta)))
    assert got["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"   # Time: seconds only
    assert got["metadata"]["deletionTimestamp"] == "2023-11-14T22:13:20Z"
    assert got["metadata"]["deletionGracePeriodSeconds"] == -1
    lease_spec = bf(1, "holder") + vf(2, 15) + bf(3, ts) + bf(4, ts)
    lease = decode(envelope("coordination.k8s.io/v1", "Lease", bf(1, objectmeta("l")) + bf(2, lease_spec)))
    assert lease["spec"]["acquireTime"] == "2023-11-14T22:13:20.123456Z"   # MicroTime: 6 digits
    assert lease["spec"]["leaseDurationSeconds"] == 15
    assert [go_duration(n) for n in (0, 999, 1500, 2_000_000, 1_500_000_000, 3_600_000_000_000, 61_000_000_000,
                                     -90_000_000_000)] == ["0s", "999ns", "1.5\u00b5s", "2ms", "1.5s", "1h0m0s",
                                                          "1m1s", "-1m30s"]


def test_raw_extension_and_list_wrapper():
    # ControllerRevision.data is a RawExtension holding JSON
    raw = bf(1, objectmeta("r", namespace="default")) + bf(2, bf(1, json.dumps({"spec": {"a": 1}}))) + vf(3, 2)
    got = decode(envelope("apps/v1", "ControllerRevision", raw))
    assert got["data"] == {"spec": {"a": 1}} and got["revision"] == 2
    # SubjectAccessReview spec.extra is map<string, ExtraValue{repeated items}> -> JSON lists
    spec = bf(3, "alice") + bf(4, "g1") + bf(5, entry("scopes", bf(1, "a") + bf(1, "b"))) + bf(6, "")
    got = decode(envelope("authorization.k8s.io/v1", "SubjectAccessReview", bf(1, objectmeta("")) + bf(2, spec)))
    assert got["spec"] == {"user": "alice", "groups": ["g1"], "extra": {"scopes": ["a", "b"]}}


def test_delete_options_fall_back_to_meta_kinds():
    got = decode(envelope("v1", "DeleteOptions", vf(1, 0) + bf(4, "Background")))
    assert got == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "propagationPolicy": "Background"}


@pytest.mark.parametrize("body, message", [
    (b'{"kind": "Pod"}', "k8s"),
    (b"k8s\x00" + bf(2, b""), "apiVersion/kind"),
    (envelope("v1", "Pod", b"\x0a\x05ab"), "runs past the end"),
    (envelope("v1", "Pod", b"\x08"), "truncated varint"),
    (envelope("v1", "Pod", bf(1, bf(1, b"\xff\xfe"))), "UTF-8"),
    (envelope("v1", "Pod", vf(1, 3)), "wire type"),
    (envelope("example.com/v1", "Widget", b""), "no protobuf type known"),
    (b"k8s\x00" + bf(1, bf(1, "v1") + bf(2, "Pod")) + bf(3, "gzip"), "contentEncoding"),
    (b"k8s\x00\x0f", "wire type"),
])
def test_malformed_bodies_raise_value_error(body, message):
    with pytest.raises(ValueError, match=message):
        decode(body)


def test_table_covers_every_group_version():
    kinds = protobuf.table()["kinds"]
    for key in ("v1/Pod", "apps/v1/Deployment", "batch/v1/Job", "policy/v1/Eviction",
                "authorization.k8s.io/v1/SelfSubjectAccessReview", "networking.k8s.io/v1/Ingress",
                "rbac.authorization.k8s.io/v1/ClusterRole", "storage.k8s.io/v1/StorageClass"):
        assert key in kinds
    assert protobuf.table()["source"]["k8s.io/api"]

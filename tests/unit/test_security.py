"""securityContext resolution (kubelet/security.py), pure: users, groups, capabilities."""
import pytest

from nanokube.kubelet.security import CAPS, DEFAULT_CAPS, SecurityError, resolve


def pod(psc=None, csc=None):
    return ({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"securityContext": psc or {}}},
            {"name": "c", "securityContext": csc or {}})


def test_defaults_are_the_runtime_defaults():
    s = resolve(*pod())
    assert (s["uid"], s["gid"], s["groups"], s["no_new_privs"], s["readonly_root"]) == (0, 0, [], False, False)
    assert s["caps"] == sorted(CAPS.index(c) for c in DEFAULT_CAPS)


def test_container_overrides_pod_and_groups_as_containerd():
    s = resolve(*pod({"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [5]},
                     {"runAsUser": 1001, "allowPrivilegeEscalation": False}))
    assert (s["uid"], s["gid"], s["groups"], s["no_new_privs"]) == (1001, 3000, [5, 2000, 3000], True)


def test_capabilities_drop_add_all_and_privileged():
    assert resolve(*pod(csc={"capabilities": {"drop": ["ALL"], "add": ["CAP_NET_ADMIN", "SYS_TIME"]}}))["caps"] == \
        [CAPS.index("NET_ADMIN"), CAPS.index("SYS_TIME")]
    assert CAPS.index("KILL") not in resolve(*pod(csc={"capabilities": {"drop": ["kill"]}}))["caps"]
    priv = resolve(*pod(csc={"privileged": True, "capabilities": {"drop": ["ALL"]}}))
    assert priv["caps"] == list(range(len(CAPS))) and priv["privileged"]


def test_image_user_names_and_run_as_non_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nnginx:x:101:102::/:/bin/false\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nnginx:x:102:\n")
    s = resolve(*pod({"runAsNonRoot": True}), image_user="nginx", rootfs=tmp_path)
    assert (s["uid"], s["gid"]) == (101, 102)
    with pytest.raises(SecurityError, match="image will run as root"):
        resolve(*pod({"runAsNonRoot": True}))
    with pytest.raises(SecurityError, match="runAsUser breaks non-root policy"):
        resolve(*pod({"runAsNonRoot": True, "runAsUser": 0}))
    with pytest.raises(SecurityError, match="non-numeric user \\(www\\)"):
        resolve(*pod({"runAsNonRoot": True}), image_user="www", rootfs=tmp_path)

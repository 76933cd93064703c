"""Container escapes tried from inside pods, each refused; containment; secrets kept secret.

Everything is driven as a user would: the real kubectl against a real one-node cluster, and
`kubectl exec` into busybox pods that try to read the host's files (the server's CA key, the
agent's state, through /proc/1/root, /proc/self/root, chroot and planted symlinks, a subPath
symlink), see or signal other processes, mount, load modules, open raw sockets without
NET_RAW, make and open device nodes, write to /sys or their own cgroup, and reach the
kubelet's API without its token. A fork bomb stops at the pod's pids limit (1024, the
agent's --pod-max-pids) with its neighbour unharmed; a memory hog dies alone. Secret volumes
are tmpfs (on the node too), read-only, mode 0644 unless defaultMode says otherwise, and a
secret's value shows up in no log or event.

Raw sockets: containerd's (and Docker's) default capability set keeps NET_RAW, and so do
we, so busybox ping works by default; a container that drops NET_RAW cannot open one.
"""
from __future__ import annotations

import hashlib
import secrets
import textwrap
from pathlib import Path

import pytest

from .conftest import start_cluster, stop_cluster

SECRET_VALUE = "nk-secret-" + secrets.token_hex(8)
# containerd's default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
DEFAULT_CAPS = sum(1 << b for b in (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31))
POD_PIDS_LIMIT = 1024


def manifests(pki_dir: Path) -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: creds}}
        stringData: {{password: {SECRET_VALUE}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: probe}}
        spec:
          terminationGracePeriodSeconds: 1
          initContainers:
          - {{name: prep, image: busybox, command: [sh, -c, "mkdir -p /e/legit && echo inside > /e/legit/f"],
              volumeMounts: [{{name: e, mountPath: /e}}]}}
          containers:
          - name: c
            image: busybox
            command: [sleep, "3600"]
            env: [{{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}]
            volumeMounts:
            - {{name: e, mountPath: /e}}
            - {{name: e, mountPath: /legit, subPath: legit}}
            - {{name: s, mountPath: /s}}
            - {{name: s400, mountPath: /s400}}
          volumes:
          - {{name: e, emptyDir: {{}}}}
          - {{name: s, secret: {{secretName: creds}}}}
          - {{name: s400, secret: {{secretName: creds, defaultMode: 0400}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: noraw}}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{{name: c, image: busybox, command: [sleep, "3600"],
                         securityContext: {{capabilities: {{drop: [NET_RAW]}}}}}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: bomb}}
        spec:
          terminationGracePeriodSeconds: 1
          containers: [{{name: c, image: busybox, command: [sleep, "3600"],
                         resources: {{limits: {{cpu: 500m, memory: 256Mi}}}}}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: sneaky}}
        spec:
          terminationGracePeriodSeconds: 1
          initContainers:
          - {{name: plant, image: busybox, command: [ln, -s, "{pki_dir}", /vol/escape],
              volumeMounts: [{{name: vol, mountPath: /vol}}]}}
          containers:
          - {{name: c, image: busybox, command: [sleep, "3600"],
              volumeMounts: [{{name: vol, mountPath: /stolen, subPath: escape}}]}}
          volumes: [{{name: vol, emptyDir: {{}}}}]
    """)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster(tmp_path_factory, nodes=1)
    try:
        c.kubectl("apply", "-f", "-", input=manifests(c.state_dir / c.name / "server" / "pki"))
        c.kubectl("wait", "--for=condition=Ready", "pod/probe", "pod/noraw", "pod/bomb", "--timeout=90s")
        yield c
    finally:
        stop_cluster(c)
    # The tmpfs of the secret volumes went with the cluster.
    left = [l for l in Path("/proc/self/mountinfo").read_text().splitlines() if str(c.state_dir) in l]
    assert not left, left


def sh(c, pod: str, cmd: str, *, check: bool = False):
    return c.kubectl("exec", pod, "--", "sh", "-c", cmd, check=check)


def refused(r, *words: str) -> bool:
    err = r.stderr.lower()
    return r.returncode != 0 and any(w.lower() in err for w in words)


def attempts(c, pod: str, cmds: list[str]) -> list[tuple[bool, str]]:
    """Run each shell command inside the pod (one exec for all): (succeeded, its stderr)."""
    script = "".join(f"if ( {cmd} ) >/dev/null 2>/tmp/err; then r=ok; else r=no; fi; "
                     f"echo \"$r $(tr '\\n' ' ' </tmp/err)\"; " for cmd in cmds)
    lines = sh(c, pod, script, check=True).stdout.splitlines()
    assert len(lines) == len(cmds), lines
    return [(line.startswith("ok"), line[3:]) for line in lines]


def all_refused(c, pod: str, cmds: list[str], *words: str) -> None:
    """Every command fails, each with one of ``words`` in its error."""
    for cmd, (ok, err) in zip(cmds, attempts(c, pod, cmds)):
        assert not ok and any(w.lower() in err.lower() for w in words), (cmd, err)


def test_host_files_out_of_reach(cluster):
    c = cluster
    server = c.state_dir / c.name / "server"
    node = c.state_dir / c.name / "nodes" / "node1"
    assert (server / "pki" / "ca.key").exists() and (node / "kubelet").is_dir()  # they are there, on the host
    cmds = [how for path in (server / "pki" / "ca.key", server / "state.db", server / "token", node / "kubelet")
            for how in (f"cat {path} || ls {path}", f"ls /proc/1/root{path}", f"ls /proc/self/root{path}",
                        f"chroot /proc/1/root ls {path}", f"cd /proc/1/cwd/../../.. && ls .{path}",
                        f"ln -sf {path} /e/link && ls /e/link/")]
    all_refused(c, "probe", cmds, "No such file")
    assert sh(c, "probe", "ls -a /").stdout.split().count(".oldroot") == 0  # the host's root is gone
    host_shadow = hashlib.sha256(Path("/etc/shadow").read_bytes()).hexdigest()
    inside = sh(c, "probe", "sha256sum /etc/shadow").stdout
    assert host_shadow not in inside


def test_subpath_symlink_out_of_the_volume_is_refused(cluster):
    c = cluster
    assert sh(c, "probe", "cat /legit/f", check=True).stdout == "inside\n"  # a subPath inside its volume works

    def waiting():
        st = c.kjson("get", "pod", "sneaky")["status"].get("containerStatuses") or []
        return st and st[0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError" and st[0]
    st = c.wait_for("the subPath to be refused", waiting)
    msg = st["state"]["waiting"]["message"]
    assert msg.startswith('failed to prepare subPath for volumeMount "vol" of container "c"'), msg
    events = c.kjson("get", "events", "--field-selector", "involvedObject.name=sneaky")["items"]
    assert any(e["reason"] == "Failed" and "subPath" in e["message"] for e in events)


def test_other_processes_invisible_and_untouchable(cluster):
    c = cluster
    ps = sh(c, "probe", "ps -o pid,comm", check=True).stdout.split()[2:]
    assert ps[:2] == ["1", "sleep"] and set(ps[1::2]) <= {"sleep", "sh", "ps"}, ps  # only its own
    # The bomb pod's sleep, by its pid on the host: neither visible nor signalable from the probe.
    uid = c.kjson("get", "pod", "bomb")["metadata"]["uid"]
    procs = [p for p in Path("/sys/fs/cgroup").rglob(f"pod{uid}/c/cgroup.procs")]
    host_pids = {int(x) for p in procs for x in p.read_text().split()}
    assert host_pids
    assert not any(ok for ok, _ in attempts(c, "probe", [f"cat /proc/{pid}/cmdline || kill -0 {pid}"
                                                          for pid in sorted(host_pids)]))
    r = sh(c, "probe", "nsenter -t 1 -m -p true")  # setns needs CAP_SYS_ADMIN, even into its own
    assert refused(r, "not permitted")
    # Host kernel state that leaks other processes' activity is masked, as runc does.
    assert sh(c, "probe", "cat /proc/timer_list /proc/keys | wc -c", check=True).stdout.strip() == "0"
    bnd = int(sh(c, "probe", "grep CapBnd /proc/self/status", check=True).stdout.split()[1], 16)
    assert bnd == DEFAULT_CAPS  # no SYS_PTRACE, SYS_ADMIN, SYS_MODULE, SYS_RAWIO, DAC_READ_SEARCH
    assert sh(c, "probe", "grep NoNewPrivs /proc/self/status", check=True).stdout.split()[1] == "0"


def test_mounts_modules_sys_and_cgroups_refused(cluster):
    c = cluster
    sh(c, "probe", "mkdir -p /tmp/m", check=True)
    all_refused(c, "probe", [f"mount {fs} /tmp/m" for fs in ("-t proc proc", "-t sysfs sysfs", "-t cgroup -o pids cgroup",
                                                             "-t cgroup2 cgroup2", "-t tmpfs tmpfs")], "permission denied")
    # Not even from a user namespace of its own, where it is "root" again (tmpfs is allowed there).
    all_refused(c, "probe", [f"unshare -Urm mount {fs} /tmp/m" for fs in ("-t proc proc", "-t sysfs sysfs",
                                                                         "-t cgroup2 cgroup2")],
                "permission denied", "not permitted")
    # core_pattern "|prog" would run prog on the host as root at the next crash.
    all_refused(c, "probe", ["echo '|/tmp/evil' > /proc/sys/kernel/core_pattern"], "Read-only file system")
    all_refused(c, "probe", ["echo /tmp/evil > /proc/sys/kernel/modprobe",  # some kernels have no modules
                             "echo 1 > /proc/sysrq-trigger || echo 1 > /proc/irq/default_smp_affinity",
                             "echo 1 > /sys/kernel/mm/ksm/run", "echo 1 > /sys/class/net/eth0/mtu"],
                "Read-only file system", "nonexistent directory", "No such file")
    # without CAP_SYS_MODULE (this kernel may have no module support at all)
    assert not attempts(c, "probe", ["echo junk > /tmp/x.ko && insmod /tmp/x.ko"])[0][0]
    # Its own limits: the cgroup filesystem is not there to write to.
    assert sh(c, "probe", "ls -A /sys/fs/cgroup", check=True).stdout == ""
    cg = sh(c, "probe", "cat /proc/self/cgroup", check=True).stdout
    pids_path = next(l.split(":", 2)[2] for l in cg.splitlines() if ":pids:" in l or l.startswith("0::"))
    all_refused(c, "probe", [f"echo max > {f}" for f in (f"/sys/fs/cgroup/pids{pids_path}/pids.max",
                                                         f"/sys/fs/cgroup{pids_path}/pids.max",
                                                         "/sys/fs/cgroup/pids/pids.max")],
                "nonexistent directory", "No such file", "Read-only")
    # Device nodes: mknod works (MKNOD is a default capability) but a node can never be opened.
    all_refused(c, "probe", [f"mknod {where}/null2 c 1 3 && echo x > {where}/null2" for where in ("/tmp", "/e", "/dev")],
                "Permission denied")
    assert sh(c, "probe", "echo x > /dev/null && echo ok", check=True).stdout == "ok\n"  # the real ones work


def test_raw_sockets_need_net_raw(cluster):
    c = cluster
    ok = sh(c, "probe", "ping -c 1 127.0.0.1")
    assert ok.returncode == 0 and "1 packets received" in ok.stdout  # NET_RAW by default, as containerd
    r = sh(c, "noraw", "ping -c 1 127.0.0.1")
    assert refused(r, "permission denied")
    bnd = int(sh(c, "noraw", "grep CapBnd /proc/self/status", check=True).stdout.split()[1], 16)
    assert bnd == DEFAULT_CAPS & ~(1 << 13)


def test_kubelet_api_refuses_a_pod(cluster):
    c = cluster
    host_ip = c.kjson("get", "pod", "probe")["status"]["hostIP"]
    token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    all_refused(c, "probe", [f"timeout 5 wget -qO- {auth} 'http://{host_ip}:10250/{path}'"
                             for path in ("stats/summary", "metrics", "containerLogs/default/probe/c",
                                          "exec/default/probe/c?command=id", "portForward/default/probe?port=80")
                             for auth in ("", f'--header "Authorization: Bearer $(cat {token_file})"')],
                "401 Unauthorized", "403 Forbidden")
    # Open: health only. The metrics are the admin's through the API's nodes/proxy, as upstream.
    assert sh(c, "probe", f"timeout 5 wget -qO- http://{host_ip}:10250/healthz", check=True).stdout == "ok"
    node = c.kjson("get", "pod", "probe")["spec"]["nodeName"]
    assert "kubelet_running_pods " in c.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics").stdout
    # The pod's own ServiceAccount token gets nothing its (empty) RBAC does not grant.
    token = c.kubectl("exec", "probe", "--", "cat", token_file).stdout
    r = c.kubectl(f"--token={token}", "get", "secret", "creds", check=False)
    assert r.returncode != 0 and 'cannot get resource "secrets"' in r.stderr


def pids_cgroup(c, name: str) -> Path:
    """The pod's cgroup directory where pids.max is (v1 pids hierarchy or v2)."""
    uid = c.kjson("get", "pod", name)["metadata"]["uid"]
    return next(d for d in Path("/sys/fs/cgroup").rglob(f"pod{uid}") if (d / "pids.max").exists())


def test_fork_bomb_stops_at_the_pods_pids_limit(cluster):
    c = cluster
    d = pids_cgroup(c, "bomb")
    assert (d / "pids.max").read_text().strip() == str(POD_PIDS_LIMIT)
    r = sh(c, "bomb", "while :; do sleep 3600 & done")  # ends when a fork fails
    assert r.returncode != 0 and "can't fork" in r.stderr, r.stderr[-300:]
    assert int((d / "pids.current").read_text()) <= POD_PIDS_LIMIT
    refusals = sum(int(f.read_text().split()[1]) for f in d.rglob("pids.events"))  # "max N": at the pod or below
    assert refusals > 0  # forks were refused by the limit
    # The node and the neighbour are fine: exec works, a new pod starts on the node.
    assert sh(c, "probe", "echo alive", check=True).stdout == "alive\n"
    c.kubectl("run", "after-bomb", "--image=busybox", "--restart=Never", "--overrides",
              '{"spec": {"terminationGracePeriodSeconds": 1}}', "--", "sleep", "3600")
    c.kubectl("wait", "--for=condition=Ready", "pod/after-bomb", "--timeout=60s")
    node = c.kjson("get", "node", "node1")
    assert any(x["type"] == "Ready" and x["status"] == "True" for x in node["status"]["conditions"])
    c.kubectl("delete", "pod", "bomb", "after-bomb", "--wait=true", "--timeout=60s")
    c.wait_for("every process of the bomb to end and its cgroup to go", lambda: not d.exists(), timeout=30)


def test_memory_hog_dies_alone(cluster):
    c = cluster
    c.kubectl("run", "hog", "--image=busybox", "--restart=Never", "--overrides",
              '{"spec": {"containers": [{"name": "hog", "image": "busybox", "command": ["sh", "-c", '
              '"head -c 300m /dev/zero | tail"], "resources": {"limits": {"memory": "48Mi"}}}]}}')

    def terminated():
        st = c.kjson("get", "pod", "hog")["status"].get("containerStatuses") or []
        return st and st[0]["state"].get("terminated")
    t = c.wait_for("the hog to be killed", terminated, timeout=60)
    assert (t["reason"], t["exitCode"]) == ("OOMKilled", 137)
    probe = c.kjson("get", "pod", "probe")["status"]["containerStatuses"][0]
    assert probe["restartCount"] == 0 and "running" in probe["state"]
    assert sh(c, "probe", "echo alive", check=True).stdout == "alive\n"
    c.kubectl("delete", "pod", "hog", "--wait=false")


def test_secret_volumes_are_read_only_tmpfs_with_upstream_modes(cluster):
    c = cluster
    mounts = {l.split()[1]: l.split() for l in sh(c, "probe", "cat /proc/mounts", check=True).stdout.splitlines()}
    for m in ("/s", "/s400", "/var/run/secrets/kubernetes.io/serviceaccount"):
        assert mounts[m][2] == "tmpfs" and mounts[m][3].split(",")[0] == "ro", mounts[m]
    assert mounts["/e"][2] != "tmpfs"  # an emptyDir is on the node's disk
    ls = sh(c, "probe", "ls -lnL /s/password /s400/password", check=True).stdout.splitlines()
    assert [l.split()[0] for l in ls] == ["-rw-r--r--", "-r--------"]
    assert sh(c, "probe", "cat /s/password", check=True).stdout == SECRET_VALUE
    r = sh(c, "probe", "echo x > /s/planted || ln -s /etc/passwd /s/.password.tmp")
    assert refused(r, "Read-only file system")
    # On the node, too, the secret lives in memory: the volume directory is a tmpfs.
    uid = c.kjson("get", "pod", "probe")["metadata"]["uid"]
    vol = c.state_dir / c.name / "nodes" / "node1" / "kubelet" / "pods" / uid / "volumes" / "s"
    host_mounts = {l.split()[4]: l.split(" - ")[1].split()[0] for l in Path("/proc/self/mountinfo").read_text().splitlines()}
    assert host_mounts.get(str(vol)) == "tmpfs"


def test_secret_value_in_no_log_or_event(cluster):
    c = cluster
    assert sh(c, "probe", 'test "$PASSWORD" = "$(cat /s/password)" && echo same', check=True).stdout == "same\n"
    logs = sorted((c.state_dir / c.name / "logs").glob("*.log"))
    assert logs
    for f in logs:
        assert SECRET_VALUE not in f.read_text(errors="replace"), f
    events = c.kubectl("get", "events", "-A", "-o", "json").stdout
    assert SECRET_VALUE not in events and "probe" in events
    assert SECRET_VALUE not in c.kubectl("describe", "pod", "probe").stdout

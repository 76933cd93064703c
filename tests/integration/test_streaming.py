"""``kubectl exec``, ``cp``, ``attach`` / ``run -it`` and ``port-forward`` against a real cluster.

exec: the command runs inside the container (its pid namespace, root, environment, cgroup and
capabilities), output streams come back separated, stdin reaches it, a tty works, and the
exit code comes back to kubectl. port-forward: bytes reach a server that listens only on the
pod's loopback, several connections at once, intact; an unreachable port gives upstream's error.
attach: an interactive container's own stdin and tty (``kubectl run -it --rm``), exit code and all.
kubectl port-forward runs in the cluster's host-side namespace, and so does the client."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

POD = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: ex}
    spec:
      containers:
      - name: main
        image: busybox
        command: [sleep, "3600"]
        workingDir: /tmp
        env: [{name: GREETING, value: hello}]
      - name: side
        image: busybox
        command: [sh, -c, 'mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']
""")


@pytest.fixture(scope="module")
def cluster(one_node_cluster):
    c = one_node_cluster
    c.kubectl("apply", "-f", "-", input=POD)
    c.kubectl("wait", "--for=condition=Ready", "pod/ex", "--timeout=60s")
    return c


def test_exec_streams_env_and_exit_code(cluster):
    r = cluster.kubectl("exec", "ex", "-c", "main", "--", "sh", "-c", "echo out $GREETING $(pwd); echo err >&2; exit 3",
                        check=False)
    assert r.returncode == 3
    assert r.stdout == "out hello /tmp\n"
    assert "err\n" in r.stderr and "command terminated with exit code 3" in r.stderr


def test_exec_is_inside_the_container(cluster):
    r = cluster.kubectl("exec", "ex", "-c", "main", "--", "sh", "-c",
                        "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; grep CapBnd /proc/self/status; "
                        "grep CapBnd /proc/1/status; cat /proc/self/cgroup")
    lines = r.stdout.splitlines()
    assert lines[0].strip() == "sleep 3600"  # pid 1 of the container's own pid namespace
    assert lines[1] == "ex"
    assert lines[2].split()[1] == lines[3].split()[1]  # the same capability bounding set as the container
    uid = cluster.kjson("get", "pod", "ex")["metadata"]["uid"]
    assert any(f"pod{uid}/main" in l for l in lines[4:]), lines[4:]  # accounted to the container's cgroup


def test_exec_stdin_and_default_container_errors(cluster):
    r = cluster.kubectl("exec", "-i", "ex", "-c", "side", "--", "sh", "-c", "wc -l", input="a\nb\nc\n")
    assert r.stdout.strip() == "3"
    r = cluster.kubectl("exec", "ex", "-c", "nope", "--", "true", check=False)
    assert r.returncode != 0 and "container nope is not valid for pod ex" in r.stderr
    r = cluster.kubectl("exec", "ex", "-c", "main", "--", "no-such-command", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr


def test_exec_tty(cluster):
    kubectl = " ".join(cluster._base("kubectl")) + " -- exec -it ex -c main -- sh"
    p = subprocess.run(["script", "-qec", f"stty cols 97 rows 31; {kubectl}", "/dev/null"],
                       input="tty; stty size; exit 4\n", capture_output=True, text=True, timeout=60)
    assert "/dev/pts/0" in p.stdout, p.stdout + p.stderr
    assert "31 97" in p.stdout, p.stdout
    assert p.returncode == 4


def test_cp_round_trip(cluster, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("payload\n" * 1000)
    cluster.kubectl("cp", str(src), "ex:/tmp/in.txt", "-c", "main")
    assert cluster.kubectl("exec", "ex", "-c", "main", "--", "wc", "-l", "/tmp/in.txt").stdout.split()[0] == "1000"
    back = tmp_path / "back.txt"
    cluster.kubectl("cp", "ex:/tmp/in.txt", str(back), "-c", "main")
    assert back.read_text() == src.read_text()


def test_python_client_exec(cluster):
    script = textwrap.dedent(f"""
        from kubernetes import client, config
        from kubernetes.stream import stream
        config.load_kube_config({str(cluster.state_dir / cluster.name / 'server' / 'admin.kubeconfig')!r})
        out = stream(client.CoreV1Api().connect_get_namespaced_pod_exec, "ex", "default", container="main",
                     command=["sh", "-c", "echo py $GREETING"], stderr=True, stdin=False, stdout=True, tty=False)
        print(out, end="")
    """)
    import sys
    r = cluster.host(sys.executable, "-c", script, timeout=60)
    assert r.stdout == "py hello\n", r.stderr


class PortForward:
    """``kubectl port-forward`` in the background (its own process group, ended by id)."""

    def __init__(self, cluster, *args: str):
        self.log = cluster.state_dir / f"pf-{time.monotonic_ns()}.log"
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen(cluster._base("kubectl") + ["--", "port-forward", *args], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        cluster.wait_for("port-forward to listen", lambda: "Forwarding from 127.0.0.1" in self.log.read_text(), timeout=30)

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.out.close()


def test_port_forward(cluster):
    pf = PortForward(cluster, "pod/ex", "18080:8080")
    try:
        assert cluster.wget("http://127.0.0.1:18080/") == "hello-from-pod\n"
        cluster.kubectl("exec", "ex", "-c", "side", "--", "sh", "-c", "head -c 2000000 /dev/urandom > /www/big")
        want = cluster.kubectl("exec", "ex", "-c", "side", "--", "md5sum", "/www/big").stdout.split()[0]
        r = cluster.host("sh", "-c", "for i in 1 2 3; do (busybox timeout 20 busybox wget -qO- "
                         "http://127.0.0.1:18080/big | md5sum) & done; wait", timeout=60)
        assert [l.split()[0] for l in r.stdout.splitlines()] == [want] * 3, r.stdout + r.stderr
        assert pf.text().count("Handling connection for 18080") >= 4
    finally:
        pf.stop()


def test_port_forward_unreachable_port(cluster):
    pf = PortForward(cluster, "pod/ex", "18081:9999")
    try:
        assert cluster.wget("http://127.0.0.1:18081/") is None
        cluster.wait_for("the forwarding error", lambda: "error forwarding port 9999" in pf.text(), timeout=20)
        assert "connection refused" in pf.text()
    finally:
        pf.stop()


def test_run_it_attaches_to_the_containers_own_tty(cluster):
    kubectl = " ".join(cluster._base("kubectl")) + " -- run -it --rm --restart=Never --pod-running-timeout=3m it1 --image=busybox -- sh"
    # The input waits a moment: what is typed before kubectl has attached is not seen, as upstream.
    # kubectl sends the terminal's size; the shim sets it on the container's tty
    p = subprocess.run(["sh", "-c", f"(sleep 10; printf 'echo hi-$((6*7))\\ntty\\nstty size\\nexit 3\\n') | "
                        f"script -qec 'stty cols 97 rows 31; {kubectl}' /dev/null"],
                       capture_output=True, text=True, timeout=240)
    assert "hi-42" in p.stdout and "/dev/pts/0" in p.stdout and "31 97" in p.stdout, p.stdout + p.stderr
    assert p.returncode == 3, p.stdout
    cluster.wait_for("--rm to delete the pod", lambda: cluster.kubectl("get", "pod", "it1", check=False).returncode != 0)


def test_run_i_pipes_stdin_and_attach_follows_output(cluster):
    r = cluster.kubectl("run", "-i", "--rm", "--restart=Never", "it2", "--image=busybox", "--",
                        "sh", "-c", "read x; echo got-$x; exit 4", input="hello\n", check=False, timeout=90)
    assert "got-hello" in r.stdout and r.returncode == 4, r.stdout + r.stderr
    cluster.kubectl("run", "ticker", "--image=busybox", "--", "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.5; done")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/ticker", "--timeout=60s")
    p = subprocess.Popen(cluster._base("kubectl") + ["--", "attach", "ticker"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=4)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
    ticks = [int(l.split("-")[1]) for l in out.split() if l.startswith("tick-")]
    assert len(ticks) >= 3 and ticks == sorted(ticks), out  # live output, not the log's beginning
    assert ticks[0] > 1


def test_debug_ephemeral_container_shares_the_target_processes(cluster):
    """The "Debug Running Pods" tutorial: ``kubectl debug -it POD --image=busybox --target=C``
    adds an ephemeral container that sees C's processes, attaches to it, and it is never restarted."""
    cluster.kubectl("run", "eph-demo", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/eph-demo", "--timeout=60s")
    kubectl = " ".join(cluster._base("kubectl")) + " -- debug -it eph-demo --image=busybox --target=eph-demo --container=dbg"
    p = subprocess.run(["sh", "-c", f"(sleep 10; printf 'ps -o pid,args\\necho dbg-$((6*7))\\nexit 5\\n') | "
                        f"script -qec '{kubectl}' /dev/null"], capture_output=True, text=True, timeout=240)
    assert "dbg-42" in p.stdout, p.stdout + p.stderr
    assert re.search(r"^\s*1 sleep 3600", p.stdout.replace("\r", ""), re.M), p.stdout  # the target's pid 1
    def ended():
        pod = json.loads(cluster.kubectl("get", "pod", "eph-demo", "-o", "json").stdout)
        return pod if "terminated" in pod["status"]["ephemeralContainerStatuses"][0]["state"] else None
    pod = cluster.wait_for("the ephemeral container's end in the pod's status", ended, timeout=30)
    (st,) = pod["status"]["ephemeralContainerStatuses"]
    assert st["name"] == "dbg" and st["state"]["terminated"]["exitCode"] == 5 and st["restartCount"] == 0
    assert pod["status"]["phase"] == "Running" and pod["status"]["containerStatuses"][0]["ready"]
    assert "dbg-42" in cluster.kubectl("logs", "eph-demo", "-c", "dbg").stdout

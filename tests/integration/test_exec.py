"""``kubectl exec`` and ``kubectl cp`` against a real cluster: the command runs inside the
container (its pid namespace, root, environment, cgroup and capabilities), output streams
come back separated, stdin reaches it, a tty works, and the exit code comes back to kubectl."""
from __future__ import annotations

import subprocess
import textwrap

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
        command: [sleep, "3600"]
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

"""The images tutorials use, driven by the real kubectl: nginx serves its welcome page and logs
requests to `kubectl logs`, python runs a one-liner, a missing image goes ErrImagePull ->
ImagePullBackOff (or ErrImageNeverPull with policy Never), and an image imported from an OCI
tarball built here by hand (busybox binary, two layers with whiteouts) runs."""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_images import layer, oci_archive

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path("/var/lib/nanokube/images")  # what `nanokube up` agents read by default


@pytest.fixture(scope="module")
def images_built() -> None:
    """The nginx and python images come from rootfs/build (scripts/setup runs it; it is cached,
    so this is a quick no-op after setup) — never from images made by hand."""
    r = subprocess.run(["bash", str(ROOT / "rootfs/build"), "--images-dir", str(IMAGES), "nginx", "python"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"rootfs/build failed: {r.stdout}{r.stderr}"


def pod_of(c, selector: str) -> dict:
    pods = c.kjson("get", "pods", "-l", selector)["items"]
    assert pods, f"no pod for {selector}"
    return pods[0]


def waiting_reason(c, pod: str) -> str:
    st = c.kjson("get", "pod", pod).get("status", {}).get("containerStatuses") or [{}]
    return (st[0].get("state", {}).get("waiting") or {}).get("reason", "")


def test_nginx_deployment_serves_welcome_page_and_logs_requests(one_node_cluster, images_built) -> None:
    c = one_node_cluster
    c.kubectl("create", "deployment", "nginx", "--image=nginx")
    try:
        def running():
            p = pod_of(c, "app=nginx")
            return p if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP") else None
        p = c.wait_for("nginx pod Running", running, timeout=90)
        ip, node = p["status"]["podIP"], p["spec"]["nodeName"]
        page = c.wait_for("nginx welcome page", lambda: c.wget(f"http://{ip}/", node=node), timeout=30)
        assert "<title>Welcome to nginx!</title>" in page
        # access.log -> /dev/stdout: the request shows in `kubectl logs`, in nginx's "main" format.
        def get_logged():
            out = c.kubectl("logs", "deploy/nginx").stdout
            return out if '"GET / HTTP/1.1" 200' in out else None
        logs = c.wait_for("GET line in kubectl logs", get_logged, timeout=30)
        assert "start worker process" in logs  # error.log -> /dev/stderr
        # Official layout: master as root, workers as the nginx user; the html root and config.
        show = 'for s in /proc/[0-9]*/status; do awk \'/^Name|^Uid/ {printf "%s ", $2} END {print ""}\' $s; done'
        procs = c.kubectl("exec", p["metadata"]["name"], "--", "sh", "-c", show).stdout
        assert any(line.split()[:2] == ["nginx", "101"] for line in procs.splitlines()), procs
        files = c.kubectl("exec", p["metadata"]["name"], "--", "sh", "-c",
                          "readlink /var/log/nginx/access.log; ls /usr/share/nginx/html; cat /etc/resolv.conf").stdout
        assert "/dev/stdout" in files and "index.html" in files and "50x.html" in files
        assert "10.96.0.10" in files  # the kubelet's resolv.conf, nothing from the build host
        # The image ID names the local build (rootfs/build), whatever the tag asked for.
        assert p["status"]["containerStatuses"][0]["imageID"].startswith("nanokube.local/nginx@sha256:")
    finally:
        c.kubectl("delete", "deployment", "nginx", "--wait=false", check=False)


def test_python_one_liner(one_node_cluster, images_built) -> None:
    c = one_node_cluster
    c.kubectl("run", "py", "--image=python:3.12", "--", "python3", "-c", "print(6*7)")
    c.kubectl("run", "py2", "--image=python:3.11-slim", "--restart=Never", "--command", "--",
              "python", "-c", "import ssl, json, sqlite3; print(json.dumps({'ok': ssl.OPENSSL_VERSION[:7]}))")
    try:
        c.wait_for("py logs 42", lambda: c.kubectl("logs", "py", check=False).stdout.strip() == "42", timeout=60)
        c.wait_for("py2 logs", lambda: '{"ok": "OpenSSL"}' in c.kubectl("logs", "py2", check=False).stdout, timeout=60)
    finally:
        c.kubectl("delete", "pod", "py", "py2", "--wait=false", check=False)


def test_missing_image_pull_errors_then_import_recovers(one_node_cluster, tmp_path: Path) -> None:
    c = one_node_cluster
    repo = f"nk-missing-{secrets.token_hex(3)}"
    missing = f"{repo}:1.0"
    c.kubectl("run", "missing", f"--image={missing}")
    c.kubectl("run", "never", f"--image={missing}", "--image-pull-policy=Never")
    try:
        c.wait_for("ErrImageNeverPull", lambda: waiting_reason(c, "never") == "ErrImageNeverPull", timeout=60)
        st = c.kjson("get", "pod", "never")["status"]["containerStatuses"][0]["state"]["waiting"]
        assert st["message"] == f'Container image "{missing}" is not present with pull policy of Never'
        # ErrImagePull (for a moment), then ImagePullBackOff as STATUS in `kubectl get pods`.
        c.wait_for("ImagePullBackOff", lambda: "ImagePullBackOff" in c.kubectl("get", "pods", "missing").stdout,
                   timeout=60)
        assert c.kjson("get", "pod", "missing")["status"]["phase"] == "Pending"
        events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=missing").stdout
        assert f'Failed to pull image "{missing}"' in events and "Back-off pulling image" in events
        assert "Error: ErrImagePull" in events
        # The image turns up (imported): the kubelet's next look finds it present, which needs no
        # pull (as upstream: IfNotPresent with a present image ignores the pull back-off), and the
        # Never pod's periodic re-check finds it too.
        assert nk_image("import", str(busybox_tarball(tmp_path / "img.tar")), "--name", missing).returncode == 0

        def both_running():
            pods = c.kjson("get", "pods")["items"]
            running = {p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}
            return running >= {"missing", "never"}
        c.wait_for("pods running after import", both_running, timeout=90)
    finally:
        c.kubectl("delete", "pod", "missing", "never", "--grace-period=1", check=False, timeout=90)
        nk_image("rm", repo)


NK = [sys.executable, "-m", "nanokube", "image"]


def nk_image(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(NK + [*args, "--images-dir", str(IMAGES)], capture_output=True, text=True, timeout=60)


def busybox_tarball(path: Path) -> Path:
    """An OCI image layout tarball, by hand: the host's static busybox in a lower layer, a
    gzip upper layer whose whiteouts delete /etc/old and make /data opaque."""
    bb = Path("/bin/busybox").read_bytes()  # static: the whole userland of the test image
    base = layer([("d", "bin", None), ("f", "bin/busybox", bb)]
                 + [("l", f"bin/{a}", "busybox") for a in ("sh", "ls", "cat", "echo", "test", "pwd", "sleep")]
                 + [("d", "etc", None), ("f", "etc/old", b"from layer 1\n"),
                    ("d", "data", None), ("f", "data/lower", b"lower\n")])
    top = layer([("f", "etc/.wh.old", b""), ("f", "data/.wh..wh..opq", b""), ("f", "data/upper", b"upper\n")], gz=True)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": ["/bin/sh", "-c"],
                         "Cmd": ['echo "$GREETING in $(pwd)"; ls /data; test -e /etc/old || echo old-gone; sleep 3600'],
                         "Env": ["PATH=/bin", "GREETING=hello-imported"], "WorkingDir": "/work"},
              "rootfs": {"type": "layers", "diff_ids": []}}
    return oci_archive(path, [base, top], config)


def test_imported_oci_tarball_runs(one_node_cluster, tmp_path: Path) -> None:
    c = one_node_cluster
    name = f"nk-import-{secrets.token_hex(3)}"
    r = nk_image("import", str(busybox_tarball(tmp_path / "img.tar")), "--name", f"{name}:v1")
    assert r.returncode == 0, r.stderr
    try:
        ls = nk_image("ls").stdout
        assert any(line.split()[:2] == [name, "v1"] for line in ls.splitlines()), ls
        c.kubectl("run", "imported", f"--image=docker.io/library/{name}:v1", "--image-pull-policy=Never")
        want = "hello-imported in /work\nupper\nold-gone"
        c.wait_for("imported image output", lambda: c.kubectl("logs", "imported", check=False).stdout.strip() == want,
                   timeout=60)
        c.kubectl("delete", "pod", "imported", "--grace-period=1")
    finally:
        c.kubectl("delete", "pod", "imported", "--wait=false", check=False)
        nk_image("rm", name)
    assert name not in nk_image("ls").stdout

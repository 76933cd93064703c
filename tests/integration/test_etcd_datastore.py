"""`nanokube server --datastore etcd://...` driven by the real kubectl, and restarted.

No cluster and no root needed: a throwaway Debian etcd and the server both listen on
127.0.0.1 ports picked here (the way bench/bench_api.py runs the server). The check a user
would make: objects created through kubectl are in etcd under the prefix, a server started
afresh (new data dir, so nothing comes from local disk) on the same etcd lists every one of
them unchanged, and new writes continue etcd's revision sequence.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.etcdproc import SKIP_REASON, etcd_binary, local_etcd

pytestmark = [pytest.mark.integration, pytest.mark.skipif(etcd_binary() is None, reason=SKIP_REASON)]

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, datastore: str):
        self.data_dir, self.port = data_dir, _free_port()
        self.log = open(data_dir.parent / f"{data_dir.name}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nanokube", "server", "--data-dir", str(data_dir), "--port", str(self.port),
             "--cluster-dns-port", "0", "--datastore", datastore],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while self.kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
            assert self.proc.poll() is None, (data_dir.parent / f"{data_dir.name}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server not ready"
            time.sleep(0.2)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kc = self.data_dir / "admin.kubeconfig"
        if not kc.exists():
            return subprocess.CompletedProcess(args, 1, "", "no kubeconfig yet")
        r = subprocess.run([KUBECTL, "--kubeconfig", str(kc), "--server", f"https://127.0.0.1:{self.port}", *args],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {r.stderr}{r.stdout}")
        return r

    def kjson(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def etcd_get(url: str, key: str) -> dict | None:
    """Read one key straight from etcd's JSON gateway (not through nanokube)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(url.replace("etcd://", "http://") + "/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        kvs = json.loads(r.read()).get("kvs", [])
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def objects(srv: Server) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) → resourceVersion of a few kinds, as kubectl lists them."""
    items = srv.kjson("get", "configmaps,namespaces,serviceaccounts,clusterroles", "-A")["items"]
    return {(i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]): i["metadata"]["resourceVersion"]
            for i in items}


def test_server_on_etcd_kubectl_and_restart(tmp_path):
    with local_etcd() as url:
        ds = url + "/it"
        s1 = Server(tmp_path / "server1", ds)
        try:
            s1.kubectl("create", "configmap", "cm1", "--from-literal=colour=blue")
            s1.kubectl("create", "namespace", "extra")
            s1.kubectl("create", "configmap", "cm2", "-n", "extra", "--from-literal=n=2")
            cm1 = s1.kjson("get", "configmap", "cm1")
            assert cm1["data"] == {"colour": "blue"}
            listed = s1.kjson("get", "configmaps", "-A")
            names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]}
            assert {("default", "cm1"), ("extra", "cm2")} <= names
            # The acknowledged write is in etcd itself, under the prefix, with the same resourceVersion.
            raw = etcd_get(url, "/it/registry/configmaps/default/cm1")
            assert raw is not None and raw["data"] == {"colour": "blue"}
            assert raw["metadata"]["resourceVersion"] == cm1["metadata"]["resourceVersion"]
            before = objects(s1)
            last_rv = int(json.loads(s1.kubectl("get", "--raw", "/api/v1/configmaps").stdout)["metadata"]["resourceVersion"])
        finally:
            s1.stop()
        assert not (tmp_path / "server1" / "state.db").exists()  # nothing went to local SQLite

        s2 = Server(tmp_path / "server2", ds)  # a fresh data dir: all state must come from etcd
        try:
            after = objects(s2)
            assert set(before) <= set(after)  # every object (controllers may have touched some since)
            mine = [("ConfigMap", "default", "cm1"), ("ConfigMap", "extra", "cm2"), ("Namespace", "", "extra")]
            assert [after[k] for k in mine] == [before[k] for k in mine]  # user objects unchanged
            assert s2.kjson("get", "configmap", "cm1")["data"] == {"colour": "blue"}
            s2.kubectl("create", "configmap", "cm3", "--from-literal=x=y")
            rv3 = int(s2.kjson("get", "configmap", "cm3")["metadata"]["resourceVersion"])
            assert rv3 > last_rv  # the revision sequence continues
            s2.kubectl("delete", "configmap", "cm1")
            assert s2.kubectl("get", "configmap", "cm1", check=False).returncode != 0
            assert etcd_get(url, "/it/registry/configmaps/default/cm1") is None
        finally:
            s2.stop()

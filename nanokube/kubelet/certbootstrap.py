"""TLS bootstrapping: a joining agent turns a bootstrap token into its own client certificate.

As upstream's kubelet does: with no usable certificate in ``<data-dir>/pki``, the agent makes a
key and a CSR for ``O=system:nodes, CN=system:node:<node-name>``, posts it as a
CertificateSigningRequest (signer ``kubernetes.io/kube-apiserver-client-kubelet``)
authenticated by the bootstrap token, and waits for the controller manager to approve and
sign it. From then on it talks to the apiserver as ``system:node:<node-name>``; a restart
reuses the certificate while it has more than a day left.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path

import aiohttp

from nanokube.api.errors import ApiError
from nanokube.apiserver import certs
from nanokube.client.http import HttpClient

log = logging.getLogger("nanokube.certbootstrap")
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"


def valid_for(crt: Path, seconds: int) -> bool:
    return crt.exists() and subprocess.run(["openssl", "x509", "-checkend", str(seconds), "-noout", "-in", str(crt)],
                                           capture_output=True).returncode == 0


async def client_certificate(server: str, *, ca_file: Path, bootstrap_token: str, node_name: str, pki_dir: Path,
                             timeout: float = 300.0) -> tuple[Path, Path]:
    """(certificate, key) files of this node's client certificate, requested if need be."""
    crt, key = pki_dir / "kubelet-client.crt", pki_dir / "kubelet-client.key"
    if key.exists() and valid_for(crt, 24 * 3600):
        return crt, key
    pki_dir.mkdir(parents=True, exist_ok=True)
    key_pem, csr_pem = await asyncio.to_thread(certs.new_key_and_csr, f"system:node:{node_name}", ["system:nodes"])
    name = f"node-csr-{secrets.token_hex(8)}"
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
           "spec": {"request": base64.b64encode(csr_pem.encode()).decode(), "signerName": SIGNER,
                    "usages": ["digital signature", "client auth"]}}
    client = HttpClient(server, token=bootstrap_token, ca_file=ca_file)
    deadline = time.monotonic() + timeout
    delay = 0.05
    try:
        while True:  # the server may not know the token yet (it is starting): retry until the deadline
            try:
                await client.create("certificatesigningrequests", csr)
                break
            except (ApiError, OSError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                if isinstance(e, ApiError) and e.code == 409:  # our own (random) name: an earlier attempt got through
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not request a client certificate: {e}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.info("requested a client certificate for system:node:%s (%s)", node_name, name)
        delay = 0.05
        while True:
            try:
                got = await client.get("certificatesigningrequests", name)
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError):  # the server restarting: ask again
                got = {}
            status = got.get("status") or {}
            bad = [c for c in status.get("conditions") or [] if c.get("type") in ("Denied", "Failed")]
            if bad:
                raise RuntimeError(f"certificate request {name} {bad[0]['type'].lower()}: {bad[0].get('message', '')}")
            if status.get("certificate"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"certificate request {name} was not signed within {timeout:.0f}s "
                                   f"(approve it: kubectl certificate approve {name})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        await client.close()
    tmp = key.with_suffix(".tmp")
    tmp.write_text(key_pem)
    os.chmod(tmp, 0o600)
    tmp.replace(key)
    tmp = crt.with_suffix(".tmp")
    tmp.write_bytes(base64.b64decode(status["certificate"]))
    tmp.replace(crt)
    log.info("client certificate for system:node:%s written to %s", node_name, crt)
    return crt, key

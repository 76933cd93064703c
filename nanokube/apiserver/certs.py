"""Cluster PKI: a CA and the apiserver's serving certificate, made at first start.

We call the ``openssl`` command (Debian's openssl package, present on every Debian host)
instead of adding a crypto library: four commands, run once per cluster. The admin bearer
token and the kubeconfig that carries it live beside the certificates.
"""
from __future__ import annotations

import secrets
import subprocess
import tempfile
from pathlib import Path

import yaml


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def durable(*paths: Path) -> None:
    """fsync the files and their directories: credentials made at first start must survive a
    machine crash (or a filesystem that goes read-only on an error) as the store's data does."""
    import os
    dirs = set()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dirs.add(Path(p).parent)
    for d in dirs:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_pki(pki_dir: Path, *, ips: list[str], dns: list[str]) -> dict[str, Path]:
    """CA (ca.crt/ca.key) and serving cert (apiserver.crt/.key) for the given SANs; idempotent."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    crt, key = pki_dir / "apiserver.crt", pki_dir / "apiserver.key"
    made: list[Path] = []
    if not ca_crt.exists():
        made += [ca_crt, ca_key]
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "3650", "-subj", "/CN=nanokube-ca")
    sans = ",".join([f"IP:{i}" for i in ips] + [f"DNS:{d}" for d in dns])
    stamp = pki_dir / "apiserver.sans"
    if not crt.exists() or not stamp.exists() or stamp.read_text() != sans:
        with tempfile.TemporaryDirectory() as td:
            csr = Path(td) / "a.csr"
            ext = Path(td) / "ext.cnf"
            ext.write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
            _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
            _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(crt), "-days", "3650", "-extfile", str(ext))
        stamp.write_text(sans)
        made += [crt, key, stamp]
    for p in (ca_key, key):
        p.chmod(0o600)
    if made:  # only what this start wrote: a restart pays no fsyncs
        durable(*made)
    return {"ca": ca_crt, "ca_key": ca_key, "cert": crt, "key": key}


def ensure_token(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok = secrets.token_hex(24)
    path.write_text(tok + "\n")
    path.chmod(0o600)
    durable(path)
    return tok


def write_kubeconfig(path: Path, *, server: str, ca: Path, token: str, cluster: str = "nanokube") -> None:
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": f"{cluster}-admin", "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin", "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)
    durable(path)


# -- client certificates: CSRs, their subjects, and signing them with the cluster CA ----------
def new_key_and_csr(cn: str, orgs: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """A fresh P-256 key and a certificate signing request for ``/O=.../CN=cn`` (PEM, PEM)."""
    subj = "".join(f"/O={_dn_escape(o)}" for o in orgs) + f"/CN={_dn_escape(cn)}"
    with tempfile.TemporaryDirectory() as td:
        key, csr = Path(td) / "k.pem", Path(td) / "r.pem"
        _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", subj)
        return key.read_text(), csr.read_text()


def _dn_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+")


def csr_subject(csr_pem: str) -> tuple[str, list[str]] | None:
    """(common name, organizations) of a PEM CSR whose self-signature verifies; None if it is
    not a valid CSR."""
    r = subprocess.run(["openssl", "req", "-verify", "-noout", "-subject", "-nameopt", "multiline,utf8,-esc_msb"],
                       input=csr_pem, capture_output=True, text=True)
    if r.returncode != 0:
        return None
    cn, orgs = "", []
    for line in r.stdout.splitlines()[1:]:  # "subject=" then "    commonName   = value" lines
        k, _, v = line.strip().partition("=")
        if k.strip() == "commonName":
            cn = v.strip()
        elif k.strip() == "organizationName":
            orgs.append(v.strip())
    return cn, orgs


def sign_client_csr(csr_pem: str, *, ca_crt: Path, ca_key: Path, seconds: int) -> str:
    """A client certificate (clientAuth) for the CSR, valid from now for ``seconds``, signed by
    the CA; the subject is kept as requested. ``openssl ca`` takes exact start and end times."""
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    fmt = "%Y%m%d%H%M%SZ"
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        (d / "index.txt").write_text("")
        (d / "csr.pem").write_text(csr_pem)
        (d / "ca.cnf").write_text(
            f"[ca]\ndefault_ca = c\n[c]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\nserial = {d}/serial\n"
            "default_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n[any]\n"
            "[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = clientAuth\n")
        (d / "serial").write_text(secrets.token_hex(16) + "\n")
        _run("openssl", "ca", "-batch", "-notext", "-preserveDN", "-config", str(d / "ca.cnf"), "-extensions", "ext",
             "-cert", str(ca_crt), "-keyfile", str(ca_key), "-in", str(d / "csr.pem"), "-out", str(d / "crt.pem"),
             "-startdate", (now - dt.timedelta(minutes=5)).strftime(fmt),
             "-enddate", (now + dt.timedelta(seconds=seconds)).strftime(fmt))
        return (d / "crt.pem").read_text()

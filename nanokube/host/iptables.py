"""iptables in the caller's network namespace, through iptables-save / iptables-restore.

Like upstream kube-proxy, changes are applied as one ``iptables-restore --noflush``
transaction that rewrites only the chains that changed, which is atomic per table and
cheaper than rule-by-rule edits for all but the smallest changes. The legacy backend is
used (each node's rules live in its own namespace, so the host's firewall, nft or not, is
never involved).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess

Chains = dict[tuple[str, str], list[str]]


def _bin(name: str) -> str:
    return shutil.which(f"iptables-legacy{name}") or shutil.which(f"iptables{name}") or f"iptables{name}"


def save(tables: tuple[str, ...] = ("filter", "nat")) -> Chains:
    """Current chains and rules (rule text as after ``-A CHAIN``)."""
    out: Chains = {}
    for table in tables:
        r = subprocess.run([_bin("-save"), "-t", table], capture_output=True, text=True, check=True)
        for line in r.stdout.splitlines():
            if line.startswith(":"):
                out.setdefault((table, line[1:].split()[0]), [])
            elif line.startswith("-A "):
                chain, _, rule = line[3:].partition(" ")
                out.setdefault((table, chain), []).append(rule)
    return out


def restore(text: str) -> None:
    if not text.strip():
        return
    r = subprocess.run([_bin("-restore"), "--noflush", "-w"], input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"iptables-restore failed: {r.stderr.strip()}\n--- input ---\n{text[:4000]}")


def ensure_jump(table: str, chain: str, rule: str) -> None:
    """Insert ``rule`` at the top of built-in ``chain`` unless it is already there."""
    args = shlex.split(rule)
    if subprocess.run([_bin(""), "-w", "-t", table, "-C", chain, *args], capture_output=True).returncode != 0:
        subprocess.run([_bin(""), "-w", "-t", table, "-I", chain, "1", *args], capture_output=True, text=True, check=True)


def delete_jump(table: str, chain: str, rule: str) -> None:
    args = shlex.split(rule)
    while subprocess.run([_bin(""), "-w", "-t", table, "-D", chain, *args], capture_output=True).returncode == 0:
        pass

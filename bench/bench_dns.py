"""Benchmark: cluster DNS (network/dns.py) with 1,000 Services vs a minimal dnslib UDP server
answering one fixed A record, both measured in the same run over loopback.

The registry is MemoryStore-backed and reached through the in-process LocalClient, exactly
as inside `nanokube server`; the DNS server runs on 127.0.0.1 at a free port. Each server
gets the same load from a separate client process (so the client does not share the
server's interpreter): --queries A questions for random service names, first one at a
time (latency: p50/p99), then with --window queries in flight (throughput).
Only loopback traffic; no root needed.

    .venv/bin/python bench/bench_dns.py [--services 1000] [--queries 5000] [--window 32]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---- the load generator (runs in its own process) ----------------------------------------

def client(port: int, names: list[str], n: int, window: int, seed: int = 1) -> dict:
    from dnslib import DNSRecord
    rnd = random.Random(seed)
    pkts = []
    for i in range(n):
        q = DNSRecord.question(rnd.choice(names), "A")
        q.header.id = i & 0xFFFF
        pkts.append(q.pack())
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    s.settimeout(5)
    sent: dict[int, float] = {}
    lat: list[float] = []
    bad = 0
    i = done = 0
    t0 = time.perf_counter()
    while done < n:
        while len(sent) < window and i < n:
            sent[i & 0xFFFF] = time.perf_counter()
            s.send(pkts[i])
            i += 1
        data = s.recv(4096)
        now = time.perf_counter()
        qid = int.from_bytes(data[:2], "big")
        if qid not in sent:
            continue
        lat.append(now - sent.pop(qid))
        if data[3] & 0x0F != 0 or int.from_bytes(data[6:8], "big") < 1:   # rcode NOERROR, >= 1 answer
            bad += 1
        done += 1
    total = time.perf_counter() - t0
    s.close()
    lat.sort()
    return {"qps": n / total, "p50_ms": statistics.median(lat) * 1e3,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "bad": bad}


# ---- the servers (in this process's event loop) ------------------------------------------

class FixedA(asyncio.DatagramProtocol):
    """The baseline: parse with dnslib, answer one fixed A record, pack."""

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        from dnslib import A, QTYPE, RR, DNSRecord
        req = DNSRecord.parse(data)
        rep = req.reply()
        rep.add_answer(RR(req.q.qname, QTYPE.A, ttl=5, rdata=A("10.96.0.1")))
        self.transport.sendto(rep.pack(), addr)


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


async def load(port: int, names_file: str, n: int, window: int) -> dict:
    p = await asyncio.create_subprocess_exec(sys.executable, __file__, "--client", str(port), names_file, str(n),
                                             str(window), stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"client failed ({p.returncode})")
    return json.loads(out)


async def bench(args: argparse.Namespace) -> None:
    from nanokube.api.schema import load_schemas
    from nanokube.apiserver.registry import Registry
    from nanokube.client.local import LocalClient
    from nanokube.network.dns import run_dns
    from nanokube.store import MemoryStore

    tmp = Path(tempfile.mkdtemp(prefix="nk-bench-dns-"))
    c = LocalClient(Registry(MemoryStore(), schemas=load_schemas(tmp / "cache")))
    namespaces = [f"ns{i}" for i in range(10)]
    for ns in namespaces:
        await c.create("namespaces", {"metadata": {"name": ns}})
    t = time.perf_counter()
    names = []
    for i in range(args.services):
        ns = namespaces[i % len(namespaces)]
        await c.create("services", {"metadata": {"name": f"s{i}", "namespace": ns},
                                    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
                       namespace=ns)
        names.append(f"s{i}.{ns}.svc.cluster.local")
    print(f"created {args.services} services in {time.perf_counter() - t:.1f} s")
    names_file = tmp / "names.json"
    names_file.write_text(json.dumps(names))

    loop = asyncio.get_running_loop()
    port = free_port()
    ready = asyncio.Event()
    dns_task = asyncio.create_task(run_dns(c, host="127.0.0.1", port=port, upstream=[], ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    base_t, _ = await loop.create_datagram_endpoint(FixedA, local_addr=("127.0.0.1", 0))
    base_port = base_t.get_extra_info("sockname")[1]
    try:
        results = {}
        for window in (1, args.window):
            for label, p in (("baseline (fixed A)", base_port), ("nanokube DNS", port)):
                await load(p, str(names_file), min(500, args.queries), window)      # warm-up
                results[(label, window)] = r = await load(p, str(names_file), args.queries, window)
                assert r["bad"] == 0, (label, r)
        print(f"\n{args.queries} A queries over loopback, {args.services} services, one client process\n")
        print(f"{'server':22s} {'in flight':>9s} {'queries/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s}")
        for (label, window), r in results.items():
            print(f"{label:22s} {window:9d} {r['qps']:10.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f}")
        for window in (1, args.window):
            b, d = results[("baseline (fixed A)", window)], results[("nanokube DNS", window)]
            print(f"ratio nanokube/baseline, {window} in flight: throughput {d['qps'] / b['qps']:.2f}x, "
                  f"p99 latency {d['p99_ms'] / b['p99_ms']:.2f}x")
    finally:
        base_t.close()
        dns_task.cancel()
        await asyncio.gather(dns_task, return_exceptions=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, names_file, n, window = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(client(port, json.loads(Path(names_file).read_text()), n, window)))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--window", type=int, default=32)
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()

"""The ``nanokube`` command: one console script, one subcommand per role.

Argument parsing only; each subcommand hands over to the module that does the work. The
global ``--netns`` option enters a network namespace before anything else runs, which is
how ``nanokube up`` places the server and each node's agent in their namespaces.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DEFAULT_STATE = Path(os.environ.get("NANOKUBE_STATE_DIR", "/var/lib/nanokube"))

EPILOG = """\
examples:
  sudo nanokube up                          a 3-node cluster on this host, until Ctrl-C
  sudo nanokube up --isolated --detach      host side in its own namespace; return when Ready
  sudo nanokube kubectl get nodes -o wide   the real kubectl, pointed at the cluster
  sudo nanokube exec --node node1 -- ip addr   a command inside node1's network namespace
  sudo nanokube down                        stop the cluster and remove all it made
"""


def _log_setup(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _eviction_args(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The kubelet's node-allocatable and eviction flags (agent; `up` passes them on)."""
    p.add_argument("--eviction-hard", default="memory.available<100Mi", metavar="SIGNAL<QUANTITY",
                   help=prefix + "evict pods when memory.available drops below this (a quantity or a %% of "
                        "capacity); also subtracted from the node's allocatable (default %(default)s)")
    p.add_argument("--system-reserved", default="", metavar="cpu=...,memory=...",
                   help=prefix + "resources kept for the operating system, not offered to pods")
    p.add_argument("--kube-reserved", default="", metavar="cpu=...,memory=...",
                   help=prefix + "resources kept for nanokube itself, not offered to pods")
    p.add_argument("--eviction-pressure-transition-period", type=float, default=300.0, metavar="SECONDS",
                   help=prefix + "how long MemoryPressure stays after memory recovers (default %(default)s)")
    p.add_argument("--max-pods", type=int, default=110, metavar="N",
                   help=prefix + "the most pods the node takes: its pods capacity (default %(default)s, as upstream)")


def _iptables_args(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Which kernel API the node's iptables rules go through (kube-proxy and NetworkPolicy alike)."""
    p.add_argument("--iptables-backend", choices=("legacy", "nft"), default=None,
                   help=prefix + "iptables-nft (nf_tables; the default where installed, or $NANOKUBE_IPTABLES: one "
                        "endpoint change is a small transaction) or iptables-legacy (x_tables: every change rewrites "
                        "the whole table). One backend per node: never switch while the node's rules exist")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanokube", description="A real, miniature Kubernetes for Linux hosts.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--netns", help="enter this named network namespace first (used by `up`)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("server", help="run the apiserver, scheduler and controllers",
                       description="Run the control plane: apiserver (HTTPS), store, scheduler and controllers.")
    s.add_argument("--data-dir", type=Path, default=DEFAULT_STATE / "server", help="state, PKI and kubeconfig (default %(default)s)")
    s.add_argument("--bind", action="append", help="address to listen on (repeatable; default 127.0.0.1)")
    s.add_argument("--port", type=int, default=6443)
    s.add_argument("--advertise-address", default=None, help="address agents and kubeconfig use (default: first --bind)")
    s.add_argument("--service-cidr", default="10.96.0.0/12")
    s.add_argument("--cluster-cidr", default="10.244.0.0/16")
    s.add_argument("--tls-san", action="append", default=[], help="extra IP or DNS name for the serving certificate")
    s.add_argument("--token-auth-file", type=Path,
                   help='static users, one per line: token,user,uid,"group1,group2" (as kube-apiserver)')
    s.add_argument("--cluster-dns-port", type=int, default=53,
                   help="port of the cluster DNS on the advertise address (UDP and TCP; 0 turns it off)")
    s.add_argument("--lb-pool", default=None, metavar="FIRST-LAST|CIDR",
                   help="addresses for type LoadBalancer Services, e.g. 172.30.0.200-172.30.0.250 (default: none)")
    s.add_argument("--datastore", default=None, metavar="URL",
                   help="etcd://HOST:PORT[/prefix] (etcd v3, this server its only writer) or sqlite:///PATH "
                        "(default: SQLite in the data dir)")

    s.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="SECONDS",
                   help="a node silent this long is marked NotReady and tainted (default %(default)s)")
    s.add_argument("--default-toleration-seconds", type=int, default=300, metavar="SECONDS",
                   help="how long pods stay on a not-ready or unreachable node (default %(default)s)")
    s.add_argument("--hpa-sync-period", type=float, default=15.0, metavar="SECONDS",
                   help="how often HorizontalPodAutoscalers are reconciled (default %(default)s)")
    s.add_argument("--scheduler-scoring-strategy", choices=("LeastAllocated", "MostAllocated"),
                   default="LeastAllocated",
                   help="NodeResourcesFit scoring: spread pods over the emptiest nodes (LeastAllocated, the "
                        "default) or pack them onto the fullest (MostAllocated)")

    a = sub.add_parser("agent", help="run a node: kubelet, kube-proxy and routes",
                       description="Run one node's agent: kubelet, kube-proxy and the host-gw route agent.")
    a.add_argument("--server", required=True, help="apiserver URL, e.g. https://192.168.56.10:6443")
    cred = a.add_mutually_exclusive_group(required=True)
    cred.add_argument("--bootstrap-token-file", type=Path,
                      help="file with a bootstrap token (ID.SECRET, from the server's data dir): the agent "
                           "requests its own client certificate (system:node:NAME) with it and keeps it in "
                           "DATA_DIR/pki")
    cred.add_argument("--token-file", type=Path, help="file with the shared node bearer token (older setups)")
    a.add_argument("--ca-file", type=Path, required=True, help="cluster CA certificate")
    a.add_argument("--kubelet-token-file", type=Path, help="token the apiserver presents to this kubelet (logs)")
    a.add_argument("--node-name", required=True)
    a.add_argument("--node-ip", required=True, help="this node's InternalIP")
    a.add_argument("--data-dir", type=Path, default=DEFAULT_STATE / "agent")
    a.add_argument("--images-dir", type=Path, default=DEFAULT_STATE / "images")
    a.add_argument("--cgroup-prefix", default="nanokube", help="cgroup path below this process's cgroup")
    a.add_argument("--cgroup-root", default=None,
                   help="absolute cgroup path pods go under (default: this process's cgroup; a systemd "
                        "service on cgroup v2 needs one outside its own, e.g. /)")
    a.add_argument("--node-status-update-frequency", type=float, default=10.0, metavar="SECONDS",
                   help="how often the node posts its status and renews its Lease (default %(default)s)")
    a.add_argument("--simulated-node", action="store_true",
                   help="one of several nodes sharing this host (local clusters): node usage is its pods' sum")
    a.add_argument("--cluster-cidr", default="10.244.0.0/16")
    a.add_argument("--pod-max-pids", type=int, default=1024, metavar="N",
                   help="the most processes a pod may have (its pids cgroup; -1: no limit; default %(default)s)")
    _eviction_args(a)
    _iptables_args(a)

    u = sub.add_parser("up", help="start a local cluster on this host",
                       description="Start a local cluster: one server and N nodes, each node in its own network "
                                   "namespace joined to a lan bridge (172.30.0.0/24).")
    u.add_argument("--cluster", default="nanokube", help="cluster name (default %(default)s)")
    u.add_argument("--nodes", type=int, default=3)
    u.add_argument("--isolated", action="store_true",
                   help="put the lan bridge and the server in namespace nk-<cluster> instead of the host's own network")
    u.add_argument("--detach", action="store_true", help="return once the cluster is Ready and leave it running")
    u.add_argument("--state-dir", type=Path, default=DEFAULT_STATE / "clusters")
    u.add_argument("--images-dir", type=Path, default=DEFAULT_STATE / "images")
    u.add_argument("--timeout", type=float, default=120, help="seconds to wait for Ready")
    u.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="SECONDS",
                   help="passed to the server: a node silent this long is marked NotReady (default %(default)s)")
    u.add_argument("--default-toleration-seconds", type=int, default=300, metavar="SECONDS",
                   help="passed to the server: how long pods stay on an unreachable node (default %(default)s)")
    u.add_argument("--hpa-sync-period", type=float, default=15.0, metavar="SECONDS",
                   help="passed to the server: how often HPAs are reconciled (default %(default)s)")
    _eviction_args(u, prefix="passed to every agent: ")
    _iptables_args(u, prefix="passed to every agent: ")

    d = sub.add_parser("down", help="stop a local cluster and remove everything it made")
    d.add_argument("--cluster", default="nanokube")
    d.add_argument("--state-dir", type=Path, default=DEFAULT_STATE / "clusters")

    k = sub.add_parser("kubectl", help="the real kubectl with the cluster's kubeconfig", add_help=False,
                       description="Run kubectl against a local cluster (entering its namespace if --isolated).")
    k.add_argument("--cluster", default=os.environ.get("NANOKUBE_CLUSTER", "nanokube"))
    k.add_argument("--state-dir", type=Path, default=DEFAULT_STATE / "clusters")
    k.add_argument("args", nargs=argparse.REMAINDER)

    e = sub.add_parser("exec", help="run a command on the cluster's host side or inside a node",
                       description="Run CMD where the cluster's host side is (namespace nk-<cluster> with --isolated) "
                                   "or, with --node, inside that node's network namespace.")
    e.add_argument("--cluster", default=os.environ.get("NANOKUBE_CLUSTER", "nanokube"))
    e.add_argument("--node", help="node name, e.g. node1")
    e.add_argument("--state-dir", type=Path, default=DEFAULT_STATE / "clusters")
    e.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")

    from nanokube.cli.image import add_image_parser
    add_image_parser(sub, images_dir=DEFAULT_STATE / "images")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_setup(args.verbose)
    if args.netns:
        from nanokube.host import netns
        netns.enter(args.netns)
    if args.cmd == "server":
        import asyncio
        from nanokube.apiserver.server import ServerConfig, run_server
        bind = args.bind or ["127.0.0.1"]
        cfg = ServerConfig(data_dir=args.data_dir, bind=bind, port=args.port,
                           advertise_address=args.advertise_address or bind[0], service_cidr=args.service_cidr,
                           cluster_cidr=args.cluster_cidr, extra_sans=args.tls_san, dns_port=args.cluster_dns_port,
                           node_monitor_grace_period=args.node_monitor_grace_period,
                           default_toleration_seconds=args.default_toleration_seconds,
                           token_auth_file=args.token_auth_file, lb_pool=args.lb_pool, datastore=args.datastore,
                           hpa_sync_period=args.hpa_sync_period,
                           scoring_strategy=args.scheduler_scoring_strategy)
        asyncio.run(run_server(cfg))
        return 0
    if args.cmd == "agent":
        import asyncio
        from nanokube.cli.agent import run_agent
        asyncio.run(run_agent(args))
        return 0
    if args.cmd in ("up", "down", "kubectl", "exec"):
        from nanokube.cluster import local
        return getattr(local, f"cmd_{args.cmd}")(args)
    if args.cmd == "image":
        from nanokube.cli.image import cmd_image
        return cmd_image(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

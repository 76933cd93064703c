"""``nanokube agent``: one node — kubelet, kube-proxy and host-gw routes — in one process.

Started in the node's network namespace (``--netns`` on real hosts is not needed: the VM's
own namespace is the node's). SIGTERM stops the agent but leaves pods and rules running, so
a restarted agent adopts them.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from nanokube.client.http import HttpClient
from nanokube.host import iptables
from nanokube.host.cgroups import detect
from nanokube.kubelet.certbootstrap import client_certificate
from nanokube.kubelet.eviction import parse_reserved
from nanokube.kubelet.kubelet import DEFAULT_POD_PIDS_LIMIT, Kubelet
from nanokube.kubelet.server import KubeletServer
from nanokube.network.ingress_agent import IngressAgent
from nanokube.network.podnet import PodNetwork
from nanokube.network.policy_agent import PolicyAgent
from nanokube.proxy.proxier import Proxier
from nanokube.runtime.images import ImageStore
from nanokube.runtime.runtime import Runtime

log = logging.getLogger("nanokube.agent")


async def run_agent(args: Any) -> None:
    if getattr(args, "iptables_backend", None):  # before anything reads or writes the node's tables
        iptables.set_mode(args.iptables_backend)
    try:  # the node agent is the last thing the OOM killer should pick, as upstream's kubelet
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-999")
    except OSError:
        pass
    if args.bootstrap_token_file:  # TLS bootstrapping: this node's own client certificate
        cert = await client_certificate(args.server, ca_file=args.ca_file, node_name=args.node_name,
                                        bootstrap_token=args.bootstrap_token_file.read_text().strip(),
                                        pki_dir=args.data_dir / "pki")
        client = HttpClient(args.server, ca_file=args.ca_file, client_cert=cert)
    else:
        client = HttpClient(args.server, token=args.token_file.read_text().strip(), ca_file=args.ca_file)
    kubelet_token = args.kubelet_token_file.read_text().strip() if args.kubelet_token_file else None
    data = args.data_dir
    runtime = Runtime(state_dir=data / "containers", images=ImageStore(args.images_dir), cgroups=detect(root=getattr(args, "cgroup_root", None)))
    network = PodNetwork(state_dir=data / "net")
    kubelet = Kubelet(client, node_name=args.node_name, node_ip=args.node_ip, runtime=runtime, network=network,
                      cgroup_prefix=args.cgroup_prefix, state_dir=data / "kubelet",
                      simulated_node=getattr(args, "simulated_node", False),
                      status_interval=getattr(args, "node_status_update_frequency", 10.0),
                      pod_pids_limit=getattr(args, "pod_max_pids", DEFAULT_POD_PIDS_LIMIT),
                      max_pods=getattr(args, "max_pods", 110),
                      eviction_hard=args.eviction_hard,
                      reserved=[parse_reserved(args.system_reserved), parse_reserved(args.kube_reserved)],
                      eviction_pressure_transition_period=args.eviction_pressure_transition_period)
    proxier = Proxier(client, node_name=args.node_name, node_ips=[args.node_ip], cluster_cidr=args.cluster_cidr)
    def own_ips() -> list[str]:  # the node's addresses (lan and bridge): kubelet probes come from them
        try:
            return [args.node_ip, network.ipam.gateway]
        except Exception:  # noqa: BLE001 - no pod CIDR yet
            return [args.node_ip]
    netpol_agent = PolicyAgent(client, node_name=args.node_name, node_ips=own_ips)
    runner = web.AppRunner(KubeletServer(kubelet, token=kubelet_token).app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, args.node_ip, kubelet.kubelet_port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    def on_signal(sig: int) -> None:
        log.info("received %s, stopping", signal.Signals(sig).name)
        stop.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    tasks = [asyncio.create_task(kubelet.run(), name="kubelet"), asyncio.create_task(proxier.run(), name="proxy"),
             asyncio.create_task(netpol_agent.run(), name="netpol")]
    ingress_agent = IngressAgent(client, node_name=args.node_name, node_ip=args.node_ip, data_dir=data)
    tasks.append(asyncio.create_task(ingress_agent.run(), name="ingress"))  # nginx on the node's :80/:443
    waiter = asyncio.create_task(stop.wait())
    log.info("agent %s (%s) running", args.node_name, args.node_ip)
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not waiter:
            log.error("%s ended unexpectedly: %r", t.get_name(), t.exception())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    await client.close()
    log.info("agent stopped; pods keep running")

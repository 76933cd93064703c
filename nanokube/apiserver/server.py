"""``nanokube server``: apiserver + store + scheduler + controllers in one asyncio process.

The in-process components talk to the registry through ``LocalClient`` (no sockets), the
way k3s keeps its server one light process. At first start the server makes its PKI, the
admin token and a kubeconfig in its data directory.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from nanokube.client.local import LocalClient
from nanokube.store import Store, open_datastore
from . import certs
from .app import ApiServer
from .registry import Registry

log = logging.getLogger("nanokube.server")


@dataclass
class ServerConfig:
    data_dir: Path
    bind: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 6443
    advertise_address: str = "127.0.0.1"
    service_cidr: str = "10.96.0.0/12"
    cluster_cidr: str = "10.244.0.0/16"
    node_port_range: tuple[int, int] = (30000, 32767)
    extra_sans: list[str] = field(default_factory=list)
    controllers: bool = True
    dns_port: int = 53                     # cluster DNS on advertise_address (0: off)
    token_auth_file: Path | None = None     # extra users: token,user,uid,"group1,group2"
    cluster_domain: str = "cluster.local"
    node_monitor_grace_period: float = 40.0  # a node silent this long is NotReady (Unknown) and tainted
    default_toleration_seconds: int = 300    # how long pods stay on a not-ready / unreachable node
    lb_pool: str | None = None             # LoadBalancer addresses, "first-last" or a CIDR (None: off)
    datastore: str | None = None           # etcd://HOST:PORT[/prefix] or sqlite:///PATH (None: data_dir/state.db)
    hpa_sync_period: float = 15.0          # how often the HPA controller reconciles each autoscaler
    scoring_strategy: str = "LeastAllocated"  # the scheduler's NodeResourcesFit score (or MostAllocated)


async def run_server(cfg: ServerConfig, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    ips = sorted({"127.0.0.1", "10.96.0.1", cfg.advertise_address, *cfg.bind, *[s for s in cfg.extra_sans if s[:1].isdigit()]} - {"0.0.0.0"})
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local", *[s for s in cfg.extra_sans if not s[:1].isdigit()]]
    pki = certs.ensure_pki(cfg.data_dir / "pki", ips=ips, dns=dns)
    token = certs.ensure_token(cfg.data_dir / "token")
    node_token = certs.ensure_token(cfg.data_dir / "node-token")
    kubelet_token = certs.ensure_token(cfg.data_dir / "kubelet-token")
    certs.write_kubeconfig(cfg.data_dir / "admin.kubeconfig", server=f"https://{cfg.advertise_address}:{cfg.port}",
                           ca=pki["ca"], token=token)

    from nanokube.api.schema import load_schemas
    schemas = load_schemas(cfg.data_dir / "cache")
    store = open_datastore(cfg.datastore, default_path=cfg.data_dir / "state.db")
    registry = Registry(store, schemas=schemas, service_cidr=cfg.service_cidr, node_port_range=cfg.node_port_range)
    registry.default_toleration_seconds = cfg.default_toleration_seconds
    from . import authn, policy
    from .app import NODE
    users = authn.load_token_file(cfg.token_auth_file) if cfg.token_auth_file else {}
    signer = authn.TokenSigner(bytes.fromhex(certs.ensure_token(cfg.data_dir / "pki" / "sa.secret")))
    api = ApiServer(registry, token=token, kubelet_token=kubelet_token, extra_tokens={**users, node_token: NODE},
                    signer=signer)
    await policy.ensure(registry)
    await authn.ensure_bootstrap_token(registry, cfg.data_dir / "bootstrap-token")
    app = api.app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sslctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sslctx.load_cert_chain(pki["cert"], pki["key"])
    sslctx.load_verify_locations(pki["ca"])  # client certificates the cluster CA signed authenticate
    sslctx.verify_mode = ssl.CERT_OPTIONAL
    for host in cfg.bind:
        await web.TCPSite(runner, host, cfg.port, ssl_context=sslctx, reuse_address=True).start()
    log.info("apiserver listening on %s port %d", ",".join(cfg.bind), cfg.port)

    tasks: list[asyncio.Task] = []
    client = LocalClient(registry)
    if cfg.controllers:
        from nanokube.controllers.manager import ControllerManager
        from nanokube.scheduler.scheduler import Scheduler
        cm = ControllerManager(client, apiserver_host=cfg.advertise_address, apiserver_port=cfg.port,
                               cluster_cidr=cfg.cluster_cidr, dns_port=cfg.dns_port, ca_pem=pki["ca"].read_text(),
                               node_grace_period=cfg.node_monitor_grace_period,
                               lb_pool=cfg.lb_pool, hpa_sync_period=cfg.hpa_sync_period,
                               pod_metrics=lambda ns, sel: _pod_metrics(api, ns, sel),
                               ca_files=(pki["ca"], pki["ca_key"]), authorize=api.may_request_csr)
        tasks.append(asyncio.create_task(cm.run(), name="controllers"))
        tasks.append(asyncio.create_task(Scheduler(client, strategy=cfg.scoring_strategy).run(), name="scheduler"))
    tasks.append(asyncio.create_task(_compactor(store), name="compactor"))
    if cfg.dns_port:
        from nanokube.network.dns import run_dns
        tasks.append(asyncio.create_task(run_dns(client, host=cfg.advertise_address, port=cfg.dns_port,
                                                 domain=cfg.cluster_domain,
                                                 reverse_cidrs=(cfg.service_cidr, cfg.cluster_cidr)), name="dns"))
    if ready:
        ready.set()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        if t is not waiter and t.exception():
            log.error("component %s failed: %r", t.get_name(), t.exception())
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.cleanup()
    store.close()
    log.info("server stopped")


async def _pod_metrics(api: ApiServer, ns: str, selector: str) -> list:
    """PodMetrics of a namespace's pods, from the metrics API in-process (for the HPA)."""
    return (await api.metrics_api.pods(ns, None, label_selector=selector or None))["items"]


async def _compactor(store: Store, *, every: float = 300.0, keep: int = 10000) -> None:
    """Bound the log: keep the last ``keep`` revisions of history for watches to resume from."""
    while True:
        await asyncio.sleep(every)
        if store.revision > keep:
            try:
                n = store.compact(store.revision - keep)
            except Exception as e:  # noqa: BLE001 - e.g. a full disk: try again next round, keep serving
                log.warning("compaction failed: %s", e)
                continue
            log.info("compacted %d rows before revision %d", n, store.revision - keep)

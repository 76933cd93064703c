"""The controller manager: every controller of ``nanokube server`` in one asyncio task group."""
from __future__ import annotations

import asyncio
from typing import Any

from . import bootstrap
from .clusterroleaggregation import ClusterRoleAggregationController
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .disruption import DisruptionController
from .endpoints import EndpointsController
from .endpointslices import EndpointSliceController
from .garbagecollector import GarbageCollector
from .job import JobController
from .nodeipam import NodeIpamController
from .nodelifecycle import NodeLifecycleController
from .replicaset import ReplicaSetController, ReplicationControllerController
from .serviceaccounts import ServiceAccountsController
from .certificates import CertificatesController
from .statefulset import StatefulSetController
from .volumes import VolumeController, ensure_default_class
from .servicelb import ServiceLBController, parse_pool
from .hpa import HPAController
from .resourcequota import ResourceQuotaController


class ControllerManager:
    def __init__(self, client: Any, *, apiserver_host: str, apiserver_port: int, cluster_cidr: str = "10.244.0.0/16",
                 dns_port: int = 53, ca_pem: str = "", node_grace_period: float = 40.0, lb_pool: str | None = None,
                 hpa_sync_period: float = 15.0, pod_metrics: Any = None, ca_files: tuple[Any, Any] | None = None,
                 authorize: Any = None):
        self.hpa_sync_period, self.pod_metrics = hpa_sync_period, pod_metrics
        self.ca_files, self.authorize = ca_files, authorize  # the CA signs approved client CSRs
        self.client = client
        self.lb_pool = parse_pool(lb_pool) if lb_pool else []
        self.dns_port = dns_port
        self.ca_pem = ca_pem
        self.node_grace_period = node_grace_period
        self.apiserver_host, self.apiserver_port = apiserver_host, apiserver_port
        self.cluster_cidr = cluster_cidr

    async def run(self) -> None:
        await bootstrap.ensure(self.client, apiserver_host=self.apiserver_host, apiserver_port=self.apiserver_port,
                               dns_port=self.dns_port)
        await ensure_default_class(self.client)
        await asyncio.gather(
            bootstrap.run(self.client, apiserver_host=self.apiserver_host, apiserver_port=self.apiserver_port,
                          dns_port=self.dns_port),
            NodeIpamController(self.client, cluster_cidr=self.cluster_cidr).run(),
            ReplicaSetController(self.client).run(),
            ReplicationControllerController(self.client).run(),
            DeploymentController(self.client).run(),
            DaemonSetController(self.client).run(),
            JobController(self.client).run(),
            CronJobController(self.client).run(),
            EndpointsController(self.client).run(),
            EndpointSliceController(self.client).run(),
            GarbageCollector(self.client).run(),
            ServiceAccountsController(self.client, ca_pem=self.ca_pem).run(),
            ClusterRoleAggregationController(self.client).run(),
            StatefulSetController(self.client).run(),
            VolumeController(self.client).run(),
            DisruptionController(self.client).run(),
            NodeLifecycleController(self.client, grace_period=self.node_grace_period).run(),
            *([ServiceLBController(self.client, pool=self.lb_pool).run()] if self.lb_pool else []),
            ResourceQuotaController(self.client).run(),
            *([CertificatesController(self.client, ca_crt=self.ca_files[0], ca_key=self.ca_files[1],
                                      authorize=self.authorize).run()] if self.ca_files else []),
            *([HPAController(self.client, metrics=self.pod_metrics, sync_period=self.hpa_sync_period).run()]
              if self.pod_metrics else []),
        )

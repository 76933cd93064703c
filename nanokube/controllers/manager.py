"""The controller manager: every controller of ``nanokube server`` in one asyncio task group."""
from __future__ import annotations

import asyncio
from typing import Any

from . import bootstrap
from .clusterroleaggregation import ClusterRoleAggregationController
from .cronjob import CronJobController
from .daemonset import DaemonSetController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .garbagecollector import GarbageCollector
from .job import JobController
from .nodeipam import NodeIpamController
from .replicaset import ReplicaSetController
from .serviceaccounts import ServiceAccountsController


class ControllerManager:
    def __init__(self, client: Any, *, apiserver_host: str, apiserver_port: int, cluster_cidr: str = "10.244.0.0/16",
                 dns_port: int = 53, ca_pem: str = ""):
        self.client = client
        self.dns_port = dns_port
        self.ca_pem = ca_pem
        self.apiserver_host, self.apiserver_port = apiserver_host, apiserver_port
        self.cluster_cidr = cluster_cidr

    async def run(self) -> None:
        await bootstrap.ensure(self.client, apiserver_host=self.apiserver_host, apiserver_port=self.apiserver_port,
                               dns_port=self.dns_port)
        await asyncio.gather(
            bootstrap.run(self.client, apiserver_host=self.apiserver_host, apiserver_port=self.apiserver_port,
                          dns_port=self.dns_port),
            NodeIpamController(self.client, cluster_cidr=self.cluster_cidr).run(),
            ReplicaSetController(self.client).run(),
            DeploymentController(self.client).run(),
            DaemonSetController(self.client).run(),
            JobController(self.client).run(),
            CronJobController(self.client).run(),
            EndpointsController(self.client).run(),
            GarbageCollector(self.client).run(),
            ServiceAccountsController(self.client, ca_pem=self.ca_pem).run(),
            ClusterRoleAggregationController(self.client).run(),
        )

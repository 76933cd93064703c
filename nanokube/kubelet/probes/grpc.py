"""grpc probes: the standard gRPC Health Checking Protocol (grpc.health.v1.Health/Check);
SERVING is success. grpcio is imported only when a pod has a grpc probe."""
from __future__ import annotations

from . import Obj, Target


async def run(h: Obj, t: Target, *, timeout: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    addr = f"{t.pod_ip}:{int(h.get('port', 0))}"
    try:
        async with grpc.aio.insecure_channel(addr) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=h.get("service") or ""), timeout=timeout)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return False, f"timeout: health rpc did not complete within {timeout:.0f}s"
        return False, f"failed to connect service {addr!r} within {timeout:.0f}s: {e.details()}"
    if resp.status == health_pb2.HealthCheckResponse.SERVING:
        return True, ""
    return False, f"service unhealthy (responded with {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)})"

"""From a pod spec to what the runtime needs (pure): argv with ``$(VAR)`` expansion, the
environment with ``valueFrom``, the files every container gets (/etc/hosts, resolv.conf,
hostname), resource settings, and container ids.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from nanokube.api.quantity import bytes_, cpu_milli

Obj = dict[str, Any]
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` syntax: known variables expand, ``$$`` escapes, unknown stay."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, s)


def container_id(uid: str, name: str, attempt: int) -> str:
    return f"{uid}-{name}-{attempt}"


def field_ref(pod: Obj, path: str, *, pod_ip: str, host_ip: str) -> str:
    md, spec = pod["metadata"], pod["spec"]
    m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return (md.get(m.group(1)) or {}).get(m.group(2), "")
    return {
        "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""), "status.podIP": pod_ip,
        "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }.get(path, "")


def resource_ref(c: Obj, ref: Obj) -> str:
    res = (c.get("resources") or {})
    what = ref.get("resource", "")
    kind, _, name = what.partition(".")
    q = ((res.get(kind) or {}).get(name))
    if q is None:
        return "0"
    div = ref.get("divisor") or "1"
    if name == "cpu":
        return str(-(-cpu_milli(q) // cpu_milli(div)))
    return str(-(-bytes_(q) // bytes_(div)))


def build_env(pod: Obj, c: Obj, *, image_env: list[tuple[str, str]], pod_ip: str, host_ip: str,
              lookup: Callable[[str, str, str], str | None]) -> list[tuple[str, str]]:
    """The container's environment, in upstream's order: image env, envFrom, env (each entry
    may refer to earlier ones with $(VAR)). ``lookup(kind, name, key)`` reads ConfigMaps and
    Secrets; a missing non-optional key raises KeyError (CreateContainerConfigError)."""
    env: dict[str, str] = dict(image_env)
    for src in c.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            if kind in src:
                data = lookup(kind, src[kind]["name"], "*")
                if data is None and not src[kind].get("optional"):
                    raise KeyError(f'{"configmap" if kind == "configMapRef" else "secret"} "{src[kind]["name"]}" not found')
                for k, v in (data or {}).items():  # type: ignore[union-attr]
                    env[prefix + k] = v
    for e in c.get("env") or []:
        name = e["name"]
        if "valueFrom" in e:
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip)
            elif "resourceFieldRef" in vf:
                env[name] = resource_ref(c, vf["resourceFieldRef"])
            else:
                kind = "configMapKeyRef" if "configMapKeyRef" in vf else "secretKeyRef"
                ref = vf[kind]
                v = lookup(kind, ref["name"], ref["key"])
                if v is None:
                    if ref.get("optional"):
                        continue
                    what = "configmap" if kind == "configMapKeyRef" else "secret"
                    raise KeyError(f'couldn\'t find key {ref["key"]} in {what.capitalize() if what == "secret" else "ConfigMap"} '
                                   f'{pod["metadata"]["namespace"]}/{ref["name"]}')
                env[name] = v  # type: ignore[assignment]
        else:
            env[name] = expand(e.get("value", ""), env)
    return list(env.items())


def argv(c: Obj, base: list[str], env: list[tuple[str, str]]) -> list[str]:
    d = dict(env)
    return [expand(a, d) for a in base]


def resources(c: Obj) -> dict[str, int | None]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    return {
        "cpu_request_milli": cpu_milli(req["cpu"]) if "cpu" in req else None,
        "cpu_limit_milli": cpu_milli(lim["cpu"]) if "cpu" in lim else None,
        "memory_limit_bytes": bytes_(lim["memory"]) if "memory" in lim else None,
    }


def pod_resources(pod: Obj) -> dict[str, int | None]:
    """The pod-level cgroup, as upstream's kubelet sets it: cpu.shares from the sum of the
    containers' requests; CPU and memory limits only when every container has one."""
    per = [resources(c) for c in pod["spec"].get("containers") or []]
    total = lambda k: sum(r[k] for r in per) if per and all(r[k] is not None for r in per) else None  # noqa: E731
    return {"cpu_request_milli": sum(r["cpu_request_milli"] or 0 for r in per),
            "cpu_limit_milli": total("cpu_limit_milli"), "memory_limit_bytes": total("memory_limit_bytes")}


def oom_score_adj(pod: Obj, c: Obj, *, memory_capacity: int) -> int:
    """Upstream's per-QoS OOM score: Guaranteed -997, BestEffort 1000, Burstable by its
    memory request's share of the node (2..999)."""
    qos = (pod.get("status") or {}).get("qosClass")
    if qos == "Guaranteed":
        return -997
    if qos == "BestEffort":
        return 1000
    req = ((c.get("resources") or {}).get("requests") or {}).get("memory")
    adj = 1000 - (1000 * bytes_(req)) // max(memory_capacity, 1) if req else 1000
    return int(min(max(2, adj), 999))


def hostname(pod: Obj) -> str:
    return (pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]


def hosts_file(pod: Obj, ip: str) -> str:
    name = hostname(pod)
    sub = pod["spec"].get("subdomain")
    fqdn = f"{name}.{sub}.{pod['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}\t" if sub else ""
    lines = ["# Kubernetes-managed hosts file.", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix", "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters",
             f"{ip}\t{fqdn}{name}"]
    for ha in pod["spec"].get("hostAliases") or []:
        lines.append(f"\n# Entries added by HostAliases.\n{ha['ip']}\t" + "\t".join(ha.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def resolv_conf(pod: Obj, *, host_resolv: str = "") -> str:
    spec = pod["spec"]
    policy = spec.get("dnsPolicy", "ClusterFirst")
    ns = pod["metadata"]["namespace"]
    if policy == "Default" or (policy == "ClusterFirst" and spec.get("hostNetwork")):
        base = host_resolv
        servers = [l.split()[1] for l in base.splitlines() if l.startswith("nameserver")]
        searches: list[str] = []
        options: list[str] = []
    elif policy == "None":
        servers, searches, options = [], [], []
    else:
        servers = [CLUSTER_DNS]
        searches = [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
        options = ["ndots:5"]
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    searches += [s for s in cfg.get("searches") or [] if s not in searches]
    for o in cfg.get("options") or []:
        options = [x for x in options if x.split(":")[0] != o["name"]]
        options.append(f"{o['name']}:{o['value']}" if o.get("value") is not None else o["name"])
    out = [f"nameserver {s}" for s in servers[:3]]
    if searches:
        out.append("search " + " ".join(searches))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"

"""The ingress controller's brain: Ingresses + Services + Endpoints + Secrets → nginx.conf.

``render`` is a pure function (no I/O) from the API objects to the text of an nginx.conf and
the certificate files it names, so every routing rule is unit-tested without nginx; the agent
(ingress_agent.py) writes the result and reloads nginx with SIGHUP when it changed.

Semantics follow ingress-nginx where Kubernetes leaves them to the implementation:

- One ``server`` per host (exact names, ``*.example.com`` wildcards matching one label);
  rules without a host and ``spec.defaultBackend`` serve the default server, which answers
  404 for everything else. Each server listens on the node's port 80 and, with the
  Ingress' TLS secret for the SNI name or the controller's self-signed default
  certificate, on 443.
- ``Exact`` → ``location = /p``; ``Prefix`` matches path elements (``/p`` and ``/p/...``,
  never ``/px``); the longest path wins. On a host where any Ingress sets ``use-regex`` (or
  ``rewrite-target``, which implies it), every path becomes a regex location, sorted longest
  first, and ``ImplementationSpecific`` paths are regexes (``~* ^path``); elsewhere they are
  prefixes.
- Upstreams are the ready endpoint addresses of the backend Service's port (never the
  ClusterIP), so nginx balances itself and retries another pod when one refuses; a backend
  without endpoints answers 503.
- Annotations (``nginx.ingress.kubernetes.io/``): rewrite-target, use-regex, ssl-redirect,
  force-ssl-redirect, backend-protocol (HTTP/HTTPS), proxy-body-size,
  whitelist-source-range. Values come from users, so every value that reaches the config
  is validated or quoted; a bad one drops that annotation (or that path), never the config.
"""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
CONTROLLER = "k8s.io/ingress-nginx"
CLASS_NAME = "nginx"
ANN = "nginx.ingress.kubernetes.io/"
DEFAULT_CLASS_ANN = "ingressclass.kubernetes.io/is-default-class"
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PLAIN_PATH_RE = re.compile(r"^/[A-Za-z0-9/_.\-~%@:+!,=]*$")
_SIZE_RE = re.compile(r"^[0-9]+[kKmMgG]?$")


@dataclass(frozen=True)
class Options:
    """Where this node's nginx lives and listens (``prefix`` is ``<data_dir>/ingress``)."""
    listen: list[str]                  # addresses to bind, e.g. the node IP
    prefix: str                         # pid file, temp dirs, logs and certs live under it
    default_cert: str                   # PEM with cert + key of the catch-all server
    http_port: int = 80
    https_port: int = 443
    user: str = "nobody nogroup"
    workers: int = 1


@dataclass
class Rendered:
    conf: str
    files: dict[str, bytes] = field(default_factory=dict)  # relative to prefix: certs/<ns>_<name>.pem
    ingresses: list[str] = field(default_factory=list)     # "ns/name" of the Ingresses served


# -- which Ingresses are ours --------------------------------------------------------------
def our_classes(classes: list[Obj], *, controller: str = CONTROLLER) -> tuple[set[str], bool]:
    """(names of IngressClasses of our controller, whether one of them is the cluster default)."""
    ours = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == controller}
    default = any(c["metadata"]["name"] in ours and
                  (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANN) == "true" for c in classes)
    return ours, default


def is_ours(ing: Obj, classes: list[Obj], *, controller: str = CONTROLLER) -> bool:
    ours, default = our_classes(classes, controller=controller)
    name = (ing.get("spec") or {}).get("ingressClassName")
    if name:
        return name in ours
    legacy = (ing["metadata"].get("annotations") or {}).get("kubernetes.io/ingress.class")
    if legacy:
        return legacy in ours or (legacy == CLASS_NAME and not classes)
    return default


# -- small pure helpers --------------------------------------------------------------------
def q(s: str) -> str:
    """An nginx string literal: double-quoted, with backslash and quote escaped."""
    if any(ord(c) < 32 or c == "\x7f" for c in s):
        raise ValueError(f"control character in {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def valid_host(h: str) -> bool:
    return len(h) <= 253 and bool(_HOST_RE.match(h))


def server_name(host: str) -> str:
    """nginx's ``*.a.b`` matches any depth; Kubernetes' wildcard matches exactly one label."""
    if host.startswith("*."):
        return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"
    return host


def _truthy(v: str | None, default: bool) -> bool:
    return default if v is None else v.strip().lower() == "true"


def _cidrs(v: str) -> list[str] | None:
    out = []
    for part in v.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            return None
    return out or None


def _upstream_name(ns: str, svc: str, port: str | int) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "-", f"{ns}-{svc}-{port}")
    return f"{base}-{hashlib.sha256(f'{ns}/{svc}/{port}'.encode()).hexdigest()[:8]}"


def endpoints_for(svc: Obj | None, eps: Obj | None, port: Obj) -> list[str]:
    """``ip:port`` of the ready endpoints behind a Service port (``{"number": n}`` or ``{"name": s}``)."""
    if not svc or not eps or (svc.get("spec") or {}).get("type") == "ExternalName":
        return []
    sports = (svc.get("spec") or {}).get("ports") or []
    sp = next((p for p in sports if ("number" in port and p.get("port") == port["number"]) or
               ("name" in port and p.get("name") == port["name"])), None)
    if sp is None:
        return []
    pname = sp.get("name") or ""
    out = []
    for ss in eps.get("subsets") or []:
        eports = ss.get("ports") or []
        ep = next((p for p in eports if (p.get("name") or "") == pname and p.get("protocol", "TCP") == "TCP"), None)
        if ep is None and len(eports) == 1 and len(sports) == 1:
            ep = eports[0]
        if ep is None:
            continue
        out += [f"{a['ip']}:{ep['port']}" for a in ss.get("addresses") or [] if a.get("ip")]
    return sorted(set(out))


def tls_pem(secret: Obj | None) -> bytes | None:
    """cert + key of a ``kubernetes.io/tls`` Secret, as one PEM file, or None if unusable."""
    if not secret or secret.get("type") not in ("kubernetes.io/tls", None, "Opaque"):
        return None
    data = secret.get("data") or {}
    try:
        crt, key = base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])
    except (KeyError, ValueError):
        return None
    if b"-----BEGIN" not in crt or b"PRIVATE KEY-----" not in key:
        return None
    return crt.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"


# -- the model between API objects and text -----------------------------------------------
@dataclass
class Loc:
    kind: str                 # "exact", "prefix", "regex"
    path: str
    upstream: str | None      # None: no endpoints → 503
    protocol: str = "http"
    rewrite: str | None = None
    redirect: bool = False
    body_size: str | None = None
    allow: list[str] | None = None
    source: str = ""          # "ns/name" of the Ingress, for the comment


@dataclass
class Server:
    host: str                 # "" for the default server
    cert: str | None = None   # file under prefix
    locs: dict[tuple[str, str], Loc] = field(default_factory=dict)
    fallback: Loc | None = None
    regex: bool = False


def _key(o: Obj) -> str:
    return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"


def _order(o: Obj) -> tuple[str, str]:
    return (o["metadata"].get("creationTimestamp") or "", _key(o))


def render(ingresses: list[Obj], services: list[Obj], endpoints: list[Obj], secrets: list[Obj],
           classes: list[Obj], opts: Options, *, controller: str = CONTROLLER) -> Rendered:
    """The whole nginx.conf for this node, and the certificate files it refers to."""
    svcs = {_key(s): s for s in services}
    epss = {_key(e): e for e in endpoints}
    secs = {_key(s): s for s in secrets}
    mine = sorted((i for i in ingresses if is_ours(i, classes, controller=controller)
                   and not i["metadata"].get("deletionTimestamp")), key=_order)
    out = Rendered(conf="", ingresses=[_key(i) for i in mine])
    upstreams: dict[str, list[str]] = {}
    servers: dict[str, Server] = {"": Server(host="")}

    def backend(ns: str, be: Obj | None) -> str | None:
        svc = (be or {}).get("service") or {}
        port = svc.get("port") or {}
        if not svc.get("name") or not ("number" in port or "name" in port):
            return None
        addrs = endpoints_for(svcs.get(f"{ns}/{svc['name']}"), epss.get(f"{ns}/{svc['name']}"), port)
        if not addrs:
            return None
        name = _upstream_name(ns, svc["name"], port.get("number", port.get("name")))
        upstreams[name] = addrs
        return name

    # hosts with TLS, and which hosts turn regex on
    tls_hosts: dict[str, str] = {}
    for ing in mine:
        ns, spec = ing["metadata"]["namespace"], ing.get("spec") or {}
        for t in spec.get("tls") or []:
            pem = tls_pem(secs.get(f"{ns}/{t.get('secretName', '')}")) if t.get("secretName") else None
            if pem is None:
                continue
            fname = f"certs/{ns}_{t['secretName']}.pem"
            out.files[fname] = pem
            for h in t.get("hosts") or []:
                tls_hosts.setdefault(h, fname)
    for ing in mine:
        ann = ing["metadata"].get("annotations") or {}
        regex = _truthy(ann.get(ANN + "use-regex"), False) or bool(ann.get(ANN + "rewrite-target"))
        for r in (ing.get("spec") or {}).get("rules") or []:
            h = r.get("host") or ""
            if h and not valid_host(h):
                continue
            srv = servers.setdefault(h, Server(host=h))
            srv.regex = srv.regex or regex
    for h, srv in servers.items():
        srv.cert = tls_hosts.get(h) or (tls_hosts.get("*." + h.split(".", 1)[1]) if "." in h else None)

    for ing in mine:
        ns, spec = ing["metadata"]["namespace"], ing.get("spec") or {}
        ann = ing["metadata"].get("annotations") or {}
        src = _key(ing)
        explicit_regex = _truthy(ann.get(ANN + "use-regex"), False) or bool(ann.get(ANN + "rewrite-target"))
        proto = "https" if (ann.get(ANN + "backend-protocol") or "").upper() == "HTTPS" else "http"
        body = ann.get(ANN + "proxy-body-size")
        body = body if body and _SIZE_RE.match(body.strip()) else None
        allow = _cidrs(ann[ANN + "whitelist-source-range"]) if ann.get(ANN + "whitelist-source-range") else None
        rewrite = ann.get(ANN + "rewrite-target")
        if rewrite is not None and (not rewrite.startswith("/") or any(c in rewrite for c in " \t;{}")):
            rewrite = None

        def loc(kind: str, path: str, be: Obj | None, srv: Server) -> Loc:
            has_tls = srv.cert is not None
            redirect = (_truthy(ann.get(ANN + "force-ssl-redirect"), False) or
                        (has_tls and _truthy(ann.get(ANN + "ssl-redirect"), True)))
            return Loc(kind, path, backend(ns, be), proto, rewrite, redirect, body, allow, src)

        if spec.get("defaultBackend"):
            d = servers[""]
            if d.fallback is None:
                d.fallback = loc("prefix", "/", spec["defaultBackend"], d)
        for r in spec.get("rules") or []:
            h = r.get("host") or ""
            if h not in servers:
                continue
            srv = servers[h]
            for p in (r.get("http") or {}).get("paths") or []:
                path, pt = p.get("path") or "/", p.get("pathType") or "ImplementationSpecific"
                if not path.startswith("/"):
                    continue
                if pt == "Exact":
                    kind = "exact"
                elif pt == "ImplementationSpecific" and explicit_regex:
                    kind = "regex"
                else:
                    kind = "prefix"
                    path = path.rstrip("/") or "/"
                if kind != "regex" and not _PLAIN_PATH_RE.match(path):
                    continue
                if kind == "regex":
                    try:
                        re.compile(path)
                        q(path)
                    except (re.error, ValueError):
                        continue
                k = ("exact" if kind == "exact" else "match", path)
                if k not in srv.locs:  # the oldest Ingress wins a conflict, as ingress-nginx
                    srv.locs[k] = loc(kind, path, p.get("backend"), srv)
            if spec.get("defaultBackend") and srv.fallback is None and srv.host:
                srv.fallback = loc("prefix", "/", spec["defaultBackend"], srv)

    out.conf = _text(servers, upstreams, opts)
    return out


# -- text ----------------------------------------------------------------------------------
def _location_lines(loc: Loc, *, regex_host: bool) -> list[str]:
    if loc.kind == "exact":
        head = f"location = {q(loc.path)}"
    elif loc.kind == "regex":
        head = f"location ~* {q('^' + loc.path)}"
    elif regex_host:
        pat = "^/" if loc.path == "/" else "^" + re.escape(loc.path) + "(?:/|$)"
        head = f"location ~ {q(pat)}"
    else:
        head = f"location {q(loc.path)}"
    body = [f"# {loc.source}"] if loc.source else []
    if loc.allow:
        body += [f"allow {c};" for c in loc.allow] + ["deny all;"]
    if loc.redirect:
        body.append("if ($scheme = http) { return 308 https://$host$request_uri; }")
    if loc.body_size:
        body.append(f"client_max_body_size {loc.body_size.strip()};")
    if loc.upstream is None:
        body.append("return 503;")
    else:
        if loc.rewrite is not None:
            pat = loc.path if loc.kind == "regex" else re.escape(loc.path)
            body.append(f"rewrite {q('(?i)^' + pat)} {q(loc.rewrite)} break;")
        body.append(f"proxy_pass {loc.protocol}://{loc.upstream};")
    return [head + " {"] + ["    " + b for b in body] + ["}"]


def _server_lines(srv: Server, opts: Options) -> list[str]:
    default = " default_server" if not srv.host else ""
    lines = ["server {"]
    for a in opts.listen:
        lines.append(f"    listen {a}:{opts.http_port}{default};")
        lines.append(f"    listen {a}:{opts.https_port} ssl{default};")
    lines.append(f"    server_name {q(server_name(srv.host)) if srv.host else '_'};")
    if srv.cert:  # others inherit the default certificate from http{} (loaded once, not per server)
        cert = f"{opts.prefix}/{srv.cert}"
        lines += [f"    ssl_certificate {q(cert)};", f"    ssl_certificate_key {q(cert)};"]
    locs = list(srv.locs.values())
    if srv.regex:  # regex locations are tried in order: longest path first
        exact = [loc for loc in locs if loc.kind == "exact"]
        rest = sorted((loc for loc in locs if loc.kind != "exact"), key=lambda loc: (-len(loc.path), loc.path))
        locs = exact + rest
    else:
        locs.sort(key=lambda loc: (loc.kind, loc.path))
    have_root = False
    for loc in locs:
        if loc.kind == "prefix" and loc.path != "/" and not srv.regex:
            # element-wise Prefix: "/p" itself and everything under "/p/"
            sub = Loc(**{**loc.__dict__, "path": loc.path + "/"})
            if ("exact", loc.path) not in srv.locs:
                lines += ["    " + s for s in _location_lines(Loc(**{**loc.__dict__, "kind": "exact"}), regex_host=False)]
            lines += ["    " + s for s in _location_lines(sub, regex_host=False)]
            continue
        if loc.kind == "prefix" and loc.path == "/" and not srv.regex:
            have_root = True
        lines += ["    " + s for s in _location_lines(loc, regex_host=srv.regex)]
    if not have_root:
        fb = srv.fallback
        if fb is not None and not srv.regex:
            lines += ["    " + s for s in _location_lines(fb, regex_host=False)]
        else:
            lines += ["    location / {"]
            if fb is not None:  # after every regex location: a plain prefix is the last resort
                lines += ["        " + s for s in _location_lines(fb, regex_host=False)[1:-1]]
            else:
                lines += ["        return 404;"]
            lines += ["    }"]
    lines.append("}")
    return lines


def _text(servers: dict[str, Server], upstreams: dict[str, list[str]], opts: Options) -> str:
    p = opts.prefix
    lines = [
        "# rendered by nanokube's ingress controller (network/ingress.py); do not edit",
        f"user {opts.user};",
        f"worker_processes {opts.workers};",
        "daemon off;",
        "master_process on;",
        f"pid {q(p + '/nginx.pid')};",
        f"error_log {q(p + '/error.log')} warn;",
        "worker_shutdown_timeout 30s;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    server_names_hash_bucket_size 128;",
        f"    server_names_hash_max_size {max(512, 1 << (2 * len(servers)).bit_length())};",
        "    client_max_body_size 1m;",
        f"    client_body_temp_path {q(p + '/tmp/client_body')};",
        f"    proxy_temp_path {q(p + '/tmp/proxy')};",
        f"    fastcgi_temp_path {q(p + '/tmp/fastcgi')};",
        f"    uwsgi_temp_path {q(p + '/tmp/uwsgi')};",
        f"    scgi_temp_path {q(p + '/tmp/scgi')};",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Connection \"\";",
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-Host $host;",
        "    proxy_connect_timeout 5s;",
        "    proxy_next_upstream error timeout;",  # a pod that just went away: try the next one
        "    proxy_next_upstream_tries 3;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        f"    ssl_certificate {q(opts.default_cert)};",
        f"    ssl_certificate_key {q(opts.default_cert)};",
        "",
    ]
    for name in sorted(upstreams):
        lines.append(f"    upstream {name} {{")
        lines += [f"        server {a} max_fails=1 fail_timeout=5s;" for a in upstreams[name]]
        lines += ["        keepalive 16;", "    }"]
    for h in sorted(servers):
        lines += ["    " + s for s in _server_lines(servers[h], opts)]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- status --------------------------------------------------------------------------------
def node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def node_ip(node: Obj) -> str | None:
    addrs = (node.get("status") or {}).get("addresses") or []
    return next((a["address"] for a in addrs if a.get("type") == "InternalIP"), None)


def status_writer(nodes: list[Obj]) -> str | None:
    """The one node that writes Ingress status: the first Ready node by name."""
    ready = sorted(n["metadata"]["name"] for n in nodes if node_ready(n))
    return ready[0] if ready else None


def lb_status(nodes: list[Obj]) -> Obj:
    """``status.loadBalancer`` of our Ingresses: every Ready node's IP (each runs the proxy)."""
    ips = sorted({ip for n in nodes if node_ready(n) and (ip := node_ip(n))},
                 key=lambda s: ipaddress.ip_address(s))
    return {"ingress": [{"ip": ip} for ip in ips]} if ips else {}


# -- validation (upstream's ValidateIngress / ValidateIngressClass, the parts users hit) ---
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must "
                 "consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character "
                 "(e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                 "(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]


def _check_host(causes: list, field: str, host: str) -> None:
    from nanokube.api import validation as v
    try:
        ipaddress.ip_address(host)
        v.invalid(causes, field, host, "must be a DNS name, not an IP address")
        return
    except ValueError:
        pass
    if host.startswith("*."):
        if not v.DNS1123_SUBDOMAIN.match(host[2:]) or len(host) > 253:
            v.invalid(causes, field, host, _WILDCARD_MSG)
    elif "*" in host or not v.DNS1123_SUBDOMAIN.match(host) or len(host) > 253:
        v.invalid(causes, field, host, v.SUBDOMAIN_MSG)


def _check_backend(causes: list, field: str, be: Any) -> None:
    from nanokube.api import validation as v
    if not isinstance(be, dict):
        v.required(causes, field)
        return
    svc, res = be.get("service"), be.get("resource")
    if svc and res:
        v.invalid(causes, field, "", "cannot set both resource and service backends")
    elif not svc and not res:
        v.invalid(causes, field, "", "resource or service backend is required")
    if not svc:
        return
    name = svc.get("name")
    if not name:
        v.required(causes, f"{field}.service.name")
    elif not v.DNS1035_LABEL.match(name) or len(name) > 63:
        v.invalid(causes, f"{field}.service.name", name, v.DNS1035_MSG)
    port = svc.get("port") or {}
    has_name, has_num = bool(port.get("name")), port.get("number") not in (None, 0)
    if has_name and has_num:
        v.invalid(causes, f"{field}.service.port", port, "cannot set both port name & port number")
    elif not has_name and not has_num:
        v.invalid(causes, f"{field}.service.port", port, "port name or number is required")
    elif has_num and (not isinstance(port["number"], int) or not 0 < port["number"] < 65536):
        v.invalid(causes, f"{field}.service.port.number", port["number"], "must be between 1 and 65535, inclusive")


def validate(causes: list, o: Obj) -> None:
    """Append upstream's causes for a bad Ingress (field paths and messages as kubectl shows them)."""
    from nanokube.api import validation as v
    spec = o.get("spec") or {}
    if not spec.get("defaultBackend") and not spec.get("rules"):
        v.invalid(causes, "spec", spec, "either `defaultBackend` or `rules` must be specified")
    if spec.get("defaultBackend") is not None:
        _check_backend(causes, "spec.defaultBackend", spec["defaultBackend"])
    cls = spec.get("ingressClassName")
    if cls is not None and (not v.DNS1123_SUBDOMAIN.match(cls) or len(cls) > 253):
        v.invalid(causes, "spec.ingressClassName", cls, v.SUBDOMAIN_MSG)
    for i, t in enumerate(spec.get("tls") or []):
        for j, h in enumerate((t or {}).get("hosts") or []):
            _check_host(causes, f"spec.tls[{i}].hosts[{j}]", h)
    for i, r in enumerate(spec.get("rules") or []):
        r = r or {}
        if r.get("host"):
            _check_host(causes, f"spec.rules[{i}].host", r["host"])
        if r.get("http") is None:
            continue
        paths = (r["http"] or {}).get("paths")
        if not paths:
            v.required(causes, f"spec.rules[{i}].http.paths")
            continue
        for j, p in enumerate(paths):
            f = f"spec.rules[{i}].http.paths[{j}]"
            pt, path = p.get("pathType"), p.get("path")
            if not pt:
                causes.append({"reason": "FieldValueRequired", "message": "Required value: pathType must be specified",
                               "field": f + ".pathType"})
            elif pt not in PATH_TYPES:
                v.not_supported(causes, f + ".pathType", pt, PATH_TYPES)
            elif pt in ("Exact", "Prefix"):
                if not path or not path.startswith("/"):
                    v.invalid(causes, f + ".path", path or "", "must be an absolute path")
                else:
                    for bad in ("//", "/./", "/../", "%2f", "%2F"):
                        if bad in path:
                            v.invalid(causes, f + ".path", path, f"must not contain '{bad}'")
                    for bad in ("/..", "/."):
                        if path.endswith(bad):
                            v.invalid(causes, f + ".path", path, f"cannot end with '{bad}'")
            elif path and not path.startswith("/"):
                v.invalid(causes, f + ".path", path, "must be an absolute path")
            _check_backend(causes, f + ".backend", p.get("backend"))


def validate_class(causes: list, o: Obj) -> None:
    from nanokube.api import validation as v
    ctl = (o.get("spec") or {}).get("controller")
    if not ctl:
        v.required(causes, "spec.controller")
    elif len(ctl) > 250:
        v.invalid(causes, "spec.controller", ctl, "must be no more than 250 characters")

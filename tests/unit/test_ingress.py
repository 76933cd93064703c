"""network/ingress.py: Ingress objects → nginx.conf, checked as text and by the real ``nginx -t``."""
from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from nanokube.network import ingress as ing

CLASSES = [{"metadata": {"name": "nginx", "annotations": {ing.DEFAULT_CLASS_ANN: "true"}},
            "spec": {"controller": ing.CONTROLLER}}]
OPTS = ing.Options(listen=["172.30.0.11"], prefix="/tmp/ingress-test", default_cert="/tmp/ingress-test/default.pem")


def svc(name: str, ports: list[dict], ns: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"ports": ports}}


def eps(name: str, ips: list[str], ports: list[dict], ns: str = "default", not_ready: list[str] = ()) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "subsets": [{"addresses": [{"ip": i} for i in ips],
                         "notReadyAddresses": [{"ip": i} for i in not_ready], "ports": ports}]}


def ingress(name: str, rules: list[dict], *, ns: str = "default", cls: str | None = "nginx",
            ann: dict | None = None, tls: list | None = None, default_backend: dict | None = None,
            created: str = "2026-01-01T00:00:00Z") -> dict:
    spec: dict = {"rules": rules}
    if cls:
        spec["ingressClassName"] = cls
    if tls:
        spec["tls"] = tls
    if default_backend:
        spec["defaultBackend"] = default_backend
    return {"metadata": {"name": name, "namespace": ns, "annotations": ann or {}, "creationTimestamp": created},
            "spec": spec}


def rule(host: str | None, *paths: tuple[str, str, str, object]) -> dict:
    r: dict = {"http": {"paths": [{"path": p, "pathType": t, "backend": {"service": {
        "name": s, "port": {"number": port} if isinstance(port, int) else {"name": port}}}} for p, t, s, port in paths]}}
    if host:
        r["host"] = host
    return r


SERVICES = [svc("a", [{"name": "http", "port": 80, "targetPort": 8080}]),
            svc("b", [{"port": 8000, "targetPort": 8000}])]
ENDPOINTS = [eps("a", ["10.244.1.5", "10.244.2.7"], [{"name": "http", "port": 8080}], not_ready=["10.244.1.9"]),
             eps("b", ["10.244.2.8"], [{"port": 8000}])]


def render(ings: list[dict], secrets: list[dict] = (), classes: list[dict] = CLASSES) -> ing.Rendered:
    return ing.render(ings, SERVICES, ENDPOINTS, list(secrets), classes, OPTS)


def test_upstreams_are_ready_pod_ips_by_port_number_and_name():
    r = render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80)),
                              rule("b.example.com", ("/", "Prefix", "b", 8000)),
                              rule("c.example.com", ("/", "Prefix", "a", "http"))])])
    assert "server 10.244.1.5:8080 " in r.conf and "server 10.244.2.7:8080 " in r.conf
    assert "10.244.1.9" not in r.conf  # not ready
    assert "server 10.244.2.8:8000 " in r.conf
    assert r.conf.count("upstream default-a-80-") == 1 and r.conf.count("upstream default-a-http-") == 1
    assert 'server_name "a.example.com";' in r.conf


def test_endpoints_for_matches_named_port_among_several():
    s = svc("m", [{"name": "web", "port": 80}, {"name": "admin", "port": 81}])
    e = {"metadata": {"name": "m", "namespace": "default"},
         "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "admin", "port": 9001},
                                                                    {"name": "web", "port": 9000}]}]}
    assert ing.endpoints_for(s, e, {"number": 80}) == ["10.0.0.1:9000"]
    assert ing.endpoints_for(s, e, {"name": "admin"}) == ["10.0.0.1:9001"]
    assert ing.endpoints_for(s, e, {"number": 82}) == []
    assert ing.endpoints_for(None, e, {"number": 80}) == []


def test_prefix_is_element_wise_and_exact_is_exact():
    r = render([ingress("i", [rule("a.example.com", ("/foo", "Prefix", "a", 80), ("/bar/", "Prefix", "b", 8000),
                                   ("/x", "Exact", "b", 8000))])])
    assert 'location = "/foo" {' in r.conf and 'location "/foo/" {' in r.conf
    assert 'location "/foo" {' not in r.conf  # would match /foobar
    assert 'location = "/bar" {' in r.conf and 'location "/bar/" {' in r.conf  # trailing slash ignored
    assert 'location = "/x" {' in r.conf and 'location "/x/"' not in r.conf
    # no root path: the rest of the host is 404
    assert "return 404;" in r.conf.split('server_name "a.example.com";')[1].split("server_name")[0]


def test_unknown_host_hits_default_server_404():
    r = render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80))])])
    default = r.conf.split("server_name _;")[1].split("server {")[0]
    assert "default_server" in r.conf.split("server_name _;")[0].rsplit("server {", 1)[1]
    assert "return 404;" in default


def test_default_backend_serves_the_default_server():
    r = render([ingress("i", [], default_backend={"service": {"name": "b", "port": {"number": 8000}}})])
    default = r.conf.split("server_name _;")[1]
    assert "proxy_pass http://default-b-8000-" in default and "return 404" not in default


def test_wildcard_host_matches_one_label():
    r = render([ingress("i", [rule("*.example.com", ("/", "Prefix", "a", 80))])])
    assert r'server_name "~^[^.]+\\.example\\.com$";' in r.conf  # \ doubled inside the nginx string


def test_rewrite_target_and_regex():
    r = render([ingress("i", [rule("a.example.com", ("/app(/|$)(.*)", "ImplementationSpecific", "a", 80),
                                   ("/", "Prefix", "b", 8000))],
                        ann={ing.ANN + "rewrite-target": "/$2", ing.ANN + "use-regex": "true"})])
    assert 'location ~* "^/app(/|$)(.*)" {' in r.conf
    assert 'rewrite "(?i)^/app(/|$)(.*)" "/$2" break;' in r.conf
    # regex host: "/" becomes a regex too, after the longer one
    assert r.conf.index('"^/app(/|$)(.*)"') < r.conf.index('location ~ "^/"')


def test_class_selection():
    other = ingress("o", [rule("o.example.com", ("/", "Prefix", "a", 80))], cls="traefik")
    none = ingress("n", [rule("n.example.com", ("/", "Prefix", "a", 80))], cls=None)
    r = render([other, none])
    assert r.ingresses == ["default/n"]  # no class: the default class is ours
    no_default = [{"metadata": {"name": "nginx"}, "spec": {"controller": ing.CONTROLLER}}]
    assert render([other, none], classes=no_default).ingresses == []


def test_tls_secret_and_ssl_redirect(tmp_path: Path):
    sec = {"metadata": {"name": "tls-a", "namespace": "default"}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n").decode(),
                    "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nY\n-----END PRIVATE KEY-----\n").decode()}}
    r = render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80)), rule("b.example.com", ("/", "Prefix", "b", 8000))],
                        tls=[{"hosts": ["a.example.com"], "secretName": "tls-a"}])], secrets=[sec])
    assert list(r.files) == ["certs/default_tls-a.pem"]
    a = r.conf.split('server_name "a.example.com";')[1].split("server_name")[0]
    b = r.conf.split('server_name "b.example.com";')[1].split("server_name")[0]
    assert "certs/default_tls-a.pem" in a and "return 308 https://" in a
    assert "ssl_certificate" not in b and "return 308" not in b  # the default certificate, from http{}
    assert r.conf.split("server {")[0].count("ssl_certificate") == 2


def test_annotations_validated_and_applied():
    r = render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80))],
                        ann={ing.ANN + "proxy-body-size": "8m", ing.ANN + "whitelist-source-range": "10.0.0.0/8, 172.30.0.1",
                             ing.ANN + "backend-protocol": "HTTPS", ing.ANN + "force-ssl-redirect": "true"})])
    assert "client_max_body_size 8m;" in r.conf
    assert "allow 10.0.0.0/8;" in r.conf and "allow 172.30.0.1/32;" in r.conf and "deny all;" in r.conf
    assert "proxy_pass https://default-a-80-" in r.conf and "return 308" in r.conf
    bad = render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80))],
                          ann={ing.ANN + "proxy-body-size": "1m; evil", ing.ANN + "whitelist-source-range": "x;y"})])
    assert "evil" not in bad.conf and "allow" not in bad.conf


def test_hostile_paths_and_hosts_are_dropped():
    r = render([ingress("i", [rule("a.example.com", ('/a"; } evil {', "Prefix", "a", 80)),
                              rule("bad host;", ("/", "Prefix", "a", 80))])])
    assert "evil" not in r.conf and "bad host" not in r.conf


def test_no_endpoints_is_503():
    r = ing.render([ingress("i", [rule("a.example.com", ("/", "Prefix", "a", 80))])], SERVICES, [], [], CLASSES, OPTS)
    assert "return 503;" in r.conf and "    upstream " not in r.conf


def test_oldest_ingress_wins_a_path_conflict():
    new = ingress("new", [rule("a.example.com", ("/", "Prefix", "b", 8000))], created="2026-02-01T00:00:00Z")
    old = ingress("old", [rule("a.example.com", ("/", "Prefix", "a", 80))], created="2026-01-01T00:00:00Z")
    r = render([new, old])
    assert "# default/old" in r.conf and "# default/new" not in r.conf


def test_status_writer_and_addresses():
    def node(name: str, ip: str, ready: bool) -> dict:
        return {"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                                                       "conditions": [{"type": "Ready", "status": str(ready)}]}}
    nodes = [node("node2", "172.30.0.12", True), node("node1", "172.30.0.11", False), node("node3", "172.30.0.13", True)]
    assert ing.status_writer(nodes) == "node2"
    assert ing.lb_status(nodes) == {"ingress": [{"ip": "172.30.0.12"}, {"ip": "172.30.0.13"}]}
    assert ing.lb_status([]) == {}


@pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx not installed")
def test_real_nginx_accepts_the_config(tmp_path: Path):
    pem = tmp_path / "default.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c"), "-days", "1", "-subj", "/CN=x"],
                   check=True, capture_output=True)
    pem.write_bytes((tmp_path / "c").read_bytes() + (tmp_path / "k").read_bytes())
    opts = ing.Options(listen=["127.0.0.1"], prefix=str(tmp_path), default_cert=str(pem))
    ings = [ingress("i", [rule("a.example.com", ("/foo", "Prefix", "a", 80), ("/x", "Exact", "b", 8000)),
                          rule("*.w.example.com", ("/", "Prefix", "a", "http")), rule(None, ("/", "Prefix", "b", 8000))],
                    ann={ing.ANN + "whitelist-source-range": "10.0.0.0/8", ing.ANN + "proxy-body-size": "2m"},
                    default_backend={"service": {"name": "b", "port": {"number": 8000}}}),
            ingress("r", [rule("r.example.com", ("/app(/|$)(.*)", "ImplementationSpecific", "a", 80),
                                ("/p", "Prefix", "b", 8000), ("/e", "Exact", "b", 8000))],
                    ann={ing.ANN + "rewrite-target": "/$2", ing.ANN + "backend-protocol": "HTTPS",
                         ing.ANN + "force-ssl-redirect": "true"})]
    r = ing.render(ings, SERVICES, ENDPOINTS, [], CLASSES, opts)
    (tmp_path / "tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(r.conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr + r.conf


def _causes(o: dict) -> list[tuple[str, str]]:
    causes: list = []
    ing.validate(causes, o)
    return [(c["field"], c["message"]) for c in causes]


def test_validation_accepts_good_and_names_bad_fields():
    good = ingress("g", [rule("a.example.com", ("/", "Prefix", "a", 80)), rule("*.w.example.com", ("/x", "Exact", "a", "http")),
                         rule(None, ("/app(/|$)(.*)", "ImplementationSpecific", "a", 80))])
    assert _causes(good) == []
    assert _causes({"metadata": {"name": "e"}, "spec": {}}) == [
        ("spec", "Invalid value: {}: either `defaultBackend` or `rules` must be specified")]
    bad = ingress("b", [rule("10.0.0.1", ("rel", "Prefix", "a", 80)), rule("a.*.com", ("/a//b", "Exact", "Bad_Name", 80))])
    bad["spec"]["rules"][0]["http"]["paths"].append({"path": "/", "backend": {"service": {"name": "a", "port": {}}}})
    got = dict(_causes(bad))
    assert got["spec.rules[0].host"] == 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    assert got["spec.rules[0].http.paths[0].path"] == 'Invalid value: "rel": must be an absolute path'
    assert got["spec.rules[0].http.paths[1].pathType"] == "Required value: pathType must be specified"
    assert got["spec.rules[0].http.paths[1].backend.service.port"].endswith("port name or number is required")
    assert "a lowercase RFC 1123 subdomain" in got["spec.rules[1].host"]
    assert got["spec.rules[1].http.paths[0].path"] == "Invalid value: \"/a//b\": must not contain '//'"
    assert "DNS-1035" in got["spec.rules[1].http.paths[0].backend.service.name"]
    cls: list = []
    ing.validate_class(cls, {"metadata": {"name": "x"}, "spec": {}})
    assert cls[0]["field"] == "spec.controller"

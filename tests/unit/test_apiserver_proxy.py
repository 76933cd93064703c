"""Pure parts of the proxy subresources and of watch bookmarks: URL grammar, endpoint choice,
headers forwarded and returned, the incremental HTTP response parser, bookmark schedule."""
from __future__ import annotations

import pytest
from multidict import CIMultiDict

from nanokube.api.errors import ApiError
from nanokube.apiserver import bookmarks
from nanokube.apiserver.proxy import (BadResponse, ResponseParser, forwarded_headers, parse_path, pod_backend,
                                      request_head, response_headers, service_backends, split_scheme_name_port)


def test_parse_path():
    t = parse_path("/api/v1/namespaces/default/pods/web-1:8080/proxy/a/b%20c/")
    assert (t.resource, t.namespace, t.name, t.scheme, t.port, t.path) == ("pods", "default", "web-1", "", "8080", "/a/b%20c/")
    assert t.base == "/api/v1/namespaces/default/pods/web-1:8080/proxy"
    t = parse_path("/api/v1/namespaces/ns/services/http:web:http-port/proxy")
    assert (t.resource, t.scheme, t.name, t.port, t.path) == ("services", "http", "web", "http-port", "")
    t = parse_path("/api/v1/nodes/node1/proxy/stats/summary")
    assert (t.resource, t.namespace, t.name, t.path) == ("nodes", None, "node1", "/stats/summary")
    assert parse_path("/api/v1/namespaces/default/pods/web/log") is None
    assert parse_path("/api/v1/namespaces/default/configmaps/x/proxy/") is None
    assert parse_path("/apis/apps/v1/namespaces/default/deployments/x/proxy/") is None


def test_split_scheme_name_port():
    assert split_scheme_name_port("web") == ("", "web", "")
    assert split_scheme_name_port("web:80") == ("", "web", "80")
    assert split_scheme_name_port("https:web:") == ("https", "web", "")
    for bad in ("a:b:c:d", "ftp:web:80", ":80"):
        with pytest.raises(ApiError) as e:
            split_scheme_name_port(bad)
        assert e.value.code == 400


SVC = {"metadata": {"name": "web", "namespace": "default"},
       "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "metrics", "port": 9090}]}}
EPS = {"subsets": [{"addresses": [{"ip": "10.244.1.2", "targetRef": {"kind": "Pod", "name": "a", "namespace": "default"}},
                                  {"ip": "10.244.2.2", "targetRef": {"kind": "Pod", "name": "b", "namespace": "default"}}],
                    "notReadyAddresses": [{"ip": "10.244.2.9", "targetRef": {"kind": "Pod", "name": "c"}}],
                    "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]}]}


def test_service_backends_map_port_number_to_name_and_skip_unready():
    got = service_backends(SVC, EPS, "80")
    assert {(b.pod, b.ip, b.port) for b in got} == {("a", "10.244.1.2", 8080), ("b", "10.244.2.2", 8080)}
    assert {b.port for b in service_backends(SVC, EPS, "metrics")} == {9090}
    with pytest.raises(ApiError) as e:
        service_backends(SVC, EPS, "81")
    assert e.value.code == 503 and e.value.message == 'no service port 81 found for service "web"'
    with pytest.raises(ApiError) as e:
        service_backends(SVC, {"subsets": []}, "80")
    assert e.value.message == 'no endpoints available for service "web"'
    with pytest.raises(ApiError):
        service_backends(SVC, EPS, "")  # no unnamed port in a two-port service


def test_pod_backend():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"podIP": "10.244.1.5"}}
    b = pod_backend(pod, "8080")
    assert (b.namespace, b.pod, b.ip, b.port) == ("ns", "p", "10.244.1.5", 8080)
    assert pod_backend(pod, "").port == 80
    with pytest.raises(ApiError):
        pod_backend(pod, "http")
    with pytest.raises(ApiError) as e:
        pod_backend({**pod, "status": {}}, "80")
    assert e.value.code == 503


def test_headers_forwarded_and_returned():
    h = CIMultiDict([("Authorization", "Bearer x"), ("Connection", "keep-alive, X-Drop"), ("X-Drop", "1"),
                     ("Accept", "*/*"), ("Transfer-Encoding", "chunked"), ("Impersonate-User", "bob"),
                     ("X-Forwarded-For", "1.2.3.4"), ("Host", "apiserver")])
    assert forwarded_headers(h, client="172.30.0.1") == [("Accept", "*/*"), ("X-Forwarded-For", "1.2.3.4, 172.30.0.1")]
    head = request_head("POST", "/x", "a=1", "10.0.0.1:80", [("Accept", "*/*")], 3)
    assert head == b"POST /x?a=1 HTTP/1.1\r\nHost: 10.0.0.1:80\r\nAccept: */*\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    assert request_head("GET", "", "", "h", [], 0).startswith(b"GET / HTTP/1.1\r\n")
    base = "/api/v1/namespaces/d/pods/p:80/proxy"
    out = response_headers([("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"), ("Keep-Alive", "x"),
                            ("Location", "/login"), ("Set-Cookie", "a=b")], base=base)
    assert out == [("Content-Type", "text/plain"), ("Location", base + "/login"), ("Set-Cookie", "a=b")]
    assert response_headers([("Location", "http://elsewhere/")], base=base) == [("Location", "http://elsewhere/")]


def test_response_parser_content_length_in_pieces():
    p = ResponseParser()
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"
    out = []
    for i in range(len(raw)):
        out += p.feed(raw[i:i + 1])
    assert p.status == 200 and p.reason == "OK" and ("X-A", "b") in p.headers
    assert b"".join(out) == b"hello" and p.done


def test_response_parser_chunked_and_interim():
    p = ResponseParser()
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    out = []
    for i in range(0, len(raw), 7):
        out += p.feed(raw[i:i + 7])
    assert p.status == 201 and b"".join(out) == b"hello world" and p.done


def test_response_parser_until_close_and_errors():
    p = ResponseParser()
    assert p.feed(b"HTTP/1.0 200 OK\r\n\r\nabc") == [b"abc"]
    assert p.feed(b"def") == [b"def"]
    p.eof()
    assert p.done
    p = ResponseParser(head_request=True)
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert p.done
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(BadResponse):
        p.eof()
    with pytest.raises(BadResponse):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(BadResponse):
        ResponseParser().eof()


def test_bookmark_schedule():
    assert bookmarks.next_bookmark(100.0, deadline=None, interval=20) == 120.0
    assert bookmarks.next_bookmark(100.0, deadline=1000.0, interval=20) == 120.0
    assert bookmarks.next_bookmark(100.0, deadline=110.0, interval=20) == 108.0  # 2 s before the deadline
    assert bookmarks.next_bookmark(109.0, deadline=110.0, interval=20) is None
    assert bookmarks.interval_from_env({"NANOKUBE_WATCH_BOOKMARK_SECONDS": "2.5"}) == 2.5
    assert bookmarks.interval_from_env({"NANOKUBE_WATCH_BOOKMARK_SECONDS": "x"}) == bookmarks.DEFAULT_INTERVAL
    assert bookmarks.bookmark("Pod", "v1", 42, initial_events_end=True) == {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"resourceVersion": "42", "annotations": {"k8s.io/initial-events-end": "true"}}}


def test_watch_list_parameters():
    bookmarks.check_watch_list({"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                "allowWatchBookmarks": "true"})
    bookmarks.check_watch_list({})
    with pytest.raises(ApiError) as e:
        bookmarks.check_watch_list({"sendInitialEvents": "true", "allowWatchBookmarks": "true"})
    assert e.value.code == 422 and "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" in e.value.message
    with pytest.raises(ApiError) as e:
        bookmarks.check_watch_list({"resourceVersionMatch": "NotOlderThan"})
    assert "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided" in e.value.message

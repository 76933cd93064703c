"""hostNetwork pods run in their node's own network namespace: the node's address is theirs,
and a server they start answers on the node's IP."""
from __future__ import annotations

import textwrap


def test_host_network_pod_uses_the_nodes_address(one_node_cluster):
    c = one_node_cluster
    c.kubectl("apply", "-f", "-", input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: hostnet}
        spec:
          hostNetwork: true
          containers:
          - name: c
            image: busybox
            command: [sh, -c, 'mkdir -p /www && echo on-the-node > /www/index.html && exec httpd -f -p 18099 -h /www']
    """))
    c.kubectl("wait", "--for=condition=Ready", "pod/hostnet", "--timeout=60s")
    pod = c.kjson("get", "pod", "hostnet")
    node_ip = pod["status"]["hostIP"]
    assert pod["status"]["podIP"] == node_ip
    addrs = c.kubectl("exec", "hostnet", "--", "ip", "-o", "-4", "addr").stdout
    assert f"inet {node_ip}/" in addrs, addrs
    assert c.wget(f"http://{node_ip}:18099/") == "on-the-node\n"
    c.kubectl("delete", "pod", "hostnet", "--grace-period=1")
    assert c.wget(f"http://{node_ip}:18099/") is None

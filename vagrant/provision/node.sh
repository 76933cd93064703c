#!/usr/bin/env bash
# Every VM (the server VM too): `nanokube agent` as the systemd unit nanokube-agent.
#   node.sh NODE_NAME NODE_IP SERVER_IP
# NODE_IP is the private-network address: never eth0's NAT address, which is the same on
# every VM under VirtualBox (10.0.2.15) and not routable between VMs.
set -euo pipefail
name="$1"; ip="$2"; server="$3"
join=/nanokube/vagrant/.join
ip -4 -o addr show | grep -q " $ip/" || { echo "node: $ip is not an address of this VM" >&2; ip -4 -o addr >&2; exit 1; }
install -m 600 "$join/bootstrap-token" "$join/kubelet-token" "$join/ca.crt" /etc/nanokube/
cat > /etc/nanokube/agent.env <<E
NANOKUBE_NODE_NAME=$name
NANOKUBE_NODE_IP=$ip
NANOKUBE_SERVER=https://$server:6443
E
systemctl enable nanokube-agent >/dev/null 2>&1
systemctl restart nanokube-agent
# The agent registers once the server answers (it restarts until then); no need to wait here.
echo "node: agent $name ($ip) started, server https://$server:6443"

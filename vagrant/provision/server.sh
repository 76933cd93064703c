#!/usr/bin/env bash
# The server VM: `nanokube server` as the systemd unit nanokube-server, on the private IP.
#   server.sh SERVER_IP [sqlite|etcd]
# The CA, tokens and admin token come from the host (vagrant/.join, made by the Vagrantfile):
# the server keeps files it finds, so the host's kubeconfig and the agents' tokens match it.
set -euo pipefail
ip="$1"; datastore="${2:-sqlite}"
join=/nanokube/vagrant/.join
data=/var/lib/nanokube/server
install -d -m 700 "$data" "$data/pki"
install -m 600 "$join/token" "$join/node-token" "$join/kubelet-token" "$join/bootstrap-token" "$data/"
install -m 600 "$join/ca.crt" "$join/ca.key" "$data/pki/"

args=""
case "$datastore" in
  sqlite) systemctl disable --now etcd >/dev/null 2>&1 || true ;;
  etcd)
    command -v etcd >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
    # Debian's etcd listens on 127.0.0.1:2379 by default: only this server talks to it.
    systemctl enable --now etcd
    args="--datastore etcd://127.0.0.1:2379/nanokube" ;;
  *) echo "server: unknown datastore $datastore (sqlite or etcd)" >&2; exit 2 ;;
esac
cat > /etc/nanokube/server.env <<E
NANOKUBE_IP=$ip
NANOKUBE_SERVER_ARGS=$args
E
systemctl enable nanokube-server >/dev/null 2>&1
systemctl restart nanokube-server
for _ in $(seq 1 120); do
  if kubectl --kubeconfig "$data/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1; then
    echo "server: ready at https://$ip:6443 (datastore $datastore)"
    exit 0
  fi
  sleep 2
done
echo "server: not ready after 240s" >&2
journalctl -u nanokube-server --no-pager | tail -30 >&2
exit 1

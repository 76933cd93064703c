#!/usr/bin/env bash
# Every VM: what a nanokube node needs from the OS, then nanokube itself in /opt/nanokube/venv.
#   common.sh [WHEELHOUSE]   (WHEELHOUSE: a directory of wheels for an offline pip install)
# Idempotent (`vagrant provision` reruns it). Works offline on the nanokube/debian12 box (all
# packages baked in, wheels from the host) and online on any Debian 12 box (apt, PyPI).
set -euo pipefail
wheels="${1:-}"
src=/nanokube

# -- packages (the offline box has them all; an online box gets what it lacks) -----------------
PKGS=(python3 python3-venv iptables conntrack busybox-static rsync kmod iproute2 procps gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "common: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- kernel: modules and sysctls, now and at every boot ----------------------------------------
printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/nanokube.conf
modprobe overlay
modprobe br_netfilter
cat > /etc/sysctl.d/90-nanokube.conf <<'S'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
S
sysctl -q -p /etc/sysctl.d/90-nanokube.conf

# -- iptables: nft backend (Debian's default) -------------------------------------------------------
# kube-proxy writes through iptables-nft (nanokube's default): `iptables -L` and `iptables-save`
# must be the nft variant to show its rules.
update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null
update-alternatives --set ip6tables /usr/sbin/ip6tables-nft >/dev/null

# -- cgroup v2 (Debian 12's default): the agent needs cpu, memory and pids at the root --------
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  for c in cpu memory pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || { echo "common: cgroup v2 controller $c missing" >&2; exit 1; }
  done
fi

# -- nanokube from the synced checkout -----------------------------------------------------------
# Its dependencies go into /opt/nanokube/venv (the nanokube/debian12 box has them preinstalled:
# under TCG emulation a venv plus pip install takes the guest many minutes); nanokube itself is
# the synced checkout, put on the venv's path as `pip install -e` would (a .pth file), so
# `vagrant rsync && vagrant ssh -c 'sudo systemctl restart nanokube-agent'` runs new code.
venv=/opt/nanokube/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import aiohttp, yaml, pyroute2, iptc, psutil, dnslib, grpc, kubernetes' 2>/dev/null \
   || [ ! -x "$venv/bin/kubectl" ]; then
  reqs="$(mktemp)"
  python3 -c 'import tomllib, sys; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$src/pyproject.toml" > "$reqs"
  if [ -n "$wheels" ] && [ -d "$wheels" ]; then
    echo "common: installing nanokube's dependencies (offline, wheels from $wheels)"
    "$venv/bin/pip" install -q --no-index --find-links "$wheels" -r "$reqs"
  else
    echo "common: installing nanokube's dependencies (PyPI)"
    "$venv/bin/pip" install -q -r "$reqs"
  fi
  rm -f "$reqs"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$src" > "$site/nanokube-checkout.pth"
cat > /usr/local/bin/nanokube <<W
#!/bin/sh
exec $venv/bin/python -m nanokube "\$@"
W
chmod 755 /usr/local/bin/nanokube
ln -sf "$venv/bin/kubectl" /usr/local/bin/kubectl

# -- images: busybox, made from the VM's own busybox-static --------------------------------------
bash "$src/rootfs/build" --images-dir /var/lib/nanokube/images busybox

install -m 644 "$src"/vagrant/systemd/nanokube-server.service "$src"/vagrant/systemd/nanokube-agent.service /etc/systemd/system/
systemctl daemon-reload
mkdir -p /etc/nanokube
echo "common: done ($("$venv/bin/python" -c 'import nanokube, os; print("nanokube from", os.path.dirname(nanokube.__file__))'))"

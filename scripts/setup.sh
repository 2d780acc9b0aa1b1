#!/usr/bin/env bash
# Installs what Berth needs on a Debian machine (run as root): the system packages,
# then the npm dependencies (which pin Node 24 and build dist/ via `prepare`), then
# the berthd and berthctl launchers in /usr/local/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  runc              # the OCI runtime
  redis-server      # BullMQ jobs and events (berthd starts a private one)
  busybox-static    # test and demo images are built from it
  containerd        # only for its `ctr` client in interop tests; never started
  docker-registry   # a real registry for pull/push tests
  skopeo            # third-party image tool for interop tests
  apache2-utils     # htpasswd, for the registry basic-auth tests
  openssl           # test CAs and certificates for the registry TLS tests
  procps            # pgrep, which the shim tests use to prove nothing is left running
  iproute2
  bsdutils          # script(1): gives `docker run -it` a terminal in the Engine API tests
  containernetworking-plugins  # CNI bridge, host-local, portmap, firewall, loopback: container networks
  iptables          # the CNI plugins' NAT and firewall rules
  util-linux        # unshare(1): persistent network namespaces
  docker-compose    # the real docker-compose 1.29 (docker-py) in the Engine API's compose test
  bzip2 xz-utils    # a build's ADD unpacks bzip2 and xz tars with them (as dockerd runs xz)
  zstd              # the build tests make zstd tars with it
)
# The Engine API tests drive the real docker CLI. Machines of this kind ship one; where
# none is, Debian's docker.io brings one (its dockerd is never started, Berth needs none).
command -v docker >/dev/null || packages+=(docker.io)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' daemons (containerd, registry, redis) from starting.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

npm ci --no-audit --no-fund
sh scripts/install-launchers.sh

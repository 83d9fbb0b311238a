#!/usr/bin/env bash
# Installs what kubemu needs, idempotently: Debian packages and a virtualenv with pinned
# Python packages in .venv. Safe to run any number of times. Needs root (apt, netns).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

debs=(openvswitch-switch mininet iptables iproute2 ethtool iperf3 curl dnsmasq-base
      tcpdump conntrack bridge-utils net-tools ipset procps iputils-ping python3-venv
      gcc python3-dev libnetfilter-queue-dev haproxy bubblewrap bind9-dnsutils
      python3-kubernetes)   # the official Python client, for clients inside pods (they see /usr)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl for the live runs' Kubernetes API (tests use it); any kubectl on PATH will do.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "kubemu setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py="${PYTHON:-python3}"
stamp=".venv/.kubemu-installed"
if [ ! -x .venv/bin/python ]; then
  echo "kubemu setup: creating virtualenv .venv"
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "kubemu setup: installing Python packages (pinned in pyproject.toml)"
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import emulator, controllers, ray, os_ken, mininet, pyroute2" 
  touch "$stamp"
fi

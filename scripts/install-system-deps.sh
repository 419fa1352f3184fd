#!/usr/bin/env bash
# Install the Debian packages the real-runtime tests need (containerd, runc, CNI plugins,
# busybox-static to build the test image, gcc for the pause binary). Only as root; elsewhere
# the real-runtime tests skip with a reason (and fail under CI=true).
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins busybox-static gcc libc6-dev iproute2 iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: not root; skipping ${missing[*]} (real-runtime tests will skip)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The package starts a system containerd on the default socket; the tests run their own.
systemctl disable --now containerd >/dev/null 2>&1 || true

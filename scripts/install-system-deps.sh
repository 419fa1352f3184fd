#!/usr/bin/env bash
# Install the Debian packages the real-runtime tests need (containerd, runc, CNI plugins,
# busybox-static to build the test image, gcc for the pause binary), and fetch containerd 1.7 and
# 2.x into a private cache. Only as root; elsewhere the real-runtime tests skip with a reason (and
# fail under CI=true).
set -euo pipefail
pkgs=(containerd runc containernetworking-plugins busybox-static gcc libc6-dev iproute2 iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "$(id -u)" != 0 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "install-system-deps: not root; skipping ${missing[*]} (real-runtime tests will skip)" >&2
  exit 0
fi
if [ ${#missing[@]} -ne 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The package starts a system containerd on the default socket; the tests run their own.
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
# containerd 1.7 (Debian trixie) and 2.x (Debian sid) beside the system's 1.6, for the streaming
# real-runtime tests: extracted into /var/cache/crisensor-containerd/<suite> with private apt
# lists; the system's apt configuration and containerd are not touched. Cached: a no-op when there.
here="$(cd "$(dirname "$0")" && pwd)"
for suite in trixie sid; do
  bash "$here/realruntime/fetch-containerd.sh" "$suite" >/dev/null
done

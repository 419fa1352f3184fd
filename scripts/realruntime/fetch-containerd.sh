#!/usr/bin/env bash
# Fetch containerd from a newer Debian suite into a private directory, without touching the
# system's apt configuration or its containerd: a private deb822 sources file and private apt
# lists/cache, `apt-get download`, `dpkg-deb -x`. Usage: fetch-containerd.sh SUITE [CACHE_ROOT]
# (SUITE: trixie -> containerd 1.7, sid -> containerd 2.x). Prints the extracted binary's path.
# Idempotent: a finished extraction (marked by .complete) is reused.
set -euo pipefail
suite="${1:?usage: fetch-containerd.sh SUITE [CACHE_ROOT]}"
root="${2:-/var/cache/crisensor-containerd}"
dir="$root/$suite"
if [ -f "$dir/.complete" ]; then
  echo "$dir/usr/bin/containerd"
  exit 0
fi
mirror="$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
mirror="${mirror:-http://deb.debian.org/debian}"
apt_dir="$dir/apt"
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dir/debs"
cat >"$apt_dir/sources.list.d/private.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
opts=(
  -o "Dir::Etc::sourcelist=$apt_dir/none.list"
  -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Get::List-Cleanup=0"
  -o "APT::Sandbox::User=root"
  -q
)
: >"$apt_dir/none.list"
apt-get "${opts[@]}" update >&2
(cd "$dir/debs" && apt-get "${opts[@]}" download containerd >&2)
deb="$(ls "$dir/debs"/containerd_*.deb | head -n1)"
dpkg-deb -x "$deb" "$dir"
rm -f "$dir/debs"/*.deb "$apt_dir"/cache/*.bin
"$dir/usr/bin/containerd" --version >&2
touch "$dir/.complete"
echo "$dir/usr/bin/containerd"

#!/usr/bin/env bash
# Put Prometheus' promtool (it checks the metrics exposition, the alerting rules and the example scrape
# config) at DEST, taken out of Debian's `prometheus` package without installing that package: installing
# it would enable and start a Prometheus server on :9090 on a systemd machine, which nobody asked for.
# promtool is a static Go binary, so the one file is all it needs. A no-op once DEST exists.
# Usage: scripts/ensure-promtool.sh DEST
set -euo pipefail
dest=$(realpath -m "$1")  # absolute: the work below happens in a temporary directory
[ -x "$dest" ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "ensure-promtool: apt-get not found; put promtool (from Prometheus) at $dest yourself" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# apt's sandbox user cannot write to a root-owned mktemp directory: let it.
chmod 0777 "$tmp"
if ! apt-get download prometheus >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get download prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb unpacked
install -m 0755 unpacked/usr/bin/promtool "$dest"
echo "ensure-promtool: $("$dest" --version 2>&1 | head -1) at $dest" >&2

#!/usr/bin/env bash
# Fetch Debian's Xen 4.17 hypervisor (arm64) for the boot-time comparison in
# `cargo xtask bench`. Idempotent; lands in test-images/cache/linux/xen-arm64
# (ignored by git, never commit it). Needs fetch.sh's arm64 architecture.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=$(cd "$here/.." && pwd)/cache/linux
out=$cache/xen-arm64
[[ -s $out ]] && exit 0
mkdir -p "$cache/xen"
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
if ! apt-cache show xen-hypervisor-4.17-arm64:arm64 >/dev/null 2>&1; then
    apt-get update || echo "fetch-xen.sh: apt-get update reported errors; going on" >&2
fi
(cd "$cache/xen" && rm -f ./*.deb && apt-get download xen-hypervisor-4.17-arm64:arm64)
rm -rf "$cache/xen/x"
dpkg-deb -x "$cache"/xen/*.deb "$cache/xen/x"
cp "$cache"/xen/x/boot/xen-4.17-arm64 "$out"
echo "fetch-xen.sh: $(dpkg-deb -f "$cache"/xen/*.deb Package Version | tr '\n' ' ')"

#!/usr/bin/env bash
# Fetch Debian's EDK2 builds for QEMU virt (qemu-efi-aarch64: AAVMF, and
# qemu-efi-arm: AAVMF32) and keep their code images, with the zero padding
# that fills them to 64 MiB cut off (the hypervisor maps the image rounded
# up to 2 MiB, zeros after it, and its device tree gives that size). Idempotent; everything lands in test-images/cache/edk2/
# (ignored by git, never commit it).
#
#   test-images/edk2/fetch.sh          # fetch what is missing
#   FORCE=1 test-images/edk2/fetch.sh  # fetch again
#
# Outputs: edk2-arm64.fd, edk2-armhf.fd, VERSIONS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=$(cd "$here/.." && pwd)/cache/edk2
debs=$cache/debs
mkdir -p "$debs"

if [[ -s $cache/edk2-arm64.fd && -s $cache/edk2-armhf.fd && ${FORCE:-0} != 1 ]]; then
    exit 0
fi

sudo=
[[ $(id -u) == 0 ]] || sudo=sudo
pkgs=(qemu-efi-aarch64 qemu-efi-arm)
# As root, apt's _apt sandbox user cannot write here: download as root.
apt_opts=()
[[ $(id -u) == 0 ]] && apt_opts=(-o APT::Sandbox::User=root)
rm -f "$debs"/*.deb
if ! (cd "$debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}"); then
    # No lists yet, or stale ones: refresh once.
    $sudo apt-get update || echo "fetch.sh: apt-get update reported errors; going on" >&2
    (cd "$debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}")
fi

x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
for d in "$debs"/*.deb; do
    dpkg-deb -x "$d" "$x"
done
# The image without its trailing zero bytes.
trim() {
    python3 - "$1" "$2" <<'PY'
import sys
data = open(sys.argv[1], "rb").read().rstrip(b"\0")
open(sys.argv[2], "wb").write(data)
PY
}
trim "$x/usr/share/qemu-efi-aarch64/QEMU_EFI.fd" "$cache/edk2-arm64.fd"
trim "$x/usr/share/AAVMF/AAVMF32_CODE.fd" "$cache/edk2-armhf.fd"
(cd "$debs" && ls *.deb) > "$cache/VERSIONS"
ls -l "$cache"/*.fd

#!/usr/bin/env bash
# Fetch Debian's arm64 and armhf kernels (bookworm's 6.1, and trixie's 6.12
# as bookworm-backports carries it) and a static busybox for each, and build
# a marker initramfs per architecture. Idempotent; everything lands in
# test-images/cache/linux/ (ignored by git, never commit it).
#
#   test-images/linux/fetch.sh          # fetch what is missing
#   KABI=50 test-images/linux/fetch.sh  # pin the kernel ABI (6.1.0-50)
#   FORCE=1 test-images/linux/fetch.sh  # fetch again
#
# Outputs: Image-arm64, zImage-armhf, Image-arm64-6.12, zImage-armhf-6.12,
# busybox-arm64, busybox-armhf, initrd-arm64.cpio.gz, initrd-armhf.cpio.gz,
# initrd-arm64-disk.cpio.gz, initrd-armhf-disk.cpio.gz (the 6.1 kernels'
# disk initramfs: virtio-blk + ext4 modules, and on arm64 the Raspberry Pi
# 4's SD card's; mounts /dev/vda or the SD card's second partition),
# bcm2711-rpi-4-b.dtb, bcm2711-rpi-400.dtb, VERSIONS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=$(cd "$here/.." && pwd)/cache/linux
debs=$cache/debs
mkdir -p "$debs"

outputs=(Image-arm64 zImage-armhf Image-arm64-6.12 zImage-armhf-6.12 busybox-arm64 busybox-armhf bcm2711-rpi-4-b.dtb bcm2711-rpi-400.dtb)
have_all=1
for f in "${outputs[@]}"; do
    [[ -s $cache/$f ]] || have_all=0
done

sudo=
[[ $(id -u) == 0 ]] || sudo=sudo

# The kernel ABI: the highest 6.1.0-NN with both flavours, unless pinned.
pick_abi() {
    apt-cache pkgnames linux-image-6.1.0- |
        sed -nE 's/^linux-image-6\.1\.0-([0-9]+)-(arm64|armmp-lpae)$/\1 \2/p' |
        sort -n | awk '{n[$1]++} n[$1]==2 {abi=$1} END {print abi}'
}

# The 6.12 kernel version (trixie's series, from bookworm-backports): the
# highest 6.12.N+deb12 with both flavours.
pick_612() {
    apt-cache pkgnames linux-image-6.12. |
        sed -nE 's/^linux-image-(6\.12\.[0-9]+\+deb[0-9]+)-(arm64|armmp-lpae)$/\1 \2/p' |
        sort -V | awk '{n[$1]++} n[$1]==2 {v=$1} END {print v}'
}

if [[ $have_all == 0 || ${FORCE:-0} == 1 ]]; then
    archs=$(dpkg --print-foreign-architectures)
    for a in arm64 armhf; do
        grep -qx "$a" <<<"$archs" || $sudo dpkg --add-architecture "$a"
    done
    abi=${KABI:-$(pick_abi)}
    if [[ -z $abi || -z $(pick_612) || ${FORCE:-0} == 1 ]] ||
        ! apt-cache show busybox-static:armhf >/dev/null 2>&1; then
        # An unrelated index (e.g. armhf security "mirror sync") may fail.
        $sudo apt-get update || echo "fetch.sh: apt-get update reported errors; going on" >&2
        abi=${KABI:-$(pick_abi)}
    fi
    [[ -n $abi ]] || { echo "fetch.sh: no linux-image-6.1.0-NN-arm64/armmp-lpae pair in apt" >&2; exit 1; }
    v612=$(pick_612)
    [[ -n $v612 ]] || { echo "fetch.sh: no linux-image-6.12.N+debNN-arm64/armmp-lpae pair in apt (bookworm-backports missing? scripts/setup adds it)" >&2; exit 1; }

    pkgs=(
        "linux-image-6.1.0-$abi-arm64:arm64"
        "linux-image-6.1.0-$abi-armmp-lpae:armhf"
        "linux-image-$v612-arm64:arm64"
        "linux-image-$v612-armmp-lpae:armhf"
        busybox-static:arm64
        busybox-static:armhf
    )
    # As root, apt's _apt sandbox user cannot write here: download as root.
    apt_opts=()
    [[ $(id -u) == 0 ]] && apt_opts=(-o APT::Sandbox::User=root)
    rm -f "$debs"/*.deb
    if ! (cd "$debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}"); then
        # Stale lists name files the mirror has dropped: refresh once.
        $sudo apt-get update || echo "fetch.sh: apt-get update reported errors; going on" >&2
        (cd "$debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}")
    fi

    : >"$cache/VERSIONS"
    for deb in "$debs"/*.deb; do
        name=$(dpkg-deb -f "$deb" Package)
        arch=$(dpkg-deb -f "$deb" Architecture)
        echo "$name:$arch $(dpkg-deb -f "$deb" Version)" >>"$cache/VERSIONS"
        dir=$cache/extract/$name-$arch
        rm -rf "$dir"
        mkdir -p "$dir"
        dpkg-deb -x "$deb" "$dir"
    done

    cp "$cache"/extract/linux-image-6.1.0-"$abi"-arm64-arm64/boot/vmlinuz-* "$cache/Image-arm64"
    cp "$cache"/extract/linux-image-6.1.0-"$abi"-armmp-lpae-armhf/boot/vmlinuz-* "$cache/zImage-armhf"
    cp "$cache"/extract/linux-image-"$v612"-arm64-arm64/boot/vmlinuz-* "$cache/Image-arm64-6.12"
    cp "$cache"/extract/linux-image-"$v612"-armmp-lpae-armhf/boot/vmlinuz-* "$cache/zImage-armhf-6.12"
    # The Raspberry Pi 4's and 400's board DTBs (QEMU raspi4b, the SD image).
    for d in bcm2711-rpi-4-b bcm2711-rpi-400; do
        cp "$cache"/extract/linux-image-6.1.0-"$abi"-arm64-arm64/usr/lib/linux-image-*/broadcom/$d.dtb "$cache/"
    done
    cp "$cache/extract/busybox-static-arm64/bin/busybox" "$cache/busybox-arm64"
    cp "$cache/extract/busybox-static-armhf/bin/busybox" "$cache/busybox-armhf"
fi

# Check the images are what the boot protocols expect.
magic() { od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }
for f in Image-arm64 Image-arm64-6.12; do
    [[ $(magic "$cache/$f" 56 4) == 41524d64 ]] ||
        { echo "fetch.sh: $f has no arm64 Image magic ARMd" >&2; exit 1; }
done
for f in zImage-armhf zImage-armhf-6.12; do
    [[ $(magic "$cache/$f" 36 4) == 18286f01 ]] ||
        { echo "fetch.sh: $f has no zImage magic 0x016f2818" >&2; exit 1; }
done

# The initramfs, rebuilt when missing or older than its inputs.
for a in arm64 armhf; do
    out=$cache/initrd-$a.cpio.gz
    if [[ ! -s $out || $out -ot $here/mkinitramfs.py || $out -ot $cache/busybox-$a ]]; then
        python3 "$here/mkinitramfs.py" --busybox "$cache/busybox-$a" --output "$out"
    fi
done

# The disk initramfs of the 6.1 kernels (the hardware domain's disk tests):
# their modules come from the linux-image package VERSIONS names.
for a in arm64 armhf; do
    flavour=$a
    [[ $a == armhf ]] && flavour=armmp-lpae
    pkg=$(sed -nE "s/^(linux-image-6\.1\.0-[0-9]+-$flavour):$a .*/\1/p" "$cache/VERSIONS" | head -1)
    [[ -n $pkg ]] || { echo "fetch.sh: VERSIONS names no linux-image-6.1.0-NN-$flavour (FORCE=1 fetches again)" >&2; exit 1; }
    mods=$(echo "$cache/extract/$pkg-$a/lib/modules/"*)
    [[ -d $mods ]] || { echo "fetch.sh: no modules directory for $pkg (FORCE=1 fetches again)" >&2; exit 1; }
    out=$cache/initrd-$a-disk.cpio.gz
    if [[ ! -s $out || $out -ot $here/mkinitramfs.py || $out -ot $cache/busybox-$a || $out -ot $mods ]]; then
        # arm64's also holds the Raspberry Pi 4's SD card modules (--sd).
        sd=()
        [[ $a == arm64 ]] && sd=(--sd)
        python3 "$here/mkinitramfs.py" --busybox "$cache/busybox-$a" --modules "$mods" "${sd[@]}" --output "$out"
    fi
done

cat "$cache/VERSIONS"
ls -l "$cache" | grep -v -e '^total' -e ' debs$' -e ' extract$'

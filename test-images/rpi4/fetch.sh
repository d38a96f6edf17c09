#!/usr/bin/env bash
# Fetch the Raspberry Pi 4's GPU firmware (start4.elf, fixup4.dat) from
# Debian's raspi-firmware package, for `cargo xtask image --board rpi4`.
# Idempotent; everything lands in test-images/cache/rpi4/ (ignored by git,
# never commit it: the firmware is Broadcom's, under its own licence, see
# extract/usr/share/doc/raspi-firmware/copyright).
#
#   test-images/rpi4/fetch.sh          # fetch what is missing
#   FORCE=1 test-images/rpi4/fetch.sh  # fetch again
#
# raspi-firmware is in the non-free-firmware component, which the machine's
# apt sources need not enable. The system's apt configuration is left alone:
# apt runs here with a private sources list (the machine's own Debian mirror,
# the release's non-free-firmware, the arm64 index; the package is
# Architecture: all), and private lists, cache and (empty) dpkg status under
# test-images/cache/rpi4/apt/. No root needed.
#
# Outputs: start4.elf, fixup4.dat, VERSION.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=$(cd "$here/.." && pwd)/cache/rpi4
apt=$cache/apt
debs=$cache/debs
outputs=(start4.elf fixup4.dat)

have_all=1
for f in "${outputs[@]}" VERSION; do
    [[ -s $cache/$f ]] || have_all=0
done
if [[ $have_all == 1 && ${FORCE:-0} != 1 ]]; then
    echo "raspi-firmware $(cat "$cache/VERSION")"
    exit 0
fi

# The Debian mirror this machine already uses for its main archive (never a
# host name of our own): the URI of the first source whose suite is the
# release itself (as scripts/setup finds it).
debian_mirror() {
    local release=$1
    {
        { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } | awk -v rel="$release" '
            /^[ \t]*$/ { if (uri != "" && hit) { print uri; exit } uri = ""; hit = 0; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == rel) hit = 1 }
            END { if (uri != "" && hit) print uri }'
        { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
            awk -v rel="$release" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == rel && $(i - 1) ~ /:\/\//) print $(i - 1) }'
    } | awk "NR == 1"
}

release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $release ]] || { echo "rpi4/fetch.sh: no VERSION_CODENAME in /etc/os-release (a Debian machine is needed)" >&2; exit 1; }
mirror=$(debian_mirror "$release")
[[ -n $mirror ]] || { echo "rpi4/fetch.sh: no Debian $release source in /etc/apt to take the mirror from" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -s $keyring ]] || { echo "rpi4/fetch.sh: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }

mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$debs"
: >"$apt/status"
source_line="deb [arch=arm64 lang=none target=Packages signed-by=$keyring] $mirror $release non-free-firmware"
opts=(
    -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=-"
    -o "Dir::State=$apt"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::status=$apt/status"
    -o "Dir::Cache=$apt"
    -o "Dir::Cache::Archives=$apt/archives"
    -o "APT::Architecture=arm64"
    -o "APT::Architectures=arm64"
    -q
)
# As root, apt's _apt sandbox user cannot write here: fetch as root.
[[ $(id -u) == 0 ]] && opts+=(-o APT::Sandbox::User=root)

update() {
    echo "$source_line" >"$apt/sources.list"
    apt-get "${opts[@]}" update >&2 || echo "rpi4/fetch.sh: apt-get update reported errors; going on" >&2
}
download() { (cd "$debs" && rm -f ./*.deb && apt-get "${opts[@]}" download raspi-firmware); }

# The private lists are refreshed when absent, older than a day, or for
# another mirror or release.
if [[ $(cat "$apt/sources.list" 2>/dev/null) != "$source_line" ||
    -z $(find "$apt/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null) ]]; then
    update
fi
if ! download; then
    # Stale lists name files the mirror has dropped: refresh once.
    update
    download
fi

deb=$(ls "$debs"/raspi-firmware_*.deb)
dir=$cache/extract
rm -rf "$dir"
mkdir -p "$dir"
dpkg-deb -x "$deb" "$dir"
for f in "${outputs[@]}"; do
    cp "$dir/usr/lib/raspi-firmware/$f" "$cache/$f.new"
    mv "$cache/$f.new" "$cache/$f"
done
echo "$(dpkg-deb -f "$deb" Version)" >"$cache/VERSION"

# start4.elf is a 32-bit ELF for the VideoCore; fixup4.dat is not empty.
[[ $(od -An -tx1 -N4 "$cache/start4.elf" | tr -d ' \n') == 7f454c46 ]] ||
    { echo "rpi4/fetch.sh: start4.elf is not an ELF file" >&2; exit 1; }
[[ -s $cache/fixup4.dat ]] || { echo "rpi4/fetch.sh: fixup4.dat is empty" >&2; exit 1; }

echo "raspi-firmware $(cat "$cache/VERSION")"
ls -l "$cache/start4.elf" "$cache/fixup4.dat"

#!/usr/bin/env python3
"""Write a gzip'd newc cpio initramfs holding a static busybox and an /init
that prints one marker line and powers off. Stdlib only: no cpio binary.

    mkinitramfs.py --busybox PATH --output initrd.cpio.gz
    mkinitramfs.py --busybox PATH --output initrd-disk.cpio.gz \
        --modules extract/linux-image-.../lib/modules/VERSION

With `--modules` it writes the disk initramfs instead: the same /init, plus,
right after the marker, loading the kernel modules a virtio-mmio disk with
an ext4 file system needs (virtio_mmio, virtio_blk, ext4 and what they
depend on, taken from that kernel package's own modules), with `--sd` also
those of the Raspberry Pi 4's SD card slot (EMMC2: sdhci_iproc and its
supplies' regulator drivers, SD_MODULES), waiting up to 20 s for /dev/vda
or an SD card's second partition (/dev/mmcblkNp2), mounting the first that
appears read-only at /mnt and running the disk's /bin/hwdom-marker in it
(`chroot /mnt /bin/hwdom-marker`), which prints `HWDOM-DISK-OK ...`.
`hwdom_disk=DEV` on the kernel command line waits for DEV alone. Without a
disk it prints `HWDOM-DISK-FAIL <why>` and goes on. See DISK_STEPS.

The archive is reproducible: every mtime, uid and gid is 0, and the gzip
header carries no time or file name.

The marker /init prints:

    LINUX-MARKER arch=<uname -m> cpus=<processors in /proc/cpuinfo> MemTotal: <kB> kB

With `reboot` on the kernel command line it restarts once (PSCI
SYSTEM_RESET; the hypervisor marks the next boot with `hyp.restarts=N`),
with `rebootloop` every time. With `shell` it then prints `LINUX-SHELL ready`
and runs an interactive `sh` on the console; leaving it powers off.
"""

import argparse
import gzip
import io
import os
import re
import stat
import struct
import sys

INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "LINUX-MARKER arch=$(uname -m) cpus=$(grep -c ^processor /proc/cpuinfo) $(grep MemTotal /proc/meminfo)"
# `reboot`: restart once (the hypervisor adds hyp.restarts=N after a
# restart); `rebootloop`: restart every time.
if grep -qw rebootloop /proc/cmdline; then reboot -f; fi
if grep -qw reboot /proc/cmdline && ! grep -q hyp.restarts= /proc/cmdline; then reboot -f; fi
# With `shell` on the command line: an interactive shell on the console.
if grep -qw shell /proc/cmdline; then
    echo "LINUX-SHELL ready"
    sh
fi
poweroff -f
"""

# Busybox applets /init runs, as symlinks in /bin.
APPLETS = ["sh", "mount", "uname", "grep", "poweroff", "reboot", "cat", "ls"]

# The disk initramfs: what /init does after the marker (inserted before the
# reboot/shell/poweroff tail, which stays the same). /lib/modules/load lists
# the modules in load order; a `?` marks an optional one (a soft dependency,
# e.g. a CPU-specific crc32c that may not fit this CPU).
DISK_STEPS = """# The disk: load the modules, wait for /dev/vda or an SD card's second
# partition (or hwdom_disk=DEV), mount it, run its marker.
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /lib/modules/load); do
    case $m in
    \\?*) insmod /lib/modules/${m#?}.ko 2>/dev/null ;;
    *) insmod /lib/modules/$m.ko || echo "HWDOM-DISK-FAIL insmod $m" ;;
    esac
done
want="/dev/vda /dev/mmcblk0p2 /dev/mmcblk1p2 /dev/mmcblk2p2"
for w in $(cat /proc/cmdline); do
    case $w in hwdom_disk=*) want=${w#hwdom_disk=} ;; esac
done
disk=
n=0
while [ -z "$disk" ] && [ $n -lt 200 ]; do
    for d in $want; do
        if [ -z "$disk" ] && [ -b $d ]; then disk=$d; fi
    done
    [ -n "$disk" ] || sleep 0.1
    n=$((n+1))
done
if [ -z "$disk" ]; then
    echo "HWDOM-DISK-FAIL none of $want (is the disk passed through?)"
elif ! mount -t ext4 -o ro $disk /mnt; then
    echo "HWDOM-DISK-FAIL cannot mount $disk"
else
    echo "hwdom-disk: mounted $disk"
    chroot /mnt /bin/hwdom-marker || echo "HWDOM-DISK-FAIL /bin/hwdom-marker failed"
    umount /mnt
fi
"""

# Further applets the disk steps run.
DISK_APPLETS = ["insmod", "sleep", "chroot", "umount"]

# The modules the disk steps need (with their dependencies).
DISK_MODULES = ["virtio_mmio", "virtio_blk", "ext4"]

# With --sd, those of the Raspberry Pi 4's SD card slot too (Debian's arm64
# kernel has MMC and mmc_block built in): EMMC2 (brcm,bcm2711-emmc2) is
# sdhci-iproc's, and its vqmmc/vmmc supplies are a regulator-gpio and a
# regulator-fixed, without whose drivers its probe is deferred for good.
SD_MODULES = ["fixed", "gpio_regulator", "sdhci_iproc"]


class Newc:
    """A newc ("070701") cpio writer."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        name_bytes = name.encode() + b"\0"
        fields = [
            self.ino, mode, 0, 0, nlink, 0, len(data),
            0, 0, rdev[0], rdev[1], len(name_bytes), 0,
        ]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(header + name_bytes)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def dir(self, name, perm=0o755):
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self):
        # The trailer has inode 0 by convention.
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        # Pad the archive to 512 bytes, as cpio does.
        self.out.write(b"\0" * (-self.out.tell() % 512))
        return self.out.getvalue()


def modinfo_section(data):
    """The bytes of an ELF module's .modinfo section (32- or 64-bit,
    little-endian)."""
    if data[:4] != b"\x7fELF" or data[5] != 1:
        sys.exit("mkinitramfs: a module is not a little-endian ELF file")
    if data[4] == 2:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        sh = lambda i: struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        fields = lambda h: (h[0], h[4], h[5])
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
        sh = lambda i: struct.unpack_from("<IIIIII", data, shoff + i * shentsize)
        fields = lambda h: (h[0], h[4], h[5])
    _, stroff, _ = fields(sh(shstrndx))
    for i in range(shnum):
        name, off, size = fields(sh(i))
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            return data[off:off + size]
    return b""


def modinfo(data):
    """A module's .modinfo as {key: [values]}."""
    info = {}
    for rec in modinfo_section(data).split(b"\0"):
        key, eq, value = rec.partition(b"=")
        if eq:
            info.setdefault(key.decode(), []).append(value.decode())
    return info


class Modules:
    """A kernel package's modules directory (lib/modules/VERSION).

    The package carries no modules.dep (depmod writes it when the package is
    installed), so dependencies come from each module's own `depends=`
    (what modpost computed from its symbols, and what depmod turns into
    modules.dep) and `softdep=pre:` (its MODULE_SOFTDEP), resolved against
    the package's file names, modules.builtin and module aliases."""

    def __init__(self, root):
        self.root = root
        self.paths = {}
        for d, _, files in os.walk(os.path.join(root, "kernel")):
            for f in files:
                if f.endswith(".ko"):
                    self.paths[f[:-3].replace("-", "_")] = os.path.join(d, f)
        self.builtin = set()
        bpath = os.path.join(root, "modules.builtin")
        if os.path.exists(bpath):
            for line in open(bpath):
                self.builtin.add(os.path.basename(line.strip())[:-3].replace("-", "_"))
        self.builtin_aliases = set()
        bmi = os.path.join(root, "modules.builtin.modinfo")
        if os.path.exists(bmi):
            for rec in open(bmi, "rb").read().split(b"\0"):
                name, _, rest = rec.partition(b".")
                if rest.startswith(b"alias="):
                    self.builtin_aliases.add(rest[6:].decode())
        self._alias = None

    def data(self, name):
        with open(self.paths[name], "rb") as f:
            return f.read()

    def by_alias(self, alias):
        """The modules that provide `alias` (every one, sorted)."""
        if self._alias is None:
            self._alias = {}
            for name in sorted(self.paths):
                for a in modinfo(self.data(name)).get("alias", []):
                    self._alias.setdefault(a, []).append(name)
        return self._alias.get(alias, [])

    def order(self, wanted):
        """Every module `wanted` needs, dependencies first: a list of
        (name, optional). A soft dependency's module is optional."""
        out, seen = [], set()

        def visit(name, optional, stack):
            name = name.replace("-", "_")
            if name in seen or name in self.builtin:
                return
            if name not in self.paths:
                sys.exit(f"mkinitramfs: module {name} is neither in {self.root} nor built in")
            if name in stack:
                sys.exit(f"mkinitramfs: module dependency loop at {name}")
            info = modinfo(self.data(name))
            for dep in ",".join(info.get("depends", [])).split(","):
                if dep:
                    visit(dep, optional, stack + [name])
            for sd in info.get("softdep", []):
                words = sd.split()
                pre = []
                if "pre:" in words:
                    for w in words[words.index("pre:") + 1:]:
                        if w.endswith(":"):
                            break
                        pre.append(w)
                for soft in pre:
                    if soft in self.builtin_aliases or soft.replace("-", "_") in self.builtin:
                        continue
                    for m in ([soft.replace("-", "_")] if soft.replace("-", "_") in self.paths else self.by_alias(soft)):
                        visit(m, True, stack + [name])
            seen.add(name)
            out.append((name, optional))

        for w in wanted:
            visit(w, False, [])
        return out


def build(busybox, modules=None, wanted=DISK_MODULES):
    a = Newc()
    a.dir("bin")
    a.file("bin/busybox", busybox, 0o755)
    applets = APPLETS + (DISK_APPLETS if modules else [])
    for applet in applets:
        a.symlink("bin/" + applet, "busybox")
    for d in ["proc", "sys", "dev"] + (["mnt"] if modules else []):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    init = INIT
    if modules:
        tail = init.index("# `reboot`:")
        init = init[:tail] + DISK_STEPS + init[tail:]
        order = modules.order(wanted)
        a.dir("lib")
        a.dir("lib/modules")
        for name, _ in order:
            a.file(f"lib/modules/{name}.ko", modules.data(name))
        load = "".join(("?" if opt else "") + name + "\n" for name, opt in order)
        a.file("lib/modules/load", load.encode())
    a.file("init", init.encode(), 0o755)
    return a.finish()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busybox", required=True, help="a static busybox binary")
    p.add_argument("--output", required=True, help="the .cpio.gz to write")
    p.add_argument("--modules", help="a kernel package's lib/modules/VERSION: write the disk initramfs")
    p.add_argument("--sd", action="store_true", help="with --modules: the Raspberry Pi 4's SD card modules too")
    args = p.parse_args()
    if args.sd and not args.modules:
        sys.exit("mkinitramfs: --sd goes with --modules")
    with open(args.busybox, "rb") as f:
        busybox = f.read()
    if not busybox.startswith(b"\x7fELF"):
        sys.exit(f"mkinitramfs: {args.busybox} is not an ELF binary")
    modules = Modules(args.modules) if args.modules else None
    wanted = DISK_MODULES + (SD_MODULES if args.sd else [])
    cpio = build(busybox, modules, wanted)
    if modules:
        print(f"mkinitramfs: {args.output}: modules " + " ".join(("?" if o else "") + n for n, o in modules.order(wanted)))
    with open(args.output, "wb") as f:
        f.write(gzip.compress(cpio, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main()

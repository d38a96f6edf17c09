#!/usr/bin/env python3
"""Write a gzip'd newc cpio initramfs holding a static busybox and an /init
that prints one marker line and powers off. Stdlib only: no cpio binary.

    mkinitramfs.py --busybox PATH --output initrd.cpio.gz

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
import stat
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


def build(busybox):
    a = Newc()
    a.dir("bin")
    a.file("bin/busybox", busybox, 0o755)
    for applet in APPLETS:
        a.symlink("bin/" + applet, "busybox")
    for d in ["proc", "sys", "dev"]:
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.file("init", INIT.encode(), 0o755)
    return a.finish()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busybox", required=True, help="a static busybox binary")
    p.add_argument("--output", required=True, help="the .cpio.gz to write")
    args = p.parse_args()
    with open(args.busybox, "rb") as f:
        busybox = f.read()
    if not busybox.startswith(b"\x7fELF"):
        sys.exit(f"mkinitramfs: {args.busybox} is not an ELF binary")
    cpio = build(busybox)
    with open(args.output, "wb") as f:
        f.write(gzip.compress(cpio, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main()

//! Real Linux guests: Debian's arm64 and armhf kernels with a busybox
//! initramfs, fetched at first use by test-images/linux/fetch.sh into the
//! ignored test-images/cache/linux/.

use std::path::PathBuf;
use std::process::Command;

use crate::root;

/// The kernel command line a Linux guest boots with (the guests' virtual
/// platform has its PL011 at 0x9000000, as QEMU virt does).
pub const DEFAULT_BOOTARGS: &str = "console=ttyAMA0 earlycon=pl011,0x9000000 rdinit=/init";

/// A hardware domain on the Raspberry Pi 4 keeps the board's addresses:
/// its console is the PL011 the hypervisor emulates at UART0's.
pub const RPI4_HWDOM_BOOTARGS: &str = "console=ttyAMA0 earlycon=pl011,mmio32,0xfe201000 rdinit=/init";

/// The command line for a Linux guest on `board` (the `--board` name).
pub fn default_bootargs(board: &str, hwdom: bool) -> &'static str {
    if hwdom && board == "rpi4" {
        RPI4_HWDOM_BOOTARGS
    } else {
        DEFAULT_BOOTARGS
    }
}

/// The kernel command line each Linux test guest boots with.
pub fn bootargs(guest: &str) -> Option<&'static str> {
    match guest {
        "linux-arm64" | "linux-armhf" | "linux-arm64-6.12" | "linux-armhf-6.12" => Some(DEFAULT_BOOTARGS),
        _ => None,
    }
}

/// For a Linux guest: its kernel image and initramfs, fetched if missing.
/// `None` for other guests.
pub fn files(guest: &str) -> Result<Option<(PathBuf, Option<PathBuf>)>, String> {
    let (kernel, initrd) = match guest {
        "linux-arm64" => ("Image-arm64", "initrd-arm64.cpio.gz"),
        "linux-armhf" => ("zImage-armhf", "initrd-armhf.cpio.gz"),
        "linux-arm64-6.12" => ("Image-arm64-6.12", "initrd-arm64.cpio.gz"),
        "linux-armhf-6.12" => ("zImage-armhf-6.12", "initrd-armhf.cpio.gz"),
        _ => return Ok(None),
    };
    let cache = root().join("test-images/cache/linux");
    let (k, i) = (cache.join(kernel), cache.join(initrd));
    // The initramfs is rebuilt when its generator changed since.
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = mtime(&i) < mtime(&root().join("test-images/linux/mkinitramfs.py"));
    if !k.exists() || !i.exists() || stale {
        fetch()?;
        if !k.exists() || !i.exists() {
            return Err("fetching the Linux guest material failed (see above)".into());
        }
    }
    Ok(Some((k, Some(i))))
}

/// For `linux-arm64` and `linux-armhf` (the 6.1 kernels): the kernel and
/// the disk initramfs (`initrd-ARCH-disk.cpio.gz`: loads the package's
/// virtio-mmio, virtio-blk and ext4 modules, mounts /dev/vda read-only and
/// runs the disk's `/bin/hwdom-marker`), fetched or rebuilt if missing.
pub fn disk_files(guest: &str) -> Result<Option<(PathBuf, Option<PathBuf>)>, String> {
    let initrd = match guest {
        "linux-arm64" => "initrd-arm64-disk.cpio.gz",
        "linux-armhf" => "initrd-armhf-disk.cpio.gz",
        _ => return Err(format!("no disk initramfs for guest '{guest}' (the disk's modules are the 6.1 kernels': linux-arm64, linux-armhf)")),
    };
    let Some((kernel, _)) = files(guest)? else { unreachable!("{guest} is a Linux guest") };
    let i = kernel.with_file_name(initrd);
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if !i.exists() || mtime(&i) < mtime(&root().join("test-images/linux/mkinitramfs.py")) {
        fetch()?;
        if !i.exists() {
            return Err(format!("{} is missing after the fetch (see above)", i.display()));
        }
    }
    Ok(Some((kernel, Some(i))))
}

/// Run test-images/linux/fetch.sh (it fetches only what is missing).
fn fetch() -> Result<(), String> {
    eprintln!("xtask: fetching Debian guest kernels (test-images/linux/fetch.sh)");
    let st = Command::new("bash")
        .arg(root().join("test-images/linux/fetch.sh"))
        .status()
        .map_err(|e| format!("fetch.sh: {e}"))?;
    if !st.success() {
        return Err("fetching the Linux guest material failed (see above)".into());
    }
    Ok(())
}

/// The Raspberry Pi 4's board DTB from Debian's arm64 kernel package,
/// fetched with the kernels.
pub fn rpi4_dtb() -> Result<PathBuf, String> {
    let dtb = root().join("test-images/cache/linux/bcm2711-rpi-4-b.dtb");
    if !dtb.exists() || !dtb.with_file_name("bcm2711-rpi-400.dtb").exists() {
        fetch()?;
    }
    if !dtb.exists() {
        return Err(format!("{} is missing after the fetch (test-images/linux/fetch.sh)", dtb.display()));
    }
    Ok(dtb)
}

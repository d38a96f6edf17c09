//! The hardware domain's test disk: a small ext4 file system image built
//! without root tools (`mke2fs -d`, e2fsprogs), holding a static busybox
//! and `/bin/hwdom-marker`, which prints
//!
//! ```text
//! HWDOM-DISK-OK disk=swhyp-hwdom arch=ARCH
//! ```
//!
//! (the rest of the line is `/etc/hwdom-disk-id`, read from the disk). The
//! disk initramfs (`initrd-ARCH-disk.cpio.gz`, test-images/linux/fetch.sh)
//! mounts it from `/dev/vda` and runs that program. Built into the ignored
//! test-images/cache/linux/, again only when its recipe or busybox changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::root;

/// The line the disk's program prints, up to the disk's id.
pub const MARKER: &str = "HWDOM-DISK-OK";
/// Size of the file system image.
pub const SIZE: &str = "8M";
/// Busybox applets the disk's program needs, as symlinks in /bin.
const APPLETS: &[&str] = &["sh", "cat", "echo"];
/// A fixed UUID, hash seed and creation time (the files' own times still
/// differ from build to build).
const UUID: &str = "5e1f0000-0000-4000-8000-000000000001";
const MKE2FS_TIME: &str = "1700000000";

/// `/etc/hwdom-disk-id` on the `arch` disk: what follows [`MARKER`].
pub fn disk_id(arch: &str) -> String {
    format!("disk=swhyp-hwdom arch={arch}")
}

/// The full marker line the `arch` disk prints.
pub fn marker_line(arch: &str) -> String {
    format!("{MARKER} {}", disk_id(arch))
}

/// "arm64" or "armhf" for a Linux test guest (its busybox and disk).
pub fn linux_arch(guest: &str) -> Option<&'static str> {
    match guest {
        "linux-arm64" | "linux-arm64-6.12" => Some("arm64"),
        "linux-armhf" | "linux-armhf-6.12" => Some("armhf"),
        _ => None,
    }
}

const HWDOM_MARKER: &str = "#!/bin/sh\n# Run from the disk initramfs: chroot /mnt /bin/hwdom-marker\necho \"HWDOM-DISK-OK $(cat /etc/hwdom-disk-id)\"\n";

/// The recipe: everything that decides the image's content but busybox.
fn recipe(arch: &str) -> String {
    format!("size={SIZE} uuid={UUID} time={MKE2FS_TIME} applets={} id={}\n{HWDOM_MARKER}", APPLETS.join(","), disk_id(arch))
}

/// mke2fs: on the PATH, or in /sbin (a non-root PATH often lacks it).
fn mke2fs() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("mke2fs"))
        .find(|p| p.is_file())
        .ok_or_else(|| "mke2fs not found (install e2fsprogs; scripts/setup does)".into())
}

/// The `arch` ("arm64" or "armhf") test disk, built if missing or stale.
pub fn disk(arch: &str) -> Result<PathBuf, String> {
    if arch != "arm64" && arch != "armhf" {
        return Err(format!("no test disk for '{arch}' (allowed: arm64, armhf)"));
    }
    let cache = root().join("test-images/cache/linux");
    let busybox = cache.join(format!("busybox-{arch}"));
    if !busybox.exists() {
        // The Linux guests' fetch brings busybox.
        crate::linux::files(if arch == "arm64" { "linux-arm64" } else { "linux-armhf" })?;
    }
    let img = cache.join(format!("disk-{arch}.img"));
    let stamp = cache.join(format!("disk-{arch}.recipe"));
    let want = recipe(arch);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && img.exists() && mtime(&img) >= mtime(&busybox);
    if fresh {
        return Ok(img);
    }
    build(arch, &busybox, &img)?;
    std::fs::write(&stamp, want).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(img)
}

/// Lay the tree out in a scratch directory and `mke2fs -d` it into `img`
/// (written next to it first, then renamed: a run never sees half a disk).
fn build(arch: &str, busybox: &Path, img: &Path) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let tree = img.with_extension("d");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "etc", "dev", "proc"] {
        std::fs::create_dir_all(tree.join(d)).map_err(|e| err(&tree, e))?;
    }
    std::fs::copy(busybox, tree.join("bin/busybox")).map_err(|e| err(busybox, e))?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(a)).map_err(|e| err(&tree, e))?;
    }
    std::fs::write(tree.join("etc/hwdom-disk-id"), format!("{}\n", disk_id(arch))).map_err(|e| err(&tree, e))?;
    let marker = tree.join("bin/hwdom-marker");
    std::fs::write(&marker, HWDOM_MARKER).map_err(|e| err(&marker, e))?;
    use std::os::unix::fs::PermissionsExt;
    for f in [&marker, &tree.join("bin/busybox")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).map_err(|e| err(f, e))?;
    }
    let tmp = img.with_extension("img.tmp");
    let _ = std::fs::remove_file(&tmp);
    let out = Command::new(mke2fs()?)
        .args(["-q", "-t", "ext4", "-U", UUID, "-E", &format!("hash_seed={UUID}"), "-L", "hwdom", "-d"])
        .arg(&tree)
        .arg("-F")
        .arg(&tmp)
        .arg(SIZE)
        .env("E2FSPROGS_FAKE_TIME", MKE2FS_TIME)
        .output()
        .map_err(|e| format!("mke2fs: {e}"))?;
    let _ = std::fs::remove_dir_all(&tree);
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("mke2fs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    std::fs::rename(&tmp, img).map_err(|e| err(img, e))?;
    eprintln!("xtask: built {} (ext4, {SIZE})", img.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk is a real ext4 image holding the marker program and the
    /// busybox it runs (read back with e2fsprogs' debugfs, no mount).
    #[test]
    fn disk_holds_the_marker_program() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake_busybox = dir.join("busybox");
        std::fs::write(&fake_busybox, b"\x7fELF not really busybox").unwrap();
        let img = dir.join("disk-arm64.img");
        if mke2fs().is_err() {
            eprintln!("skipped: no mke2fs");
            return;
        }
        build("arm64", &fake_busybox, &img).unwrap();
        let data = std::fs::read(&img).unwrap();
        assert_eq!(data.len(), 8 << 20);
        // The ext4 superblock's magic at 1024 + 0x38.
        assert_eq!(&data[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        let debugfs = mke2fs().unwrap().with_file_name("debugfs");
        if debugfs.exists() {
            let cat = |p: &str| {
                let o = Command::new(&debugfs).args(["-R", &format!("cat {p}")]).arg(&img).output().unwrap();
                String::from_utf8_lossy(&o.stdout).to_string()
            };
            assert_eq!(cat("/etc/hwdom-disk-id").trim(), disk_id("arm64"));
            assert!(cat("/bin/hwdom-marker").contains("HWDOM-DISK-OK $(cat /etc/hwdom-disk-id)"));
            assert!(cat("/bin/busybox").starts_with("\x7fELF"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn marker_names_the_disk() {
        assert_eq!(marker_line("armhf"), "HWDOM-DISK-OK disk=swhyp-hwdom arch=armhf");
        assert_eq!(linux_arch("linux-armhf-6.12"), Some("armhf"));
        assert_eq!(linux_arch("sw-basic"), None);
    }
}

/// `cargo xtask disk`'s options.
#[derive(clap::Parser, Debug)]
#[command(about = "Build the hardware domain's ext4 test disk; prints its path", disable_version_flag = true, args_override_self = true)]
struct DiskOpts {
    /// Whose modules it carries.
    #[arg(value_parser = ["arm64", "armhf"], default_value = "arm64")]
    arch: String,
}

pub fn disk_cli(argv: &[String]) -> Result<u8, String> {
    let Some(o) = crate::parse_cli::<DiskOpts>("disk", argv)? else { return Ok(0) };
    println!("{}", disk(&o.arch)?.display());
    Ok(0)
}

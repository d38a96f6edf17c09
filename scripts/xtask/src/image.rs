//! `cargo xtask image --board rpi4`: an SD-card image that boots a real
//! Raspberry Pi 4 into the hypervisor and its guests, with nothing done by
//! hand but `dd`. Written in user space: no root, no loop mounts.
//!
//! The card: an MBR with one bootable FAT32 (LBA) partition from 1 MiB
//! ([`crate::fat`]) holding
//!
//! - `start4.elf`, `fixup4.dat`: the Pi 4's GPU firmware, from Debian's
//!   `raspi-firmware` (non-free-firmware; fetched by
//!   test-images/rpi4/fetch.sh). Only the Pi 4 pair: the Pi 4 boots from
//!   its SPI EEPROM, so `bootcode.bin` (Pi 0-3) is not read, and the
//!   `start4x`/`start4cd`/`start4db` variants are only chosen by camera,
//!   debug or `gpu_mem` settings this config does not make. The firmware
//!   carries its own ARM stub (GIC set up, cores entered at EL2), so no
//!   `armstub8*.bin` either;
//! - `bcm2711-rpi-4-b.dtb`: the board's device tree, from Debian's arm64
//!   kernel package (test-images/linux/fetch.sh); the firmware loads it by
//!   this name, fills in memory, `/chosen` and the initramfs location, and
//!   passes it on;
//! - `config.txt` ([`config_txt`]);
//! - `hyp8.img`: the hypervisor ([`crate::build::kernel_image`]);
//! - `guests.bin`: the guest bundle ([`crate::bundle`]), which the firmware
//!   loads right after the kernel (`initramfs ... followkernel`).
//!
//! With `--hwdom` the first guest is the hardware domain (Debian's arm64
//! kernel owning the board's devices, booting the disk initramfs) and the
//! card gets a second partition: an ext4 root file system (type 0x83, the
//! test disk of [`crate::disk`], made by `mke2fs -d`), which the disk
//! initramfs mounts from the SD card. That image is padded to a power of
//! two (QEMU's SD card model takes no other size).
//!
//! QEMU cannot run the GPU firmware, so the test path reads the image back
//! with [`read_boot_files`], as the firmware would find the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::fat::{self, Volume};
use crate::run::GuestSpec;
use crate::{bundle, root, Args};

pub const BOARDS: &[&str] = &["rpi4"];
/// The hypervisor's file name (`kernel=`).
pub const KERNEL: &str = "hyp8.img";
/// The guest bundle's file name (`initramfs`).
pub const BUNDLE: &str = "guests.bin";
/// The board DTB, named as the Pi 4 firmware looks for it.
pub const DTB: &str = "bcm2711-rpi-4-b.dtb";
/// The Raspberry Pi 400's (the same BCM2711 board in a keyboard), which its
/// firmware loads instead; from the same package.
pub const DTB_400: &str = "bcm2711-rpi-400.dtb";
/// The GPU firmware files a Pi 4 needs (see the module comment).
pub const FIRMWARE: &[&str] = &["start4.elf", "fixup4.dat"];
/// The default guest when no `--guest` is given, and its defaults.
pub const DEFAULT_GUEST: &str = "linux-arm64";
pub const LINUX_VCPUS: u32 = 4;
pub const LINUX_MEM: u64 = 256 << 20;
/// The hardware domain of `--hwdom`.
pub const HWDOM_GUEST: &str = "linux-arm64";

/// The config.txt the firmware reads.
pub fn config_txt() -> String {
    format!(
        "# config.txt of a Raspberry Pi 4 SD card written by `cargo xtask image --board rpi4`
# (swhyp, the set/way-safe Arm hypervisor). The GPU firmware (start4.elf,
# fixup4.dat) reads it: the Cortex-A72s start in AArch64 at EL2 on the
# hypervisor ({KERNEL}), with the guest bundle ({BUNDLE}: every guest's
# images and settings, their command lines included) loaded right after
# it, and the board's device tree ({DTB},
# the name the firmware loads by default). To change the guests, write the
# image again.

# 64-bit: the hypervisor is an arm64 Image.
arm_64bit=1
# The GIC-400 on, set up for non-secure use by the firmware's ARM stub.
enable_gic=1
# The UART on GPIO 14/15 (pins 8/10) at 115200 8N1, at a fixed core clock.
enable_uart=1
kernel={KERNEL}
initramfs {BUNDLE} followkernel
# For the firmware's own boot log on the UART, uncomment:
#uart_2ndstage=1
"
    )
}

/// What config.txt says, as far as this project cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `key=value` lines, in order.
    pub keys: Vec<(String, String)>,
    pub kernel: String,
    pub initramfs: String,
}

/// Read a config.txt and check it has what the hypervisor's boot needs:
/// `arm_64bit=1`, `enable_gic=1`, `enable_uart=1`, `kernel=`, and
/// `initramfs NAME followkernel`. Lines under a conditional section other
/// than `[all]` or `[pi4]` are skipped.
pub fn parse_config(text: &str) -> Result<Config, String> {
    let mut keys = Vec::new();
    let mut initramfs = None;
    let mut active = true;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            active = matches!(sec, "all" | "pi4");
            continue;
        }
        if !active {
            continue;
        }
        if let Some(rest) = line.strip_prefix("initramfs ") {
            let mut w = rest.split_whitespace();
            let name = w.next().ok_or("config.txt: initramfs without a file name")?;
            if w.next() != Some("followkernel") {
                return Err(format!("config.txt: `{line}`: the bundle must be loaded `followkernel`"));
            }
            initramfs = Some(name.to_string());
        } else if let Some((k, v)) = line.split_once('=') {
            keys.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |k: &str| keys.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let mut missing = Vec::new();
    for k in ["arm_64bit", "enable_gic", "enable_uart"] {
        if get(k).as_deref() != Some("1") {
            missing.push(format!("{k}=1"));
        }
    }
    let kernel = get("kernel");
    if kernel.is_none() {
        missing.push("kernel=".into());
    }
    if initramfs.is_none() {
        missing.push("initramfs NAME followkernel".into());
    }
    if !missing.is_empty() {
        return Err(format!("config.txt lacks {}", missing.join(", ")));
    }
    Ok(Config { keys, kernel: kernel.unwrap(), initramfs: initramfs.unwrap() })
}

/// The boot files of an image, as the firmware would find them.
#[derive(Clone, Debug)]
pub struct BootFiles {
    pub mbr: fat::Mbr,
    pub fat32: bool,
    /// Every file in the partition's root directory, with its size.
    pub files: Vec<fat::Entry>,
    pub config_txt: String,
    pub config: Config,
    /// The file named by `kernel=`.
    pub kernel: Vec<u8>,
    /// The file named by `initramfs`.
    pub initramfs: Vec<u8>,
    pub dtb: Vec<u8>,
    /// Sizes of the GPU firmware files, if present.
    pub start4_elf: Option<u64>,
    pub fixup4_dat: Option<u64>,
    /// The Linux (0x83) partition of a hardware domain's card, if any.
    pub root: Option<fat::Partition>,
}

/// Parse an image's MBR, open its FAT partition, and read config.txt, the
/// files it names as kernel and initramfs, and the board DTB.
pub fn read_boot_files(img: &Path) -> Result<BootFiles, String> {
    let vol = Volume::open(img)?;
    let mut m = [0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(img).map_err(|e| format!("{}: {e}", img.display()))?, &mut m).map_err(|e| format!("{}: {e}", img.display()))?;
    let root = fat::partitions(&m)?.into_iter().flatten().find(|p| p.kind == fat::TYPE_LINUX);
    let files = vol.list()?;
    let config_txt = String::from_utf8(vol.read("config.txt")?).map_err(|_| "config.txt is not UTF-8".to_string())?;
    let config = parse_config(&config_txt)?;
    let size = |name: &str| files.iter().find(|e| e.name.eq_ignore_ascii_case(name)).map(|e| e.len);
    Ok(BootFiles {
        mbr: vol.mbr,
        fat32: vol.fat_type() == fatfs::FatType::Fat32,
        kernel: vol.read(&config.kernel)?,
        initramfs: vol.read(&config.initramfs)?,
        dtb: vol.read(DTB)?,
        start4_elf: size("start4.elf"),
        fixup4_dat: size("fixup4.dat"),
        root,
        files,
        config_txt,
        config,
    })
}

/// Write a disk image holding `files` to `out` (through a temporary file
/// beside it, renamed into place). Returns its size.
pub fn write_image(out: &Path, files: &[(&str, &[u8])]) -> Result<u64, String> {
    write_image_with_root(out, files, None)
}

/// [`write_image`], with `root` (a file system image) as partition 2
/// (type 0x83) right after the FAT partition, 1 MiB aligned; the image is
/// then padded with zeros to a power of two (QEMU's SD card needs one).
pub fn write_image_with_root(out: &Path, files: &[(&str, &[u8])], root: Option<&[u8]>) -> Result<u64, String> {
    let mut disk = fat::disk_image(files, "HYPBOOT")?;
    if let Some(fs) = root {
        let start = (disk.len() as u64).next_multiple_of(1 << 20);
        let len = (fs.len() as u64).next_multiple_of(1 << 20);
        disk.resize(start as usize, 0);
        disk.extend_from_slice(fs);
        disk.resize((start + len).next_power_of_two() as usize, 0);
        let mut m: [u8; 512] = disk[..512].try_into().unwrap();
        fat::set_partition(&mut m, 1, fat::Partition { bootable: false, kind: fat::TYPE_LINUX, start_lba: start / fat::SECTOR, sectors: len / fat::SECTOR });
        disk[..512].copy_from_slice(&m);
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = out.with_file_name(format!(".{}.tmp", out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    std::fs::write(&tmp, &disk).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", out.display())
    })?;
    Ok(disk.len() as u64)
}

/// The GPU firmware files (fetched if missing) and the raspi-firmware
/// version they came from.
pub fn firmware() -> Result<(Vec<PathBuf>, String), String> {
    let cache = root().join("test-images/cache/rpi4");
    let paths: Vec<PathBuf> = FIRMWARE.iter().map(|f| cache.join(f)).collect();
    if paths.iter().any(|p| !p.exists()) {
        eprintln!("xtask: fetching the Raspberry Pi GPU firmware (test-images/rpi4/fetch.sh)");
        let st = Command::new("bash")
            .arg(root().join("test-images/rpi4/fetch.sh"))
            .status()
            .map_err(|e| format!("fetch.sh: {e}"))?;
        if !st.success() || paths.iter().any(|p| !p.exists()) {
            return Err("fetching the Raspberry Pi firmware failed (see above)".into());
        }
    }
    let version = std::fs::read_to_string(cache.join("VERSION")).unwrap_or_default().trim().to_string();
    Ok((paths, version))
}

/// The Pi 4's board DTB from Debian's arm64 kernel package (fetched with
/// the Linux guests' kernels if missing).
pub fn board_dtb() -> Result<PathBuf, String> {
    crate::linux::rpi4_dtb()
}

/// Options of `cargo xtask image`.
#[derive(Clone, Debug)]
pub struct ImageArgs {
    pub board: String,
    pub guests: Vec<String>,
    pub vcpus: Option<u32>,
    pub mem: Option<u64>,
    /// The hypervisor's boot arguments (`/chosen/hyp,bootargs` of the bundle).
    pub bootargs: String,
    /// Appended to each Linux guest's command line.
    pub append: String,
    /// `--hwdom`: the first guest (linux-arm64) is the hardware domain and
    /// the card gets an ext4 root partition.
    pub hwdom: bool,
    pub out: PathBuf,
}

/// `cargo xtask image`'s options, as clap reads them.
#[derive(clap::Parser, Debug)]
#[command(about = "An SD-card image for a real board (then dd it to the card)", disable_version_flag = true, args_override_self = true)]
struct ImageOpts {
    /// The board: rpi4.
    #[arg(long, value_name = "BOARD", default_value = "rpi4")]
    board: String,
    /// A guest (cargo xtask guests); again for more (default: linux-arm64).
    #[arg(long = "guest", value_name = "NAME")]
    guests: Vec<String>,
    /// vCPUs of each guest (default: 4 for Linux, 1 otherwise).
    #[arg(long, value_name = "N")]
    vcpus: Option<u32>,
    /// RAM of each guest, e.g. 256M (default: 256M for Linux, 64M otherwise).
    #[arg(long, value_name = "SIZE", value_parser = crate::parse_size)]
    mem: Option<u64>,
    /// The hypervisor's boot arguments.
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    bootargs: String,
    /// Added to each Linux guest's command line.
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    append: String,
    /// The image file to write.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    out: Option<PathBuf>,
    /// The first guest (linux-arm64) is the hardware domain; partition 2 is
    /// an ext4 root file system its initramfs mounts.
    #[arg(long)]
    hwdom: bool,
}

impl ImageArgs {
    /// `cargo xtask image`'s options; `Ok(None)`: `--help` (printed).
    pub fn parse_cli(argv: &[String]) -> Result<Option<ImageArgs>, String> {
        match crate::parse_cli::<ImageOpts>("image", argv)? {
            Some(o) => ImageArgs::check(o).map(Some),
            None => Ok(None),
        }
    }

    pub fn parse(argv: &[String]) -> Result<ImageArgs, String> {
        ImageArgs::parse_cli(argv)?.ok_or_else(|| "image: --help".to_string())
    }

    fn check(o: ImageOpts) -> Result<ImageArgs, String> {
        let ImageOpts { board, mut guests, vcpus, mem, bootargs, append, out, hwdom } = o;
        if !BOARDS.contains(&board.as_str()) {
            return Err("image: only --board rpi4 is supported so far".into());
        }
        let out = out.ok_or("image: give the output file with -o PATH (e.g. -o rpi4.img)")?;
        if let Some(v) = vcpus {
            if !(1..=8).contains(&v) {
                return Err("image: --vcpus must be 1..=8".into());
            }
        }
        if mem.is_some_and(|m| m > 64 << 30) {
            return Err("image: --mem must be at most 64G".into());
        }
        for g in &guests {
            if !crate::GUESTS.contains(&g.as_str()) {
                return Err(format!("image: unknown guest '{g}' (allowed: {})", crate::GUESTS.join(", ")));
            }
        }
        if guests.is_empty() {
            guests.push(DEFAULT_GUEST.to_string());
        }
        if hwdom && guests[0] != HWDOM_GUEST {
            return Err(format!("image: with --hwdom the first guest is the hardware domain: {HWDOM_GUEST} (its disk initramfs has the SD card's modules)"));
        }
        Ok(ImageArgs { board, guests, vcpus, mem, bootargs, append, hwdom, out })
    }

    /// The guests, with this command's defaults: a Linux guest gets 4
    /// vCPUs and 256 MiB, a bare-metal test guest 1 vCPU and 64 MiB, unless
    /// `--vcpus`/`--mem` say otherwise. A name given twice gets `-2`, `-3`...
    pub fn specs(&self) -> Vec<GuestSpec> {
        let mut v: Vec<GuestSpec> = Vec::new();
        for g in &self.guests {
            let linux = crate::linux::bootargs(g).is_some();
            let a = Args {
                board: self.board.clone(),
                guest: g.clone(),
                vcpus: self.vcpus.unwrap_or(if linux { LINUX_VCPUS } else { 1 }),
                mem: self.mem.unwrap_or(if linux { LINUX_MEM } else { 64 << 20 }),
                append: self.append.clone(),
                hwdom: self.hwdom && v.is_empty(),
                ..Args::default()
            };
            let mut s = GuestSpec::from_args(&a);
            let same = v.iter().filter(|o| o.image == s.image).count();
            if same > 0 {
                s.name = format!("{}-{}", s.name, same + 1);
            }
            v.push(s);
        }
        v
    }
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// `cargo xtask image`.
pub fn image_cli(argv: &[String]) -> Result<u8, String> {
    let Some(a) = ImageArgs::parse_cli(argv)? else { return Ok(0) };
    let t0 = Instant::now();
    let mut specs = a.specs();
    let (fw, fw_version) = firmware()?;
    let dtb = board_dtb()?;
    // The hardware domain's root file system, and its disk initramfs
    // (which [`bundle::resolve`] picks for a Linux guest with a disk).
    let root_fs = if a.hwdom { Some(crate::disk::disk("arm64")?) } else { None };
    specs[0].disk = root_fs.clone();
    let t_fetch = t0.elapsed();
    let hyp = crate::build::kernel_image(&crate::build::kernel()?)?;
    let hyp_bootargs = if a.hwdom { format!("guest0.hwdom=yes {}", a.bootargs).trim().to_string() } else { a.bootargs.clone() };
    let guests = bundle::bundle_for(&specs, &hyp_bootargs)?;
    let t_build = t0.elapsed();

    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let config = config_txt();
    let (start4, fixup4, dtb_bytes, hyp_bytes) = (read(&fw[0])?, read(&fw[1])?, read(&dtb)?, read(&hyp)?);
    let dtb_400 = read(&dtb.with_file_name(DTB_400))?;
    let files: Vec<(&str, &[u8])> = vec![
        ("config.txt", config.as_bytes()),
        (FIRMWARE[0], &start4),
        (FIRMWARE[1], &fixup4),
        (DTB, &dtb_bytes),
        (DTB_400, &dtb_400),
        (KERNEL, &hyp_bytes),
        (BUNDLE, &guests),
    ];
    let root_bytes = root_fs.as_deref().map(read).transpose()?;
    let size = write_image_with_root(&a.out, &files, root_bytes.as_deref())?;
    let t_write = t0.elapsed();

    // Read it back as the firmware will, and compare.
    let back = read_boot_files(&a.out)?;
    for (name, data) in &files {
        let got = match *name {
            KERNEL => &back.kernel,
            BUNDLE => &back.initramfs,
            DTB => &back.dtb,
            _ => continue,
        };
        if got.as_slice() != *data {
            return Err(format!("{}: {name} reads back different from what was written", a.out.display()));
        }
    }
    if back.start4_elf.is_none() || back.fixup4_dat.is_none() || !back.fat32 {
        return Err(format!("{}: the firmware files or the FAT32 did not read back", a.out.display()));
    }
    if let Some(want) = &root_bytes {
        let p = back.root.ok_or_else(|| format!("{}: no root partition read back", a.out.display()))?;
        let raw = read(&a.out)?;
        let at = (p.start_lba * fat::SECTOR) as usize;
        if raw.get(at..at + want.len()) != Some(want.as_slice()) {
            return Err(format!("{}: the root file system reads back different from what was written", a.out.display()));
        }
    }

    let p = back.mbr.partition;
    println!("image: {} ({}, {size} bytes) for --board {}", a.out.display(), mib(size), a.board);
    println!(
        "  MBR disk signature {:08x}; partition 1: FAT32 (type {:#04x}{}), LBA {}..{} ({})",
        back.mbr.signature,
        p.kind,
        if p.bootable { ", bootable" } else { "" },
        p.start_lba,
        p.start_lba + p.sectors,
        mib(p.sectors * fat::SECTOR)
    );
    for e in &back.files {
        let note = match e.name.as_str() {
            n if FIRMWARE.contains(&n) => format!("raspi-firmware {fw_version}"),
            KERNEL => "the hypervisor".into(),
            BUNDLE => specs.iter().map(|g| format!("{} ({} vCPU, {})", g.name, g.vcpus, mib(g.mem))).collect::<Vec<_>>().join(", "),
            DTB | DTB_400 => "from Debian's linux-image arm64".into(),
            _ => String::new(),
        };
        println!("  {:<22}{:>10}  {note}", e.name, e.len);
    }
    if let (Some(r), Some(path)) = (back.root, &root_fs) {
        println!(
            "  partition 2: ext4 (type {:#04x}), LBA {}..{} ({}): the hardware domain's root file system, {}",
            r.kind,
            r.start_lba,
            r.start_lba + r.sectors,
            mib(r.sectors * fat::SECTOR),
            path.display()
        );
        println!("  hardware domain: {} (its disk initramfs mounts the card's second partition)", specs[0].name);
    }
    if !hyp_bootargs.is_empty() {
        println!("  hypervisor boot arguments: {hyp_bootargs}");
    }
    println!(
        "  took {:.1} s (firmware and DTB {:.1} s, build and bundle {:.1} s, write {:.1} s)",
        t0.elapsed().as_secs_f64(),
        t_fetch.as_secs_f64(),
        (t_build - t_fetch).as_secs_f64(),
        (t_write - t_build).as_secs_f64()
    );
    println!("flash it (everything on the card is lost; check the device with lsblk first):");
    println!("  dd if={} of=/dev/sdX bs=4M conv=fsync", a.out.display());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-image-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn the_config_has_what_the_boot_needs() {
        let c = parse_config(&config_txt()).unwrap();
        assert_eq!((c.kernel.as_str(), c.initramfs.as_str()), (KERNEL, BUNDLE));
        assert!(config_txt().starts_with("# config.txt of a Raspberry Pi 4"));
        let e = parse_config("arm_64bit=1\nkernel=x\n").unwrap_err();
        assert!(e.contains("enable_gic=1") && e.contains("enable_uart=1") && e.contains("initramfs"), "{e}");
        assert!(parse_config("arm_64bit=1\nenable_gic=1\nenable_uart=1\nkernel=k\ninitramfs b\n").unwrap_err().contains("followkernel"));
        // Lines under another board's section do not count.
        let other = "enable_gic=1\nenable_uart=1\nkernel=k\ninitramfs b followkernel\n[pi5]\narm_64bit=1\n";
        assert!(parse_config(other).unwrap_err().contains("arm_64bit=1"));
    }

    #[test]
    fn cli() {
        let a = ImageArgs::parse(&argv(&["--board", "rpi4", "-o", "x.img"])).unwrap();
        assert_eq!(a.guests, ["linux-arm64"]);
        let s = a.specs();
        assert_eq!((s[0].vcpus, s[0].mem), (4, 256 << 20));
        assert!(s[0].bootargs.contains("console=ttyAMA0"));
        let e = ImageArgs::parse(&argv(&["--board", "qemu-virt", "-o", "x.img"])).unwrap_err();
        assert_eq!(e, "image: only --board rpi4 is supported so far");
        assert!(ImageArgs::parse(&argv(&["--board", "rpi4"])).unwrap_err().contains("-o PATH"));
        assert!(ImageArgs::parse(&argv(&["-o", "x", "--guest", "nope"])).unwrap_err().contains("unknown guest"));
        assert!(ImageArgs::parse(&argv(&["-o", "x", "--vcpus", "9"])).is_err());
        let a = ImageArgs::parse(&argv(&["-o", "x", "--guest", "sw-basic", "--guest", "sw-basic", "--guest", "linux-arm64", "--mem", "128M", "--bootargs", "sched=pinned"])).unwrap();
        let s = a.specs();
        let names: Vec<_> = s.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["sw-basic", "sw-basic-2", "linux-arm64"]);
        assert_eq!((s[0].vcpus, s[0].mem, s[2].vcpus, s[2].mem), (1, 128 << 20, 4, 128 << 20));
        assert_eq!(a.bootargs, "sched=pinned");
    }

    #[test]
    fn hwdom_cli() {
        let a = ImageArgs::parse(&argv(&["--hwdom", "-o", "x.img", "--append", "quiet"])).unwrap();
        assert!(a.hwdom);
        let s = a.specs();
        assert!(s[0].hwdom);
        assert_eq!(s[0].bootargs, format!("{} quiet", crate::linux::RPI4_HWDOM_BOOTARGS));
        let a = ImageArgs::parse(&argv(&["--hwdom", "-o", "x.img", "--guest", "linux-arm64", "--guest", "sw-basic"])).unwrap();
        let s = a.specs();
        assert_eq!(s.iter().map(|g| g.hwdom).collect::<Vec<_>>(), [true, false], "only the first guest");
        assert!(ImageArgs::parse(&argv(&["--hwdom", "-o", "x", "--guest", "linux-armhf"])).unwrap_err().contains("hardware domain"));
        let s = ImageArgs::parse(&argv(&["-o", "x.img"])).unwrap().specs();
        assert!(!s[0].hwdom && s[0].bootargs.starts_with(crate::linux::DEFAULT_BOOTARGS), "without --hwdom, as before");
    }

    /// With a root file system: partition 2 (type 0x83) right after the
    /// FAT partition, 1 MiB aligned, holding it byte for byte; the image a
    /// power of two; the FAT side unchanged.
    #[test]
    fn a_root_partition_follows_the_fat() {
        let d = tmp("root");
        let config = config_txt();
        let (hyp, guests) = (bytes(300_000, 4), bytes(1_000_003, 5));
        let files: Vec<(&str, &[u8])> = vec![("config.txt", config.as_bytes()), (DTB, &[1, 2, 3]), (KERNEL, &hyp), (BUNDLE, &guests)];
        let fs = bytes((3 << 20) + 5, 6);
        let (plain, with) = (d.join("plain.img"), d.join("root.img"));
        let plain_size = write_image(&plain, &files).unwrap();
        let size = write_image_with_root(&with, &files, Some(&fs)).unwrap();
        assert!(size.is_power_of_two() && size >= plain_size + (4 << 20), "{size}");
        let raw = std::fs::read(&with).unwrap();
        assert_eq!(raw.len() as u64, size);
        let parts = fat::partitions(&raw[..512]).unwrap();
        let fat_part = parts[0].unwrap();
        let root = parts[1].unwrap();
        assert_eq!(root, fat::Partition { bootable: false, kind: fat::TYPE_LINUX, start_lba: fat_part.start_lba + fat_part.sectors, sectors: (4 << 20) / 512 });
        assert_eq!(parts[2..], [None, None]);
        let at = (root.start_lba * 512) as usize;
        assert_eq!(&raw[at..at + fs.len()], fs.as_slice());
        assert_eq!(raw[512..plain_size as usize], std::fs::read(&plain).unwrap()[512..], "the FAT side as without");
        let b = read_boot_files(&with).unwrap();
        assert_eq!((b.root, b.kernel, b.initramfs), (Some(root), hyp, guests));
        assert_eq!(read_boot_files(&plain).unwrap().root, None);
        let _ = std::fs::remove_dir_all(d);
    }

    /// An image from small fake files reads back byte for byte, with a
    /// valid MBR and FAT32.
    #[test]
    fn an_image_reads_back() {
        let d = tmp("readback");
        let config = config_txt();
        let (start4, fixup4, dtb, hyp, guests) = (bytes(70_001, 1), bytes(5399, 2), bytes(27_386, 3), bytes(300_000, 4), bytes(1_000_003, 5));
        let files: Vec<(&str, &[u8])> =
            vec![("config.txt", config.as_bytes()), ("start4.elf", &start4), ("fixup4.dat", &fixup4), (DTB, &dtb), (KERNEL, &hyp), (BUNDLE, &guests)];
        let out = d.join("rpi4.img");
        let size = write_image(&out, &files).unwrap();
        assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
        let raw = std::fs::read(&out).unwrap();

        // MBR: one bootable FAT32 LBA partition from 1 MiB to the image's end.
        let m = fat::parse_mbr(&raw[..512]).unwrap();
        assert_eq!(m.partition, fat::Partition { bootable: true, kind: 0x0c, start_lba: 2048, sectors: size / 512 - 2048 });
        assert!(m.partition.sectors * 512 >= 64 << 20);
        assert_ne!(m.signature, 0);
        assert!(raw[512..1 << 20].iter().all(|&b| b == 0), "nothing between the MBR and the partition");
        // The partition's boot sector: FAT32, 512-byte sectors.
        let vbr = &raw[1 << 20..(1 << 20) + 512];
        assert_eq!(&vbr[82..90], b"FAT32   ");
        assert_eq!(u16::from_le_bytes([vbr[11], vbr[12]]), 512);
        assert_eq!(&vbr[510..512], &[0x55, 0xaa]);

        let b = read_boot_files(&out).unwrap();
        assert!(b.fat32);
        assert_eq!(b.config_txt, config);
        assert_eq!(b.kernel, hyp);
        assert_eq!(b.initramfs, guests);
        assert_eq!(b.dtb, dtb);
        assert_eq!((b.start4_elf, b.fixup4_dat), (Some(70_001), Some(5399)));
        let names: Vec<_> = b.files.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["config.txt", "start4.elf", "fixup4.dat", DTB, KERNEL, BUNDLE]);
        let vol = Volume::open(&out).unwrap();
        assert_eq!(vol.read("START4.ELF").unwrap(), start4, "FAT names match in any case");
        assert_eq!(vol.read("fixup4.dat").unwrap(), fixup4);

        // The same contents give the same image.
        let again = d.join("again.img");
        write_image(&again, &files).unwrap();
        assert!(std::fs::read(&again).unwrap() == raw, "reproducible");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_bad_image_is_refused() {
        let d = tmp("bad");
        let p = d.join("zero.img");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        assert!(read_boot_files(&p).unwrap_err().contains("no MBR"));
        // A valid MBR whose partition runs past the end of the file.
        let mut m = fat::mbr(1, fat::Partition { bootable: true, kind: 0x0c, start_lba: 2048, sectors: 131072 }).to_vec();
        m.resize(4096, 0);
        std::fs::write(&p, &m).unwrap();
        assert!(read_boot_files(&p).unwrap_err().contains("partition ends"));
        let _ = std::fs::remove_dir_all(d);
    }
}

//! Building the kernel and the guests for the bare-metal targets.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::root;

pub const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";
pub const GUEST_TARGET: &str = "aarch64-unknown-none";
pub const GUEST_TARGET32: &str = "armv7a-none-eabi";

fn cargo_build(package: &str, target: &str, extra_env: &[(&str, &str)]) -> Result<PathBuf, String> {
    cargo_build_in(&target_dir(), package, "bare", target, extra_env)
}

/// `cargo build --release` of `package` with `features`, into `dir`.
fn cargo_build_in(dir: &Path, package: &str, features: &str, target: &str, extra_env: &[(&str, &str)]) -> Result<PathBuf, String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root())
        .args(["build", "--quiet", "--release", "-p", package, "--features", features, "--target", target])
        .env("CARGO_TARGET_DIR", dir);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let st = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err(format!("building {package} ({features}) for {target} failed"));
    }
    Ok(dir.join(target).join("release").join(package))
}

/// A target dir of its own, so a host `cargo test` and a bare-metal build
/// don't rebuild each other's artefacts.
pub fn target_dir() -> PathBuf {
    root().join("target/bare")
}

pub fn kernel() -> Result<PathBuf, String> {
    kernel_in(&target_dir(), "bare")
}

/// The kernel with `features`, into `dir`, at the log level `DEFMT_LOG`
/// asks for (info by default).
fn kernel_in(dir: &Path, features: &str) -> Result<PathBuf, String> {
    let level = std::env::var("DEFMT_LOG").unwrap_or_else(|_| "info".into());
    cargo_build_in(dir, "kernel", features, KERNEL_TARGET, &[("DEFMT_LOG", &level)])
}

/// The target dir of the TEST-ONLY fault-injection kernel, apart from
/// [`target_dir`] so it never replaces the real kernel.
pub fn faults_target_dir() -> PathBuf {
    root().join("target/bare-faults")
}

/// TEST ONLY: the kernel built with feature `faults`, whose command line
/// also takes `fault=NAME[,NAME...]` (safety broken on purpose, as negative
/// controls). Returns its ELF, in [`faults_target_dir`].
pub fn kernel_faults() -> Result<PathBuf, String> {
    kernel_in(&faults_target_dir(), "bare,faults")
}

/// A measuring aid: the kernel built with feature `profile` (where a
/// trap's instructions go, printed with the summary), in its own target
/// dir. Only `cargo xtask bench` builds it.
pub fn kernel_profile() -> Result<PathBuf, String> {
    kernel_in(&root().join("target/bare-profile"), "bare,profile")
}

/// The bootable image of a kernel ELF: its arm64 Image (header first),
/// padded to the header's `image_size` so that whatever a loader puts right
/// after the file (the RPi firmware's `initramfs ... followkernel`) lies
/// beyond the kernel's .bss and stacks. Written next to the ELF as `.img`.
pub fn kernel_image(elf: &Path) -> Result<PathBuf, String> {
    let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    if let Some(t) = rela_types(&data)?.into_iter().find(|&t| t != R_AARCH64_RELATIVE && t != 0) {
        return Err(format!("{}: relocation type {t}: the kernel's entry code applies only R_AARCH64_RELATIVE", elf.display()));
    }
    let (base, mut flat) = elf_to_flat(&data)?;
    if base != 0 || flat.len() < 64 || flat[56..60] != *b"ARM\x64" {
        return Err(format!("{}: not a position-independent kernel with an arm64 Image header", elf.display()));
    }
    let size = u64le(&flat, 16) as usize;
    if size < flat.len() {
        return Err(format!("{}: image_size {size:#x} is smaller than the file", elf.display()));
    }
    flat.resize(size, 0);
    let out = elf.with_extension("img");
    std::fs::write(&out, flat).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

const R_AARCH64_RELATIVE: u32 = 1027;

/// The type of every entry of an ELF64's SHT_RELA sections.
fn rela_types(elf: &[u8]) -> Result<Vec<u32>, String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        return Err("not an ELF64 file".into());
    }
    let (shoff, shentsize, shnum) = (u64le(elf, 40) as usize, u16le(elf, 58) as usize, u16le(elf, 60) as usize);
    let mut types = Vec::new();
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        if h + 64 > elf.len() {
            return Err("truncated section header".into());
        }
        if u32le(elf, h + 4) != 4 {
            continue; // not SHT_RELA
        }
        let (off, size) = (u64le(elf, h + 24) as usize, u64le(elf, h + 32) as usize);
        let entries = elf.get(off..off + size).ok_or("relocation section beyond end of file")?;
        types.extend(entries.chunks_exact(24).map(|e| u32le(e, 8)));
    }
    Ok(types)
}

/// Build a test guest and return its flat binary.
pub fn guest(name: &str) -> Result<PathBuf, String> {
    let Some((krate, target, _)) = crate::guest_build(name) else {
        return Err(format!("unknown guest '{name}' (allowed: {})", crate::GUESTS.join(", ")));
    };
    let elf = cargo_build(krate, target, &[])?;
    let bin = elf.with_extension("bin");
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let (_, flat) = elf_to_flat(&data)?;
    std::fs::write(&bin, flat).map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(bin)
}

pub fn build_all() -> Result<(), String> {
    kernel()?;
    kernel_faults()?;
    for g in crate::GUESTS {
        // Linux guests are fetched, not built.
        if crate::guest_build(g).is_some() {
            guest(g)?;
        }
    }
    Ok(())
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Turn a little-endian ELF64 or ELF32 into a flat image of its PT_LOAD
/// segments' file contents, starting at the lowest physical address.
/// Returns that address and the image.
pub fn elf_to_flat(elf: &[u8]) -> Result<(u64, Vec<u8>), String> {
    if elf.len() < 52 || &elf[..4] != b"\x7fELF" || !(1..=2).contains(&elf[4]) || elf[5] != 1 {
        return Err("not a little-endian ELF file".into());
    }
    let wide = elf[4] == 2;
    if wide && elf.len() < 64 {
        return Err("truncated ELF header".into());
    }
    let (phoff, phentsize, phnum) = if wide {
        (u64le(elf, 32) as usize, u16le(elf, 54) as usize, u16le(elf, 56) as usize)
    } else {
        (u32le(elf, 28) as usize, u16le(elf, 42) as usize, u16le(elf, 44) as usize)
    };
    let mut segs = Vec::new();
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + if wide { 56 } else { 32 } > elf.len() {
            return Err("truncated program header".into());
        }
        if u32le(elf, o) != 1 {
            continue; // not PT_LOAD
        }
        let (off, paddr, filesz) = if wide {
            (u64le(elf, o + 8) as usize, u64le(elf, o + 24), u64le(elf, o + 32) as usize)
        } else {
            (u32le(elf, o + 4) as usize, u32le(elf, o + 12) as u64, u32le(elf, o + 16) as usize)
        };
        if filesz == 0 {
            continue;
        }
        if off + filesz > elf.len() {
            return Err("segment beyond end of file".into());
        }
        segs.push((paddr, &elf[off..off + filesz]));
    }
    let base = segs.iter().map(|s| s.0).min().ok_or("no loadable segment")?;
    let end = segs.iter().map(|s| s.0 + s.1.len() as u64).max().unwrap();
    let mut out = vec![0u8; (end - base) as usize];
    for (pa, data) in segs {
        let at = (pa - base) as usize;
        out[at..at + data.len()].copy_from_slice(data);
    }
    Ok((base, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocation_types_are_read() {
        // A real kernel ELF, if one was built (`cargo xtask build` runs
        // before this in scripts/test); its relocations are all RELATIVE.
        let elf = target_dir().join(KERNEL_TARGET).join("release/kernel");
        if let Ok(data) = std::fs::read(&elf) {
            let types = rela_types(&data).unwrap();
            assert!(!types.is_empty(), "a position-independent kernel has relocations");
            assert!(types.iter().all(|&t| t == R_AARCH64_RELATIVE));
        }
        assert!(rela_types(b"nope").is_err());
    }
}

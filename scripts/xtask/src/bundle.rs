//! The guest bundle: one file (`guests.bin` on the Raspberry Pi's SD card,
//! loaded by the firmware as the initramfs) that carries every guest image
//! and its settings, for boards whose firmware passes no modules of ours.
//!
//! Layout (the hypervisor reads exactly this):
//!
//! - bytes `0 .. 64 KiB`: an FDT blob, zero-padded to exactly 64 KiB, whose
//!   root is `compatible = "hyp,guest-bundle"` with `#address-cells` and
//!   `#size-cells` of 2, and whose `/chosen` holds `hyp,bootargs` and one
//!   `module@OFF` node per guest image in the dom0less style of
//!   [`dtb::chosen_dts`] (a `multiboot,ramdisk` module right after its
//!   kernel's). Every `reg` address is the payload's OFFSET from the
//!   bundle's first byte;
//! - the payloads, in module order, each at a 4 KiB aligned offset (the
//!   gaps are zeros).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::dtb::{self, Module};
use crate::run::{self, GuestSpec};

/// The FDT's share of the bundle: it is padded to exactly this.
pub const FDT_BYTES: usize = 64 << 10;
/// Every payload starts at a multiple of this.
pub const PAYLOAD_ALIGN: u64 = 4 << 10;
/// The root node's compatible string.
pub const COMPATIBLE: &str = "hyp,guest-bundle";

/// One guest of a bundle.
#[derive(Clone, Debug)]
pub struct BundleGuest {
    pub name: String,
    /// The kernel (or bare-metal program) the guest boots.
    pub image: PathBuf,
    /// Its initramfs, if any.
    pub ramdisk: Option<PathBuf>,
    pub mem: u64,
    pub vcpus: u32,
    /// `hyp,sw`: "yes", "no" or "auto".
    pub sw: String,
    /// "aarch64" or "aarch32".
    pub arch: String,
    /// The guest kernel's command line.
    pub bootargs: String,
    /// The hardware domain (`hyp,hwdom` on its module node).
    pub hwdom: bool,
    /// Raw firmware (`hyp,firmware` on its module node).
    pub firmware: bool,
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The DTS text of a bundle's FDT for `modules` (addresses are offsets).
pub fn dts(hyp_bootargs: &str, modules: &[Module]) -> String {
    let (props, nodes) = dtb::chosen_dts(hyp_bootargs, modules);
    format!(
        "/dts-v1/;\n\n/ {{\n\tcompatible = \"{COMPATIBLE}\";\n\t#address-cells = <0x02>;\n\t#size-cells = <0x02>;\n\n\tchosen {{\n{props}{nodes}\t}};\n}};\n"
    )
}

impl BundleGuest {
    /// Its `/chosen` module node: its image at `addr` (`size` bytes), its
    /// ramdisk (address, size) if any.
    pub fn module(&self, addr: u64, size: u64, ramdisk: Option<(u64, u64)>) -> Module<'_> {
        Module {
            name: &self.name,
            addr,
            size,
            ramdisk,
            mem: self.mem,
            vcpus: self.vcpus,
            sw: &self.sw,
            bootargs: &self.bootargs,
            arch: &self.arch,
            hwdom: self.hwdom,
            firmware: self.firmware,
        }
    }
}

/// Compile DTS text to an FDT blob with `dtc`.
pub fn compile_dts(text: &str) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut child = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("dtc (install device-tree-compiler; scripts/setup does): {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let text = text.to_string();
    // Written from a thread so a large tree cannot deadlock against dtc's output.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(|e| format!("dtc: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!("dtc failed on the bundle's tree: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(out.stdout)
}

/// Build a bundle: the FDT describing `guests` (hypervisor arguments
/// `hyp_bootargs`), padded to [`FDT_BYTES`], then their images and
/// ramdisks at 4 KiB aligned offsets.
pub fn bundle(hyp_bootargs: &str, guests: &[BundleGuest]) -> Result<Vec<u8>, String> {
    if guests.is_empty() {
        return Err("a guest bundle needs at least one guest".into());
    }
    // Lay the payloads out first: the FDT's size is fixed, so the offsets
    // do not depend on it.
    let mut payloads: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = FDT_BYTES as u64;
    let mut place = |data: Vec<u8>| -> (u64, u64) {
        let at = next;
        let size = data.len() as u64;
        next = (at + size).next_multiple_of(PAYLOAD_ALIGN);
        payloads.push((at, data));
        (at, size)
    };
    let mut placed = Vec::new();
    for g in guests {
        let (addr, size) = place(read(&g.image)?);
        let ramdisk = match &g.ramdisk {
            Some(p) => Some(place(read(p)?)),
            None => None,
        };
        placed.push((addr, size, ramdisk));
    }
    let modules: Vec<Module> = guests.iter().zip(&placed).map(|(g, &(addr, size, ramdisk))| g.module(addr, size, ramdisk)).collect();
    let fdt = compile_dts(&dts(hyp_bootargs, &modules))?;
    if fdt.len() > FDT_BYTES {
        return Err(format!(
            "the guest bundle's device tree is {} bytes, more than the {} KiB it may have (shorter boot arguments, or fewer guests)",
            fdt.len(),
            FDT_BYTES >> 10
        ));
    }
    let mut out = fdt;
    out.resize(FDT_BYTES, 0);
    for (at, data) in payloads {
        out.resize(at as usize, 0);
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// The bundle of test guests (and `--kernel` guests), resolved by
/// [`resolve`] as `cargo xtask run` resolves them: Linux guests fetched
/// ([`crate::linux::files`]), bare-metal ones built ([`crate::build::guest`]).
pub fn bundle_for(guests: &[GuestSpec], hyp_bootargs: &str) -> Result<Vec<u8>, String> {
    bundle(hyp_bootargs, &resolve(guests)?)
}

/// Each [`GuestSpec`] as a [`BundleGuest`]: its files found, fetched or
/// built (for a bundle, and for `cargo xtask run`'s `/chosen` modules).
pub fn resolve(guests: &[GuestSpec]) -> Result<Vec<BundleGuest>, String> {
    let mut v = Vec::new();
    for g in guests {
        // A Linux test guest with a disk boots the disk initramfs.
        let linux = if g.disk.is_some() && g.kernel.is_none() { crate::linux::disk_files(&g.image)? } else { crate::linux::files(&g.image)? };
        let firmware = if g.kernel.is_none() { crate::edk2::files(&g.image)? } else { None };
        let (image, ramdisk) = match (&g.kernel, linux, firmware) {
            (Some(k), _, _) => k.clone(),
            (None, Some(f), _) => f,
            (None, None, Some(fd)) => (fd, None),
            (None, None, None) => (crate::build::guest(&g.image)?, None),
        };
        let arch = match (&g.arch, &g.kernel) {
            (Some(a), _) => a.clone(),
            (None, Some(_)) if g.firmware => "aarch64".to_string(),
            (None, Some(_)) => run::image_arch(&image)?.to_string(),
            (None, None) => crate::guest_arch(&g.image).to_string(),
        };
        v.push(BundleGuest {
            name: g.name.clone(),
            image,
            ramdisk,
            mem: g.mem,
            vcpus: g.vcpus,
            sw: g.sw.clone(),
            arch,
            bootargs: g.bootargs.clone(),
            hwdom: g.hwdom,
            firmware: g.firmware,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-bundle-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn guest(dir: &Path, name: &str, image: &[u8], ramdisk: Option<&[u8]>) -> BundleGuest {
        let ip = dir.join(format!("{name}.img"));
        std::fs::write(&ip, image).unwrap();
        let rp = ramdisk.map(|r| {
            let p = dir.join(format!("{name}.cpio"));
            std::fs::write(&p, r).unwrap();
            p
        });
        BundleGuest {
            name: name.into(),
            image: ip,
            ramdisk: rp,
            mem: 256 << 20,
            vcpus: 4,
            sw: "auto".into(),
            arch: "aarch64".into(),
            bootargs: "console=ttyAMA0 rdinit=/init".into(),
            hwdom: false,
            firmware: false,
        }
    }

    fn decompile(fdt: &[u8]) -> String {
        use std::io::Write;
        let mut child = Command::new("dtc")
            .args(["-q", "-I", "dtb", "-O", "dts", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dtc");
        child.stdin.take().unwrap().write_all(fdt).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "dtc: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The `reg` (address, size) of each `module@` node of a decompiled tree, with its node name.
    fn regs(dts: &str) -> Vec<(String, u64, u64)> {
        let mut v = Vec::new();
        let mut node = None;
        for line in dts.lines().map(str::trim) {
            if line.starts_with("module@") {
                node = Some(line.trim_end_matches('{').trim().to_string());
            }
            if let (Some(n), Some(r)) = (&node, line.strip_prefix("reg = <")) {
                let c: Vec<u64> = r.trim_end_matches(">;").split_whitespace().map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap()).collect();
                assert_eq!(c.len(), 4, "two address and two size cells: {line}");
                v.push((n.clone(), c[0] << 32 | c[1], c[2] << 32 | c[3]));
                node = None;
            }
        }
        v
    }

    #[test]
    fn payloads_follow_the_fdt_at_their_offsets() {
        let d = tmp("layout");
        let a_img = bytes(10_000, 1);
        let a_rd = bytes(5_000, 2);
        let b_img = bytes(4096, 3);
        let gs = [guest(&d, "alpha", &a_img, Some(&a_rd)), guest(&d, "beta", &b_img, None)];
        let b = bundle("sched=rr slice=64K", &gs).unwrap();
        assert_eq!(&b[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
        let total = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        assert!(total <= FDT_BYTES && b[total..FDT_BYTES].iter().all(|&x| x == 0), "zero padding to 64 KiB");

        let text = decompile(&b[..FDT_BYTES]);
        assert!(text.contains("compatible = \"hyp,guest-bundle\";"), "{text}");
        assert!(text.contains("hyp,bootargs = \"sched=rr slice=64K\";"), "{text}");
        assert!(text.contains("hyp,name = \"alpha\";") && text.contains("hyp,name = \"beta\";"));
        assert!(text.contains("hyp,vcpus = <0x04>;") && text.contains("hyp,arch = \"aarch64\";"));
        // dtc prints a 64-bit cell pair and a string list so.
        assert!(text.contains("hyp,mem = <0x00 0x10000000>;"), "{text}");
        assert!(text.contains(r#"compatible = "multiboot,kernel\0multiboot,module";"#), "{text}");
        assert!(text.contains(r#"compatible = "multiboot,ramdisk\0multiboot,module";"#), "{text}");

        let r = regs(&text);
        assert_eq!(r.len(), 3, "{text}");
        let want: [&[u8]; 3] = [&a_img, &a_rd, &b_img];
        let mut end = FDT_BYTES as u64;
        for ((node, at, size), data) in r.iter().zip(want) {
            assert_eq!(node, &format!("module@{at:x}"));
            assert!(at.is_multiple_of(PAYLOAD_ALIGN), "{node}: 4 KiB aligned");
            assert!(*at >= end, "{node}: payloads in order, not overlapping");
            assert_eq!(*size, data.len() as u64);
            assert_eq!(&b[*at as usize..(*at + size) as usize], data, "{node}: the payload's bytes");
            end = at + size;
        }
        assert_eq!(r[0].1, FDT_BYTES as u64, "the first payload right after the FDT");
        assert_eq!(b.len() as u64, end, "nothing after the last payload");
        // The ramdisk follows its kernel in the tree.
        let (k, rd, beta) = (text.find("hyp,name = \"alpha\"").unwrap(), text.find("multiboot,ramdisk").unwrap(), text.find("hyp,name = \"beta\"").unwrap());
        assert!(k < rd && rd < beta);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn too_large_a_tree_is_an_error() {
        let d = tmp("large");
        let mut g = guest(&d, "g", &[1, 2, 3], None);
        g.bootargs = "x".repeat(FDT_BYTES);
        let e = bundle("", &[g]).unwrap_err();
        assert!(e.contains("more than the 64 KiB"), "{e}");
        assert!(bundle("", &[]).is_err());
        let _ = std::fs::remove_dir_all(d);
    }

    /// The hardware domain's module node carries an empty `hyp,hwdom`;
    /// no other node does.
    #[test]
    fn hwdom_is_marked_on_its_module() {
        let d = tmp("hwdom");
        let mut h = guest(&d, "dom0", &[7; 100], Some(&[8; 50]));
        h.hwdom = true;
        let g = guest(&d, "pod", &[9; 100], None);
        let b = bundle("hwdom_pin=on", &[h, g]).unwrap();
        let text = decompile(&b[..FDT_BYTES]);
        assert_eq!(text.matches("hyp,hwdom;").count(), 1, "{text}");
        let (h_at, mark, pod) = (text.find("hyp,name = \"dom0\"").unwrap(), text.find("hyp,hwdom;").unwrap(), text.find("hyp,name = \"pod\"").unwrap());
        assert!(h_at < mark && mark < pod, "{text}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn quotes_survive() {
        let d = tmp("quote");
        let mut g = guest(&d, "q", &[9; 100], None);
        g.bootargs = "a=\"b c\" d\\e".into();
        let b = bundle("", &[g]).unwrap();
        let text = decompile(&b[..FDT_BYTES]);
        assert!(text.contains(r#"bootargs = "a=\"b c\" d\\e";"#), "{text}");
        let _ = std::fs::remove_dir_all(d);
    }
}

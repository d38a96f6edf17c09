//! The device tree handed to the hypervisor on QEMU: QEMU's own `virt` tree
//! (from `dumpdtb`), or a board's DTB for raspi4b, with our `/chosen` additions, in the style of Xen's
//! dom0less: hypervisor boot arguments and one module node per guest image.

use std::path::Path;
use std::process::Command;

/// A guest image to describe in `/chosen`.
pub struct Module<'a> {
    pub name: &'a str,
    pub addr: u64,
    pub size: u64,
    /// A `multiboot,ramdisk` module that belongs to this guest: (addr, size).
    pub ramdisk: Option<(u64, u64)>,
    pub mem: u64,
    pub vcpus: u32,
    pub sw: &'a str,
    pub bootargs: &'a str,
    /// "aarch64" or "aarch32".
    pub arch: &'a str,
    /// The hardware domain: an empty `hyp,hwdom` property.
    pub hwdom: bool,
    /// Raw firmware: an empty `hyp,firmware` property.
    pub firmware: bool,
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The `/chosen` additions as DTS text: (properties, module subnodes).
pub fn chosen_dts(hyp_bootargs: &str, modules: &[Module]) -> (String, String) {
    let mut p = String::new();
    p += "\t\t#address-cells = <0x02>;\n\t\t#size-cells = <0x02>;\n";
    p += &format!("\t\thyp,bootargs = \"{}\";\n", quote(hyp_bootargs));
    let mut s = String::new();
    for m in modules {
        s += &format!("\t\tmodule@{:x} {{\n", m.addr);
        s += "\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n";
        s += &format!(
            "\t\t\treg = <0x{:x} 0x{:x} 0x{:x} 0x{:x}>;\n",
            m.addr >> 32,
            m.addr & 0xffff_ffff,
            m.size >> 32,
            m.size & 0xffff_ffff
        );
        s += &format!("\t\t\thyp,name = \"{}\";\n", quote(m.name));
        s += &format!("\t\t\thyp,mem = /bits/ 64 <0x{:x}>;\n", m.mem);
        s += &format!("\t\t\thyp,vcpus = <0x{:x}>;\n", m.vcpus);
        s += &format!("\t\t\thyp,sw = \"{}\";\n", quote(m.sw));
        s += &format!("\t\t\thyp,arch = \"{}\";\n", quote(m.arch));
        s += &format!("\t\t\tbootargs = \"{}\";\n", quote(m.bootargs));
        if m.hwdom {
            s += "\t\t\thyp,hwdom;\n";
        }
        if m.firmware {
            s += "\t\t\thyp,firmware;\n";
        }
        s += "\t\t};\n";
        if let Some((addr, size)) = m.ramdisk {
            s += &format!("\t\tmodule@{:x} {{\n", addr);
            s += "\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n";
            s += &format!(
                "\t\t\treg = <0x{:x} 0x{:x} 0x{:x} 0x{:x}>;\n",
                addr >> 32,
                addr & 0xffff_ffff,
                size >> 32,
                size & 0xffff_ffff
            );
            s += "\t\t};\n";
        }
    }
    (p, s)
}

/// Put `props` first and `nodes` last inside the `chosen { ... }` node of a
/// DTS (properties must precede subnodes).
pub fn insert_chosen(dts: &str, (props, nodes): &(String, String)) -> Result<String, String> {
    let at = dts.find("chosen {").ok_or("QEMU's tree has no /chosen node")?;
    let open = at + "chosen {".len();
    let nl = dts[open..].find('\n').map(|i| open + i + 1).ok_or("malformed DTS")?;
    let mut depth = 1;
    let mut close = None;
    for (i, c) in dts[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or("unbalanced /chosen node")?;
    // Back up to the start of the line holding the closing brace.
    let line = dts[..close].rfind('\n').map(|i| i + 1).unwrap_or(close);
    Ok(format!("{}{}{}{}{}", &dts[..nl], props, &dts[nl..line], nodes, &dts[line..]))
}

/// Dump QEMU's tree for `machine_args`, add our `/chosen`, compile to `out`.
/// `compatible` replaces the root's `compatible` (a board we do not know).
pub fn generate(machine_args: &[String], chosen: &(String, String), compatible: Option<&str>, out: &Path) -> Result<(), String> {
    let raw = out.with_extension("qemu.dtb");
    let mut cmd = crate::run::qemu_command();
    let mut margs = machine_args.to_vec();
    let m = margs.iter().position(|a| a == "-M").ok_or("no -M")? + 1;
    margs[m] = format!("{},dumpdtb={}", margs[m], raw.display());
    let o = cmd.args(&margs).output().map_err(|e| format!("{}: {e} (run scripts/setup)", crate::run::QEMU))?;
    if !raw.exists() {
        return Err(format!("QEMU dumpdtb failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    generate_from(&raw, chosen, compatible, out)
}

/// A board's own DTB file (as its firmware would pass it) with our
/// `/chosen` added, compiled to `out`.
pub fn generate_from(base: &Path, chosen: &(String, String), compatible: Option<&str>, out: &Path) -> Result<(), String> {
    let dts = Command::new("dtc")
        .args(["-q", "-I", "dtb", "-O", "dts"])
        .arg(base)
        .output()
        .map_err(|e| format!("dtc (install device-tree-compiler; scripts/setup does): {e}"))?;
    if !dts.status.success() {
        return Err(format!("dtc: {}", String::from_utf8_lossy(&dts.stderr)));
    }
    let mut text = insert_chosen(&String::from_utf8_lossy(&dts.stdout), chosen)?;
    if let Some(c) = compatible {
        text = set_root_compatible(&text, c)?;
    }
    let src = out.with_extension("dts");
    std::fs::write(&src, text).map_err(|e| e.to_string())?;
    let st = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .map_err(|e| format!("dtc: {e}"))?;
    if !st.success() {
        return Err("dtc failed to compile the generated tree".into());
    }
    Ok(())
}

/// What QEMU's raspi4b (QEMU 10) lacks of a real Raspberry Pi 4 and
/// Debian's 6.1 arm64 kernel trips on, found by booting that kernel on the
/// bare model with Debian's `bcm2711-rpi-4-b.dtb` (no hypervisor): nodes
/// to mark `status = "disabled"`. Only for the DTB `cargo xtask` hands
/// QEMU (`run --board rpi4`, [`crate::run::run_sd_image`]), never for the
/// files on an SD card. (QEMU itself already removes the pcie, rng200,
/// thermal and genet nodes from a DTB it is given.) The HDMI block at
/// 0xfef00000 is not emulated: reads and writes there are external aborts.
pub const RASPI4B_DISABLED: &[(&str, &str)] = &[
    // brcmstb-l2 (built in): its probe writes the mask registers, an
    // external abort in brcmstb_l2_intc_of_init.
    ("/soc/interrupt-controller@7ef00100", "the HDMI block's interrupt controller"),
    // i2c-brcmstb (built in): the HDMI DDC buses, an external abort in
    // brcmstb_i2c_probe.
    ("/soc/i2c@7ef04500", "HDMI0's DDC I2C"),
    ("/soc/i2c@7ef09500", "HDMI1's DDC I2C"),
    // clk-bcm2711-dvp (built in): its gates are read by
    // clk_disable_unused at late init, an external abort in
    // clk_gate_is_enabled.
    ("/soc/clock@7ef00000", "the HDMI block's DVP clocks and resets"),
];

/// Properties to delete for QEMU's raspi4b (see [`RASPI4B_DISABLED`]).
/// QEMU puts its SD card (`-drive if=sd`) behind the legacy EMMC
/// (`mmc@7e300000`, sdhci-iproc as `brcm,bcm2835-sdhci`; on a real Pi 4 it
/// drives the Wi-Fi chip), not EMMC2, and its `mmc-pwrseq` (the Wi-Fi's
/// reset line) is a GPIO of the firmware's GPIO expander, which QEMU's
/// mailbox does not answer for: the controller's probe would be deferred
/// for good.
pub const RASPI4B_DELETED: &[(&str, &str, &str)] = &[("/soc/mmc@7e300000", "mmc-pwrseq", "the Wi-Fi power sequence (firmware GPIO expander)")];

/// Apply [`RASPI4B_DISABLED`] and [`RASPI4B_DELETED`] to the DTB file at
/// `path`, in place (`fdtput`, from device-tree-compiler as `dtc` is).
pub fn raspi4b_fixup(path: &Path) -> Result<(), String> {
    let fdtput = |args: &[&str]| -> Result<(), String> {
        let o = Command::new("fdtput")
            .args(args)
            .output()
            .map_err(|e| format!("fdtput (install device-tree-compiler; scripts/setup does): {e}"))?;
        if !o.status.success() {
            return Err(format!("fdtput {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(())
    };
    let file = path.to_str().ok_or("a DTB path that is not UTF-8")?;
    for (node, _) in RASPI4B_DISABLED {
        fdtput(&["-t", "s", file, node, "status", "disabled"])?;
    }
    for (node, prop, _) in RASPI4B_DELETED {
        fdtput(&["-d", file, node, prop])?;
    }
    Ok(())
}

/// Replace the root node's `compatible` in DTS text (dtc puts the root's
/// properties first, one tab deep).
pub fn set_root_compatible(dts: &str, compatible: &str) -> Result<String, String> {
    let at = dts.find("\n\tcompatible = ").ok_or("the tree's root has no compatible")?;
    let end = dts[at + 1..].find('\n').map(|i| at + 1 + i).ok_or("malformed DTS")?;
    Ok(format!("{}\n\tcompatible = \"{}\";{}", &dts[..at], quote(compatible), &dts[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_compatible_is_replaced() {
        let dts = "/ {\n\tinterrupt-parent = <0x8002>;\n\tcompatible = \"linux,dummy-virt\";\n\tuart {\n\t\tcompatible = \"arm,pl011\";\n\t};\n};\n";
        let out = set_root_compatible(dts, "acme,board").unwrap();
        assert!(out.contains("\tcompatible = \"acme,board\";\n\tuart"), "{out}");
        assert!(out.contains("\t\tcompatible = \"arm,pl011\";"));
        assert!(!out.contains("dummy-virt"));
        assert!(set_root_compatible("/ { };", "x").is_err());
    }

    /// The raspi4b fix-up finds every node it names in Debian's Pi 4 DTB
    /// (when the Linux guests' material is fetched).
    #[test]
    fn raspi4b_fixup_edits_the_board_dtb() {
        let dtb = crate::root().join("test-images/cache/linux/bcm2711-rpi-4-b.dtb");
        if !dtb.exists() || Command::new("fdtget").arg("--help").output().is_err() {
            eprintln!("skipped: no {} or no fdtget", dtb.display());
            return;
        }
        let out = std::env::temp_dir().join(format!("xtask-raspi4b-{}.dtb", std::process::id()));
        std::fs::copy(&dtb, &out).unwrap();
        raspi4b_fixup(&out).unwrap();
        let get = |node: &str, prop: &str| Command::new("fdtget").arg(&out).args([node, prop]).output().unwrap();
        for (node, _) in RASPI4B_DISABLED {
            assert_eq!(String::from_utf8_lossy(&get(node, "status").stdout).trim(), "disabled", "{node}");
        }
        for (node, prop, _) in RASPI4B_DELETED {
            assert!(!get(node, prop).status.success(), "{node} still has {prop}");
            assert_eq!(String::from_utf8_lossy(&get(node, "status").stdout).trim(), "okay", "{node} itself stays");
        }
        let _ = std::fs::remove_file(&out);
    }

    #[test]
    fn chosen_goes_inside_the_node() {
        let dts = "/ {\n\tchosen {\n\t\tstdout-path = \"/pl011@9000000\";\n\t};\n};\n";
        let m = [Module { name: "g", addr: 0x4800_0000, size: 0x1000, ramdisk: None, mem: 64 << 20, vcpus: 2, sw: "yes", bootargs: "", arch: "aarch64", hwdom: false, firmware: false }];
        let out = insert_chosen(dts, &chosen_dts("sched=rr", &m)).unwrap();
        let c = out.find("chosen {").unwrap();
        let a = out.find("hyp,bootargs = \"sched=rr\"").unwrap();
        let end = out.find("stdout-path").unwrap();
        let module = out.find("module@48000000").unwrap();
        assert!(c < a && a < end && end < module, "properties first, then subnodes:\n{out}");
        assert!(out.contains("reg = <0x0 0x48000000 0x0 0x1000>;"));
        assert!(out.contains("hyp,mem = /bits/ 64 <0x4000000>;"));
        assert!(!out.contains("hyp,hwdom"), "only a hardware domain's node says so");
        assert!(out.trim_end().ends_with("};\n};") || out.trim_end().ends_with("};"));
        assert!(insert_chosen("/ { };", &(String::new(), String::new())).is_err());
    }
}

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

    #[test]
    fn chosen_goes_inside_the_node() {
        let dts = "/ {\n\tchosen {\n\t\tstdout-path = \"/pl011@9000000\";\n\t};\n};\n";
        let m = [Module { name: "g", addr: 0x4800_0000, size: 0x1000, ramdisk: None, mem: 64 << 20, vcpus: 2, sw: "yes", bootargs: "", arch: "aarch64", hwdom: false }];
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

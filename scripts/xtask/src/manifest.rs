//! `cargo xtask run --manifest FILE`: a set of guests described in a small
//! TOML file, turned into the same `Args` and `GuestSpec`s the options
//! give (and so into the DTB's `/chosen` module nodes).
//!
//! ```toml
//! cpus = 2                      # the machine (all optional)
//! bootargs = "sched=rr"         # the hypervisor's boot arguments
//! board = "qemu-virt"
//! timeout = 120
//!
//! [[guest]]
//! guest = "linux-arm64"         # a test guest (cargo xtask guests), or:
//! # kernel = "Image"            # your own Image or zImage (paths are
//! # initrd = "initrd.cpio.gz"   # relative to this file), and
//! # arch = "aarch64"            # its architecture if its header does not say
//! # firmware = "QEMU_EFI.fd"    # or raw firmware (UEFI), flash at 0
//! name = "web"                  # default: the guest's or the kernel's name
//! vcpus = 2                     # default 1
//! mem = "512M"                  # default 64M (512M for Linux, 256M firmware)
//! sw = "auto"                   # yes, no, auto
//! append = "quiet"              # added to a Linux command line
//! hwdom = false                 # the hardware domain (at most one, first)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::run::GuestSpec;
use crate::{parse_size, Args};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Manifest {
    board: Option<String>,
    cpus: Option<u32>,
    bootargs: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    guest: Vec<Guest>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Guest {
    guest: Option<String>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    arch: Option<String>,
    firmware: Option<PathBuf>,
    name: Option<String>,
    vcpus: Option<u32>,
    mem: Option<String>,
    sw: Option<String>,
    append: Option<String>,
    #[serde(default)]
    hwdom: bool,
}

/// The machine's options (with `base`'s for what the manifest leaves out)
/// and its guests, from the manifest at `path`.
pub fn load(path: &Path, base: &Args) -> Result<(Args, Vec<GuestSpec>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir, base).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse(text: &str, dir: &Path, base: &Args) -> Result<(Args, Vec<GuestSpec>), String> {
    let m: Manifest = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!("line {line}: {}", e.message().trim())
    })?;
    let mut a = base.clone();
    if let Some(b) = m.board {
        a.board = b;
    }
    if let Some(c) = m.cpus {
        a.cpus = c;
    }
    if let Some(b) = m.bootargs {
        a.bootargs = b;
    }
    if let Some(t) = m.timeout {
        a.timeout_s = t;
    }
    if m.guest.is_empty() {
        return Err("no [[guest]]".into());
    }
    if !(1..=4).contains(&a.cpus) {
        return Err("cpus must be 1..=4".into());
    }
    let mut specs: Vec<GuestSpec> = Vec::new();
    for (i, g) in m.guest.iter().enumerate() {
        let what = |e: String| format!("guest {}: {e}", i + 1);
        if g.hwdom && i != 0 {
            return Err(what("hwdom = true only on the first guest".into()));
        }
        let one = Args {
            guest: g.guest.clone().unwrap_or_default(),
            kernel: g.kernel.as_ref().or(g.firmware.as_ref()).map(|k| dir.join(k)),
            firmware: g.firmware.is_some(),
            initrd: g.initrd.as_ref().map(|k| dir.join(k)),
            arch: g.arch.clone(),
            vcpus: g.vcpus.unwrap_or(1),
            append: g.append.clone().unwrap_or_default(),
            hwdom: g.hwdom,
            ..a.clone()
        };
        match (&g.guest, &g.kernel, &g.firmware) {
            (Some(name), None, None) if !crate::GUESTS.contains(&name.as_str()) => {
                return Err(what(format!("guest = \"{name}\": no such test guest (cargo xtask guests lists them)")))
            }
            (Some(_), None, None) | (None, Some(_), None) | (None, None, Some(_)) => {}
            _ => return Err(what("give one of guest = \"NAME\", kernel = \"PATH\" or firmware = \"PATH\"".into())),
        }
        if g.firmware.is_some() && g.hwdom {
            return Err(what("firmware cannot be the hardware domain (hwdom = true boots a Linux kernel)".into()));
        }
        if g.initrd.is_some() && g.kernel.is_none() {
            return Err(what("initrd goes with kernel".into()));
        }
        if let Some(arch) = &g.arch {
            if g.kernel.is_none() && g.firmware.is_none() {
                return Err(what("arch goes with kernel or firmware (a test guest's is known)".into()));
            }
            if !crate::ARCHES.contains(&arch.as_str()) {
                return Err(what(format!("arch = \"{arch}\": allowed: {}", crate::ARCHES.join(", "))));
            }
        }
        if !(1..=8).contains(&one.vcpus) {
            return Err(what("vcpus must be 1..=8".into()));
        }
        let mem = match &g.mem {
            Some(m) => parse_size(m).map_err(what)?,
            None if g.firmware.is_some() => 256 << 20,
            None => crate::default_mem(&one.guest, g.kernel.is_some()),
        };
        let max = if a.board == "rpi4" { 1 << 30 } else { 64 << 30 };
        if !(2 << 20..=max).contains(&mem) {
            return Err(what(format!("mem must be 2M to {} on {}", if max == 1 << 30 { "1G" } else { "64G" }, a.board)));
        }
        let mut s = GuestSpec::from_args(&Args { mem, ..one });
        if let Some(sw) = &g.sw {
            if !["yes", "no", "auto"].contains(&sw.as_str()) {
                return Err(what(format!("sw = \"{sw}\": allowed: yes, no, auto")));
            }
            s.sw = sw.clone();
        }
        if let Some(n) = &g.name {
            s.name = n.clone();
        } else {
            let same = specs.iter().filter(|x| x.image == s.image).count();
            if same > 0 {
                s.name = crate::run::numbered(&s.name, same + 1);
            }
        }
        // The hypervisor's own rule for a guest name.
        if !bootcfg::name_ok(&s.name) {
            return Err(what(format!("name \"{}\": {}", s.name, bootcfg::NAME_ALLOWED)));
        }
        if specs.iter().any(|x| x.name == s.name) {
            return Err(what(format!("name \"{}\" is taken", s.name)));
        }
        specs.push(s);
    }
    a.hwdom = specs[0].hwdom;
    Ok((a, specs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<(Args, Vec<GuestSpec>), String> {
        parse(text, Path::new("/m"), &Args::default())
    }

    #[test]
    fn a_manifest_gives_the_machine_and_each_guest() {
        let (a, g) = p(r#"
            cpus = 2
            bootargs = "sched=pinned"
            [[guest]]
            guest = "sw-smp"
            vcpus = 4
            mem = "128M"
            sw = "yes"
            [[guest]]
            guest = "sw-basic"
            [[guest]]
            guest = "sw-basic"
            [[guest]]
            kernel = "k/Image"
            initrd = "rd.gz"
            arch = "aarch64"
            name = "mine"
            append = "quiet"
        "#)
        .unwrap();
        assert_eq!((a.cpus, a.bootargs.as_str()), (2, "sched=pinned"));
        let names: Vec<&str> = g.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sw-smp", "sw-basic", "sw-basic-2", "mine"]);
        assert_eq!((g[0].vcpus, g[0].mem, g[0].sw.as_str()), (4, 128 << 20, "yes"));
        assert_eq!((g[1].vcpus, g[1].mem), (1, 64 << 20));
        assert_eq!(g[3].mem, 512 << 20, "a kernel gets Linux's default RAM");
        assert_eq!(g[3].kernel, Some((PathBuf::from("/m/k/Image"), Some(PathBuf::from("/m/rd.gz")))));
        assert!(g[3].bootargs.ends_with("quiet"));
    }

    #[test]
    fn repeated_long_names_stay_within_sixteen_characters() {
        let (_, g) = p("[[guest]]\nkernel = \"abcdefghijklmnop\"\n[[guest]]\nkernel = \"abcdefghijklmnop\"").unwrap();
        assert_eq!((g[0].name.as_str(), g[1].name.as_str()), ("abcdefghijklmnop", "abcdefghijklmn-2"));
    }

    #[test]
    fn mistakes_are_one_clear_line() {
        for (text, want) in [
            ("", "no [[guest]]"),
            ("[[guest]]\nguest = \"sw-basic\"\nvcpu = 2", "unknown field `vcpu`"),
            ("[[guest]]\nguest = \"nope\"", "no such test guest"),
            ("[[guest]]\nname = \"x\"", "give one of"),
            ("[[guest]]\nguest = \"sw-basic\"\nkernel = \"I\"", "give one of"),
            ("[[guest]]\nguest = \"sw-basic\"\nvcpus = 9", "vcpus must be 1..=8"),
            ("[[guest]]\nguest = \"sw-basic\"\nmem = \"lots\"", "bad size 'lots'"),
            ("[[guest]]\nguest = \"sw-basic\"\nsw = \"maybe\"", "allowed: yes, no, auto"),
            ("[[guest]]\nguest = \"sw-basic\"\n[[guest]]\nguest = \"pod-touch\"\nhwdom = true", "only on the first"),
            ("[[guest]]\nguest = \"sw-basic\"\nname = \"a\"\n[[guest]]\nguest = \"pod-touch\"\nname = \"a\"", "is taken"),
            ("cpus = 9\n[[guest]]\nguest = \"sw-basic\"", "cpus must be 1..=4"),
            ("[[guest]]\nguest = \"sw-basic\"\nname = \"web server\"", "1 to 16 of"),
            ("[[guest]]\nguest = \"sw-basic\"\nmem = \"100G\"", "mem must be 2M to 64G"),
            ("[[guest]]\nguest = \"sw-basic\"\narch = \"aarch32\"", "arch goes with kernel"),
            ("[[guest]]\nguest = \"sw-basic\"\nvcpus = \"2\"", "line 3: invalid type"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.contains(want) && !e.contains('\n'), "{text:?}: {e}");
        }
    }
}

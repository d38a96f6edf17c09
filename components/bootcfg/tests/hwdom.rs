//! The hardware domain's configuration: `hyp,hwdom`, `hyp,base`,
//! `hyp,passthrough` and their `guestN.` arguments.
mod common;

use bootcfg::fdt_writer::FdtWriter;
use bootcfg::*;
use common::*;

fn two_guests(line: &str, first: &dyn Fn(&mut FdtWriter), second: &dyn Fn(&mut FdtWriter)) -> Vec<u8> {
    let line = line.to_string();
    let chosen = move |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("bootargs", &line);
        kernel(w, 0x5000_0000, MIB, first);
        kernel(w, 0x5100_0000, MIB, second);
    };
    with_chosen(&chosen)
}

fn ok(dtb: &[u8]) -> BootConfig {
    parse(dtb).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn err(dtb: &[u8]) -> String {
    match parse(dtb) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

const NONE: &dyn Fn(&mut FdtWriter) = &|_| {};

#[test]
fn from_properties() {
    let hw = |w: &mut FdtWriter| {
        w.prop_empty("hyp,hwdom");
        w.prop_u64("hyp,base", 0x6000_0000);
        w.prop_strs("hyp,passthrough", &["/virtio_mmio@a000000", "/pl061@9030000"]);
        w.prop_str("hyp,mem", "256M");
    };
    let c = ok(&two_guests("", &hw, NONE));
    let g = &c.guests[0];
    assert!(g.hwdom);
    assert_eq!(g.base, Some(0x6000_0000));
    assert_eq!(g.passthrough_paths().collect::<Vec<_>>(), ["/virtio_mmio@a000000", "/pl061@9030000"]);
    assert!(!c.guests[1].hwdom);
    assert_eq!(c.guests[1].passthrough_paths().count(), 0);
    // "yes" and "no" spelled out.
    let yes = |w: &mut FdtWriter| w.prop_str("hyp,hwdom", "yes");
    assert!(ok(&two_guests("", &yes, NONE)).guests[0].hwdom);
    let no = |w: &mut FdtWriter| w.prop_str("hyp,hwdom", "no");
    assert!(!ok(&two_guests("", &no, NONE)).guests[0].hwdom);
    let bad = |w: &mut FdtWriter| w.prop_str("hyp,hwdom", "maybe");
    assert!(err(&two_guests("", &bad, NONE)).contains("not yes or no"));
}

#[test]
fn from_arguments() {
    let c = ok(&two_guests("guest1.hwdom=yes guest1.base=0x60000000 guest1.passthrough=/a@1,/b@2", NONE, NONE));
    let g = &c.guests[1];
    assert!(g.hwdom && !c.guests[0].hwdom);
    assert_eq!(g.base, Some(0x6000_0000));
    assert_eq!(g.passthrough_paths().collect::<Vec<_>>(), ["/a@1", "/b@2"]);
    // The argument wins over the property.
    let hw = |w: &mut FdtWriter| w.prop_empty("hyp,hwdom");
    assert!(!ok(&two_guests("guest0.hwdom=no", &hw, NONE)).guests[0].hwdom);
}

#[test]
fn bad_values() {
    for (line, want) in [
        ("guest0.hwdom=1", "not yes or no"),
        ("guest0.base=0x60001000", "not a 2M-aligned address"),
        ("guest0.base=lots", "not a 2M-aligned address"),
        ("guest0.passthrough=virtio", "bad path list"),
        ("guest0.passthrough=/a,,/b", "bad path list"),
        ("guest0.passthrough=/", "bad path list"),
    ] {
        let e = parse_bootargs(line).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(want), "{line}: {e}");
        assert!(!e.contains('\n'));
    }
    let long = format!("guest0.passthrough=/{}", "x".repeat(PASSTHROUGH_LEN));
    assert!(parse_bootargs(&long).is_err());
    let unaligned = |w: &mut FdtWriter| {
        w.prop_empty("hyp,hwdom");
        w.prop_u64("hyp,base", 0x6000_1000);
    };
    assert!(err(&two_guests("", &unaligned, NONE)).contains("not 2M-aligned"));
}

#[test]
fn configurations_that_cannot_be() {
    assert_eq!(
        err(&two_guests("guest0.hwdom=yes guest1.hwdom=yes", NONE, NONE)),
        "guest1: a second hardware domain (guest0 is one already; allowed: hwdom=yes on one guest)"
    );
    assert!(err(&two_guests("guest0.hwdom=yes guest0.populate=demand", NONE, NONE)).starts_with("guest0: the hardware domain's RAM is direct-mapped"));
    assert!(err(&two_guests("guest0.hwdom=yes guest0.pool=8M", NONE, NONE)).starts_with("guest0: the hardware domain's RAM is direct-mapped"));
    assert!(err(&two_guests("guest1.base=0x60000000", NONE, NONE)).starts_with("guest1: base= and passthrough= are for the hardware domain"));
    assert!(err(&two_guests("guest1.passthrough=/a", NONE, NONE)).starts_with("guest1: base= and passthrough= are for the hardware domain"));
    // The test tree's RAM is 0x40000000 + 1 GiB.
    let e = err(&two_guests("guest0.hwdom=yes guest0.base=0x7fe00000 guest0.mem=64M", NONE, NONE));
    assert!(e.contains("guest0") && e.contains("RAM"), "{e}");
    // A hardware domain's memory is eager: it must fit whole.
    assert!(err(&two_guests("guest0.hwdom=yes guest0.mem=2G", NONE, NONE)).contains("does not fit in host RAM"));
    // Fine: explicit base inside RAM, eager by default.
    let c = ok(&two_guests("guest0.hwdom=yes guest0.base=0x60000000 guest0.mem=64M", NONE, NONE));
    assert_eq!(c.guests[0].base, Some(0x6000_0000));
}

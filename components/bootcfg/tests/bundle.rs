//! Guests from a guest bundle (the Raspberry Pi firmware's `initramfs`
//! file), and where the bundle is in memory.

mod common;

use bootcfg::fdt_writer::FdtWriter;
use bootcfg::*;
use common::*;

/// Where the tests' bundles are, inside the default tree's RAM.
const BASE: u64 = 0x6000_0000;
/// Their length.
const LEN: usize = 0x10000;

fn ok(dtb: &[u8], bundle: &[u8]) -> BootConfig {
    match parse_with_bundle(dtb, Some((BASE, bundle))) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(dtb: &[u8], bundle: &[u8]) -> String {
    match parse_with_bundle(dtb, Some((BASE, bundle))) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The main /chosen as the Raspberry Pi firmware writes it: its own Linux
/// command line, no modules.
fn firmware_chosen(w: &mut FdtWriter) {
    w.prop_str(
        "bootargs",
        "coherent_pool=1M 8250.nr_uarts=1 console=ttyS0,115200 root=PARTUUID=6c586e13-02 rootwait",
    );
    w.prop_u32("linux,initrd-start", BASE as u32);
    w.prop_u32("linux,initrd-end", BASE as u32 + LEN as u32);
}

/// A bundle with one guest: kernel at offset 0x1000, ramdisk at 0x3000.
fn one_guest_bundle(line: Option<&'static str>) -> Vec<u8> {
    let chosen = move |w: &mut FdtWriter| {
        chosen_cells(w);
        if let Some(l) = line {
            w.prop_str("hyp,bootargs", l);
        }
        kernel(w, 0x1000, 0x2000, &|w| {
            w.prop_str("hyp,name", "rt");
            w.prop_str("hyp,mem", "32M");
            w.prop_u32("hyp,vcpus", 2);
            w.prop_str("hyp,sw", "no");
            w.prop_str("hyp,arch", "aarch32");
            w.prop_str("bootargs", "console=ttyAMA0");
        });
        ramdisk(w, 0x3000, 0x1000);
    };
    guest_bundle(&chosen, LEN)
}

#[test]
fn module_offsets_are_translated() {
    let dtb = with_chosen(&firmware_chosen);
    let c = ok(&dtb, &one_guest_bundle(Some("sched=null")));
    assert_eq!(c.guests.len(), 1);
    let g = &c.guests[0];
    assert_eq!(g.image, (BASE + 0x1000, 0x2000));
    assert_eq!(g.ramdisk, Some((BASE + 0x3000, 0x1000)));
    assert_eq!(g.name.as_str(), "rt");
    assert_eq!(g.mem_bytes, 32 * MIB);
    assert_eq!((g.vcpus, g.sw, g.aarch32), (2, SwMode::No, true));
    assert_eq!(g.bootargs.as_str(), "console=ttyAMA0");
    assert_eq!(c.sched, SchedKind::Null);
    // Another base moves the guest with it.
    let b = one_guest_bundle(Some(""));
    let c = parse_with_bundle(&dtb, Some((0x5000_0000, &b))).unwrap();
    assert_eq!(c.guests[0].image, (0x5000_1000, 0x2000));
    assert_eq!(c.guests[0].ramdisk, Some((0x5000_3000, 0x1000)));
}

#[test]
fn modules_outside_the_bundle_are_rejected() {
    let dtb = with_chosen(&firmware_chosen);
    let at = |off: u64, size: u64| {
        move |w: &mut FdtWriter| {
            chosen_cells(w);
            w.prop_str("hyp,bootargs", "");
            kernel(w, off, size, &|_| {});
        }
    };
    // Ends exactly at the end: fine.
    let c = ok(&dtb, &guest_bundle(&at(0x8000, 0x8000), LEN));
    assert_eq!(c.guests[0].image, (BASE + 0x8000, 0x8000));
    for (off, size) in [
        (0x8000, 0x8001),
        (0x10000, 1),
        (0x20000, 0x1000),
        (1 << 40, 0x1000),
    ] {
        assert_eq!(
            err(&dtb, &guest_bundle(&at(off, size), LEN)),
            format!("dtb: /chosen/module@{off:x}: reg (an offset into the guest bundle) runs past the bundle's end"),
            "{off:#x}+{size:#x}"
        );
    }
    // A ramdisk too.
    let rd = |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("hyp,bootargs", "");
        kernel(w, 0x1000, 0x1000, &|_| {});
        ramdisk(w, 0xf000, 0x1001);
    };
    assert_eq!(
        err(&dtb, &guest_bundle(&rd, LEN)),
        "dtb: /chosen/module@f000: reg (an offset into the guest bundle) runs past the bundle's end"
    );
    // Offset + size past 2^64.
    assert_eq!(
        err(&dtb, &guest_bundle(&at(u64::MAX, 2), LEN)),
        format!("dtb: module@{:x}: reg = {}: range runs past the end of the address space (allowed: base + size <= 2^64)", u64::MAX, u64::MAX)
    );
    // Translated modules are checked like any: in RAM, no overlaps.
    let b = one_guest_bundle(Some(""));
    assert_eq!(
        parse_with_bundle(&dtb, Some((0x8000_0000, &b)))
            .unwrap_err()
            .to_string(),
        "guest0: image at 0x80001000 size 0x2000 is not inside one RAM range"
    );
    let main = |w: &mut FdtWriter| {
        chosen_cells(w);
        kernel(w, BASE + 0x2000, 0x1000, &|_| {});
    };
    assert_eq!(
        err(&with_chosen(&main), &b),
        "guest0 image overlaps guest1 image"
    );
}

#[test]
fn other_initrds_are_ignored() {
    let dtb = default_dtb();
    let plain = parse(&dtb).unwrap();
    assert_eq!(parse_with_bundle(&dtb, None), Ok(plain.clone()));
    // A cpio archive, an empty file, a device tree that is not a bundle, a
    // truncated bundle.
    let mut cpio = b"070701000000".to_vec();
    cpio.resize(LEN, 0);
    let mut cut = one_guest_bundle(Some("sched=null"));
    cut.truncate(100);
    let other_fdt = guest_bundle(&|w| chosen_cells(w), 0x200);
    let mut not_bundle = other_fdt.clone();
    let at = not_bundle
        .windows(16)
        .position(|w| w == b"hyp,guest-bundle")
        .unwrap();
    not_bundle[at] = b'x';
    for b in [&cpio[..], &[], &default_dtb(), &cut, &not_bundle] {
        assert_eq!(ok(&dtb, b), plain);
        assert_eq!(
            exit_method_with_bundle(&dtb, Some((BASE, b))),
            ExitMethod::Psci
        );
    }
    // The real one, for contrast: its guest comes after the DTB's.
    assert_eq!(ok(&dtb, &one_guest_bundle(None)).guests.len(), 2);
    // A bundle with no chosen node adds nothing.
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_strs("compatible", &["acme,x", "hyp,guest-bundle"]);
    w.end_node();
    assert_eq!(ok(&dtb, &w.finish()), plain);
}

#[test]
fn command_line_precedence() {
    let bundle = one_guest_bundle(Some("sched=null exit=semihosting"));
    let sched = |chosen: &dyn Fn(&mut FdtWriter), b: &[u8]| ok(&with_chosen(chosen), b).sched;
    // The DTB's hyp,bootargs first.
    let all = |w: &mut FdtWriter| {
        w.prop_str("hyp,bootargs", "sched=pinned");
        w.prop_str("xen,xen-bootargs", "sched=rr");
        w.prop_str("bootargs", "sched=bogus");
    };
    assert_eq!(sched(&all, &bundle), SchedKind::Pinned);
    assert_eq!(
        exit_method_with_bundle(&with_chosen(&all), Some((BASE, &bundle))),
        ExitMethod::Psci
    );
    // Then the bundle's, before xen,xen-bootargs and bootargs.
    let xen = |w: &mut FdtWriter| {
        w.prop_str("xen,xen-bootargs", "sched=rr");
        w.prop_str("bootargs", "sched=bogus");
    };
    assert_eq!(sched(&xen, &bundle), SchedKind::Null);
    assert_eq!(sched(&firmware_chosen, &bundle), SchedKind::Null);
    let dtb = with_chosen(&firmware_chosen);
    assert_eq!(ok(&dtb, &bundle).exit, ExitMethod::Semihosting);
    assert_eq!(
        exit_method_with_bundle(&dtb, Some((BASE, &bundle))),
        ExitMethod::Semihosting
    );
    assert_eq!(exit_method(&dtb), ExitMethod::Psci);
    // An empty line in the bundle still wins over the firmware's.
    assert_eq!(
        sched(&firmware_chosen, &one_guest_bundle(Some(""))),
        SchedKind::Rr
    );
    assert!(parse(&dtb)
        .unwrap_err()
        .to_string()
        .starts_with("bootargs: coherent_pool=1M: unknown key"));
    // A bundle without one: the DTB's xen,xen-bootargs, then bootargs.
    let none = one_guest_bundle(None);
    assert_eq!(sched(&xen, &none), SchedKind::Rr);
    let plain = |w: &mut FdtWriter| w.prop_str("bootargs", "sched=pinned");
    assert_eq!(sched(&plain, &none), SchedKind::Pinned);
    assert_eq!(sched(&|_| {}, &none), SchedKind::Rr);
    // The bundle's line is checked like any other.
    assert_eq!(
        err(&dtb, &one_guest_bundle(Some("sched=fast"))),
        "bootargs: sched=fast: unknown scheduler (allowed: rr, pinned, null)"
    );
    let not_str = guest_bundle(&|w| w.prop_cells("hyp,bootargs", &[1]), 0x200);
    assert!(err(&dtb, &not_str).starts_with("dtb: chosen: hyp,bootargs = 4: not a single string"));
    // exit_method_with_bundle with a bad line still finds exit=.
    let bad = one_guest_bundle(Some("exit=semihosting sched=fast"));
    assert_eq!(
        exit_method_with_bundle(&dtb, Some((BASE, &bad))),
        ExitMethod::Semihosting
    );
}

#[test]
fn guests_from_both() {
    // The default tree has guest "linux" (16M at 0x5000_0000, ramdisk).
    let two = |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("hyp,bootargs", "guest2.name=renamed guest1.vcpus=3");
        kernel(w, 0x1000, 0x1000, &|w| w.prop_str("hyp,name", "b0"));
        kernel(w, 0x2000, 0x1000, &|w| w.prop_str("hyp,name", "b1"));
        ramdisk(w, 0x3000, 0x1000);
    };
    let c = ok(&default_dtb(), &guest_bundle(&two, LEN));
    let names: Vec<_> = c.guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["linux", "b0", "renamed"]);
    assert_eq!(c.guests[0].ramdisk, Some((0x5400_0000, 4 * MIB)));
    assert_eq!(c.guests[1].ramdisk, None);
    assert_eq!(c.guests[1].vcpus, 3);
    assert_eq!(c.guests[2].ramdisk, Some((BASE + 0x3000, 0x1000)));
    // guestN overrides count the bundle's guests.
    let over = |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("hyp,bootargs", "guest3.vcpus=2");
        kernel(w, 0x1000, 0x1000, &|_| {});
    };
    assert_eq!(
        err(&default_dtb(), &guest_bundle(&over, LEN)),
        "bootargs: guest3.vcpus=2: no such guest (the device tree has 2, numbered from guest0)"
    );
    // MAX_GUESTS counts both.
    let four = |w: &mut FdtWriter| {
        chosen_cells(w);
        for i in 1..=4 {
            kernel(w, i * 0x1000, 0x1000, &|_| {});
        }
    };
    assert_eq!(
        err(&default_dtb(), &guest_bundle(&four, LEN)),
        "dtb: more than 4 guest kernel modules (the most supported)"
    );
    // A bundle's ramdisk needs a kernel of the bundle before it.
    let lone = |w: &mut FdtWriter| {
        chosen_cells(w);
        ramdisk(w, 0x1000, 0x1000);
    };
    assert_eq!(
        err(&default_dtb(), &guest_bundle(&lone, LEN)),
        "dtb: /chosen/module@1000: ramdisk module with no kernel module before it"
    );
    // The bundle's modules are checked as the DTB's are.
    let bad = |w: &mut FdtWriter| {
        chosen_cells(w);
        kernel(w, 0x1000, 0x1000, &|w| w.prop_str("hyp,sw", "maybe"));
    };
    assert_eq!(
        err(&default_dtb(), &guest_bundle(&bad, LEN)),
        "dtb: module@1000: hyp,sw = \"maybe\": unknown set/way mode (allowed: yes, no, auto)"
    );
    // Bundle cells default like the DTB's (2 and 1).
    let cells21 = |w: &mut FdtWriter| {
        w.begin_node("module@1000");
        w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
        w.prop_reg("reg", 2, 1, &[(0x1000, 0x1000)]);
        w.end_node();
    };
    let c = ok(&with_chosen(&|_| {}), &guest_bundle(&cells21, LEN));
    assert_eq!(c.guests[0].image, (BASE + 0x1000, 0x1000));
}

#[test]
fn initrd_range() {
    let range = |start: &[u8], end: &[u8]| {
        let (start, end) = (start.to_vec(), end.to_vec());
        let chosen = move |w: &mut FdtWriter| {
            if !start.is_empty() {
                w.prop_bytes("linux,initrd-start", &start);
            }
            if !end.is_empty() {
                w.prop_bytes("linux,initrd-end", &end);
            }
        };
        bundle_range(&with_chosen(&chosen))
    };
    let u32b = |v: u32| v.to_be_bytes();
    let u64b = |v: u64| v.to_be_bytes();
    // The test tree's RAM is 1 GiB from 0x4000_0000.
    assert_eq!(
        range(&u32b(0x4eff_2000), &u32b(0x4f00_0000)),
        Some((0x4eff_2000, 0xe000))
    );
    assert_eq!(
        range(&u64b(0x4000_0000), &u64b(0x4010_0000)),
        Some((0x4000_0000, 0x10_0000))
    );
    assert_eq!(range(&u32b(0x4000_1000), &u64b(0x4000_2000)), Some((0x4000_1000, 0x1000)));
    assert_eq!(range(&u64b(0x4000_1000), &u32b(0x4000_2000)), Some((0x4000_1000, 0x1000)));
    // Outside RAM, or running past its end: the kernel would read it.
    assert_eq!(range(&u32b(0x1000), &u32b(0x2000)), None);
    assert_eq!(range(&u64b(0x1_0000_0000), &u64b(0x1_0010_0000)), None);
    assert_eq!(range(&u32b(0x7fff_f000), &u32b(0x8000_1000)), None);
    // Missing, empty, reversed, malformed.
    assert_eq!(range(&u32b(0x4000_1000), &[]), None);
    assert_eq!(range(&[], &u32b(0x4000_1000)), None);
    assert_eq!(range(&u32b(0x4000_1000), &u32b(0x4000_1000)), None);
    assert_eq!(range(&u32b(0x4000_2000), &u32b(0x4000_1000)), None);
    assert_eq!(range(&[0, 0, 0x10], &u32b(0x4000_2000)), None);
    assert_eq!(range(&u32b(0x4000_1000), &[0; 12]), None);
    assert_eq!(bundle_range(&default_dtb()), None);
    assert_eq!(bundle_range(b"not a dtb"), None);
    let no_chosen = build(&Parts {
        chosen: &|_| {},
        ..Parts::default()
    });
    assert_eq!(bundle_range(&no_chosen), None);
}

/// The whole Raspberry Pi 4 path: firmware DTB in, bundle range, guests
/// and the hypervisor's line from the bundle, board and console.
#[test]
fn rpi4_firmware_boot() {
    let memory_ = |w: &mut FdtWriter| {
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        w.prop_reg("reg", 2, 1, &[(0, 0x3b40_0000)]);
        w.end_node();
    };
    let cpus_ = |w: &mut FdtWriter| {
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        for i in 0..4u32 {
            w.begin_node(&format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_u32("reg", i);
            w.prop_str("enable-method", "spin-table");
            w.prop_cells("cpu-release-addr", &[0, 0xd8 + 8 * i]);
            w.end_node();
        }
        w.end_node();
    };
    let devices_ = |w: &mut FdtWriter| {
        w.begin_node("aliases");
        w.prop_str("serial1", "/soc/serial@7e215040");
        w.end_node();
        rpi4_soc(w);
        timer(w);
    };
    let start = 0x2eff_0000u32;
    let chosen = move |w: &mut FdtWriter| {
        w.prop_str(
            "bootargs",
            "coherent_pool=1M 8250.nr_uarts=1 console=ttyS0,115200",
        );
        w.prop_str("stdout-path", "serial1:115200n8");
        w.prop_u32("linux,initrd-start", start);
        w.prop_u32("linux,initrd-end", start + LEN as u32);
    };
    let dtb = build(&Parts {
        root_cells: (2, 1),
        compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
        memory: &memory_,
        cpus: &cpus_,
        devices: &devices_,
        chosen: &chosen,
    });
    let bundle = one_guest_bundle(Some("sched=pinned maxcpus=2"));
    let (base, len) = bundle_range(&dtb).unwrap();
    assert_eq!((base, len), (u64::from(start), LEN as u64));
    // Without the bundle the firmware's Linux line is refused, but the
    // console is known.
    assert!(parse(&dtb).is_err());
    let u = console(&dtb).unwrap();
    assert_eq!(
        (u.kind, u.regs),
        (UartKind::Bcm2835Aux, (0xfe21_5040, 0x40))
    );

    let c = parse_with_bundle(&dtb, Some((base, &bundle))).unwrap();
    assert_eq!(c.board.unwrap().name, "rpi4");
    assert_eq!(
        c.board.unwrap().uart_clock(c.uart.unwrap().regs.0),
        Some(500_000_000)
    );
    assert_eq!(c.uart, Some(u));
    assert_eq!((c.sched, c.max_cpus), (SchedKind::Pinned, Some(2)));
    let release: Vec<_> = c.cpu_list.iter().map(|c| c.release_addr).collect();
    assert_eq!(release, [Some(0xd8), Some(0xe0), Some(0xe8), Some(0xf0)]);
    assert_eq!(c.gic.unwrap().gicd, (0xff84_1000, 0x1000));
    assert_eq!(c.guests[0].image, (base + 0x1000, 0x2000));
    assert_eq!(c.guests[0].ramdisk, Some((base + 0x3000, 0x1000)));
}

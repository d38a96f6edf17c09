//! BootConfig extraction and validation, field by field and error by error.

mod common;

use bootcfg::fdt_writer::FdtWriter;
use bootcfg::*;
use common::*;

/// A tree part and the error line it must give.
type Case<'a> = (&'a dyn Fn(&mut FdtWriter), &'a str);

fn ok(dtb: &[u8]) -> BootConfig {
    match parse(dtb) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(dtb: &[u8]) -> String {
    match parse(dtb) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn with_devices(devices: &dyn Fn(&mut FdtWriter)) -> Vec<u8> {
    build(&Parts {
        devices,
        ..Parts::default()
    })
}

/// /chosen with cells, the given command line and one kernel module with
/// `extra` properties.
fn one_guest(line: &str, extra: &dyn Fn(&mut FdtWriter)) -> Vec<u8> {
    let line = line.to_string();
    let chosen = move |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("bootargs", &line);
        kernel(w, 0x5000_0000, MIB, extra);
    };
    with_chosen(&chosen)
}

#[test]
fn qemu_like_tree() {
    let c = ok(&default_dtb());
    assert_eq!(c.sched, SchedKind::Pinned);
    assert_eq!(c.hwdom_pin, HwdomPin::Auto);
    assert_eq!(c.slice_bytes, 64 * 1024);
    assert_eq!(c.loglevel, LogLevel::Info);
    assert_eq!(c.ram.as_slice(), &[(0x4000_0000, GIB)]);
    assert_eq!(c.reserved.as_slice(), &[(0x4800_0000, 0x1000)]);
    assert_eq!(c.cpus, 4);
    assert_eq!(
        c.cpu_list.iter().map(|c| c.mpidr).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(c.cpu_list.iter().all(|c| c.release_addr.is_none()));
    assert_eq!(c.boot_cpuid, 0);
    assert_eq!(
        c.gic,
        Some(GicInfo {
            version: 2,
            gicd: (0x0800_0000, 0x1_0000),
            gicr: None,
            gicc: Some((0x0801_0000, 0x1_0000)),
            gich: Some((0x0803_0000, 0x1_0000)),
            gicv: Some((0x0804_0000, 0x1_0000)),
            maint: Some(Irq {
                kind: IrqKind::Ppi,
                num: 9,
                flags: 4
            }),
        })
    );
    assert_eq!(c.gic.unwrap().maint.unwrap().intid(), 25);
    assert_eq!(
        c.uart,
        Some(UartInfo {
            kind: UartKind::Pl011,
            regs: (0x0900_0000, 0x1000),
            irq: Some(Irq {
                kind: IrqKind::Spi,
                num: 1,
                flags: 4
            }),
            clock_hz: None,
        })
    );
    assert_eq!(c.uart.unwrap().irq.unwrap().intid(), 33);
    let t = c.timer.unwrap();
    assert_eq!(
        [
            t.sec_phys.intid(),
            t.phys.intid(),
            t.virt.intid(),
            t.hyp.intid()
        ],
        [29, 30, 27, 26]
    );
    assert_eq!(
        c.psci,
        Some(PsciInfo {
            method: Conduit::Smc,
            v0_2: true
        })
    );

    assert_eq!(c.guests.len(), 1);
    let g = &c.guests[0];
    assert_eq!(g.name.as_str(), "linux");
    assert_eq!(g.image, (0x5000_0000, 16 * MIB));
    assert_eq!(g.ramdisk, Some((0x5400_0000, 4 * MIB)));
    assert_eq!(g.mem_bytes, 256 * MIB);
    assert_eq!(g.vcpus, 2);
    assert_eq!(g.sw, SwMode::Yes);
    assert_eq!(g.bootargs.as_str(), "console=hvc0 rdinit=/init");
    let huge = Irq {
        kind: IrqKind::Spi,
        num: u32::MAX,
        flags: 0,
    };
    assert_eq!(huge.intid(), u32::MAX);
    assert!(c.in_ram(0x5000_0000, 16 * MIB));
    assert!(!c.in_ram(0x3fff_f000, 0x2000));
}

#[test]
fn guest_defaults_and_legacy_compatible() {
    let chosen = |w: &mut FdtWriter| {
        chosen_cells(w);
        w.begin_node("module@50000000");
        w.prop_strs("compatible", &["xen,linux-zimage", "xen,multiboot-module"]);
        w.prop_reg("reg", 2, 2, &[(0x5000_0000, MIB)]);
        w.end_node();
        w.begin_node("module@51000000");
        w.prop_strs("compatible", &["xen,linux-initrd", "xen,multiboot-module"]);
        w.prop_reg("reg", 2, 2, &[(0x5100_0000, MIB)]);
        w.end_node();
        // Other modules (a device tree, a policy) are not guests.
        w.begin_node("module@52000000");
        w.prop_strs("compatible", &["multiboot,device-tree", "multiboot,module"]);
        w.prop_reg("reg", 2, 2, &[(0x5200_0000, MIB)]);
        w.end_node();
        kernel(w, 0x5300_0000, MIB, &|_| {});
    };
    let c = ok(&with_chosen(&chosen));
    assert_eq!(c.sched, SchedKind::Rr);
    assert_eq!(c.guests.len(), 2);
    let g = &c.guests[0];
    assert_eq!(g.name.as_str(), "guest0");
    assert_eq!(g.ramdisk, Some((0x5100_0000, MIB)));
    assert_eq!(g.mem_bytes, DEFAULT_GUEST_MEM);
    assert_eq!(g.vcpus, 1);
    assert_eq!(g.sw, SwMode::Auto);
    assert_eq!(g.bootargs.as_str(), "");
    assert_eq!(c.guests[1].name.as_str(), "guest1");
    assert_eq!(c.guests[1].ramdisk, None);
}

#[test]
fn no_chosen_no_guests() {
    let c = ok(&with_chosen(&|_| {}));
    assert!(c.guests.is_empty());
    assert_eq!(c.uart.map(|u| u.regs.0), Some(0x0900_0000));
}

#[test]
fn bootargs_source_order() {
    let chosen = |w: &mut FdtWriter| {
        w.prop_str("bootargs", "sched=pinned");
        w.prop_str("xen,xen-bootargs", "sched=null");
        w.prop_str(
            "hyp,bootargs",
            "sched=rr slice=128K loglevel=debug hwdom_pin=off",
        );
    };
    let c = ok(&with_chosen(&chosen));
    assert_eq!(
        (c.sched, c.slice_bytes, c.loglevel, c.hwdom_pin),
        (SchedKind::Rr, 128 << 10, LogLevel::Debug, HwdomPin::Off)
    );
    let chosen = |w: &mut FdtWriter| {
        w.prop_str("bootargs", "sched=pinned");
        w.prop_str("xen,xen-bootargs", "sched=null");
    };
    assert_eq!(ok(&with_chosen(&chosen)).sched, SchedKind::Null);
    let chosen = |w: &mut FdtWriter| w.prop_str("bootargs", "sched=bogus");
    assert_eq!(
        err(&with_chosen(&chosen)),
        "bootargs: sched=bogus: unknown scheduler (allowed: rr, pinned, null)"
    );
    let chosen = |w: &mut FdtWriter| w.prop_cells("bootargs", &[1]);
    assert!(
        err(&with_chosen(&chosen)).starts_with("dtb: chosen: bootargs = 4: not a single string")
    );
}

#[test]
fn overrides() {
    let dtb = one_guest(
        "guest0.mem=32M guest0.vcpus=4 guest0.sw=no guest0.name=dom0",
        &|w| {
            w.prop_str("hyp,mem", "256M");
            w.prop_u32("hyp,vcpus", 2);
            w.prop_str("hyp,sw", "yes");
            w.prop_str("hyp,name", "linux");
        },
    );
    let g = &ok(&dtb).guests[0];
    assert_eq!(
        (g.mem_bytes, g.vcpus, g.sw, g.name.as_str()),
        (32 * MIB, 4, SwMode::No, "dom0")
    );
    assert!(!g.aarch32);
    let dtb = one_guest("", &|w| w.prop_str("hyp,arch", "aarch32"));
    assert!(ok(&dtb).guests[0].aarch32);

    let dtb = one_guest("guest1.vcpus=2", &|_| {});
    assert_eq!(
        err(&dtb),
        "bootargs: guest1.vcpus=2: no such guest (the device tree has 1, numbered from guest0)"
    );
}

#[test]
fn hyp_mem_forms() {
    for (set, want) in [
        (
            &(|w: &mut FdtWriter| w.prop_u32("hyp,mem", 0x0400_0000)) as &dyn Fn(&mut FdtWriter),
            64 * MIB,
        ),
        (&|w: &mut FdtWriter| w.prop_u64("hyp,mem", 512 * MIB), 512 * MIB),
        (
            &|w: &mut FdtWriter| w.prop_str("hyp,mem", "0x200000"),
            2 * MIB,
        ),
        (&|w: &mut FdtWriter| w.prop_str("hyp,mem", "1g"), GIB),
        (&|w: &mut FdtWriter| w.prop_str("hyp,mem", "2048K"), 2 * MIB),
    ] {
        assert_eq!(ok(&one_guest("", set)).guests[0].mem_bytes, want);
    }
}

#[test]
fn module_errors() {
    let table: &[Case] = &[
        (
            &|w| w.prop_str("hyp,mem", "64Q"),
            "dtb: module@50000000: hyp,mem = \"64Q\": not a size (allowed: a size such as 64M: at least 2M, a multiple of 4K)",
        ),
        (
            &|w| w.prop_str("hyp,mem", "1M"),
            "dtb: module@50000000: hyp,mem = \"1M\": out of range (allowed: a size such as 64M: at least 2M, a multiple of 4K)",
        ),
        (
            &|w| w.prop_u32("hyp,mem", 0x20_0100),
            "dtb: module@50000000: hyp,mem = 2097408: out of range (allowed: a size such as 64M: at least 2M, a multiple of 4K)",
        ),
        (
            &|w| w.prop_bytes("hyp,mem", &[1, 2, 3]),
            "dtb: module@50000000: hyp,mem = 3: not a size (value shown is its length) (allowed: a size such as 64M: at least 2M, a multiple of 4K)",
        ),
        (
            &|w| w.prop_u32("hyp,vcpus", 9),
            "dtb: module@50000000: hyp,vcpus = 9: out of range (allowed: 1 to 8)",
        ),
        (
            &|w| w.prop_u32("hyp,vcpus", 0),
            "dtb: module@50000000: hyp,vcpus = 0: out of range (allowed: 1 to 8)",
        ),
        (
            &|w| w.prop_str("hyp,vcpus", "2"),
            "dtb: module@50000000: hyp,vcpus is 2 bytes, expected exactly 4",
        ),
        (
            &|w| w.prop_str("hyp,sw", "maybe"),
            "dtb: module@50000000: hyp,sw = \"maybe\": unknown set/way mode (allowed: yes, no, auto)",
        ),
        (
            &|w| w.prop_str("hyp,arch", "riscv"),
            "dtb: module@50000000: hyp,arch = \"riscv\": unknown architecture (allowed: aarch64, aarch32)",
        ),
        (
            &|w| w.prop_str("hyp,name", "a name"),
            "dtb: module@50000000: hyp,name = \"a name\": bad name (allowed: 1 to 16 of a-z, A-Z, 0-9, '-', '_', '.')",
        ),
        (
            &|w| w.prop_str("hyp,name", "abcdefghijklmnopq"),
            "dtb: module@50000000: hyp,name = \"abcdefghijklmnopq\": bad name (allowed: 1 to 16 of a-z, A-Z, 0-9, '-', '_', '.')",
        ),
        (
            &|w| w.prop_u32("hyp,vcpu", 2),
            "dtb: module@50000000: hyp,vcpu: unknown property (allowed: hyp,name, hyp,mem, hyp,vcpus, hyp,sw, hyp,arch, hyp,hwdom, hyp,firmware, hyp,base, hyp,passthrough)",
        ),
        (
            &|w| w.prop_str("bootargs", &"x".repeat(513)),
            "dtb: module@50000000: bootargs = 513: too long (value shown is its length) (allowed: up to 512 bytes)",
        ),
    ];
    for (set, want) in table {
        assert_eq!(err(&one_guest("", *set)), *want);
    }
    // Exactly 16 characters and 512 bytes are fine.
    let c = ok(&one_guest("", &|w| {
        w.prop_str("hyp,name", "abcdefghijklmnop");
        w.prop_str("bootargs", &"x".repeat(512));
    }));
    assert_eq!(c.guests[0].name.len(), 16);
    assert_eq!(c.guests[0].bootargs.len(), 512);
}

#[test]
fn module_layout_errors() {
    let cases: &[Case] = &[
        (
            &|w| {
                chosen_cells(w);
                ramdisk(w, 0x5000_0000, MIB);
            },
            "dtb: /chosen/module@50000000: ramdisk module with no kernel module before it",
        ),
        (
            &|w| {
                chosen_cells(w);
                kernel(w, 0x5000_0000, MIB, &|_| {});
                ramdisk(w, 0x5100_0000, MIB);
                ramdisk(w, 0x5200_0000, MIB);
            },
            "dtb: /chosen/module@52000000: a second ramdisk for the same kernel module",
        ),
        (
            &|w| {
                chosen_cells(w);
                kernel(w, 0x5000_0000, MIB, &|_| {});
                w.begin_node("module@51000000");
                w.prop_strs("compatible", &["multiboot,ramdisk"]);
                w.prop_reg("reg", 2, 2, &[(0x5100_0000, MIB)]);
                w.prop_str("hyp,mem", "64M");
                w.end_node();
            },
            "dtb: module@51000000: hyp,mem: not allowed on a ramdisk module (put it on the multiboot,kernel module)",
        ),
        (
            &|w| {
                chosen_cells(w);
                w.begin_node("module@50000000");
                w.prop_strs("compatible", &["multiboot,kernel", "multiboot,ramdisk"]);
                w.prop_reg("reg", 2, 2, &[(0x5000_0000, MIB)]);
                w.end_node();
            },
            "dtb: /chosen/module@50000000: both a kernel and a ramdisk module",
        ),
        (
            // /chosen without cells: 2 and 1 by default.
            &|w| kernel(w, 0x5000_0000, MIB, &|_| {}),
            "dtb: module@50000000: reg is 16 bytes, expected exactly 12 (#address-cells = 2, #size-cells = 1)",
        ),
        (
            &|w| {
                chosen_cells(w);
                w.begin_node("module@50000000");
                w.prop_strs("compatible", &["multiboot,kernel"]);
                w.end_node();
            },
            "dtb: module@50000000: missing reg",
        ),
        (
            &|w| {
                chosen_cells(w);
                kernel(w, 0x5000_0000, 0, &|_| {});
            },
            "dtb: /chosen/module@50000000: reg has size 0",
        ),
        (
            &|w| {
                chosen_cells(w);
                kernel(w, u64::MAX - 10, 100, &|_| {});
            },
            "dtb: module@fffffffffffffff5: reg = 18446744073709551605: range runs past the end of the address space (allowed: base + size <= 2^64)",
        ),
        (
            &|w| {
                chosen_cells(w);
                for i in 0..5 {
                    kernel(w, 0x5000_0000 + i * MIB, MIB, &|_| {});
                }
            },
            "dtb: more than 4 guest kernel modules (the most supported)",
        ),
        (
            &|w| {
                w.prop_u32("#address-cells", 3);
                kernel(w, 0x5000_0000, MIB, &|_| {});
            },
            "dtb: chosen: #address-cells = 3, #size-cells = 1 not supported (allowed: 1 or 2, 0 to 2)",
        ),
    ];
    for (chosen, want) in cases {
        assert_eq!(err(&with_chosen(*chosen)), *want);
    }
    // 1/1 cells in /chosen work.
    let c = ok(&with_chosen(&|w| {
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.begin_node("module@50000000");
        w.prop_strs("compatible", &["multiboot,kernel"]);
        w.prop_reg("reg", 1, 1, &[(0x5000_0000, MIB)]);
        w.end_node();
    }));
    assert_eq!(c.guests[0].image, (0x5000_0000, MIB));
}

#[test]
fn placement_validation() {
    let two = |a: (u64, u64), rd: Option<(u64, u64)>, b: (u64, u64)| {
        with_chosen(&move |w: &mut FdtWriter| {
            chosen_cells(w);
            kernel(w, a.0, a.1, &|_| {});
            if let Some(r) = rd {
                ramdisk(w, r.0, r.1);
            }
            kernel(w, b.0, b.1, &|_| {});
        })
    };
    // Fine: adjacent, all in RAM.
    ok(&two(
        (0x5000_0000, MIB),
        Some((0x5010_0000, MIB)),
        (0x5020_0000, MIB),
    ));
    assert_eq!(
        err(&two((0x3000_0000, MIB), None, (0x5000_0000, MIB))),
        "guest0: image at 0x30000000 size 0x100000 is not inside one RAM range"
    );
    // Straddles the end of RAM.
    assert_eq!(
        err(&two((0x7ff0_0000, 2 * MIB), None, (0x5000_0000, MIB))),
        "guest0: image at 0x7ff00000 size 0x200000 is not inside one RAM range"
    );
    assert_eq!(
        err(&two(
            (0x5000_0000, MIB),
            Some((0x9000_0000, MIB)),
            (0x5200_0000, MIB)
        )),
        "guest0: ramdisk at 0x90000000 size 0x100000 is not inside one RAM range"
    );
    assert_eq!(
        err(&two(
            (0x5000_0000, MIB),
            Some((0x5008_0000, MIB)),
            (0x5200_0000, MIB)
        )),
        "guest0 image overlaps guest0 ramdisk"
    );
    assert_eq!(
        err(&two(
            (0x5000_0000, MIB),
            Some((0x5010_0000, MIB)),
            (0x5010_0000, 0x1000)
        )),
        "guest0 ramdisk overlaps guest1 image"
    );
    assert_eq!(
        err(&two((0x5000_0000, 4 * MIB), None, (0x5010_0000, MIB))),
        "guest0 image overlaps guest1 image"
    );
}

#[test]
fn memory_forms() {
    // Several nodes and ranges, 1/1 root cells, a disabled node, a node
    // found by name only, empty ranges skipped.
    let memory = |w: &mut FdtWriter| {
        w.begin_node("memory@40000000");
        w.prop_str("device_type", "memory");
        w.prop_reg(
            "reg",
            1,
            1,
            &[
                (0x4000_0000, 0x2000_0000),
                (0x7000_0000, 0),
                (0x8000_0000, 0x1000_0000),
            ],
        );
        w.end_node();
        w.begin_node("memory@a0000000");
        w.prop_reg("reg", 1, 1, &[(0xa000_0000, 0x100_0000)]);
        w.end_node();
        w.begin_node("memory@b0000000");
        w.prop_str("device_type", "memory");
        w.prop_str("status", "disabled");
        w.prop_reg("reg", 1, 1, &[(0xb000_0000, 0x100_0000)]);
        w.end_node();
        w.begin_node("sram@c0000000");
        w.prop_reg("reg", 1, 1, &[(0xc000_0000, 0x100_0000)]);
        w.end_node();
    };
    let chosen = |w: &mut FdtWriter| {
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.begin_node("module@50000000");
        w.prop_strs("compatible", &["multiboot,kernel"]);
        w.prop_reg("reg", 1, 1, &[(0x5000_0000, MIB)]);
        w.end_node();
    };
    let devices = |w: &mut FdtWriter| {
        w.begin_node("pl011@9000000");
        w.prop_strs("compatible", &["arm,pl011"]);
        w.prop_reg("reg", 1, 1, &[(0x0900_0000, 0x1000)]);
        w.end_node();
    };
    let c = ok(&build(&Parts {
        root_cells: (1, 1),
        memory: &memory,
        chosen: &chosen,
        devices: &devices,
        ..Parts::default()
    }));
    assert_eq!(
        c.ram.as_slice(),
        &[
            (0x4000_0000, 0x2000_0000),
            (0x8000_0000, 0x1000_0000),
            (0xa000_0000, 0x100_0000)
        ]
    );
    assert_eq!(c.uart.unwrap().regs, (0x0900_0000, 0x1000));
    assert_eq!((c.gic, c.timer, c.psci), (None, None, None));

    assert_eq!(
        err(&build(&Parts {
            memory: &|_| {},
            ..Parts::default()
        })),
        "dtb: no RAM: no /memory node with a non-empty reg"
    );
    let bad = |w: &mut FdtWriter| {
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        w.prop_cells("reg", &[0, 0, 0]);
        w.end_node();
    };
    assert_eq!(
        err(&build(&Parts { memory: &bad, ..Parts::default() })),
        "dtb: memory@0: reg is 12 bytes, expected a multiple of 16 (#address-cells = 2, #size-cells = 2)"
    );
    let many = |w: &mut FdtWriter| {
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        let r: Vec<_> = (0..9).map(|i| (0x4000_0000 + i * GIB, GIB)).collect();
        w.prop_reg("reg", 2, 2, &r);
        w.end_node();
    };
    assert_eq!(
        err(&build(&Parts {
            memory: &many,
            ..Parts::default()
        })),
        "dtb: more than 8 RAM ranges (the most supported)"
    );
    assert_eq!(
        err(&build(&Parts {
            root_cells: (2, 3),
            ..Parts::default()
        })),
        "dtb: /: #address-cells = 2, #size-cells = 3 not supported (allowed: 1 or 2, 0 to 2)"
    );
}

#[test]
fn reserved_memory() {
    let devices = |w: &mut FdtWriter| {
        devices(w);
        w.begin_node("reserved-memory");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 2);
        w.prop_empty("ranges");
        w.begin_node("secmon@7f000000");
        w.prop_reg("reg", 2, 2, &[(0x7f00_0000, 0x10_0000)]);
        w.prop_empty("no-map");
        w.end_node();
        w.begin_node("linux,cma");
        w.prop_u64("size", 0x400_0000);
        w.end_node();
        w.end_node();
    };
    let c = ok(&with_devices(&devices));
    assert_eq!(
        c.reserved.as_slice(),
        &[(0x4800_0000, 0x1000), (0x7f00_0000, 0x10_0000)]
    );
}

#[test]
fn cpu_nodes() {
    let spin = |w: &mut FdtWriter| {
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 2);
        w.prop_u32("#size-cells", 0);
        for i in 0..2u64 {
            w.begin_node(&format!("cpu@{i}"));
            w.prop_str("device_type", "cpu");
            w.prop_reg("reg", 2, 0, &[(0x100 + i, 0)]);
            w.prop_str("enable-method", "spin-table");
            w.prop_u64("cpu-release-addr", 0x4000_00d8 + 8 * i);
            w.end_node();
        }
        w.end_node();
    };
    let c = ok(&build(&Parts {
        cpus: &spin,
        ..Parts::default()
    }));
    assert_eq!(c.cpus, 2);
    assert_eq!(
        c.cpu_list[1],
        Cpu {
            mpidr: 0x101,
            release_addr: Some(0x4000_00e0)
        }
    );

    assert_eq!(
        err(&build(&Parts {
            cpus: &|_| {},
            ..Parts::default()
        })),
        "dtb: /: missing cpus node"
    );
    let none = |w: &mut FdtWriter| {
        w.begin_node("cpus");
        w.end_node();
    };
    assert_eq!(
        err(&build(&Parts {
            cpus: &none,
            ..Parts::default()
        })),
        "dtb: cpus: missing cpu nodes (device_type = \"cpu\")"
    );
    let nine = |w: &mut FdtWriter| cpus_n(w, 9);
    assert_eq!(
        err(&build(&Parts {
            cpus: &nine,
            ..Parts::default()
        })),
        "dtb: more than 8 CPUs (the most supported)"
    );
    let noreg = |w: &mut FdtWriter| {
        w.begin_node("cpus");
        w.begin_node("cpu@0");
        w.prop_str("device_type", "cpu");
        w.end_node();
        w.end_node();
    };
    assert_eq!(
        err(&build(&Parts {
            cpus: &noreg,
            ..Parts::default()
        })),
        "dtb: cpu@0: missing reg"
    );
}

/// /cpus with one CPU, `enable-method` and `cpu-release-addr` as given.
fn one_cpu(method: Option<&'static str>, release: Option<&'static [u8]>) -> Vec<u8> {
    let cpus = move |w: &mut FdtWriter| {
        w.begin_node("cpus");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 0);
        w.begin_node("cpu@0");
        w.prop_str("device_type", "cpu");
        w.prop_u32("reg", 0);
        if let Some(m) = method {
            w.prop_str("enable-method", m);
        }
        if let Some(r) = release {
            w.prop_bytes("cpu-release-addr", r);
        }
        w.end_node();
        w.end_node();
    };
    build(&Parts {
        cpus: &cpus,
        ..Parts::default()
    })
}

#[test]
fn spin_table_release_addr() {
    let release = |dtb: &[u8]| ok(dtb).cpu_list[0].release_addr;
    // The test tree's RAM is 1 GiB from 0x4000_0000.
    let one: &[u8] = &[0x40, 0, 0, 0xd8];
    let two: &[u8] = &[0, 0, 0, 0, 0x40, 0, 0, 0xe0];
    assert_eq!(release(&one_cpu(Some("spin-table"), Some(one))), Some(0x4000_00d8));
    assert_eq!(release(&one_cpu(Some("spin-table"), Some(two))), Some(0x4000_00e0));
    // The kernel writes there: it must be RAM, 8-byte aligned.
    for (bad, shown) in [(&[0u8, 0, 0, 0xd8][..], 0xd8u64), (&[0, 0, 0, 1, 0, 0, 0, 0xe0], 0x1_0000_00e0), (&[0x40, 0, 0, 0xd4], 0x4000_00d4), (&[0x80, 0, 0, 0], 0x8000_0000)] {
        assert_eq!(
            err(&one_cpu(Some("spin-table"), Some(bad))),
            format!("dtb: cpu@0: cpu-release-addr = {shown}: not an 8-byte aligned address in RAM (allowed: an address inside a memory node)")
        );
    }
    // Only a spin-table CPU has a release address.
    assert_eq!(release(&one_cpu(Some("psci"), Some(two))), None);
    assert_eq!(release(&one_cpu(None, Some(two))), None);
    assert_eq!(release(&one_cpu(Some("psci"), Some(&[1, 2, 3]))), None);
    assert_eq!(release(&one_cpu(None, None)), None);
    assert_eq!(
        err(&one_cpu(Some("spin-table"), None)),
        "dtb: cpu@0: missing cpu-release-addr (enable-method is \"spin-table\")"
    );
    for bad in [&[0u8; 0][..], &[0; 2], &[0; 6], &[0; 12], &[0; 16]] {
        assert_eq!(
            err(&one_cpu(Some("spin-table"), Some(bad))),
            format!(
                "dtb: cpu@0: cpu-release-addr = {}: not 1 or 2 cells (value shown is its length) (allowed: 4 or 8 bytes)",
                bad.len()
            )
        );
    }
}

#[test]
fn maxcpus_reaches_the_config() {
    assert_eq!(ok(&one_guest("maxcpus=2", &|_| {})).max_cpus, Some(2));
    assert_eq!(ok(&one_guest("maxcpus=8", &|_| {})).max_cpus, Some(8));
    assert_eq!(ok(&one_guest("sched=rr", &|_| {})).max_cpus, None);
    // More than the DTB's CPUs is no error: it is an upper bound.
    assert_eq!(ok(&one_guest("maxcpus=6", &|_| {})).cpus, 4);
    assert_eq!(
        err(&one_guest("maxcpus=9", &|_| {})),
        "bootargs: maxcpus=9: out of range (allowed: 1 to 8)"
    );
    assert_eq!(
        err(&one_guest("maxcpus=1 maxcpus=2", &|_| {})),
        "bootargs: maxcpus=2: given twice (allowed: each key once)"
    );
}

#[test]
fn board_from_root_compatible() {
    let board = |compatible: &[&str]| {
        ok(&build(&Parts {
            compatible,
            ..Parts::default()
        }))
        .board
        .map(|b| b.name)
    };
    assert_eq!(ok(&default_dtb()).board.map(|b| b.name), Some("qemu-virt"));
    assert_eq!(board(&["raspberrypi,4-model-b", "brcm,bcm2711"]), Some("rpi4"));
    assert_eq!(board(&["raspberrypi,400", "brcm,bcm2711"]), Some("rpi4"));
    assert_eq!(board(&["acme,board", "linux,dummy-virt"]), Some("qemu-virt"));
    // Unknown boards are not an error.
    assert_eq!(board(&["acme,board", "acme,soc"]), None);
    assert_eq!(board(&[]), None);
    // The host build chooses among AArch64 boards: no Cubietruck.
    assert_eq!(board(&["cubietech,cubietruck", "allwinner,sun7i-a20"]), None);
    // A malformed compatible names no board.
    let raw = |w: &mut FdtWriter| {
        // No terminating NUL.
        w.prop_bytes("compatible", b"linux,dummy-virt");
        memory(w);
    };
    let dtb = build(&Parts {
        compatible: &[],
        memory: &raw,
        ..Parts::default()
    });
    assert_eq!(ok(&dtb).board, None);
}

#[test]
fn uart_kinds_and_clock() {
    let pl011_with = |clock: &[u8]| {
        let clock = clock.to_vec();
        move |w: &mut FdtWriter| {
            psci(w);
            gic(w);
            w.begin_node("pl011@9000000");
            w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
            w.prop_reg("reg", 2, 2, &[(0x0900_0000, 0x1000)]);
            w.prop_bytes("clock-frequency", &clock);
            w.end_node();
            timer(w);
        }
    };
    let u = ok(&with_devices(&pl011_with(&24_000_000u32.to_be_bytes())))
        .uart
        .unwrap();
    assert_eq!((u.kind, u.clock_hz), (UartKind::Pl011, Some(24_000_000)));
    assert_eq!(
        err(&with_devices(&pl011_with(&[0, 0, 0, 0, 1, 0x6e, 0x36, 0]))),
        "dtb: pl011@9000000: clock-frequency is 8 bytes, expected exactly 4"
    );
    assert_eq!(
        err(&with_devices(&pl011_with(&[0; 4]))),
        "dtb: pl011@9000000: clock-frequency = 0: a UART clock of 0 Hz (allowed: the clock rate in Hz, above 0)"
    );

    // The mini-UART, first in the tree, with a clock.
    let aux = |w: &mut FdtWriter| {
        w.begin_node("serial@8000000");
        w.prop_strs("compatible", &["brcm,bcm2835-aux-uart"]);
        w.prop_reg("reg", 2, 2, &[(0x0800_0040, 0x40)]);
        w.prop_u32("clock-frequency", 500_000_000);
        // Not read for this kind.
        w.prop_u32("reg-shift", 7);
        w.end_node();
        devices(w);
    };
    let chosen = |w: &mut FdtWriter| chosen_cells(w);
    let dtb = build(&Parts {
        devices: &aux,
        chosen: &chosen,
        ..Parts::default()
    });
    let u = ok(&dtb).uart.unwrap();
    assert_eq!(
        u,
        UartInfo {
            kind: UartKind::Bcm2835Aux,
            regs: (0x0800_0040, 0x40),
            irq: None,
            clock_hz: Some(500_000_000),
        }
    );
    assert_eq!(console(&dtb), Some(u));
}

/// Only the console UART is read: a broken UART elsewhere does not matter.
#[test]
fn only_the_console_uart_is_read() {
    let devices_ = |w: &mut FdtWriter| {
        w.begin_node("serial@1000");
        w.prop_strs("compatible", &["ns16550a"]);
        w.prop_reg("reg", 2, 2, &[(0x1000, 0x100)]);
        w.prop_u32("reg-shift", 9);
        w.end_node();
        devices(w);
    };
    let named = |path: &'static str| {
        move |w: &mut FdtWriter| {
            chosen_cells(w);
            w.prop_str("stdout-path", path);
        }
    };
    let good = build(&Parts {
        devices: &devices_,
        chosen: &named("/pl011@9000000:115200n8"),
        ..Parts::default()
    });
    assert_eq!(ok(&good).uart.unwrap().regs.0, 0x0900_0000);
    assert_eq!(console(&good).unwrap().regs.0, 0x0900_0000);
    let bad = build(&Parts {
        devices: &devices_,
        chosen: &named("/serial@1000"),
        ..Parts::default()
    });
    assert_eq!(
        err(&bad),
        "dtb: serial@1000: reg-shift = 9: unsupported (allowed: 0 to 3)"
    );
    assert_eq!(console(&bad), None);
    // No stdout-path: the first UART, here the broken one.
    let first = build(&Parts {
        devices: &devices_,
        chosen: &|w: &mut FdtWriter| chosen_cells(w),
        ..Parts::default()
    });
    assert!(err(&first).starts_with("dtb: serial@1000: reg-shift"));
    assert_eq!(console(&first), None);
}

#[test]
fn console_of_a_bad_configuration() {
    let want = Some(UartInfo {
        kind: UartKind::Pl011,
        regs: (0x0900_0000, 0x1000),
        irq: Some(Irq {
            kind: IrqKind::Spi,
            num: 1,
            flags: 4,
        }),
        clock_hz: None,
    });
    assert_eq!(console(&default_dtb()), want);
    assert_eq!(ok(&default_dtb()).uart, want);
    // A bad command line, no RAM, no CPUs: still a console.
    let bad_line = one_guest("sched=bogus", &|_| {});
    assert!(parse(&bad_line).is_err());
    assert_eq!(console(&bad_line), want);
    let no_ram = build(&Parts {
        memory: &|_| {},
        ..Parts::default()
    });
    assert_eq!(err(&no_ram), "dtb: no RAM: no /memory node with a non-empty reg");
    assert_eq!(console(&no_ram), want);
    let no_cpus = build(&Parts {
        cpus: &|_| {},
        ..Parts::default()
    });
    assert!(parse(&no_cpus).is_err());
    assert_eq!(console(&no_cpus), want);
    // No UART, or no device tree: none.
    let no_uart = with_devices(&|w| {
        psci(w);
        gic(w);
        timer(w);
    });
    assert_eq!(console(&no_uart), None);
    assert_eq!(console(b"not a dtb"), None);
    assert_eq!(console(&[]), None);
    let mut cut = default_dtb();
    cut.truncate(cut.len() - 1);
    assert_eq!(console(&cut), None);
}

#[test]
fn bus_translation_rpi4_like() {
    let devices = |w: &mut FdtWriter| {
        rpi4_soc(w);
        timer(w);
        w.begin_node("aliases");
        w.prop_str("serial0", "/soc/serial@7e215040");
        w.prop_str("serial1", "/soc/serial@7e201000");
        w.end_node();
    };
    let c = ok(&build(&Parts {
        devices: &devices,
        ..Parts::default()
    }));
    let g = c.gic.unwrap();
    assert_eq!(g.gicd, (0xff84_1000, 0x1000));
    assert_eq!(g.gicc, Some((0xff84_2000, 0x2000)));
    assert_eq!(g.gich, Some((0xff84_4000, 0x2000)));
    assert_eq!(g.gicv, Some((0xff84_6000, 0x2000)));
    assert_eq!(g.maint.unwrap().intid(), 25);
    // stdout-path names a node that does not exist: first enabled UART.
    assert_eq!(c.uart.unwrap().regs, (0xfe20_1000, 0x200));
    assert_eq!(c.psci, None);

    // stdout-path through an alias.
    let chosen_alias = |w: &mut FdtWriter| w.prop_str("stdout-path", "serial1:115200n8");
    let c = ok(&build(&Parts {
        devices: &devices,
        chosen: &chosen_alias,
        ..Parts::default()
    }));
    assert_eq!(c.uart.unwrap().regs, (0xfe20_1000, 0x200));

    // A bus without ranges cannot be translated.
    let no_ranges = |w: &mut FdtWriter| {
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.begin_node("intc@1000");
        w.prop_strs("compatible", &["arm,gic-400"]);
        w.prop_reg("reg", 1, 1, &[(0x1000, 0x1000), (0x2000, 0x2000)]);
        w.end_node();
        w.end_node();
    };
    assert_eq!(
        err(&with_devices(&no_ranges)),
        "dtb: soc: bus address 0x1000 is outside the bus's ranges"
    );
    // An address outside the ranges.
    let outside = |w: &mut FdtWriter| {
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.prop_cells("ranges", &[0x7e00_0000, 0, 0xfe00_0000, 0x180_0000]);
        w.begin_node("serial@1000");
        w.prop_strs("compatible", &["arm,pl011"]);
        w.prop_reg("reg", 1, 1, &[(0x1000, 0x1000)]);
        w.end_node();
        w.end_node();
    };
    assert_eq!(
        err(&with_devices(&outside)),
        "dtb: soc: bus address 0x1000 is outside the bus's ranges"
    );
}

#[test]
fn cubietruck_like_uart_and_gic() {
    let devices = |w: &mut FdtWriter| {
        w.begin_node("soc");
        w.prop_u32("#address-cells", 1);
        w.prop_u32("#size-cells", 1);
        w.prop_empty("ranges");
        w.begin_node("serial@1c28000");
        w.prop_strs("compatible", &["snps,dw-apb-uart"]);
        w.prop_reg("reg", 1, 1, &[(0x01c2_8000, 0x400)]);
        w.prop_u32("reg-shift", 2);
        w.prop_u32("reg-io-width", 4);
        w.prop_cells("interrupts", &[0, 1, 4]);
        w.end_node();
        w.begin_node("interrupt-controller@1c81000");
        w.prop_strs("compatible", &["arm,gic-400", "arm,cortex-a7-gic"]);
        w.prop_reg(
            "reg",
            1,
            1,
            &[
                (0x01c8_1000, 0x1000),
                (0x01c8_2000, 0x2000),
                (0x01c8_4000, 0x2000),
                (0x01c8_6000, 0x2000),
            ],
        );
        w.prop_cells("interrupts", &[1, 9, 0xf04]);
        w.end_node();
        w.end_node();
        w.begin_node("timer");
        w.prop_strs("compatible", &["arm,armv7-timer"]);
        w.prop_cells(
            "interrupts",
            &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
        );
        w.end_node();
        w.begin_node("psci");
        w.prop_strs("compatible", &["arm,psci-0.2"]);
        w.prop_str("method", "hvc");
        w.end_node();
    };
    let chosen = |w: &mut FdtWriter| {
        chosen_cells(w);
        w.prop_str("stdout-path", "/soc/serial@1c28000");
        kernel(w, 0x5000_0000, MIB, &|_| {});
    };
    let c = ok(&build(&Parts {
        devices: &devices,
        chosen: &chosen,
        ..Parts::default()
    }));
    let u = c.uart.unwrap();
    assert_eq!(
        u.kind,
        UartKind::Ns16550 {
            reg_shift: 2,
            io_width: 4
        }
    );
    assert_eq!(u.regs, (0x01c2_8000, 0x400));
    assert_eq!(c.gic.unwrap().gicv, Some((0x01c8_6000, 0x2000)));
    assert_eq!(c.timer.unwrap().hyp.intid(), 26);
    assert_eq!(
        c.psci,
        Some(PsciInfo {
            method: Conduit::Hvc,
            v0_2: true
        })
    );
}

#[test]
fn gic_v3() {
    let devices = |w: &mut FdtWriter| {
        w.begin_node("intc@8000000");
        w.prop_strs("compatible", &["arm,gic-v3"]);
        w.prop_reg(
            "reg",
            2,
            2,
            &[(0x0800_0000, 0x1_0000), (0x080a_0000, 0xf6_0000)],
        );
        w.prop_cells("interrupts", &[1, 9, 4]);
        w.end_node();
    };
    let g = ok(&with_devices(&devices)).gic.unwrap();
    assert_eq!(
        (g.version, g.gicd, g.gicr, g.gicc, g.gich),
        (
            3,
            (0x0800_0000, 0x1_0000),
            Some((0x080a_0000, 0xf6_0000)),
            None,
            None
        )
    );
}

#[test]
fn device_errors() {
    let cases: &[Case] = &[
        (
            &|w| {
                w.begin_node("psci");
                w.prop_strs("compatible", &["arm,psci-1.0"]);
                w.prop_str("method", "svc");
                w.end_node();
            },
            "dtb: psci: method = \"svc\": unknown PSCI method (allowed: smc, hvc)",
        ),
        (
            &|w| {
                w.begin_node("psci");
                w.prop_strs("compatible", &["arm,psci"]);
                w.end_node();
            },
            "dtb: psci: missing method",
        ),
        (
            &|w| {
                w.begin_node("timer");
                w.prop_strs("compatible", &["arm,armv8-timer"]);
                w.prop_cells("interrupts", &[1, 13, 4, 1, 14, 4]);
                w.end_node();
            },
            "dtb: timer: interrupts is 24 bytes, expected a multiple of 48",
        ),
        (
            &|w| {
                w.begin_node("timer");
                w.prop_strs("compatible", &["arm,armv8-timer"]);
                w.prop_cells("interrupts", &[1, 13, 4, 1]);
                w.end_node();
            },
            "dtb: timer: interrupts is 16 bytes, expected a multiple of 12",
        ),
        (
            &|w| {
                w.begin_node("timer");
                w.prop_strs("compatible", &["arm,armv8-timer"]);
                w.prop_cells("interrupts", &[2, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
                w.end_node();
            },
            "dtb: timer: interrupts = 2: unknown interrupt type (allowed: 0 (SPI), 1 (PPI))",
        ),
        (
            &|w| {
                w.begin_node("intc@8000000");
                w.prop_strs("compatible", &["arm,gic-400"]);
                w.prop_reg("reg", 2, 2, &[(0x0800_0000, 0x1000)]);
                w.end_node();
            },
            "dtb: intc@8000000: missing reg entry for GICC",
        ),
        (
            &|w| {
                w.begin_node("intc@8000000");
                w.prop_strs("compatible", &["arm,gic-400"]);
                w.end_node();
            },
            "dtb: intc@8000000: missing reg",
        ),
        (
            &|w| {
                w.begin_node("serial@0");
                w.prop_strs("compatible", &["ns16550a"]);
                w.prop_reg("reg", 2, 2, &[(0x1000, 0x100)]);
                w.prop_u32("reg-shift", 7);
                w.end_node();
            },
            "dtb: serial@0: reg-shift = 7: unsupported (allowed: 0 to 3)",
        ),
        (
            &|w| {
                w.begin_node("serial@0");
                w.prop_strs("compatible", &["ns16550a"]);
                w.prop_reg("reg", 2, 2, &[(0x1000, 0x100)]);
                w.prop_u32("reg-io-width", 3);
                w.end_node();
            },
            "dtb: serial@0: reg-io-width = 3: unsupported (allowed: 1, 2, 4)",
        ),
    ];
    for (devices, want) in cases {
        assert_eq!(err(&with_devices(*devices)), *want);
    }
    // Disabled devices are skipped entirely, even when malformed.
    let disabled = |w: &mut FdtWriter| {
        w.begin_node("psci");
        w.prop_strs("compatible", &["arm,psci"]);
        w.prop_str("status", "disabled");
        w.end_node();
        w.begin_node("serial@0");
        w.prop_strs("compatible", &["ns16550a"]);
        w.prop_reg("reg", 2, 2, &[(0x1000, 0x100)]);
        w.end_node();
    };
    let c = ok(&with_devices(&disabled));
    assert_eq!(c.psci, None);
    assert_eq!(
        c.uart.unwrap().kind,
        UartKind::Ns16550 {
            reg_shift: 0,
            io_width: 1
        }
    );
}

#[test]
fn dtb_errors_pass_through() {
    let mut dtb = default_dtb();
    dtb[0] = 0;
    assert_eq!(
        err(&dtb),
        "dtb: bad magic 0x000dfeed (expected 0xd00dfeed): not a device tree"
    );
    // A buffer longer than totalsize is fine.
    let mut dtb = default_dtb();
    dtb.extend_from_slice(&[0xff; 100]);
    ok(&dtb);
}

#[test]
fn exit_method_is_read_even_from_a_bad_line() {
    let dtb = one_guest("exit=semihosting sched=bogus", &|_| {});
    assert!(parse(&dtb).is_err());
    assert_eq!(exit_method(&dtb), ExitMethod::Semihosting);
    assert_eq!(
        exit_method(&one_guest("sched=rr", &|_| {})),
        ExitMethod::Psci
    );
    assert_eq!(exit_method(b"not a dtb"), ExitMethod::Psci);
    assert_eq!(
        ok(&one_guest("exit=semihosting", &|_| {})).exit,
        ExitMethod::Semihosting
    );
}

#[test]
fn contradictory_guest_options() {
    let none = |_: &mut FdtWriter| {};
    assert_eq!(
        err(&one_guest("guest0.sw=no guest0.populate=demand", &none)),
        "guest0: sw=no with populate=demand: untrapped set/way needs eager memory (allowed: populate=eager, or sw=yes/auto)"
    );
    assert_eq!(
        err(&one_guest("guest0.populate=eager guest0.pool=8M", &none)),
        "guest0: pool= with eager memory: a pool is for populate=demand (eager memory is all of mem)"
    );
    // sw=no means eager memory unless told otherwise: a pool contradicts it too.
    assert!(err(&one_guest("guest0.sw=no guest0.pool=8M", &none)).starts_with("guest0: pool= with eager memory"));
    // The test tree has 1 GiB of RAM.
    assert_eq!(err(&one_guest("guest0.mem=4G", &none)), "guest0.mem = 4096 MiB does not fit in host RAM (1024 MiB in all)");
    assert_eq!(err(&one_guest("guest0.mem=4G guest0.pool=2G", &none)), "guest0.pool = 2048 MiB does not fit in host RAM (1024 MiB in all)");
    // A pre-ballooned PoD guest larger than RAM is fine: only its pool must fit.
    let c = ok(&one_guest("guest0.mem=4G guest0.pool=256M", &none));
    assert_eq!(c.guests[0].pool_bytes, Some(256 * MIB));
    assert_eq!(ok(&one_guest("pmu=passthrough", &none)).pmu, PmuMode::Passthrough);
    assert_eq!(ok(&one_guest("", &none)).pmu, PmuMode::Hidden);
}

/// `fault=` reaches the config only in a TEST-ONLY `faults` build; the
/// default config has none.
#[test]
fn faults_in_the_config() {
    assert!(ok(&default_dtb()).faults.is_empty());
    let dtb = one_guest("fault=sw-unpinned,no-pod-clean", &|_| {});
    if cfg!(feature = "faults") {
        let f = ok(&dtb).faults;
        assert!(f.contains(Faults::SW_UNPINNED) && f.contains(Faults::NO_POD_CLEAN));
        assert!(!f.contains(Faults::CLEAN_SKIPS_WALK));
    } else {
        assert!(err(&dtb).starts_with("bootargs: fault=sw-unpinned,no-pod-clean: unknown key"));
    }
}

/// The Raspberry Pi 4 firmware's shape: root cells 2/1, `/soc` at 1/1
/// translated by `ranges`, the console named by `stdout-path` through an
/// alias whose unit address is the bus address (7e…, not fe…).
#[test]
fn rpi4_console_through_an_alias() {
    let memory_ = |w: &mut FdtWriter| {
        w.begin_node("memory@0");
        w.prop_str("device_type", "memory");
        w.prop_reg("reg", 2, 1, &[(0, 0x3b40_0000), (0x4000_0000, 0xbc00_0000)]);
        w.end_node();
    };
    let devices_ = |w: &mut FdtWriter| {
        w.begin_node("aliases");
        w.prop_str("serial0", "/soc/serial@7e201000");
        w.prop_str("serial1", "/soc/serial@7e215040");
        w.end_node();
        rpi4_soc(w);
        timer(w);
    };
    let chosen = |w: &mut FdtWriter| {
        w.prop_str("stdout-path", "serial1:115200n8");
    };
    let dtb = build(&Parts {
        root_cells: (2, 1),
        compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
        memory: &memory_,
        devices: &devices_,
        chosen: &chosen,
        ..Parts::default()
    });
    let c = ok(&dtb);
    let u = c.uart.unwrap();
    assert_eq!(u.kind, UartKind::Bcm2835Aux);
    assert_eq!(u.regs, (0xfe21_5040, 0x40));
    assert_eq!(u.irq.unwrap().intid(), 125);
    assert_eq!(console(&dtb), Some(u));
    let board = c.board.unwrap();
    assert_eq!(board.name, "rpi4");
    assert_eq!(board.uart_clock(u.regs.0), Some(500_000_000));
    assert_eq!(c.ram.as_slice(), &[(0, 0x3b40_0000), (0x4000_0000, 0xbc00_0000)]);

    // serial0: the PL011 at its CPU address.
    let chosen0 = |w: &mut FdtWriter| w.prop_str("stdout-path", "serial0:115200n8");
    let dtb = build(&Parts {
        root_cells: (2, 1),
        memory: &memory_,
        devices: &devices_,
        chosen: &chosen0,
        ..Parts::default()
    });
    let u = console(&dtb).unwrap();
    assert_eq!((u.kind, u.regs), (UartKind::Pl011, (0xfe20_1000, 0x200)));
    assert_eq!(ok(&dtb).uart, Some(u));
}

/// PSCI is found even when the configuration is invalid, so that a stopped
/// boot still powers off through it; a tree without it has none.
#[test]
fn psci_found_before_the_rest() {
    assert!(has_psci(&build(&Parts::default())));
    let bad_line = one_guest("sched=fastest", &|_| {});
    assert!(parse(&bad_line).is_err());
    assert!(has_psci(&bad_line));
    let no_psci = |w: &mut FdtWriter| {
        gic(w);
        pl011(w);
        timer(w);
    };
    assert!(!has_psci(&build(&Parts { devices: &no_psci, ..Parts::default() })));
    let disabled = |w: &mut FdtWriter| {
        w.begin_node("psci");
        w.prop_strs("compatible", &["arm,psci-1.0"]);
        w.prop_str("method", "smc");
        w.prop_str("status", "disabled");
        w.end_node();
        gic(w);
        pl011(w);
        timer(w);
    };
    assert!(!has_psci(&build(&Parts { devices: &disabled, ..Parts::default() })));
    assert!(!has_psci(b"not a dtb"));
}

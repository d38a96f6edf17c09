//! The hardware domain's tree: real QEMU `virt` and a bcm2711-like board,
//! edited by `guest_dtb::hwdom_dtb` and read back with bootcfg's strict
//! reader (independent of `dtoolkit`, which writes it).

mod common;

use bootcfg::fdt::{Fdt, Node};
use common::{assert_chosen, cells, strs};
use guest_dtb::{hwdom_dtb, HwdomError, HwdomSpec, Passthrough};
use proptest::prelude::*;

const VIRT: &[u8] = include_bytes!("data/qemu-virt.dtb");
const BCM: &[u8] = include_bytes!("data/bcm2711-mini.dtb");

const VIRT_RAM: &[(u64, u64)] = &[(0x4000_0000, 0x2000_0000)];
/// GICH, GICV and the hypervisor's own PL011.
const VIRT_KEEP: &[(u64, u64)] = &[
    (0x0803_0000, 0x1_0000),
    (0x0804_0000, 0x1_0000),
    (0x0900_0000, 0x1000),
];

fn virt_spec() -> HwdomSpec<'static> {
    HwdomSpec {
        ram: VIRT_RAM,
        vcpus: 2,
        bootargs: "console=ttyAMA0 rdinit=/init",
        initrd: Some((0x4800_0000, 0x4810_0000)),
        keep: VIRT_KEEP,
        console: (0x0900_0000, 1),
        passthrough: None,
    }
}

const BCM_RAM: &[(u64, u64)] = &[(0x0, 0x3b40_0000)];
/// GICH, GICV (0xff84_4000, 0xff84_6000) and the mini-UART.
const BCM_KEEP: &[(u64, u64)] = &[
    (0xff84_4000, 0x2000),
    (0xff84_6000, 0x2000),
    (0xfe21_5040, 0x40),
];

fn bcm_spec() -> HwdomSpec<'static> {
    HwdomSpec {
        ram: BCM_RAM,
        vcpus: 2,
        bootargs: "console=ttyAMA0",
        initrd: None,
        keep: BCM_KEEP,
        console: (0xfe20_1000, 121),
        passthrough: None,
    }
}

fn edit(board: &[u8], spec: &HwdomSpec) -> (Vec<u8>, Passthrough) {
    hwdom_dtb(board, spec).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn err(board: &[u8], spec: &HwdomSpec) -> HwdomError {
    match hwdom_dtb(board, spec) {
        Ok((_, p)) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

fn fdt(dtb: &[u8]) -> Fdt<'_> {
    Fdt::new(dtb).unwrap_or_else(|e| panic!("output does not read back: {e}"))
}

/// The node at `path`, every name matched exactly.
fn node<'a>(f: &Fdt<'a>, path: &str) -> Option<Node<'a>> {
    let mut n = f.root();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        n = n.children().find(|c| c.name() == part)?;
    }
    Some(n)
}

fn must<'a>(f: &Fdt<'a>, path: &str) -> Node<'a> {
    node(f, path).unwrap_or_else(|| panic!("no {path} in the output"))
}



fn disabled(f: &Fdt, path: &str) -> bool {
    must(f, path).str("status") == Some("disabled")
}

fn status(f: &Fdt, path: &str) -> Option<String> {
    must(f, path).str("status").map(str::to_owned)
}

fn virtio_paths() -> Vec<String> {
    (0..32)
        .map(|i| format!("/virtio_mmio@{:x}", 0xa00_0000 + 0x200 * i))
        .collect()
}

// ------------------------------------------------------------ QEMU virt

#[test]
fn virt_passthrough_lists() {
    let (_, p) = edit(VIRT, &virt_spec());
    assert_eq!(
        p.regions,
        vec![
            (0x0, 0x800_0000),    // flash@0, both banks merged
            (0x901_0000, 0x1000), // pl031
            (0x902_0000, 0x1000), // fw-cfg (0x18 bytes: one page)
            (0x903_0000, 0x1000), // pl061
            (0xa00_0000, 0x4000), // 32 virtio_mmio, 0x200 each, merged
        ]
    );
    let mut spis = vec![34, 39];
    spis.extend(48..=79);
    assert_eq!(p.spis, spis);
    // virtio-mmio says edge (flags 1); the PL031 and PL061 say level (4).
    assert_eq!(p.edge, (48..=79).collect::<Vec<u32>>());
    let mut nodes = vec![
        "/fw-cfg@9020000".to_owned(),
        "/pl061@9030000".to_owned(),
        "/pl031@9010000".to_owned(),
        "/flash@0".to_owned(),
    ];
    nodes.extend(virtio_paths());
    let mut got = p.nodes.clone();
    got.sort();
    nodes.sort();
    assert_eq!(got, nodes);
    assert!(!p
        .nodes
        .iter()
        .any(|n| n.contains("pl011") || n.contains("pcie")));
}

#[test]
fn virt_devices_enabled_or_disabled() {
    let (dtb, _) = edit(VIRT, &virt_spec());
    let f = fdt(&dtb);
    for v in virtio_paths() {
        assert_eq!(status(&f, &v), None, "{v} is passed and left as it was");
    }
    assert_eq!(status(&f, "/flash@0"), None);
    assert!(disabled(&f, "/pcie@10000000"), "PCI host bridge");
    // Linux probes a GICv2m frame whatever its status: it must be gone.
    assert!(node(&f, "/intc@8000000").is_some());
    assert!(node(&f, "/intc@8000000/v2m@8020000").is_none(), "GICv2m frame");
    assert!(disabled(&f, "/pmu"), "PMU");
    // Untouched: no reg.
    assert_eq!(status(&f, "/timer"), None);
    assert_eq!(status(&f, "/platform-bus@c000000"), None);
    // The memory reservation block survives (empty here).
    assert_eq!(f.reservations().count(), 0);
}

#[test]
fn virt_console_is_the_board_pl011() {
    let (dtb, p) = edit(VIRT, &virt_spec());
    let f = fdt(&dtb);
    let uart = must(&f, "/pl011@9000000");
    assert_eq!(uart.str("status"), Some("okay"));
    assert_eq!(cells(&uart, "interrupts"), [0, 1, 4]);
    assert_eq!(cells(&uart, "interrupt-parent"), [0x8003]);
    assert_eq!(
        must(&f, "/chosen").str("stdout-path"),
        Some("/pl011@9000000")
    );
    assert!(!p.nodes.contains(&"/pl011@9000000".to_owned()));
}

#[test]
fn virt_memory_chosen_cpus_psci_gic() {
    let spec = HwdomSpec {
        ram: &[(0x4000_0000, 0x1000_0000), (0x6000_0000, 0x800_0000)],
        ..virt_spec()
    };
    let (dtb, _) = edit(VIRT, &spec);
    let f = fdt(&dtb);

    // Memory: the board's node gone, one node with both ranges.
    assert!(node(&f, "/memory@40000000").is_some());
    let mems: Vec<_> = f
        .root()
        .children()
        .filter(|c| c.str("device_type") == Some("memory"))
        .collect();
    assert_eq!(mems.len(), 1);
    assert_eq!(
        cells(&mems[0], "reg"),
        [
            0,
            0x4000_0000,
            0,
            0x1000_0000,
            0,
            0x6000_0000,
            0,
            0x800_0000
        ]
    );

    // /chosen.
    let chosen = must(&f, "/chosen");
    assert_chosen(&chosen, "console=ttyAMA0 rdinit=/init", (0x4800_0000, 0x4810_0000));
    assert!(chosen.prop("kaslr-seed").is_some() && chosen.prop("rng-seed").is_some());

    // CPUs: both kept, cpu-map gone.
    let cpus = must(&f, "/cpus");
    assert!(node(&f, "/cpus/cpu-map").is_none());
    for (i, phandle) in [(0u32, 0x8002u32), (1, 0x8001)] {
        let cpu = must(&f, &format!("/cpus/cpu@{i}"));
        assert_eq!(cells(&cpu, "reg"), [i]);
        assert_eq!(cpu.str("enable-method"), Some("psci"));
        assert_eq!(cells(&cpu, "phandle"), [phandle]);
        assert_eq!(cpu.str("compatible"), Some("arm,cortex-a72"));
    }
    assert_eq!(cpus.children().count(), 2);

    // PSCI over HVC, nothing else of the board's (function ids, smc).
    let psci = must(&f, "/psci");
    assert_eq!(strs(&psci, "compatible"), ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(psci.str("method"), Some("hvc"));
    assert!(psci.prop("cpu_on").is_none());

    // GIC: two reg entries, no maintenance interrupt, phandle kept.
    let gic = must(&f, "/intc@8000000");
    assert_eq!(
        cells(&gic, "reg"),
        [0, 0x800_0000, 0, 0x1_0000, 0, 0x801_0000, 0, 0x1_0000]
    );
    assert!(gic.prop("interrupts").is_none());
    assert_eq!(cells(&gic, "phandle"), [0x8003]);
}

#[test]
fn virt_one_vcpu_drops_the_other_cpu() {
    let spec = HwdomSpec {
        vcpus: 1,
        initrd: None,
        ..virt_spec()
    };
    let (dtb, _) = edit(VIRT, &spec);
    let f = fdt(&dtb);
    assert!(node(&f, "/cpus/cpu@0").is_some());
    assert!(node(&f, "/cpus/cpu@1").is_none());
    let chosen = must(&f, "/chosen");
    assert!(chosen.prop("linux,initrd-start").is_none());
    assert!(chosen.prop("linux,initrd-end").is_none());
}

#[test]
fn virt_listed_passthrough_only() {
    let list = ["/fw-cfg@9020000", "/virtio_mmio@a000200"];
    let spec = HwdomSpec {
        passthrough: Some(&list),
        ..virt_spec()
    };
    let (dtb, p) = edit(VIRT, &spec);
    assert_eq!(p.nodes, list);
    assert_eq!(p.regions, [(0x902_0000, 0x1000), (0xa00_0000, 0x1000)]);
    assert_eq!(p.spis, [49]);
    let f = fdt(&dtb);
    assert_eq!(status(&f, "/fw-cfg@9020000"), None);
    assert!(disabled(&f, "/virtio_mmio@a000000"));
    assert!(disabled(&f, "/flash@0"));
    assert_eq!(status(&f, "/pl011@9000000").as_deref(), Some("okay"));
}

#[test]
fn added_console_when_no_node_is_there() {
    let spec = HwdomSpec {
        console: (0x0910_0000, 5),
        ..virt_spec()
    };
    let (dtb, p) = edit(VIRT, &spec);
    let f = fdt(&dtb);
    let uart = must(&f, "/pl011@9100000");
    assert_eq!(strs(&uart, "compatible"), ["arm,pl011", "arm,primecell"]);
    assert_eq!(cells(&uart, "reg"), [0, 0x910_0000, 0, 0x1000]);
    assert_eq!(cells(&uart, "interrupts"), [0, 5, 4]);
    assert_eq!(cells(&uart, "interrupt-parent"), [0x8003]);
    assert_eq!(strs(&uart, "clock-names"), ["uartclk", "apb_pclk"]);
    let clk = cells(&uart, "clocks");
    assert_eq!(clk[0], clk[1]);
    let clock = f
        .root()
        .children()
        .find(|c| c.u32("phandle") == Some(clk[0]))
        .expect("the console's clock node");
    assert_eq!(clock.u32("clock-frequency"), Some(24_000_000));
    assert!(clock.is_compatible("fixed-clock"));
    assert_eq!(
        must(&f, "/chosen").str("stdout-path"),
        Some("/pl011@9100000")
    );
    // The board's PL011 is the hypervisor's (kept): disabled, not passed.
    assert!(disabled(&f, "/pl011@9000000"));
    assert!(!p.nodes.iter().any(|n| n.contains("pl011")));
}

// ------------------------------------------------------------ bcm2711

#[test]
fn bcm_passthrough_lists() {
    let (_, p) = edit(BCM, &bcm_spec());
    assert!(p.nodes.contains(&"/emmc2bus/mmc@7e340000".to_owned()));
    assert!(
        p.regions.contains(&(0xfe34_0000, 0x1000)),
        "{:x?}",
        p.regions
    );
    assert!(p.spis.contains(&158), "emmc2's SPI 126");
    assert!(!p.edge.contains(&158), "emmc2's SPI is level");
    // The mini-UART's page is kept: aux, the mini-UART and spi1 are not passed.
    for n in [
        "/soc/aux@7e215000",
        "/soc/serial@7e215040",
        "/soc/spi@7e215080",
    ] {
        assert!(!p.nodes.contains(&n.to_owned()), "{n}");
    }
    assert!(!p
        .regions
        .iter()
        .any(|&(b, s)| b <= 0xfe21_5000 && 0xfe21_5000 < b + s));
    assert_eq!(
        p.regions,
        [
            (0xfd58_0000, 0x1_0000), // genet
            (0xfe20_0000, 0x1000),   // gpio, gpio-user
            (0xfe34_0000, 0x1000),   // emmc2
            (0xfe80_4000, 0x1000),   // i2c1
            (0xff80_0000, 0x1000),   // local-intc
        ]
    );
    // gpio 113/114, gpio-user's GIC specifier 99 (not its gpio/l1 ones),
    // i2c 117, emmc2 126, genet 157/158.
    assert_eq!(p.spis, [131, 145, 146, 149, 158, 189, 190]);
}

#[test]
fn bcm_devices_enabled_or_disabled() {
    let (dtb, _) = edit(BCM, &bcm_spec());
    let f = fdt(&dtb);
    assert_eq!(status(&f, "/emmc2bus/mmc@7e340000"), None);
    assert!(disabled(&f, "/soc/spi@7e215080"));
    assert!(disabled(&f, "/soc/serial@7e215040"));
    assert!(disabled(&f, "/soc/aux@7e215000"));
    assert!(disabled(&f, "/soc/mmc@7e300000"), "was disabled: stays");
    assert!(disabled(&f, "/scb/pcie@7d500000"));
    assert!(disabled(&f, "/nobus/orphan@1000"), "no ranges on its bus");
    assert!(disabled(&f, "/arm-pmu"));
    // Not MMIO of their own: left as they are.
    assert_eq!(status(&f, "/soc/i2c@7e804000/eeprom@50"), None);
    assert_eq!(status(&f, "/scb/ethernet@7d580000/mdio@e14"), None);
    assert_eq!(
        status(&f, "/scb/ethernet@7d580000/mdio@e14/ethernet-phy@1"),
        None
    );
    assert_eq!(status(&f, "/clocks/clk-osc@3"), None);
    // The console.
    let uart = must(&f, "/soc/serial@7e201000");
    assert_eq!(uart.str("status"), Some("okay"));
    assert_eq!(cells(&uart, "interrupts"), [0, 121, 4]);
    assert_eq!(
        must(&f, "/chosen").str("stdout-path"),
        Some("/soc/serial@7e201000")
    );
    // The memory reservation block is kept.
    assert_eq!(f.reservations().collect::<Vec<_>>(), [(0, 0x1000)]);
}

#[test]
fn bcm_cpus_chosen_gic_memory() {
    let (dtb, _) = edit(BCM, &bcm_spec());
    let f = fdt(&dtb);
    let cpus = must(&f, "/cpus");
    assert!(
        cpus.prop("enable-method").is_none(),
        "32-bit SMP ops of /cpus"
    );
    for i in 0..2u32 {
        let cpu = must(&f, &format!("/cpus/cpu@{i}"));
        assert_eq!(cells(&cpu, "reg"), [i]);
        assert_eq!(cpu.str("enable-method"), Some("psci"));
        assert!(cpu.prop("cpu-release-addr").is_none());
        assert!(cpu.prop("phandle").is_some());
    }
    assert!(node(&f, "/cpus/cpu@2").is_none() && node(&f, "/cpus/cpu@3").is_none());
    assert!(node(&f, "/cpus/l2-cache0").is_some());

    let chosen = must(&f, "/chosen");
    assert_eq!(chosen.children().count(), 0, "module nodes dropped");
    assert!(chosen
        .props()
        .all(|p| !p.name.starts_with("hyp,") && !p.name.starts_with("xen,")));
    assert_eq!(chosen.str("bootargs"), Some("console=ttyAMA0"));
    assert!(chosen.prop("kaslr-seed").is_some());

    let gic = must(&f, "/soc/interrupt-controller@40041000");
    assert_eq!(
        cells(&gic, "reg"),
        [0x4004_1000, 0x1000, 0x4004_2000, 0x2000]
    );
    assert!(gic.prop("interrupts").is_none());

    assert!(node(&f, "/memory@0").is_some());
    let mems = f
        .root()
        .children()
        .filter(|c| c.str("device_type") == Some("memory"))
        .count();
    assert_eq!(mems, 1);
    // 2 address cells, 1 size cell at the root.
    assert_eq!(cells(&must(&f, "/memory@0"), "reg"), [0, 0, 0x3b40_0000]);
    let psci = must(&f, "/psci");
    assert_eq!(psci.str("method"), Some("hvc"));
}

// ------------------------------------------------------------ errors

fn with_list<'a>(base: HwdomSpec<'a>, list: &'a [&'a str]) -> HwdomSpec<'a> {
    HwdomSpec {
        passthrough: Some(list),
        ..base
    }
}

#[test]
fn passthrough_errors() {
    let v = virt_spec();
    let twice = ["/fw-cfg@9020000", "/fw-cfg@9020000"];
    assert_eq!(
        err(VIRT, &with_list(v, &twice)),
        HwdomError::ClaimedTwice("/fw-cfg@9020000".into())
    );
    assert_eq!(
        err(VIRT, &with_list(v, &["/pl011@9000000"])).to_string(),
        "hwdom device /pl011@9000000 is claimed by the hypervisor (its console)"
    );
    assert_eq!(
        err(VIRT, &with_list(v, &["/foo"])).to_string(),
        "hwdom passthrough: no node /foo"
    );
    assert_eq!(
        err(VIRT, &with_list(v, &["/cpus"])),
        HwdomError::NotDevice("/cpus".into())
    );
    assert_eq!(
        err(VIRT, &with_list(v, &["/intc@8000000/v2m@8020000"])),
        HwdomError::NotDevice("/intc@8000000/v2m@8020000".into())
    );
    assert_eq!(
        err(VIRT, &with_list(v, &["/pcie@10000000"])),
        HwdomError::PciHost("/pcie@10000000".into())
    );
    let ram = [(0x4000_0000, 0x2000_0000), (0x400_0000, 0x100_0000)];
    let in_ram = HwdomSpec { ram: &ram, ..v };
    assert_eq!(
        err(VIRT, &with_list(in_ram, &["/flash@0"])),
        HwdomError::InRam("/flash@0".into())
    );
    let b = bcm_spec();
    assert_eq!(
        err(BCM, &with_list(b, &["/soc/spi@7e215080"])),
        HwdomError::Kept {
            path: "/soc/spi@7e215080".into(),
            base: 0xfe21_5040,
            size: 0x40
        }
    );
    assert_eq!(
        err(BCM, &with_list(b, &["/nobus/orphan@1000"])),
        HwdomError::NotTranslatable("/nobus/orphan@1000".into())
    );
    assert_eq!(
        err(BCM, &with_list(b, &["/soc/i2c@7e804000/eeprom@50"])),
        HwdomError::NotDevice("/soc/i2c@7e804000/eeprom@50".into())
    );
}

#[test]
fn board_and_spec_errors() {
    let v = virt_spec();
    assert_eq!(
        err(VIRT, &HwdomSpec { vcpus: 3, ..v }),
        HwdomError::TooFewCpus { have: 2, want: 3 }
    );
    assert!(matches!(
        err(VIRT, &HwdomSpec { vcpus: 0, ..v }),
        HwdomError::Spec(_)
    ));
    assert!(matches!(
        err(
            VIRT,
            &HwdomSpec {
                initrd: Some((0x1000, 0x2000)),
                ..v
            }
        ),
        HwdomError::Spec(_)
    ));
    assert!(matches!(
        err(VIRT, &HwdomSpec { ram: &[], ..v }),
        HwdomError::Spec(_)
    ));
    assert!(matches!(
        err(
            VIRT,
            &HwdomSpec {
                bootargs: "a\0b",
                ..v
            }
        ),
        HwdomError::Spec(_)
    ));
    let e = err(b"not a device tree at all", &v);
    assert!(e.to_string().starts_with("board DTB malformed: "), "{e}");

    // A board without a GIC: the same tree with the GIC's compatible renamed.
    let mut no_gic = VIRT.to_vec();
    let at = no_gic
        .windows(18)
        .position(|w| w == b"arm,cortex-a15-gic")
        .unwrap();
    no_gic[at..at + 3].copy_from_slice(b"xxx");
    assert_eq!(err(&no_gic, &v).to_string(), "board DTB has no GICv2 node");
}

#[test]
fn errors_display_one_line() {
    let all = [
        HwdomError::Malformed("x".into()),
        HwdomError::NoGic,
        HwdomError::TooFewCpus { have: 1, want: 2 },
        HwdomError::Spec("x".into()),
        HwdomError::NoSuchNode("/a".into()),
        HwdomError::NotDevice("/a".into()),
        HwdomError::ClaimedTwice("/a".into()),
        HwdomError::Console("/a".into()),
        HwdomError::NotTranslatable("/a".into()),
        HwdomError::PciHost("/a".into()),
        HwdomError::Kept {
            path: "/a".into(),
            base: 1,
            size: 2,
        },
        HwdomError::InRam("/a".into()),
    ];
    for e in all {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
    }
}

// ------------------------------------------------------------ robustness

/// Every output must read back, and the regions keep their invariants.
fn check_output(board: &[u8], spec: &HwdomSpec) {
    if let Ok((dtb, p)) = hwdom_dtb(board, spec) {
        fdt(&dtb);
        for w in p.regions.windows(2) {
            assert!(w[0].0 + w[0].1 < w[1].0, "sorted, merged: {:x?}", p.regions);
        }
        for &(b, s) in &p.regions {
            assert!(b % 0x1000 == 0 && s % 0x1000 == 0 && s != 0);
            for &(kb, ks) in spec.keep.iter().chain(spec.ram) {
                assert!(
                    b + s <= kb || kb + ks <= b,
                    "{b:#x}+{s:#x} overlaps {kb:#x}+{ks:#x}"
                );
            }
        }
        assert!(p.spis.windows(2).all(|w| w[0] < w[1]) && p.spis.iter().all(|&s| s >= 32));
    }
}

#[test]
fn truncated_and_corrupted_boards_do_not_panic() {
    for (board, spec) in [(VIRT, virt_spec()), (BCM, bcm_spec())] {
        for len in 0..board.len() {
            check_output(&board[..len], &spec);
        }
        for at in 0..board.len() {
            for v in [0x00, 0xff, 0x01, 0x03] {
                let mut b = board.to_vec();
                b[at] = v;
                check_output(&b, &spec);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_corruption_does_not_panic(
        which in 0usize..2,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        vcpus in 0u32..10,
        listed in proptest::option::of(proptest::collection::vec(0usize..40, 0..4)),
    ) {
        let (board, base) = if which == 0 { (VIRT, virt_spec()) } else { (BCM, bcm_spec()) };
        let mut b = board.to_vec();
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        let paths = virtio_paths();
        let list: Option<Vec<&str>> =
            listed.map(|l| l.iter().map(|&i| paths.get(i).map_or("/flash@0", |s| s.as_str())).collect());
        let spec = HwdomSpec { vcpus, passthrough: list.as_deref(), ..base };
        check_output(&b, &spec);
    }
}

#[test]
fn console_page_counts_as_kept() {
    // The hypervisor's console elsewhere; the hwdom's emulated PL011 in the
    // PL061's page (not at its base): the PL061 must not be mapped.
    let spec = HwdomSpec {
        keep: &VIRT_KEEP[..2],
        console: (0x0903_0800, 6),
        ..virt_spec()
    };
    let (dtb, p) = edit(VIRT, &spec);
    let f = fdt(&dtb);
    assert!(disabled(&f, "/pl061@9030000"));
    assert!(!p.nodes.contains(&"/pl061@9030000".to_owned()));
    assert!(
        p.nodes.contains(&"/pl011@9000000".to_owned()),
        "not kept now"
    );
    assert!(node(&f, "/pl011@9030800").is_some());
}

#[test]
fn only_gic_spis_in_range() {
    use dtoolkit::fdt::Fdt as DFdt;
    use dtoolkit::model::DeviceTree;
    let mut tree = DeviceTree::from_fdt(&DFdt::new(VIRT).unwrap());
    let n = tree.find_node_mut("/pl031@9010000").unwrap();
    // SPI 988 would be INTID 1020: not a GICv2 SPI. A PPI is ignored too.
    let cells: Vec<u8> = [0u32, 988, 4, 1, 9, 4, 0, 987, 4]
        .iter()
        .flat_map(|c| c.to_be_bytes())
        .collect();
    n.property_mut("interrupts").unwrap().set_value(cells);
    let board = tree.to_dtb();
    let list = ["/pl031@9010000"];
    let (_, p) = edit(&board, &with_list(virt_spec(), &list));
    assert_eq!(p.spis, [1019]);
}

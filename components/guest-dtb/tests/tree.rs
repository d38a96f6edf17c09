//! The generated tree, read back with bootcfg's strict reader and, when it
//! is installed, decompiled by `dtc`.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

mod common;

use bootcfg::fdt::Fdt;
use common::{assert_chosen, cells, strs};
use guest_dtb::{write, Arch, Error, GuestDtbSpec};

fn spec64() -> GuestDtbSpec<'static> {
    GuestDtbSpec {
        initrd: Some((0x4800_0000, 0x4810_0000)),
        ..GuestDtbSpec::qemu_virt(
            Arch::Aarch64,
            0x2000_0000,
            2,
            "console=ttyAMA0 rdinit=/init",
        )
    }
}

fn build(spec: &GuestDtbSpec) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = write(spec, &mut buf).unwrap();
    buf.truncate(n);
    buf
}



fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

#[test]
fn header_and_blocks() {
    let dtb = build(&spec64());
    assert_eq!(be32(&dtb, 0), 0xd00d_feed);
    assert_eq!(be32(&dtb, 1) as usize, dtb.len(), "totalsize");
    assert_eq!(be32(&dtb, 5), 17, "version");
    assert_eq!(be32(&dtb, 6), 16, "last compatible");
    assert_eq!(be32(&dtb, 7), 0, "boot cpu");
    let (off_struct, off_strings, off_rsv) = (be32(&dtb, 2), be32(&dtb, 3), be32(&dtb, 4));
    assert_eq!(off_rsv % 8, 0);
    assert_eq!(off_struct % 4, 0);
    assert_eq!(
        off_struct + be32(&dtb, 9),
        off_strings,
        "strings follow the structure"
    );
    assert_eq!((off_strings + be32(&dtb, 8)) as usize, dtb.len());
    let fdt = Fdt::new(&dtb).unwrap();
    assert_eq!(fdt.reservations().count(), 0);
}

#[test]
fn property_names_are_stored_once() {
    let dtb = build(&spec64());
    let off = be32(&dtb, 3) as usize;
    let size = be32(&dtb, 8) as usize;
    let block = &dtb[off..off + size];
    assert_eq!(block.last(), Some(&0));
    let names: Vec<&[u8]> = block[..size - 1].split(|&b| b == 0).collect();
    let unique: HashSet<_> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "duplicated names in the strings block"
    );
    // Every property the tree uses is in it, and nothing else.
    let fdt = Fdt::new(&dtb).unwrap();
    let mut used = HashSet::new();
    for path in fdt.walk() {
        for p in path.node().props() {
            used.insert(p.name.as_bytes());
        }
    }
    assert_eq!(used, names.into_iter().collect());
    assert!(used.contains(&b"compatible"[..]));
}

#[test]
fn root_chosen_memory() {
    let dtb = build(&spec64());
    let fdt = Fdt::new(&dtb).unwrap();
    let root = fdt.root();
    assert_eq!(root.u32("#address-cells"), Some(2));
    assert_eq!(root.u32("#size-cells"), Some(2));
    assert!(root.is_compatible("linux,dummy-virt"));
    assert_eq!(root.u32("interrupt-parent"), Some(guest_dtb::GIC_PHANDLE));

    let chosen = fdt.find("/chosen").unwrap();
    assert_chosen(&chosen, "console=ttyAMA0 rdinit=/init", (0x4800_0000, 0x4810_0000));
    assert_eq!(chosen.str("stdout-path"), Some("/pl011@9000000"));
    // stdout-path names a node that exists.
    assert!(fdt.find("/pl011@9000000").is_some());

    let mem = fdt.find("/memory@40000000").unwrap();
    assert_eq!(mem.str("device_type"), Some("memory"));
    assert_eq!(cells(&mem, "reg"), [0, 0x4000_0000, 0, 0x2000_0000]);
}

#[test]
fn no_initrd_no_initrd_properties() {
    let spec = GuestDtbSpec {
        initrd: None,
        ..spec64()
    };
    let dtb = build(&spec);
    let fdt = Fdt::new(&dtb).unwrap();
    let chosen = fdt.find("/chosen").unwrap();
    assert!(chosen.prop("linux,initrd-start").is_none());
    assert!(chosen.prop("linux,initrd-end").is_none());
    assert!(dtb.len() < build(&spec64()).len());
}

#[test]
fn cpus_and_psci() {
    for vcpus in 1..=8 {
        let spec = GuestDtbSpec { vcpus, ..spec64() };
        let dtb = build(&spec);
        let fdt = Fdt::new(&dtb).unwrap();
        let cpus = fdt.find("/cpus").unwrap();
        assert_eq!(cpus.u32("#address-cells"), Some(1));
        assert_eq!(cpus.u32("#size-cells"), Some(0));
        let nodes: Vec<_> = cpus.children().collect();
        assert_eq!(nodes.len(), vcpus as usize);
        for (i, cpu) in nodes.iter().enumerate() {
            assert_eq!(cpu.name(), format!("cpu@{i:x}"));
            assert_eq!(cpu.str("device_type"), Some("cpu"));
            assert!(cpu.is_compatible("arm,cortex-a72"));
            assert_eq!(cpu.u32("reg"), Some(i as u32));
            assert_eq!(cpu.str("enable-method"), Some("psci"));
        }
        let timer = fdt.find("/timer").unwrap();
        let mask = (1u32 << vcpus) - 1;
        let flags: Vec<u32> = cells(&timer, "interrupts")
            .chunks(3)
            .map(|c| c[2])
            .collect();
        assert_eq!(flags, vec![(mask << 8) | 4; 4], "{vcpus} vcpus");
    }
    let dtb = build(&spec64());
    let fdt = Fdt::new(&dtb).unwrap();
    let psci = fdt.find("/psci").unwrap();
    assert_eq!(strs(&psci, "compatible"), ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(psci.str("method"), Some("hvc"));
}

#[test]
fn gic_timer_uart_clock() {
    let dtb = build(&spec64());
    let fdt = Fdt::new(&dtb).unwrap();
    let gic = fdt.find("/intc@8000000").unwrap();
    assert!(gic.is_compatible("arm,cortex-a15-gic"));
    assert!(gic.prop("interrupt-controller").unwrap().value.is_empty());
    assert_eq!(gic.u32("#interrupt-cells"), Some(3));
    assert_eq!(
        cells(&gic, "reg"),
        [0, 0x0800_0000, 0, 0x1_0000, 0, 0x0801_0000, 0, 0x1_0000]
    );
    assert_eq!(gic.u32("phandle"), Some(guest_dtb::GIC_PHANDLE));

    let timer = fdt.find("/timer").unwrap();
    assert_eq!(
        strs(&timer, "compatible"),
        ["arm,armv8-timer", "arm,armv7-timer"]
    );
    assert_eq!(
        cells(&timer, "interrupts"),
        [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]
    );
    assert!(timer.prop("always-on").unwrap().value.is_empty());

    let clk = fdt.find("/apb-pclk").unwrap();
    assert!(clk.is_compatible("fixed-clock"));
    assert_eq!(clk.u32("#clock-cells"), Some(0));
    assert_eq!(clk.u32("clock-frequency"), Some(24_000_000));
    let clk_phandle = clk.u32("phandle").unwrap();
    assert_ne!(clk_phandle, guest_dtb::GIC_PHANDLE);

    let uart = fdt.find("/pl011@9000000").unwrap();
    assert_eq!(strs(&uart, "compatible"), ["arm,pl011", "arm,primecell"]);
    assert_eq!(cells(&uart, "reg"), [0, 0x0900_0000, 0, 0x1000]);
    assert_eq!(cells(&uart, "interrupts"), [0, 1, 4]);
    assert_eq!(cells(&uart, "clocks"), [clk_phandle, clk_phandle]);
    assert_eq!(strs(&uart, "clock-names"), ["uartclk", "apb_pclk"]);
}

#[test]
fn other_addresses_and_spi() {
    let spec = GuestDtbSpec {
        ram_base: 0x8_0000_0000,
        ram_size: 0x1_0000_0000,
        initrd: None,
        gic: (0x2f00_0000, 0x2c00_0000),
        uart: (0x1c09_0000, 5),
        ..spec64()
    };
    let dtb = build(&spec);
    let fdt = Fdt::new(&dtb).unwrap();
    assert_eq!(
        cells(&fdt.find("/memory@800000000").unwrap(), "reg"),
        [8, 0, 1, 0]
    );
    let gic = fdt.find("/intc@2f000000").unwrap();
    assert_eq!(
        cells(&gic, "reg"),
        [0, 0x2f00_0000, 0, 0x1_0000, 0, 0x2c00_0000, 0, 0x1_0000]
    );
    let uart = fdt.find("/pl011@1c090000").unwrap();
    assert_eq!(cells(&uart, "interrupts"), [0, 5, 4]);
    assert_eq!(
        fdt.find("/chosen").unwrap().str("stdout-path"),
        Some("/pl011@1c090000")
    );
}

#[test]
fn aarch32_guest() {
    let spec = GuestDtbSpec::qemu_virt(Arch::Aarch32, 0x1000_0000, 2, "console=ttyAMA0");
    let dtb = build(&spec);
    let fdt = Fdt::new(&dtb).unwrap();
    let timer = fdt.find("/timer").unwrap();
    assert_eq!(strs(&timer, "compatible"), ["arm,armv7-timer"]);
    assert!(fdt
        .find("/cpus/cpu@0")
        .unwrap()
        .is_compatible("arm,cortex-a15"));

    let a7 = GuestDtbSpec {
        cpu_compatible: Some("arm,cortex-a7"),
        ..spec
    };
    let dtb = build(&a7);
    let fdt = Fdt::new(&dtb).unwrap();
    for cpu in fdt.find("/cpus").unwrap().children() {
        assert_eq!(strs(&cpu, "compatible"), ["arm,cortex-a7"]);
    }
}

#[test]
fn small_buffers_report_the_exact_need() {
    let spec = spec64();
    let full = build(&spec);
    let n = full.len();
    for len in 0..n {
        let mut buf = vec![0xaau8; len];
        assert_eq!(
            write(&spec, &mut buf),
            Err(Error::BufferTooSmall { need: n, have: len }),
            "len {len}"
        );
    }
    // Exactly enough, and more: the same blob, nothing written past it.
    let mut exact = vec![0xaau8; n];
    assert_eq!(write(&spec, &mut exact), Ok(n));
    assert_eq!(exact, full);
    let mut big = vec![0xaau8; n + 100];
    assert_eq!(write(&spec, &mut big), Ok(n));
    assert_eq!(&big[..n], &full[..]);
    assert!(big[n..].iter().all(|&b| b == 0xaa));
    assert_eq!(
        Error::BufferTooSmall { need: n, have: 10 }.to_string(),
        format!("guest-dtb: buffer too small: the tree needs {n} bytes, the buffer has 10")
    );
}

#[test]
fn bad_specs_are_refused() {
    let base = spec64();
    let cases = [
        (GuestDtbSpec { vcpus: 0, ..base }, Error::Vcpus(0)),
        (GuestDtbSpec { vcpus: 9, ..base }, Error::Vcpus(9)),
        (
            GuestDtbSpec {
                ram_size: 0,
                ..base
            },
            Error::BadRam {
                base: 0x4000_0000,
                size: 0,
            },
        ),
        (
            GuestDtbSpec {
                ram_base: u64::MAX - 0xfff,
                ram_size: 0x2000,
                initrd: None,
                ..base
            },
            Error::BadRam {
                base: u64::MAX - 0xfff,
                size: 0x2000,
            },
        ),
        (
            GuestDtbSpec {
                initrd: Some((0x4810_0000, 0x4800_0000)),
                ..base
            },
            Error::BadInitrd {
                start: 0x4810_0000,
                end: 0x4800_0000,
            },
        ),
        (
            GuestDtbSpec {
                initrd: Some((0x4800_0000, 0x4800_0000)),
                ..base
            },
            Error::BadInitrd {
                start: 0x4800_0000,
                end: 0x4800_0000,
            },
        ),
        // (start, size) passed by mistake: the "end" is below the start.
        (
            GuestDtbSpec {
                initrd: Some((0x4800_0000, 0x10_0000)),
                ..base
            },
            Error::BadInitrd {
                start: 0x4800_0000,
                end: 0x10_0000,
            },
        ),
        (
            GuestDtbSpec {
                initrd: Some((0x3fff_f000, 0x4000_1000)),
                ..base
            },
            Error::BadInitrd {
                start: 0x3fff_f000,
                end: 0x4000_1000,
            },
        ),
        (
            GuestDtbSpec {
                initrd: Some((0x5fff_f000, 0x6000_1000)),
                ..base
            },
            Error::BadInitrd {
                start: 0x5fff_f000,
                end: 0x6000_1000,
            },
        ),
        (
            GuestDtbSpec {
                bootargs: "a\0b",
                ..base
            },
            Error::BadString,
        ),
        (
            GuestDtbSpec {
                cpu_compatible: Some("x\0"),
                ..base
            },
            Error::BadString,
        ),
    ];
    let mut buf = [0u8; 4096];
    for (spec, err) in cases {
        assert_eq!(write(&spec, &mut buf), Err(err), "{spec:?}");
    }
    // The initrd may end exactly at the end of RAM.
    let edge = GuestDtbSpec {
        initrd: Some((0x5fff_0000, 0x6000_0000)),
        ..base
    };
    assert!(write(&edge, &mut buf).is_ok());
}

#[test]
fn long_bootargs() {
    let args = "x".repeat(2000);
    let spec = GuestDtbSpec {
        bootargs: &args,
        ..spec64()
    };
    let mut buf = vec![0u8; 8192];
    let n = write(&spec, &mut buf).unwrap();
    let fdt = Fdt::new(&buf[..n]).unwrap();
    assert_eq!(
        fdt.find("/chosen").unwrap().str("bootargs"),
        Some(args.as_str())
    );
}

/// `dtc -I dtb -O dts` must take the blob without complaint.
#[test]
fn dtc_accepts_the_blob() {
    let dtc = Path::new("/usr/bin/dtc");
    if !dtc.exists() {
        println!("note: /usr/bin/dtc not installed; skipping the dtc check");
        return;
    }
    let specs = [
        spec64(),
        GuestDtbSpec {
            cpu_compatible: Some("arm,cortex-a7"),
            ..GuestDtbSpec::qemu_virt(Arch::Aarch32, 0x2000_0000, 8, "console=ttyAMA0")
        },
    ];
    for (i, spec) in specs.iter().enumerate() {
        let dtb = build(spec);
        let path =
            std::env::temp_dir().join(format!("guest-dtb-test-{}-{i}.dtb", std::process::id()));
        std::fs::write(&path, &dtb).unwrap();
        let out = Command::new(dtc)
            .args(["-I", "dtb", "-O", "dts", "-o", "-"])
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dtc failed: {stderr}");
        assert!(stderr.trim().is_empty(), "dtc warned: {stderr}");
        let dts = String::from_utf8(out.stdout).unwrap();
        for needle in [
            "compatible = \"linux,dummy-virt\";",
            "pl011@9000000 {",
            "clock-names = \"uartclk\\0apb_pclk\";",
            "compatible = \"arm,psci-1.0\\0arm,psci-0.2\";",
            "interrupt-controller;",
            "always-on;",
            "enable-method = \"psci\";",
        ] {
            assert!(dts.contains(needle), "dts lacks {needle}:\n{dts}");
        }
    }
}

/// A firmware guest's tree: its two flash banks in one `cfi-flash` node,
/// and a PL031; an ordinary guest's has neither.
#[test]
fn firmware_flash_and_clock() {
    let spec = GuestDtbSpec { flash: &[(0, 0x400_0000), (0x400_0000, 0x20_0000)], rtc: Some((0x901_0000, 2)), ..spec64() };
    let dtb = build(&spec);
    let fdt = Fdt::new(&dtb).unwrap();
    let flash = fdt.find("/flash@0").unwrap();
    assert_eq!(flash.str("compatible"), Some("cfi-flash"));
    assert_eq!(cells(&flash, "reg"), [0, 0, 0, 0x400_0000, 0, 0x400_0000, 0, 0x20_0000]);
    assert_eq!(flash.u32("bank-width"), Some(4));
    let rtc = fdt.find("/pl031@9010000").unwrap();
    assert_eq!(strs(&rtc, "compatible"), ["arm,pl031", "arm,primecell"]);
    assert_eq!(cells(&rtc, "interrupts"), [0, 2, 4]);
    let plain = build(&spec64());
    let fdt = Fdt::new(&plain).unwrap();
    assert!(fdt.find("/flash@0").is_none() && fdt.find("/pl031@9010000").is_none());
}

//! Cross-checks against DTBs made by real tools: `dtc` and QEMU's
//! `dumpdtb`. Each test prints a message and passes if its tool is missing;
//! the other tests do not depend on either.

use std::path::PathBuf;
use std::process::Command;

use bootcfg::fdt::Fdt;
use bootcfg::fdt_writer::FdtWriter;
use bootcfg::*;

fn tool(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    let p = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bootcfg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// QEMU virt (virtualization=on, gic-version=2) as `dtc -O dts` shows it,
/// trimmed, with Xen-style dom0less modules added to /chosen.
const QEMU_LIKE_DTS: &str = r#"
/dts-v1/;
/memreserve/ 0x48000000 0x1000;
/ {
	interrupt-parent = <0x8003>;
	dma-coherent;
	model = "linux,dummy-virt";
	#size-cells = <0x02>;
	#address-cells = <0x02>;
	compatible = "linux,dummy-virt";

	psci {
		migrate = <0xc4000005>;
		cpu_on = <0xc4000003>;
		cpu_off = <0x84000002>;
		cpu_suspend = <0xc4000001>;
		method = "smc";
		compatible = "arm,psci-1.0\0arm,psci-0.2\0arm,psci";
	};

	memory@40000000 {
		reg = <0x00 0x40000000 0x00 0x40000000>;
		device_type = "memory";
	};

	platform-bus@c000000 {
		interrupt-parent = <0x8003>;
		ranges = <0x00 0x00 0xc000000 0x2000000>;
		#address-cells = <0x01>;
		#size-cells = <0x01>;
		compatible = "qemu,platform\0simple-bus";
	};

	pl011@9000000 {
		clock-names = "uartclk\0apb_pclk";
		clocks = <0x8000 0x8000>;
		interrupts = <0x00 0x01 0x04>;
		reg = <0x00 0x9000000 0x00 0x1000>;
		compatible = "arm,pl011\0arm,primecell";
	};

	intc@8000000 {
		phandle = <0x8003>;
		interrupts = <0x01 0x09 0x04>;
		reg = <0x00 0x8000000 0x00 0x10000 0x00 0x8010000 0x00 0x10000 0x00 0x8030000 0x00 0x10000 0x00 0x8040000 0x00 0x10000>;
		compatible = "arm,cortex-a15-gic";
		ranges;
		#size-cells = <0x02>;
		#address-cells = <0x02>;
		interrupt-controller;
		#interrupt-cells = <0x03>;

		v2m@8020000 {
			phandle = <0x8004>;
			reg = <0x00 0x8020000 0x00 0x1000>;
			msi-controller;
			compatible = "arm,gic-v2m-frame";
		};
	};

	cpus {
		#size-cells = <0x00>;
		#address-cells = <0x01>;

		cpu-map {
			socket0 {
				cluster0 {
					core0 { cpu = <0x8002>; };
					core1 { cpu = <0x8001>; };
				};
			};
		};

		cpu@0 {
			phandle = <0x8002>;
			reg = <0x00>;
			enable-method = "psci";
			compatible = "arm,cortex-a72";
			device_type = "cpu";
		};

		cpu@1 {
			phandle = <0x8001>;
			reg = <0x01>;
			enable-method = "psci";
			compatible = "arm,cortex-a72";
			device_type = "cpu";
		};
	};

	timer {
		interrupts = <0x01 0x0d 0x304 0x01 0x0e 0x304 0x01 0x0b 0x304 0x01 0x0a 0x304>;
		always-on;
		compatible = "arm,armv8-timer\0arm,armv7-timer";
	};

	aliases {
		serial0 = "/pl011@9000000";
	};

	chosen {
		#address-cells = <2>;
		#size-cells = <2>;
		stdout-path = "serial0:115200n8";
		xen,xen-bootargs = "sched=pinned hwdom_pin=on slice=256K guest1.vcpus=2 console=dtuart";
		bootargs = "this is for someone else";

		module@50000000 {
			compatible = "multiboot,kernel", "multiboot,module";
			reg = <0x0 0x50000000 0x0 0x2000000>;
			bootargs = "console=hvc0 rdinit=/init";
			hyp,name = "linux-arm64";
			hyp,mem = "512M";
			hyp,vcpus = <2>;
		};

		module@54000000 {
			compatible = "multiboot,ramdisk", "multiboot,module";
			reg = <0x0 0x54000000 0x0 0x400000>;
		};

		module@56000000 {
			compatible = "multiboot,kernel", "multiboot,module";
			reg = <0x0 0x56000000 0x0 0x100000>;
			hyp,name = "sw-basic";
			hyp,mem = /bits/ 64 <0x4000000>;
			hyp,sw = "yes";
		};
	};
};
"#;

#[test]
fn dtc_compiled_qemu_like_tree() {
    let Some(dtc) = tool("dtc") else {
        println!("skipped: dtc not installed");
        return;
    };
    let dts = tmp("qemu-like.dts");
    let dtb = tmp("qemu-like.dtb");
    std::fs::write(&dts, QEMU_LIKE_DTS).unwrap();
    let st = Command::new(dtc)
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&dtb)
        .arg(&dts)
        .status()
        .unwrap();
    assert!(st.success(), "dtc failed");
    let blob = std::fs::read(&dtb).unwrap();
    let c = parse(&blob).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        (c.sched, c.hwdom_pin, c.slice_bytes),
        (SchedKind::Pinned, HwdomPin::On, 256 << 10)
    );
    assert_eq!(c.ram.as_slice(), &[(0x4000_0000, 0x4000_0000)]);
    assert_eq!(c.reserved.as_slice(), &[(0x4800_0000, 0x1000)]);
    assert_eq!(c.cpus, 2);
    let g = c.gic.unwrap();
    assert_eq!(
        (
            g.version,
            g.gicd.0,
            g.gicc.unwrap().0,
            g.gich.unwrap().0,
            g.gicv.unwrap().0
        ),
        (2, 0x0800_0000, 0x0801_0000, 0x0803_0000, 0x0804_0000)
    );
    assert_eq!(g.maint.unwrap().intid(), 25);
    let u = c.uart.unwrap();
    assert_eq!((u.kind, u.regs), (UartKind::Pl011, (0x0900_0000, 0x1000)));
    assert_eq!(c.timer.unwrap().hyp.intid(), 26);
    assert_eq!(c.psci.unwrap().method, Conduit::Smc);

    assert_eq!(c.guests.len(), 2);
    let (a, b) = (&c.guests[0], &c.guests[1]);
    assert_eq!(
        (a.name.as_str(), a.image, a.ramdisk),
        (
            "linux-arm64",
            (0x5000_0000, 0x200_0000),
            Some((0x5400_0000, 0x40_0000))
        )
    );
    assert_eq!(
        (a.mem_bytes, a.vcpus, a.sw, a.bootargs.as_str()),
        (512 << 20, 2, SwMode::Auto, "console=hvc0 rdinit=/init")
    );
    assert_eq!(
        (b.name.as_str(), b.image, b.ramdisk),
        ("sw-basic", (0x5600_0000, 0x10_0000), None)
    );
    assert_eq!((b.mem_bytes, b.vcpus, b.sw), (64 << 20, 2, SwMode::Yes));
    let _ = std::fs::remove_file(&dts);
    let _ = std::fs::remove_file(&dtb);
}

#[test]
fn qemu_dumpdtb() {
    let Some(qemu) = tool("qemu-system-aarch64") else {
        println!("skipped: qemu-system-aarch64 not installed");
        return;
    };
    let dtb = tmp("virt.dtb");
    let machine = format!(
        "virt,virtualization=on,gic-version=2,dumpdtb={}",
        dtb.display()
    );
    let out = Command::new(qemu)
        .args([
            "-M",
            &machine,
            "-cpu",
            "cortex-a72",
            "-m",
            "1G",
            "-smp",
            "4",
            "-display",
            "none",
        ])
        .output()
        .unwrap();
    if !dtb.exists() {
        println!(
            "skipped: qemu did not write a DTB: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let blob = std::fs::read(&dtb).unwrap();
    let c = parse(&blob).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ram.as_slice(), &[(0x4000_0000, 1 << 30)]);
    assert_eq!(c.cpus, 4);
    let g = c.gic.unwrap();
    assert_eq!(
        (
            g.gicd.0,
            g.gicc.unwrap().0,
            g.gich.unwrap().0,
            g.gicv.unwrap().0
        ),
        (0x0800_0000, 0x0801_0000, 0x0803_0000, 0x0804_0000)
    );
    assert_eq!(g.maint.unwrap().intid(), 25);
    assert_eq!(c.uart.unwrap().regs.0, 0x0900_0000);
    let t = c.timer.unwrap();
    assert_eq!(
        (t.hyp.intid(), t.virt.intid(), t.phys.intid()),
        (26, 27, 30)
    );
    assert_eq!(c.psci.unwrap().method, Conduit::Smc);
    assert!(c.guests.is_empty());

    // What the xtask does: copy QEMU's tree, add guests to /chosen.
    let fdt = Fdt::new(&blob).unwrap();
    let mut w = FdtWriter::from_fdt_root(&fdt);
    for child in fdt.root().children().filter(|c| c.name() != "chosen") {
        w.copy_node(&child);
    }
    w.begin_node("chosen");
    w.copy_props(&fdt.find("/chosen").unwrap());
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
    w.prop_str("hyp,bootargs", "sched=pinned");
    w.begin_node("module@50000000");
    w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
    w.prop_reg("reg", 2, 2, &[(0x5000_0000, 0x10_0000)]);
    w.prop_str("hyp,sw", "yes");
    w.end_node();
    w.end_node();
    w.end_node();
    let c2 = parse(&w.finish()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c2.sched, SchedKind::Pinned);
    assert_eq!(c2.guests.len(), 1);
    assert_eq!(c2.guests[0].sw, SwMode::Yes);
    assert_eq!(
        (c2.ram.clone(), c2.gic, c2.uart, c2.timer, c2.psci),
        (c.ram, c.gic, c.uart, c.timer, c.psci)
    );
    let _ = std::fs::remove_file(&dtb);
}

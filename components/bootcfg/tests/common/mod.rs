//! A QEMU-virt-like device tree built with `FdtWriter`, in parts that
//! tests replace.
#![allow(dead_code)]

use bootcfg::fdt_writer::FdtWriter;

pub type Part<'a> = &'a dyn Fn(&mut FdtWriter);

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

pub struct Parts<'a> {
    pub root_cells: (u32, u32),
    /// The root `compatible`; none when empty.
    pub compatible: &'a [&'a str],
    pub memory: Part<'a>,
    pub cpus: Part<'a>,
    pub chosen: Part<'a>,
    pub devices: Part<'a>,
}

impl Default for Parts<'_> {
    fn default() -> Self {
        Parts {
            root_cells: (2, 2),
            compatible: &["linux,dummy-virt"],
            memory: &memory,
            cpus: &cpus,
            chosen: &chosen,
            devices: &devices,
        }
    }
}

/// The default tree with `chosen`'s contents in `/chosen`.
pub fn with_chosen(chosen: &dyn Fn(&mut FdtWriter)) -> Vec<u8> {
    build(&Parts {
        chosen,
        ..Parts::default()
    })
}

pub fn build(p: &Parts) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.reserve(0x4800_0000, 0x1000);
    w.begin_node("");
    w.prop_u32("#address-cells", p.root_cells.0);
    w.prop_u32("#size-cells", p.root_cells.1);
    if !p.compatible.is_empty() {
        w.prop_strs("compatible", p.compatible);
    }
    (p.memory)(&mut w);
    (p.cpus)(&mut w);
    w.begin_node("chosen");
    (p.chosen)(&mut w);
    w.end_node();
    (p.devices)(&mut w);
    w.end_node();
    w.finish()
}

/// The default tree: QEMU virt, 1 GiB, 4 CPUs, GICv2, one guest with a
/// ramdisk.
pub fn default_dtb() -> Vec<u8> {
    build(&Parts::default())
}

pub fn memory(w: &mut FdtWriter) {
    w.begin_node("memory@40000000");
    w.prop_str("device_type", "memory");
    w.prop_reg("reg", 2, 2, &[(0x4000_0000, GIB)]);
    w.end_node();
}

pub fn cpus_n(w: &mut FdtWriter, n: u32) {
    w.begin_node("cpus");
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 0);
    for i in 0..n {
        w.begin_node(&format!("cpu@{i}"));
        w.prop_str("device_type", "cpu");
        w.prop_str("compatible", "arm,cortex-a72");
        w.prop_u32("reg", i);
        w.prop_str("enable-method", "psci");
        w.end_node();
    }
    // Not a CPU.
    w.begin_node("cpu-map");
    w.end_node();
    w.end_node();
}

pub fn cpus(w: &mut FdtWriter) {
    cpus_n(w, 4);
}

pub fn chosen_cells(w: &mut FdtWriter) {
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
}

/// A kernel module with the given hyp,* properties added by `extra`.
pub fn kernel(w: &mut FdtWriter, base: u64, size: u64, extra: &dyn Fn(&mut FdtWriter)) {
    w.begin_node(&format!("module@{base:x}"));
    w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
    w.prop_reg("reg", 2, 2, &[(base, size)]);
    extra(w);
    w.end_node();
}

pub fn ramdisk(w: &mut FdtWriter, base: u64, size: u64) {
    w.begin_node(&format!("module@{base:x}"));
    w.prop_strs("compatible", &["multiboot,ramdisk", "multiboot,module"]);
    w.prop_reg("reg", 2, 2, &[(base, size)]);
    w.end_node();
}

pub fn chosen(w: &mut FdtWriter) {
    chosen_cells(w);
    w.prop_str("bootargs", "sched=pinned console=ttyAMA0");
    w.prop_str("stdout-path", "/pl011@9000000");
    kernel(w, 0x5000_0000, 16 * MIB, &|w| {
        w.prop_str("bootargs", "console=hvc0 rdinit=/init");
        w.prop_str("hyp,name", "linux");
        w.prop_str("hyp,mem", "256M");
        w.prop_u32("hyp,vcpus", 2);
        w.prop_str("hyp,sw", "yes");
    });
    ramdisk(w, 0x5400_0000, 4 * MIB);
}

pub fn gic(w: &mut FdtWriter) {
    w.begin_node("intc@8000000");
    w.prop_strs("compatible", &["arm,cortex-a15-gic"]);
    w.prop_u32("#interrupt-cells", 3);
    w.prop_empty("interrupt-controller");
    w.prop_reg(
        "reg",
        2,
        2,
        &[
            (0x0800_0000, 0x1_0000),
            (0x0801_0000, 0x1_0000),
            (0x0803_0000, 0x1_0000),
            (0x0804_0000, 0x1_0000),
        ],
    );
    w.prop_cells("interrupts", &[1, 9, 4]);
    w.end_node();
}

pub fn pl011(w: &mut FdtWriter) {
    w.begin_node("pl011@9000000");
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
    w.prop_reg("reg", 2, 2, &[(0x0900_0000, 0x1000)]);
    w.prop_cells("interrupts", &[0, 1, 4]);
    w.end_node();
}

pub fn timer(w: &mut FdtWriter) {
    w.begin_node("timer");
    w.prop_strs("compatible", &["arm,armv8-timer", "arm,armv7-timer"]);
    w.prop_cells(
        "interrupts",
        &[1, 13, 0xf04, 1, 14, 0xf04, 1, 11, 0xf04, 1, 10, 0xf04],
    );
    w.end_node();
}

pub fn psci(w: &mut FdtWriter) {
    w.begin_node("psci");
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
    w.prop_str("method", "smc");
    w.end_node();
}

pub fn devices(w: &mut FdtWriter) {
    psci(w);
    gic(w);
    pl011(w);
    timer(w);
}

/// An RPi4-like /soc: 1/1 cells below, translated by `ranges`.
pub fn rpi4_soc(w: &mut FdtWriter) {
    w.begin_node("soc");
    w.prop_strs("compatible", &["simple-bus"]);
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 1);
    // child, parent (2 cells), size
    w.prop_cells(
        "ranges",
        &[
            0x7e00_0000,
            0,
            0xfe00_0000,
            0x180_0000,
            0x4000_0000,
            0,
            0xff80_0000,
            0x80_0000,
        ],
    );
    // uart2 (disabled), then uart0.
    for (base, status) in [(0x7e20_1400u64, "disabled"), (0x7e20_1000, "okay")] {
        w.begin_node(&format!("serial@{base:x}"));
        w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        w.prop_reg("reg", 1, 1, &[(base, 0x200)]);
        w.prop_str("status", status);
        w.end_node();
    }
    w.begin_node("interrupt-controller@40041000");
    w.prop_strs("compatible", &["arm,gic-400"]);
    w.prop_reg(
        "reg",
        1,
        1,
        &[
            (0x4004_1000, 0x1000),
            (0x4004_2000, 0x2000),
            (0x4004_4000, 0x2000),
            (0x4004_6000, 0x2000),
        ],
    );
    w.prop_cells("interrupts", &[1, 9, 0xf04]);
    w.end_node();
    w.begin_node("serial@7e215040");
    w.prop_strs("compatible", &["brcm,bcm2835-aux-uart"]);
    w.prop_reg("reg", 1, 1, &[(0x7e21_5040, 0x40)]);
    w.prop_cells("interrupts", &[0, 93, 4]);
    w.end_node();
    w.end_node();
}

/// A guest bundle: an FDT with root `compatible = "hyp,guest-bundle"` and
/// a `chosen` node filled by `chosen`, padded with `0xaa` to `len` bytes
/// (the payloads).
pub fn guest_bundle(chosen: &dyn Fn(&mut FdtWriter), len: usize) -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_strs("compatible", &["hyp,guest-bundle"]);
    w.begin_node("chosen");
    chosen(&mut w);
    w.end_node();
    w.end_node();
    let mut b = w.finish();
    assert!(b.len() <= len, "the bundle's FDT is {} bytes", b.len());
    b.resize(len, 0xaa);
    b
}

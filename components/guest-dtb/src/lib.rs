//! # guest-dtb: the device tree a guest boots with
//!
//! A guest kernel learns its machine from a flattened device tree: RAM, CPUs
//! and how to start them, the interrupt controller, the timer, the console
//! and its command line. This crate makes that tree, two ways:
//!
//! - an ordinary guest's tree, written from scratch ([`write()`]) into a
//!   buffer the caller provides (for the kernel: a page of guest RAM), with a
//!   small writer of its own ([`fdt::FdtWriter`]), without allocating;
//! - the hardware domain's tree ([`hwdom::hwdom_dtb`]): the board's own DTB,
//!   edited (RAM, `/chosen`, CPUs, PSCI, GIC, console, devices passed
//!   through or disabled), plus the MMIO pages and SPIs the hwdom owns. It
//!   allocates (the kernel has a heap at EL2) and parses, edits and writes
//!   with the `dtoolkit` crate; its rules and invariants are in [`hwdom`].
//!
//! The machine it describes is QEMU `virt` as Linux knows it
//! (`linux,dummy-virt`): GICv2, the architected timer, a PL011 and PSCI
//! over HVC.
//!
//! **Responsible for:**
//! - the tree's content, from one [`GuestDtbSpec`]: root (`#address-cells`
//!   and `#size-cells` 2, `interrupt-parent`), `/chosen` (bootargs,
//!   `stdout-path`, initrd), `/memory`, `/cpus` (PSCI enable method),
//!   `/psci`, the GIC, `/timer`, the UART and its fixed clock;
//! - a version-17 blob: property names deduplicated in the strings block, an
//!   empty memory reservation map;
//! - checking the spec, and the buffer's size, with one clear [`Error`].
//!
//! - the hwdom: every edit of the board tree listed in [`hwdom`], which
//!   device nodes it owns (by the spec's list or by eligibility), their
//!   4 KiB-rounded MMIO and GIC SPIs, and one clear [`HwdomError`].
//!
//! **Not responsible for:** choosing the guest's addresses (the kernel's
//! layout decides; QEMU `virt`'s are [`GuestDtbSpec::qemu_virt`]), loading
//! anything into guest memory, emulating the devices it names (the vGIC,
//! `vuart`, PSCI), mapping the hwdom's passthrough regions or routing its
//! SPIs (the kernel does, from [`Passthrough`]), choosing the hwdom's RAM
//! or kept ranges (the boot configuration does), or reading the
//! hypervisor's own configuration from the board DTB (see `bootcfg::fdt`).
//!
//! **Invariants** (of [`write()`]; the hwdom editor's are in [`hwdom`]):
//! - On `Ok(n)`, `buf[..n]` is a complete, well-formed blob; nothing past `n`
//!   is written. On an error the buffer's content is unspecified.
//! - On [`Error::BufferTooSmall`], `need` is the exact size the same spec
//!   needs. No spec or buffer can make it panic.
//! - Every interrupt specifier has three cells and names the GIC, the only
//!   interrupt controller, by phandle [`GIC_PHANDLE`].
//! - The timer's PPIs carry a CPU mask of exactly the guest's vCPUs, as
//!   GICv2 bindings ask (bits 15:8 of the flags).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use core::fmt;

pub mod fdt;
pub mod hwdom;

pub use hwdom::{hwdom_dtb, HwdomError, HwdomSpec, Passthrough};

use fdt::FdtWriter;

/// Most vCPUs a GICv2 can address.
pub const MAX_VCPUS: u32 = 8;
/// Each GIC register window in the tree (GICD, and GICC where GICV is mapped).
pub const GIC_WINDOW: u64 = 0x1_0000;
/// The UART's register window.
pub const UART_WINDOW: u64 = 0x1000;
/// The UART's reference clock, as on QEMU `virt`.
pub const UART_CLOCK_HZ: u32 = 24_000_000;
pub const GIC_PHANDLE: u32 = 1;
pub const CLOCK_PHANDLE: u32 = 2;

/// Architected timer PPIs (GIC INTID - 16): secure physical, non-secure
/// physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];

// Interrupt specifier cells.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;

/// The guest's execution state at EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Aarch64,
    Aarch32,
}

impl Arch {
    /// The CPU `compatible` used when the spec gives none.
    pub fn default_cpu(self) -> &'static str {
        match self {
            Arch::Aarch64 => "arm,cortex-a72",
            Arch::Aarch32 => "arm,cortex-a15",
        }
    }

    fn timer_compatible(self) -> &'static [&'static str] {
        match self {
            Arch::Aarch64 => &["arm,armv8-timer", "arm,armv7-timer"],
            Arch::Aarch32 => &["arm,armv7-timer"],
        }
    }
}

/// What the guest's tree says. Addresses are guest-physical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestDtbSpec<'a> {
    pub ram_base: u64,
    pub ram_size: u64,
    /// 1..=8.
    pub vcpus: u32,
    pub arch: Arch,
    /// The CPU `compatible`, e.g. `"arm,cortex-a7"` for a Cubietruck guest;
    /// `None`: [`Arch::default_cpu`].
    pub cpu_compatible: Option<&'a str>,
    pub bootargs: &'a str,
    /// The initramfs as `(start, end)`, end exclusive, inside guest RAM.
    pub initrd: Option<(u64, u64)>,
    /// `(GICD, GICC)` bases; the vGIC maps the GICV frame at GICC.
    pub gic: (u64, u64),
    /// The PL011's base and its SPI number (INTID - 32).
    pub uart: (u64, u32),
    /// A firmware guest's flash banks `(base, size)`: a `cfi-flash` node
    /// (none when empty).
    pub flash: &'a [(u64, u64)],
    /// A PL031 clock's base and SPI: an `arm,pl031` node.
    pub rtc: Option<(u64, u32)>,
}

impl<'a> GuestDtbSpec<'a> {
    /// QEMU `virt`'s layout: RAM at 1 GiB, GICD 0x0800_0000, GICC
    /// 0x0801_0000, PL011 0x0900_0000 on SPI 1.
    pub fn qemu_virt(arch: Arch, ram_size: u64, vcpus: u32, bootargs: &'a str) -> Self {
        GuestDtbSpec {
            ram_base: 0x4000_0000,
            ram_size,
            vcpus,
            arch,
            cpu_compatible: None,
            bootargs,
            initrd: None,
            gic: (0x0800_0000, 0x0801_0000),
            uart: (0x0900_0000, 1),
            flash: &[],
            rtc: None,
        }
    }
}

/// Why no tree was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The blob needs `need` bytes; the buffer has `have`.
    BufferTooSmall { need: usize, have: usize },
    /// vCPUs outside 1..=8.
    Vcpus(u32),
    /// RAM is empty or wraps around the address space.
    BadRam { base: u64, size: u64 },
    /// The initrd is empty, reversed, or not inside RAM.
    BadInitrd { start: u64, end: u64 },
    /// A string value (bootargs, compatible) contains a NUL.
    BadString,
    /// A node or property name is empty, has `/` or NUL, or a second root.
    BadName,
    /// A property outside a node or after a child node; a node not closed.
    Unbalanced,
    /// More property names than the strings block holds.
    StringsFull,
    /// More cells or strings in one property than the writer takes.
    TooManyCells,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        f.write_str("guest-dtb: ")?;
        match *self {
            BufferTooSmall { need, have } => {
                write!(f, "buffer too small: the tree needs {need} bytes, the buffer has {have}")
            }
            Vcpus(n) => write!(f, "vcpus = {n} (allowed: 1..={MAX_VCPUS})"),
            BadRam { base, size } => {
                write!(f, "RAM at {base:#x} size {size:#x} is empty or wraps")
            }
            BadInitrd { start, end } => write!(
                f,
                "initrd {start:#x}..{end:#x} is empty or outside guest RAM (expected (start, end), end exclusive)"
            ),
            BadString => f.write_str("a string value contains NUL"),
            BadName => f.write_str("bad node or property name"),
            Unbalanced => f.write_str("unbalanced nodes or misplaced property"),
            StringsFull => write!(f, "more than {} bytes of property names", fdt::STRINGS_MAX),
            TooManyCells => f.write_str("too many cells in one property"),
        }
    }
}

/// A short string on the stack, for node names and paths.
pub(crate) struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    pub(crate) fn new() -> Self {
        Text {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `str`s are ever appended.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn check(spec: &GuestDtbSpec) -> Result<(), Error> {
    if !(1..=MAX_VCPUS).contains(&spec.vcpus) {
        return Err(Error::Vcpus(spec.vcpus));
    }
    let bad_ram = Error::BadRam {
        base: spec.ram_base,
        size: spec.ram_size,
    };
    if spec.ram_size == 0 {
        return Err(bad_ram);
    }
    let ram_end = spec.ram_base.checked_add(spec.ram_size).ok_or(bad_ram)?;
    if let Some((start, end)) = spec.initrd {
        if start >= end || start < spec.ram_base || end > ram_end {
            return Err(Error::BadInitrd { start, end });
        }
    }
    let cpu = spec.cpu_compatible.unwrap_or("");
    if spec.bootargs.contains('\0') || cpu.contains('\0') {
        return Err(Error::BadString);
    }
    Ok(())
}

/// Write the guest's tree into `buf`; returns its size.
pub fn write(spec: &GuestDtbSpec, buf: &mut [u8]) -> Result<usize, Error> {
    check(spec)?;
    let (gicd, gicc) = spec.gic;
    let (uart, spi) = spec.uart;
    let mut w = FdtWriter::new(buf);

    w.begin_node("");
    w.prop_u32("#address-cells", 2);
    w.prop_u32("#size-cells", 2);
    w.prop_str("compatible", "linux,dummy-virt");
    w.prop_str("model", "linux,dummy-virt");
    w.prop_u32("interrupt-parent", GIC_PHANDLE);

    w.begin_node("chosen");
    w.prop_str("bootargs", spec.bootargs);
    let mut stdout = Text::<48>::new();
    // 48 bytes always hold "/pl011@" and 16 hex digits.
    let _ = fmt::write(&mut stdout, format_args!("/pl011@{uart:x}"));
    w.prop_str("stdout-path", stdout.as_str());
    if let Some((start, end)) = spec.initrd {
        w.prop_u64("linux,initrd-start", start);
        w.prop_u64("linux,initrd-end", end);
    }
    w.end_node();

    w.begin_node_at("memory", spec.ram_base);
    w.prop_str("device_type", "memory");
    w.prop_reg("reg", &[(spec.ram_base, spec.ram_size)]);
    w.end_node();

    w.begin_node("cpus");
    w.prop_u32("#address-cells", 1);
    w.prop_u32("#size-cells", 0);
    let cpu = spec.cpu_compatible.unwrap_or(spec.arch.default_cpu());
    for i in 0..spec.vcpus {
        w.begin_node_at("cpu", u64::from(i));
        w.prop_str("device_type", "cpu");
        w.prop_str("compatible", cpu);
        w.prop_u32("reg", i);
        w.prop_str("enable-method", "psci");
        w.end_node();
    }
    w.end_node();

    w.begin_node("psci");
    w.prop_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
    w.prop_str("method", "hvc");
    w.end_node();

    w.begin_node_at("intc", gicd);
    w.prop_str("compatible", "arm,cortex-a15-gic");
    w.prop_empty("interrupt-controller");
    w.prop_u32("#interrupt-cells", 3);
    w.prop_u32("#address-cells", 0);
    w.prop_reg("reg", &[(gicd, GIC_WINDOW), (gicc, GIC_WINDOW)]);
    w.prop_u32("phandle", GIC_PHANDLE);
    w.end_node();

    w.begin_node("timer");
    w.prop_strs("compatible", spec.arch.timer_compatible());
    let flags = (((1u32 << spec.vcpus) - 1) << 8) | IRQ_LEVEL_HIGH;
    let mut cells = [0u32; 12];
    for (c, ppi) in cells.chunks_exact_mut(3).zip(TIMER_PPIS) {
        c.copy_from_slice(&[GIC_PPI, ppi, flags]);
    }
    w.prop_cells("interrupts", &cells);
    w.prop_empty("always-on");
    w.end_node();

    w.begin_node("apb-pclk");
    w.prop_str("compatible", "fixed-clock");
    w.prop_u32("#clock-cells", 0);
    w.prop_u32("clock-frequency", UART_CLOCK_HZ);
    w.prop_str("clock-output-names", "clk24mhz");
    w.prop_u32("phandle", CLOCK_PHANDLE);
    w.end_node();

    if let Some(&(base, _)) = spec.flash.first() {
        w.begin_node_at("flash", base);
        w.prop_str("compatible", "cfi-flash");
        w.prop_reg("reg", spec.flash);
        w.prop_u32("bank-width", 4);
        w.end_node();
    }

    if let Some((base, spi)) = spec.rtc {
        w.begin_node_at("pl031", base);
        w.prop_strs("compatible", &["arm,pl031", "arm,primecell"]);
        w.prop_reg("reg", &[(base, UART_WINDOW)]);
        w.prop_cells("interrupts", &[GIC_SPI, spi, IRQ_LEVEL_HIGH]);
        w.prop_cells("clocks", &[CLOCK_PHANDLE]);
        w.prop_str("clock-names", "apb_pclk");
        w.end_node();
    }

    w.begin_node_at("pl011", uart);
    w.prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
    w.prop_reg("reg", &[(uart, UART_WINDOW)]);
    w.prop_cells("interrupts", &[GIC_SPI, spi, IRQ_LEVEL_HIGH]);
    w.prop_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE]);
    w.prop_strs("clock-names", &["uartclk", "apb_pclk"]);
    w.end_node();

    w.end_node();
    w.finish()
}

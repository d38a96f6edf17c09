//! From a checked device tree to a validated [`BootConfig`].

use core::fmt::Write;

use heapless::{String, Vec};

use crate::args::*;
use crate::error::{Error, Shown};
use crate::fdt::{read_cells, Fdt, Node, Path, Prop};
use crate::*;

/// A physical range: `(base, size)`.
pub type Range = (u64, u64);

/// One guest to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    pub name: String<NAME_LEN>,
    /// The kernel module.
    pub image: Range,
    pub ramdisk: Option<Range>,
    pub mem_bytes: u64,
    /// PoD pool size; `None` means as large as `mem_bytes`. The kernel caps
    /// it at `mem_bytes`.
    pub pool_bytes: Option<u64>,
    /// How RAM is backed; `None` lets the kernel choose from `sw`.
    pub populate: Option<Populate>,
    /// The guest runs at EL1 in AArch32 (`hyp,arch = "aarch32"`).
    pub aarch32: bool,
    pub vcpus: u32,
    pub sw: SwMode,
    /// The guest kernel's command line (the module's `bootargs`).
    pub bootargs: String<BOOTARGS_LEN>,
    /// The hardware domain (`hyp,hwdom` / `guestN.hwdom=yes`): direct-mapped
    /// RAM (IPA = PA), the board's devices, the board's device tree edited.
    pub hwdom: bool,
    /// A raw firmware image (`hyp,firmware`), such as EDK2: read-only flash
    /// at IPA 0, entered there, its device tree at the base of its RAM.
    pub firmware: bool,
    /// The hardware domain's RAM base (`hyp,base` / `guestN.base=`); `None`
    /// lets the kernel place it.
    pub base: Option<u64>,
    /// The device-tree paths the hardware domain owns, comma separated
    /// (`hyp,passthrough` / `guestN.passthrough=`); `None`: every device the
    /// hypervisor does not keep.
    pub passthrough: Option<String<PASSTHROUGH_LEN>>,
}

impl GuestConfig {
    /// The paths of [`GuestConfig::passthrough`], one by one.
    pub fn passthrough_paths(&self) -> impl Iterator<Item = &str> {
        self.passthrough.iter().flat_map(|s| s.split(','))
    }
}

/// One physical CPU from `/cpus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// `reg`: the MPIDR affinity bits.
    pub mpidr: u64,
    /// `cpu-release-addr`, for `enable-method = "spin-table"`.
    pub release_addr: Option<u64>,
}

/// Interrupt type in a GIC `interrupts` specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    Spi,
    Ppi,
}

/// One GIC interrupt specifier (3 cells).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    pub kind: IrqKind,
    /// SPI or PPI number.
    pub num: u32,
    /// Trigger flags cell.
    pub flags: u32,
}

impl Irq {
    /// The GIC interrupt id (PPI n = 16 + n, SPI n = 32 + n; saturating).
    pub fn intid(&self) -> u32 {
        match self.kind {
            IrqKind::Ppi => self.num.saturating_add(16),
            IrqKind::Spi => self.num.saturating_add(32),
        }
    }
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// 2 or 3.
    pub version: u8,
    pub gicd: Range,
    /// GICv3 redistributors (first region).
    pub gicr: Option<Range>,
    pub gicc: Option<Range>,
    pub gich: Option<Range>,
    pub gicv: Option<Range>,
    /// Maintenance interrupt.
    pub maint: Option<Irq>,
}

/// UART programming model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    Pl011,
    /// Register n at `base + (n << reg_shift)`, accessed `io_width` bytes wide.
    Ns16550 {
        reg_shift: u8,
        io_width: u8,
    },
    /// The BCM2835/BCM2711 mini-UART (`brcm,bcm2835-aux-uart`): 16550-style
    /// registers, register n at `base + 4 * n`, 32-bit accesses.
    Bcm2835Aux,
}

/// The console UART (`stdout-path`, else the first enabled known UART).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartInfo {
    pub kind: UartKind,
    pub regs: Range,
    pub irq: Option<Irq>,
    /// `clock-frequency`, if the node has one (never 0).
    pub clock_hz: Option<u32>,
}

/// Generic timer interrupts, in the binding's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrqs {
    pub sec_phys: Irq,
    pub phys: Irq,
    pub virt: Irq,
    pub hyp: Irq,
}

/// How to call PSCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// The `/psci` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciInfo {
    pub method: Conduit,
    /// Compatible with PSCI 0.2 or later (standard function ids).
    pub v0_2: bool,
}

/// Everything the kernel needs to boot, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    pub sched: SchedKind,
    pub hwdom_pin: HwdomPin,
    /// Clean slice budget, bytes.
    pub slice_bytes: u64,
    pub loglevel: LogLevel,
    pub exit: ExitMethod,
    pub pmu: PmuMode,
    /// Restarts (PSCI SYSTEM_RESET) a guest may make before it is stopped.
    pub reboots: u32,
    /// `trace=`: print every guest's counters this often (milliseconds).
    pub trace_ms: Option<u32>,
    /// `maxcpus=`: start at most this many physical CPUs (1..=8).
    pub max_cpus: Option<u32>,
    /// TEST ONLY `fault=`: always empty without feature `faults`.
    pub faults: Faults,
    /// In device tree order; at most one is the hardware domain.
    pub guests: Vec<GuestConfig, MAX_GUESTS>,
    pub ram: Vec<Range, MAX_RAM>,
    /// Memory not to hand out (reservation map, `/reserved-memory`).
    pub reserved: Vec<Range, MAX_RESERVED>,
    pub cpus: u32,
    pub cpu_list: Vec<Cpu, MAX_CPUS>,
    pub boot_cpuid: u32,
    pub uart: Option<UartInfo>,
    pub gic: Option<GicInfo>,
    pub timer: Option<TimerIrqs>,
    pub psci: Option<PsciInfo>,
    /// The board the root `compatible` names, of the architecture this
    /// crate is built for; `None` for an unknown board.
    pub board: Option<&'static platform::Board>,
}

impl BootConfig {
    /// Whether `[base, base+size)` lies inside one RAM range.
    pub fn in_ram(&self, base: u64, size: u64) -> bool {
        inside(&self.ram, base, size)
    }
}

fn inside(ram: &[Range], base: u64, size: u64) -> bool {
    let Some(end) = base.checked_add(size) else {
        return false;
    };
    ram.iter()
        .any(|&(b, s)| base >= b && b.checked_add(s).is_some_and(|e| end <= e))
}

/// The architecture whose boards [`BootConfig::board`] is chosen from.
#[cfg(target_arch = "arm")]
const ARCH: platform::Arch = platform::Arch::Armv7;
#[cfg(not(target_arch = "arm"))]
const ARCH: platform::Arch = platform::Arch::Aarch64;

/// The root `compatible` of a guest bundle.
const BUNDLE_COMPATIBLE: &str = "hyp,guest-bundle";

/// Parse and validate a DTB. `dtb` may extend past the blob's `totalsize`.
/// The same as [`parse_with_bundle`] with no bundle.
pub fn parse(dtb: &[u8]) -> Result<BootConfig, Error<'_>> {
    parse_with_bundle(dtb, None)
}

/// Parse and validate a DTB and, if `bundle` (its physical base and its
/// bytes) is a guest bundle, add its guests after the DTB's. Bytes that
/// are not an FDT whose root is compatible with `"hyp,guest-bundle"` (an
/// ordinary initramfs, say) are ignored.
pub fn parse_with_bundle<'a>(
    dtb: &'a [u8],
    bundle: Option<(u64, &'a [u8])>,
) -> Result<BootConfig, Error<'a>> {
    build(&Fdt::new(dtb)?, open_bundle(bundle))
}

/// The range `/chosen/linux,initrd-start` .. `linux,initrd-end` (each a
/// u32 or u64), where the Raspberry Pi firmware puts the file that
/// `initramfs FILE followkernel` names. `None` when either is missing or
/// malformed, or the range is empty or reversed.
pub fn bundle_range(dtb: &[u8]) -> Option<Range> {
    let fdt = Fdt::new(dtb).ok()?;
    let c = fdt.root().child("chosen")?;
    let addr = |name| {
        let p = c.prop(name)?;
        p.as_u32().map(u64::from).or_else(|| p.as_u64())
    };
    let (start, end) = (addr("linux,initrd-start")?, addr("linux,initrd-end")?);
    // Only a range the memory nodes cover: the kernel reads it.
    let ram = ram_of(&fdt).ok()?;
    (end > start && inside(&ram, start, end - start)).then(|| (start, end - start))
}

/// Whether the DTB has an enabled PSCI node, read even when the rest of the
/// configuration is invalid (a stopped boot still powers off through it).
pub fn has_psci(dtb: &[u8]) -> bool {
    let Ok(fdt) = Fdt::new(dtb) else {
        return false;
    };
    fdt.walk().any(|path| {
        let n = path.node();
        n.is_enabled()
            && n.prop("compatible")
                .is_some_and(|p| p.strs().any(|s| s.starts_with("arm,psci")))
    })
}

/// The `exit=` method the command line asks for, read even when the rest
/// of the configuration is invalid, so that a boot stopped by an error
/// still powers off the way the user asked. Psci when absent or unreadable.
/// Reads the DTB's line only; see [`exit_method_with_bundle`].
pub fn exit_method(dtb: &[u8]) -> ExitMethod {
    exit_method_with_bundle(dtb, None)
}

/// [`exit_method`] with the command line chosen as [`parse_with_bundle`]
/// chooses it (a bundle's `hyp,bootargs` comes second).
pub fn exit_method_with_bundle(dtb: &[u8], bundle: Option<(u64, &[u8])>) -> ExitMethod {
    let Ok(fdt) = Fdt::new(dtb) else {
        return ExitMethod::Psci;
    };
    let bundle = open_bundle(bundle).and_then(|b| b.chosen);
    let line = line_sources(fdt.root().child("chosen"), bundle)
        .find_map(|(n, p)| string(n, p).ok())
        .unwrap_or("");
    if line
        .split_ascii_whitespace()
        .any(|t| t == "exit=semihosting")
    {
        ExitMethod::Semihosting
    } else {
        ExitMethod::Psci
    }
}

/// The console UART, as [`BootConfig::uart`] would be, found even when
/// the rest of the configuration is invalid so that a failed boot can say
/// why. `None` for a malformed blob, no known UART, or a console node that
/// cannot be read.
pub fn console(dtb: &[u8]) -> Option<UartInfo> {
    let fdt = Fdt::new(dtb).ok()?;
    console_uart(&fdt).ok().flatten()
}

/// Build the configuration from an already checked tree (no bundle).
pub fn from_fdt<'a>(fdt: &Fdt<'a>) -> Result<BootConfig, Error<'a>> {
    build(fdt, None)
}

/// A recognised guest bundle.
#[derive(Clone, Copy)]
struct Bundle<'a> {
    base: u64,
    len: u64,
    chosen: Option<Node<'a>>,
}

fn open_bundle(bundle: Option<(u64, &[u8])>) -> Option<Bundle<'_>> {
    let (base, bytes) = bundle?;
    let root = Fdt::new(bytes).ok()?.root();
    if !root.is_compatible(BUNDLE_COMPATIBLE) {
        return None;
    }
    Some(Bundle {
        base,
        len: bytes.len() as u64,
        chosen: root.child("chosen"),
    })
}

/// Where the command line may be, first choice first: the DTB's
/// `hyp,bootargs`, the bundle's `hyp,bootargs`, then the DTB's
/// `xen,xen-bootargs` and `bootargs`.
fn line_sources<'a>(
    chosen: Option<Node<'a>>,
    bundle: Option<Node<'a>>,
) -> impl Iterator<Item = (Node<'a>, Prop<'a>)> {
    [
        (chosen, "hyp,bootargs"),
        (bundle, "hyp,bootargs"),
        (chosen, "xen,xen-bootargs"),
        (chosen, "bootargs"),
    ]
    .into_iter()
    .filter_map(|(n, name)| Some((n?, n?.prop(name)?)))
}

/// The root `compatible`'s board, of [`ARCH`].
fn board(root: Node<'_>) -> Option<&'static platform::Board> {
    platform::by_compatible(root.prop("compatible")?.strs(), ARCH)
}

fn build<'a>(fdt: &Fdt<'a>, bundle: Option<Bundle<'a>>) -> Result<BootConfig, Error<'a>> {
    let root = fdt.root();
    let chosen = root.child("chosen");
    let bundle_chosen = bundle.and_then(|b| b.chosen);

    let line = match line_sources(chosen, bundle_chosen).next() {
        Some((n, p)) => string(n, p)?,
        None => "",
    };
    let args = parse_bootargs(line)?;

    let mut cfg = BootConfig {
        sched: args.sched.unwrap_or_default(),
        hwdom_pin: args.hwdom_pin.unwrap_or_default(),
        slice_bytes: args.slice.unwrap_or(DEFAULT_SLICE),
        loglevel: args.loglevel.unwrap_or_default(),
        exit: args.exit.unwrap_or_default(),
        pmu: args.pmu.unwrap_or_default(),
        reboots: args.reboots.unwrap_or(10),
        trace_ms: args.trace_ms,
        max_cpus: args.max_cpus,
        faults: args.faults.unwrap_or_default(),
        guests: Vec::new(),
        ram: Vec::new(),
        reserved: Vec::new(),
        cpus: 0,
        cpu_list: Vec::new(),
        boot_cpuid: fdt.boot_cpuid(),
        uart: None,
        gic: None,
        timer: None,
        psci: None,
        board: board(root),
    };

    memory(fdt, &mut cfg)?;
    reserved(fdt, &mut cfg)?;
    cpus(fdt, &mut cfg)?;
    devices(fdt, &mut cfg)?;
    if let Some(c) = chosen {
        modules(c, None, &mut cfg)?;
    }
    if let (Some(b), Some(c)) = (bundle, bundle_chosen) {
        modules(c, Some((b.base, b.len)), &mut cfg)?;
    }
    apply_overrides(&args, &mut cfg)?;
    validate(&cfg)?;
    Ok(cfg)
}

fn string<'a>(node: Node<'a>, p: Prop<'a>) -> Result<&'a str, Error<'a>> {
    p.as_str().ok_or(Error::Value {
        node: node.name(),
        prop: p.name,
        value: Shown::Num(p.value.len() as u64),
        problem: "not a single string (value shown is its length)",
        allowed: "one NUL-terminated string",
    })
}

fn u32_prop<'a>(node: Node<'a>, name: &'static str) -> Result<Option<u32>, Error<'a>> {
    match node.prop(name) {
        None => Ok(None),
        Some(p) => p.as_u32().map(Some).ok_or(Error::Length {
            node: node.name(),
            prop: p.name,
            len: p.value.len(),
            unit: 4,
            exact: true,
            cells: None,
        }),
    }
}

/// `#address-cells` / `#size-cells` of a node (defaults 2 and 1).
fn cells_of<'a>(node: Node<'a>) -> Result<(u32, u32), Error<'a>> {
    let a = u32_prop(node, "#address-cells")?.unwrap_or(2);
    let s = u32_prop(node, "#size-cells")?.unwrap_or(1);
    if !(1..=2).contains(&a) || s > 2 {
        return Err(Error::Cells {
            node: node.name(),
            address: a,
            size: s,
        });
    }
    Ok((a, s))
}

/// The `(address, size)` entries of `prop` read with `cells`. With a size
/// count of 0, sizes are 0.
fn pairs<'a>(
    node: Node<'a>,
    p: Prop<'a>,
    (ac, sc): (u32, u32),
) -> Result<impl Iterator<Item = Range> + 'a, Error<'a>> {
    let unit = ((ac + sc) * 4) as usize;
    if p.value.is_empty() || !p.value.len().is_multiple_of(unit) {
        return Err(Error::Length {
            node: node.name(),
            prop: p.name,
            len: p.value.len(),
            unit,
            exact: false,
            cells: Some((ac, sc)),
        });
    }
    Ok(p.value.chunks_exact(unit).map(move |c| {
        let a = read_cells(c, ac).unwrap_or(0);
        let s = if sc == 0 {
            0
        } else {
            read_cells(&c[(ac * 4) as usize..], sc).unwrap_or(0)
        };
        (a, s)
    }))
}

fn push<T, const N: usize>(
    v: &mut Vec<T, N>,
    x: T,
    what: &'static str,
) -> Result<(), Error<'static>> {
    v.push(x).map_err(|_| Error::TooMany { what, max: N })
}

fn check_range<'a>(node: Node<'a>, prop: &'a str, (b, s): Range) -> Result<Range, Error<'a>> {
    if b.checked_add(s).is_none() {
        return Err(Error::Value {
            node: node.name(),
            prop,
            value: Shown::Num(b),
            problem: "range runs past the end of the address space",
            allowed: "base + size <= 2^64",
        });
    }
    Ok((b, s))
}

fn memory<'a>(fdt: &Fdt<'a>, cfg: &mut BootConfig) -> Result<(), Error<'a>> {
    cfg.ram = ram_of(fdt)?;
    Ok(())
}

/// The RAM ranges of the memory nodes.
fn ram_of<'a>(fdt: &Fdt<'a>) -> Result<Vec<Range, MAX_RAM>, Error<'a>> {
    let mut ram = Vec::new();
    let root = fdt.root();
    let cells = cells_of(root)?;
    for n in root.children() {
        let is_mem = match n.prop("device_type") {
            Some(p) => p.as_str() == Some("memory"),
            None => n.base_name() == "memory",
        };
        if !is_mem || !n.is_enabled() {
            continue;
        }
        let Some(reg) = n.prop("reg") else { continue };
        for r in pairs(n, reg, cells)? {
            let r = check_range(n, reg.name, r)?;
            if r.1 != 0 {
                push(&mut ram, r, "RAM ranges")?;
            }
        }
    }
    if ram.is_empty() {
        return Err(Error::NoRam);
    }
    Ok(ram)
}

fn reserved<'a>(fdt: &Fdt<'a>, cfg: &mut BootConfig) -> Result<(), Error<'a>> {
    for r in fdt.reservations() {
        if r.1 != 0 {
            push(&mut cfg.reserved, r, "reserved ranges")?;
        }
    }
    if let Some(rm) = fdt.root().child("reserved-memory") {
        let cells = cells_of(rm)?;
        for n in rm.children().filter(|n| n.is_enabled()) {
            // Nodes with only `size` are allocated by the OS: nothing fixed.
            let Some(reg) = n.prop("reg") else { continue };
            for r in pairs(n, reg, cells)? {
                let r = check_range(n, reg.name, r)?;
                if r.1 != 0 {
                    push(&mut cfg.reserved, r, "reserved ranges")?;
                }
            }
        }
    }
    Ok(())
}

fn cpus<'a>(fdt: &Fdt<'a>, cfg: &mut BootConfig) -> Result<(), Error<'a>> {
    let Some(cpus) = fdt.root().child("cpus") else {
        return Err(Error::Missing {
            node: "",
            prop: "cpus node",
        });
    };
    let (ac, _) = cells_of(cpus)?;
    for n in cpus.children() {
        if n.prop("device_type").and_then(|p| p.as_str()) != Some("cpu") {
            continue;
        }
        let reg = n.prop("reg").ok_or(Error::Missing {
            node: n.name(),
            prop: "reg",
        })?;
        let mpidr = pairs(n, reg, (ac, 0))?.next().map_or(0, |r| r.0);
        let spin = n.prop("enable-method").and_then(|p| p.strs().next()) == Some("spin-table");
        let release_addr = if spin { Some(release_addr(n)?) } else { None };
        // The kernel writes the entry point there.
        if let Some(rel) = release_addr.filter(|&r| r % 8 != 0 || !cfg.in_ram(r, 8)) {
            return Err(Error::Value {
                node: n.name(),
                prop: "cpu-release-addr",
                value: Shown::Num(rel),
                problem: "not an 8-byte aligned address in RAM",
                allowed: "an address inside a memory node",
            });
        }
        push(
            &mut cfg.cpu_list,
            Cpu {
                mpidr,
                release_addr,
            },
            "CPUs",
        )?;
    }
    if cfg.cpu_list.is_empty() {
        return Err(Error::Missing {
            node: cpus.name(),
            prop: "cpu nodes (device_type = \"cpu\")",
        });
    }
    cfg.cpus = cfg.cpu_list.len() as u32;
    Ok(())
}

/// A spin-table CPU's `cpu-release-addr`: 1 or 2 cells.
fn release_addr<'a>(n: Node<'a>) -> Result<u64, Error<'a>> {
    let p = n.prop("cpu-release-addr").ok_or(Error::Missing {
        node: n.name(),
        prop: "cpu-release-addr (enable-method is \"spin-table\")",
    })?;
    p.as_u32()
        .map(u64::from)
        .or_else(|| p.as_u64())
        .ok_or(Error::Value {
            node: n.name(),
            prop: p.name,
            value: Shown::Num(p.value.len() as u64),
            problem: "not 1 or 2 cells (value shown is its length)",
            allowed: "4 or 8 bytes",
        })
}

/// Translate a bus address of `path`'s node up to a CPU physical address,
/// through each ancestor bus's `ranges`.
fn translate<'a>(path: &Path<'a>, mut addr: u64) -> Result<u64, Error<'a>> {
    let nodes = path.nodes();
    for k in (1..nodes.len().saturating_sub(1)).rev() {
        let bus = nodes[k];
        let parent = nodes[k - 1];
        let Some(ranges) = bus.prop("ranges") else {
            return Err(Error::Unmapped {
                node: bus.name(),
                addr,
            });
        };
        if ranges.value.is_empty() {
            continue;
        }
        let (cac, sc) = cells_of(bus)?;
        let (pac, _) = cells_of(parent)?;
        let unit = ((cac + pac + sc) * 4) as usize;
        if sc == 0 || !ranges.value.len().is_multiple_of(unit) {
            return Err(Error::Length {
                node: bus.name(),
                prop: ranges.name,
                len: ranges.value.len(),
                unit,
                exact: false,
                cells: Some((cac, sc)),
            });
        }
        let hit = ranges.value.chunks_exact(unit).find_map(|e| {
            let child = read_cells(e, cac)?;
            let up = read_cells(e.get((cac * 4) as usize..)?, pac)?;
            let size = read_cells(e.get(((cac + pac) * 4) as usize..)?, sc)?;
            let off = addr.checked_sub(child).filter(|&o| o < size)?;
            up.checked_add(off)
        });
        addr = hit.ok_or(Error::Unmapped {
            node: bus.name(),
            addr,
        })?;
    }
    Ok(addr)
}

/// Entry `index` of a device's `reg`, translated to a CPU address.
fn reg<'a>(path: &Path<'a>, index: usize) -> Result<Option<Range>, Error<'a>> {
    let node = path.node();
    let Some(parent) = path.parent() else {
        return Ok(None);
    };
    let Some(p) = node.prop("reg") else {
        return Ok(None);
    };
    let cells = cells_of(parent)?;
    let Some((a, s)) = pairs(node, p, cells)?.nth(index) else {
        return Ok(None);
    };
    let base = translate(path, a)?;
    Ok(Some(check_range(node, p.name, (base, s))?))
}

fn irqs<'a>(
    node: Node<'a>,
) -> Result<impl Iterator<Item = Result<Irq, Error<'a>>> + 'a, Error<'a>> {
    let v = node.prop("interrupts").map_or(&[][..], |p| p.value);
    if !v.len().is_multiple_of(12) {
        return Err(Error::Length {
            node: node.name(),
            prop: "interrupts",
            len: v.len(),
            unit: 12,
            exact: false,
            cells: None,
        });
    }
    Ok(v.chunks_exact(12).map(move |c| {
        let cell = |i: usize| read_cells(&c[i * 4..], 1).unwrap_or(0) as u32;
        let kind = match cell(0) {
            0 => IrqKind::Spi,
            1 => IrqKind::Ppi,
            t => {
                return Err(Error::Value {
                    node: node.name(),
                    prop: "interrupts",
                    value: Shown::Num(t.into()),
                    problem: "unknown interrupt type",
                    allowed: "0 (SPI), 1 (PPI)",
                })
            }
        };
        Ok(Irq {
            kind,
            num: cell(1),
            flags: cell(2),
        })
    }))
}

fn first_irq<'a>(node: Node<'a>) -> Result<Option<Irq>, Error<'a>> {
    irqs(node)?.next().transpose()
}

const GIC_V2: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic"];
const GIC_V3: &[&str] = &["arm,gic-v3"];
const TIMERS: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];
const PL011: &[&str] = &["arm,pl011"];
const NS16550: &[&str] = &["snps,dw-apb-uart", "ns16550a", "ns16550", "ns8250"];
const BCM_AUX: &[&str] = &["brcm,bcm2835-aux-uart"];

fn is_uart(n: &Node<'_>) -> bool {
    any_compatible(n, PL011) || any_compatible(n, BCM_AUX) || any_compatible(n, NS16550)
}

fn any_compatible(n: &Node<'_>, list: &[&str]) -> bool {
    list.iter().any(|c| n.is_compatible(c))
}

/// Whether `path` is the node named by the absolute path `want`.
fn path_is(path: &Path<'_>, want: &str) -> bool {
    let mut parts = want.split('/').filter(|p| !p.is_empty());
    for n in &path.nodes()[1..] {
        match parts.next() {
            Some(p) if n.name() == p || (!p.contains('@') && n.base_name() == p) => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

fn devices<'a>(fdt: &Fdt<'a>, cfg: &mut BootConfig) -> Result<(), Error<'a>> {
    for path in fdt.walk() {
        let n = path.node();
        if !n.is_enabled() {
            continue;
        }
        if cfg.gic.is_none() && (any_compatible(&n, GIC_V2) || any_compatible(&n, GIC_V3)) {
            cfg.gic = Some(gic(&path)?);
        } else if cfg.timer.is_none() && any_compatible(&n, TIMERS) {
            cfg.timer = Some(timer(n)?);
        } else if cfg.psci.is_none()
            && n.prop("compatible")
                .is_some_and(|p| p.strs().any(|s| s.starts_with("arm,psci")))
        {
            cfg.psci = Some(psci(n)?);
        }
    }
    cfg.uart = console_uart(fdt)?;
    Ok(())
}

/// The UART `stdout-path` names (through `/aliases` if it is an alias),
/// else the first enabled known UART. Only that one node is read.
fn console_uart<'a>(fdt: &Fdt<'a>) -> Result<Option<UartInfo>, Error<'a>> {
    let root = fdt.root();
    let stdout = root
        .child("chosen")
        .and_then(|c| c.str("stdout-path").or_else(|| c.str("linux,stdout-path")))
        .map(|s| s.split(':').next().unwrap_or(""))
        .map(|s| {
            if s.starts_with('/') {
                s
            } else {
                root.child("aliases").and_then(|a| a.str(s)).unwrap_or("")
            }
        })
        .filter(|s| s.starts_with('/'));

    let mut first = None;
    for path in fdt.walk() {
        let n = path.node();
        if !n.is_enabled() || !is_uart(&n) {
            continue;
        }
        if stdout.is_some_and(|s| path_is(&path, s)) {
            return uart(&path).map(Some);
        }
        first.get_or_insert(path);
    }
    first.map(|p| uart(&p)).transpose()
}

fn gic<'a>(path: &Path<'a>) -> Result<GicInfo, Error<'a>> {
    let n = path.node();
    let gicd = reg(path, 0)?.ok_or(Error::Missing {
        node: n.name(),
        prop: "reg",
    })?;
    let maint = first_irq(n)?;
    if any_compatible(&n, GIC_V3) {
        Ok(GicInfo {
            version: 3,
            gicd,
            gicr: reg(path, 1)?,
            gicc: reg(path, 2)?,
            gich: reg(path, 3)?,
            gicv: reg(path, 4)?,
            maint,
        })
    } else {
        Ok(GicInfo {
            version: 2,
            gicd,
            gicr: None,
            gicc: Some(reg(path, 1)?.ok_or(Error::Missing {
                node: n.name(),
                prop: "reg entry for GICC",
            })?),
            gich: reg(path, 2)?,
            gicv: reg(path, 3)?,
            maint,
        })
    }
}

fn timer<'a>(n: Node<'a>) -> Result<TimerIrqs, Error<'a>> {
    let mut it = irqs(n)?;
    let mut next = || {
        it.next().unwrap_or(Err(Error::Length {
            node: n.name(),
            prop: "interrupts",
            len: n.prop("interrupts").map_or(0, |p| p.value.len()),
            unit: 48,
            exact: false,
            cells: None,
        }))
    };
    Ok(TimerIrqs {
        sec_phys: next()?,
        phys: next()?,
        virt: next()?,
        hyp: next()?,
    })
}

fn psci<'a>(n: Node<'a>) -> Result<PsciInfo, Error<'a>> {
    let p = n.prop("method").ok_or(Error::Missing {
        node: n.name(),
        prop: "method",
    })?;
    let m = string(n, p)?;
    let method = match m {
        "smc" => Conduit::Smc,
        "hvc" => Conduit::Hvc,
        _ => {
            return Err(Error::Value {
                node: n.name(),
                prop: p.name,
                value: Shown::Str(m),
                problem: "unknown PSCI method",
                allowed: "smc, hvc",
            })
        }
    };
    let v0_2 = n.is_compatible("arm,psci-0.2") || n.is_compatible("arm,psci-1.0");
    Ok(PsciInfo { method, v0_2 })
}

fn uart<'a>(path: &Path<'a>) -> Result<UartInfo, Error<'a>> {
    let n = path.node();
    let regs = reg(path, 0)?.ok_or(Error::Missing {
        node: n.name(),
        prop: "reg",
    })?;
    let kind = if any_compatible(&n, PL011) {
        UartKind::Pl011
    } else if any_compatible(&n, BCM_AUX) {
        UartKind::Bcm2835Aux
    } else {
        let shift = u32_prop(n, "reg-shift")?.unwrap_or(0);
        let width = u32_prop(n, "reg-io-width")?.unwrap_or(1);
        if shift > 3 {
            return Err(Error::Value {
                node: n.name(),
                prop: "reg-shift",
                value: Shown::Num(shift.into()),
                problem: "unsupported",
                allowed: "0 to 3",
            });
        }
        if !matches!(width, 1 | 2 | 4) {
            return Err(Error::Value {
                node: n.name(),
                prop: "reg-io-width",
                value: Shown::Num(width.into()),
                problem: "unsupported",
                allowed: "1, 2, 4",
            });
        }
        UartKind::Ns16550 {
            reg_shift: shift as u8,
            io_width: width as u8,
        }
    };
    let clock_hz = u32_prop(n, "clock-frequency")?;
    if clock_hz == Some(0) {
        return Err(Error::Value {
            node: n.name(),
            prop: "clock-frequency",
            value: Shown::Num(0),
            problem: "a UART clock of 0 Hz",
            allowed: "the clock rate in Hz, above 0",
        });
    }
    Ok(UartInfo {
        kind,
        regs,
        irq: first_irq(n)?,
        clock_hz,
    })
}

const KERNEL: &[&str] = &["multiboot,kernel", "xen,linux-zimage"];
const RAMDISK: &[&str] = &["multiboot,ramdisk", "xen,linux-initrd"];

/// The guest modules of `chosen`, added after `cfg`'s guests. With
/// `bundle` (its base and length) each `reg` is an offset into the bundle.
fn modules<'a>(
    chosen: Node<'a>,
    bundle: Option<(u64, u64)>,
    cfg: &mut BootConfig,
) -> Result<(), Error<'a>> {
    let first = cfg.guests.len();
    let cells = cells_of(chosen)?;
    for n in chosen.children() {
        let kernel = any_compatible(&n, KERNEL);
        let ramdisk = any_compatible(&n, RAMDISK);
        if !kernel && !ramdisk {
            continue;
        }
        if kernel && ramdisk {
            return Err(Error::Module {
                node: n.name(),
                problem: "both a kernel and a ramdisk module",
            });
        }
        let reg = n.prop("reg").ok_or(Error::Missing {
            node: n.name(),
            prop: "reg",
        })?;
        let unit = ((cells.0 + cells.1) * 4) as usize;
        if reg.value.len() != unit || cells.1 == 0 {
            return Err(Error::Length {
                node: n.name(),
                prop: reg.name,
                len: reg.value.len(),
                unit,
                exact: true,
                cells: Some(cells),
            });
        }
        let range = pairs(n, reg, cells)?.next().unwrap_or((0, 0));
        let range = check_range(n, reg.name, range)?;
        if range.1 == 0 {
            return Err(Error::Module {
                node: n.name(),
                problem: "reg has size 0",
            });
        }
        let range = match bundle {
            None => range,
            Some((base, len)) => {
                // check_range made offset + size fit in a u64.
                let addr = base
                    .checked_add(range.0)
                    .filter(|_| range.0 + range.1 <= len)
                    .ok_or(Error::Module {
                        node: n.name(),
                        problem: "reg (an offset into the guest bundle) runs past the bundle's end",
                    })?;
                check_range(n, reg.name, (addr, range.1))?
            }
        };

        if ramdisk {
            if let Some(p) = n
                .props()
                .find(|p| p.name.starts_with("hyp,") || p.name == "bootargs")
            {
                return Err(Error::PropNotAllowed {
                    node: n.name(),
                    prop: p.name,
                    why: "not allowed on a ramdisk module (put it on the multiboot,kernel module)",
                });
            }
            let ours = cfg.guests.len() > first;
            let Some(g) = cfg.guests.last_mut().filter(|_| ours) else {
                return Err(Error::Module {
                    node: n.name(),
                    problem: "ramdisk module with no kernel module before it",
                });
            };
            if g.ramdisk.is_some() {
                return Err(Error::Module {
                    node: n.name(),
                    problem: "a second ramdisk for the same kernel module",
                });
            }
            g.ramdisk = Some(range);
            continue;
        }

        let index = cfg.guests.len();
        let mut g = GuestConfig {
            name: String::new(),
            image: range,
            ramdisk: None,
            mem_bytes: DEFAULT_GUEST_MEM,
            pool_bytes: None,
            populate: None,
            aarch32: false,
            vcpus: 1,
            sw: SwMode::default(),
            bootargs: String::new(),
            hwdom: false,
            firmware: false,
            base: None,
            passthrough: None,
        };
        let _ = write!(g.name, "guest{index}");
        for p in n.props() {
            match p.name {
                "hyp,name" => {
                    let s = string(n, p)?;
                    if !name_ok(s) {
                        return Err(bad(n, p, Shown::Str(s), "bad name", NAME_ALLOWED));
                    }
                    g.name = String::new();
                    let _ = g.name.push_str(s);
                }
                "hyp,mem" => g.mem_bytes = mem_prop(n, p)?,
                "hyp,vcpus" => {
                    let v = u32_prop(n, "hyp,vcpus")?.unwrap_or(0);
                    if !vcpus_ok(v) {
                        return Err(bad(
                            n,
                            p,
                            Shown::Num(v.into()),
                            "out of range",
                            VCPUS_ALLOWED,
                        ));
                    }
                    g.vcpus = v;
                }
                "hyp,sw" => {
                    let s = string(n, p)?;
                    g.sw = parse_sw(s).ok_or(bad(
                        n,
                        p,
                        Shown::Str(s),
                        "unknown set/way mode",
                        SW_ALLOWED,
                    ))?;
                }
                "hyp,arch" => {
                    let s = string(n, p)?;
                    g.aarch32 = match s {
                        "aarch64" => false,
                        "aarch32" => true,
                        _ => {
                            return Err(bad(
                                n,
                                p,
                                Shown::Str(s),
                                "unknown architecture",
                                "aarch64, aarch32",
                            ))
                        }
                    };
                }
                "bootargs" => {
                    let s = string(n, p)?;
                    g.bootargs.push_str(s).map_err(|_| {
                        bad(
                            n,
                            p,
                            Shown::Num(s.len() as u64),
                            "too long (value shown is its length)",
                            "up to 512 bytes",
                        )
                    })?;
                }
                "hyp,hwdom" => g.hwdom = yes_no(n, p)?,
                "hyp,firmware" => g.firmware = yes_no(n, p)?,
                "hyp,base" => {
                    let v = p.as_u32().map(u64::from).or_else(|| p.as_u64());
                    let v = v.ok_or(bad(n, p, Shown::Num(p.value.len() as u64), "not a u32 or u64 (value shown is its length)", BASE_ALLOWED))?;
                    if !base_ok(v) {
                        return Err(bad(n, p, Shown::Num(v), "not 2M-aligned", BASE_ALLOWED));
                    }
                    g.base = Some(v);
                }
                "hyp,passthrough" => {
                    let mut list: String<PASSTHROUGH_LEN> = String::new();
                    for path in p.strs() {
                        let ok = (list.is_empty() || list.push(',').is_ok()) && list.push_str(path).is_ok();
                        if !ok {
                            return Err(bad(n, p, Shown::Num(p.value.len() as u64), "too long (value shown is its length)", PASSTHROUGH_ALLOWED));
                        }
                    }
                    if !passthrough_ok(&list) {
                        return Err(bad(n, p, Shown::Str(string(n, p).unwrap_or("")), "bad path list", PASSTHROUGH_ALLOWED));
                    }
                    g.passthrough = Some(list);
                }
                name if name.starts_with("hyp,") => {
                    return Err(Error::PropNotAllowed {
                        node: n.name(),
                        prop: name,
                        why: "unknown property (allowed: hyp,name, hyp,mem, hyp,vcpus, hyp,sw, hyp,arch, hyp,hwdom, hyp,firmware, hyp,base, hyp,passthrough)",
                    });
                }
                _ => {}
            }
        }
        push(&mut cfg.guests, g, "guest kernel modules")?;
    }
    Ok(())
}

/// A flag property: empty, "yes" or "no".
fn yes_no<'a>(n: Node<'a>, p: Prop<'a>) -> Result<bool, Error<'a>> {
    match p.value {
        [] => Ok(true),
        _ => match string(n, p)? {
            "yes" => Ok(true),
            "no" => Ok(false),
            s => Err(bad(n, p, Shown::Str(s), "not yes or no", YESNO_ALLOWED)),
        },
    }
}

fn bad<'a>(
    n: Node<'a>,
    p: Prop<'a>,
    value: Shown<'a>,
    problem: &'static str,
    allowed: &'static str,
) -> Error<'a> {
    Error::Value {
        node: n.name(),
        prop: p.name,
        value,
        problem,
        allowed,
    }
}

/// `hyp,mem`: a u32 or u64 byte count, or a size string.
fn mem_prop<'a>(n: Node<'a>, p: Prop<'a>) -> Result<u64, Error<'a>> {
    let looks_like_text = p.value.len() >= 2
        && p.value.last() == Some(&0)
        && p.value[..p.value.len() - 1]
            .iter()
            .all(|b| b.is_ascii_graphic());
    let (v, shown) = if looks_like_text {
        let s = string(n, p)?;
        (
            parse_size(s).ok_or(bad(n, p, Shown::Str(s), "not a size", MEM_ALLOWED))?,
            Shown::Str(s),
        )
    } else if let Some(v) = p.as_u32() {
        (u64::from(v), Shown::Num(v.into()))
    } else if let Some(v) = p.as_u64() {
        (v, Shown::Num(v))
    } else {
        return Err(bad(
            n,
            p,
            Shown::Num(p.value.len() as u64),
            "not a size (value shown is its length)",
            MEM_ALLOWED,
        ));
    };
    if !mem_ok(v) {
        return Err(bad(n, p, shown, "out of range", MEM_ALLOWED));
    }
    Ok(v)
}

fn apply_overrides<'a>(args: &Args<'a>, cfg: &mut BootConfig) -> Result<(), Error<'a>> {
    for (i, o) in args.guests.iter().enumerate() {
        let Some(token) = o.first_token else { continue };
        let Some(g) = cfg.guests.get_mut(i) else {
            return Err(Error::NoSuchGuest {
                token,
                count: cfg.guests.len(),
            });
        };
        if let Some(m) = o.mem {
            g.mem_bytes = m;
        }
        if let Some(m) = o.pool {
            g.pool_bytes = Some(m);
        }
        if o.populate.is_some() {
            g.populate = o.populate;
        }
        if let Some(v) = o.vcpus {
            g.vcpus = v;
        }
        if let Some(s) = o.sw {
            g.sw = s;
        }
        if let Some(n) = o.name {
            g.name = String::new();
            let _ = g.name.push_str(n);
        }
        if let Some(h) = o.hwdom {
            g.hwdom = h;
        }
        if o.base.is_some() {
            g.base = o.base;
        }
        if let Some(p) = o.passthrough {
            let mut list = String::new();
            // parse_bootargs checked the length.
            let _ = list.push_str(p);
            g.passthrough = Some(list);
        }
    }
    Ok(())
}

fn validate(cfg: &BootConfig) -> Result<(), Error<'static>> {
    // Values were checked where they were read; these rules need the whole.
    let mut mods: Vec<(usize, &'static str, Range), { 2 * MAX_GUESTS }> = Vec::new();
    let ram: u64 = cfg.ram.iter().map(|r| r.1).sum();
    let mut hwdom: Option<usize> = None;
    for (i, g) in cfg.guests.iter().enumerate() {
        if g.hwdom {
            if let Some(first) = hwdom {
                return Err(Error::TwoHwdoms { first, second: i });
            }
            hwdom = Some(i);
            if g.populate == Some(Populate::Demand) || g.pool_bytes.is_some() {
                return Err(Error::Conflict {
                    guest: i,
                    problem: "the hardware domain's RAM is direct-mapped and populated at boot (allowed: no populate=demand, no pool=)",
                });
            }
            if let Some(base) = g.base {
                if !cfg.in_ram(base, g.mem_bytes) {
                    return Err(Error::NotInRam { guest: i, what: "RAM (base=, mem=)", base, size: g.mem_bytes });
                }
            }
            if g.firmware {
                return Err(Error::Conflict {
                    guest: i,
                    problem: "the hardware domain boots a Linux kernel with the board's tree (allowed: hwdom=yes or hyp,firmware, not both)",
                });
            }
        } else if g.base.is_some() || g.passthrough.is_some() {
            return Err(Error::Conflict {
                guest: i,
                problem: "base= and passthrough= are for the hardware domain (allowed: with hwdom=yes)",
            });
        }
        if g.firmware && g.ramdisk.is_some() {
            return Err(Error::Conflict {
                guest: i,
                problem: "a firmware guest takes no ramdisk (allowed: hyp,firmware with a kernel module alone)",
            });
        }
        if g.sw == SwMode::No && g.populate == Some(Populate::Demand) {
            return Err(Error::Conflict {
                guest: i,
                problem: "sw=no with populate=demand: untrapped set/way needs eager memory (allowed: populate=eager, or sw=yes/auto)",
            });
        }
        let eager = g.hwdom || g.populate.map_or(g.sw == SwMode::No, |p| p == Populate::Eager);
        if eager && g.pool_bytes.is_some() {
            return Err(Error::Conflict {
                guest: i,
                problem: "pool= with eager memory: a pool is for populate=demand (eager memory is all of mem)",
            });
        }
        let (field, bytes) = match g.pool_bytes {
            Some(p) if !eager => ("pool", p.min(g.mem_bytes)),
            _ => ("mem", g.mem_bytes),
        };
        if bytes > ram {
            return Err(Error::TooBig { guest: i, field, bytes, ram });
        }
        for (what, r) in [("image", Some(g.image)), ("ramdisk", g.ramdisk)] {
            let Some(r) = r else { continue };
            if !cfg.in_ram(r.0, r.1) {
                return Err(Error::NotInRam {
                    guest: i,
                    what,
                    base: r.0,
                    size: r.1,
                });
            }
            for &(j, other, o) in &mods {
                if r.0 < o.0 + o.1 && o.0 < r.0 + r.1 {
                    return Err(Error::Overlap {
                        a: (j, other),
                        b: (i, what),
                    });
                }
            }
            let _ = mods.push((i, what, r));
        }
    }
    Ok(())
}

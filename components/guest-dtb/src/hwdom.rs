//! The hardware domain's device tree: the board's own DTB, edited.
//!
//! The hardware domain (hwdom, like Xen's dom0) is a Linux guest whose RAM is
//! direct-mapped (IPA = PA) and which owns the board's devices. Its tree is
//! the board's tree with the edits below; [`hwdom_dtb`] makes them and says
//! which MMIO pages and SPIs the hypervisor must give the hwdom
//! ([`Passthrough`]). Parsing, the in-memory tree and serialising are
//! `dtoolkit`'s (its `model::DeviceTree`); this module decides the edits.
//!
//! **Edits** (each one is checked by `tests/hwdom.rs`):
//! - memory: every `device_type = "memory"` node removed, one `memory@<base>`
//!   added with `reg` = every [`HwdomSpec::ram`] range, in the root's cells;
//! - `/chosen`: `bootargs`, `stdout-path` (the console node's full path) and
//!   the initrd (`linux,initrd-start`/`-end`, 64-bit) set; every child node,
//!   every `hyp,*`/`xen,*` property, `stdin-path`, `linux,stdout-path` and a
//!   stale initrd removed; other properties (`kaslr-seed`, `rng-seed`) stay;
//! - CPUs: the first `vcpus` cpu nodes of `/cpus` kept (phandles,
//!   `compatible` and the rest kept) with `reg` = vCPU index (the vCPU MPIDR
//!   affinity), `enable-method = "psci"`, no `cpu-release-addr`; the other
//!   cpu nodes, `cpu-map` and an `enable-method` of `/cpus` itself (32-bit
//!   SMP ops) removed. A board with fewer cpu nodes than `vcpus` is an error
//!   (no node is invented);
//! - every PSCI node removed and `/psci` added (PSCI 1.0/0.2 over HVC);
//! - the GIC (`arm,gic-400`, `arm,cortex-a15-gic`, `arm,cortex-a9-gic`,
//!   `arm,cortex-a7-gic`): `reg` cut to its first two entries (GICD, GICC:
//!   the vGIC serves GICD and maps GICV at GICC) and `interrupts` (the
//!   maintenance interrupt) removed. Nodes inside it (GICv2m MSI frames,
//!   which raise the physical GIC's SPIs) are removed: Linux's GIC driver
//!   probes them whatever their `status`;
//! - Arm PMU nodes (a `compatible` starting `arm,` and containing `pmu`):
//!   disabled;
//! - the console: the device node whose first translated `reg` starts at
//!   [`HwdomSpec::console`]'s address stays enabled (status `okay`), gets
//!   `interrupts = <0 n 4>` with the GIC as parent, and is never passed
//!   through; with no such node, `/pl011@<addr>` (and a 24 MHz fixed clock
//!   `/hwdom-uart-clk`) is added;
//! - devices: each device node (below) is passed through (left as it is) or
//!   gets `status = "disabled"`;
//! - the memory reservation block is kept.
//!
//! **Device nodes.** A node with `reg` whose parent's `#size-cells` is not 0,
//! other than: the root, memory nodes, `/cpus`, `/chosen`, `/aliases`,
//! `/__symbols__`, `/reserved-memory` (and everything under those), PSCI
//! nodes, the GIC and its children, and the console node. Its `reg` is
//! translated to CPU physical addresses through every ancestor's `ranges`
//! (an empty `ranges` is the identity). Two kinds of node with `reg` are
//! not device nodes and are left as they are, because they are not separate
//! MMIO: a child of a `#size-cells = 0` bus (I2C, SPI, MDIO devices, indexed
//! clocks) and a node whose address space ends at an ancestor that has
//! `reg` but no `ranges` (a sub-block of that device, e.g. GENET's `mdio`).
//! A device node whose address space ends at a bus without `ranges`, or
//! whose address no `ranges` window covers, is not translatable: disabled,
//! never passed.
//!
//! **Which are passed.** With [`HwdomSpec::passthrough`] `Some`, exactly
//! the listed paths; a path listed twice, missing, not a device node, not
//! translatable, a PCI host bridge, the console, or whose pages overlap a
//! kept range or the hwdom's RAM is an error. With `None`, every enabled
//! (`status` absent, `okay` or `ok`), translatable device node whose pages
//! overlap no kept range and no RAM, except PCI host bridges
//! (`device_type = "pci"`): the hypervisor maps only a node's `reg`, not a
//! bridge's `ranges` windows, so a bridge would not work and is disabled.
//! Pages are 4 KiB: a device sharing a page with a kept range is not passed
//! (on the Raspberry Pi 4, the AUX SPI controllers share the mini-UART's
//! page). The hwdom console's own page always counts as kept.
//!
//! **Invariants.**
//! - On `Ok`, the blob is a well-formed version-17 tree that `dtoolkit`
//!   parses back; on `Err`, nothing was produced. No input panics.
//! - [`Passthrough::regions`] are 4 KiB aligned, sorted, merged (no two
//!   touch), and none overlaps a kept range, the console page or RAM.
//! - [`Passthrough::spis`] are GIC INTIDs 32..=1019 from the passed nodes'
//!   `interrupts`/`interrupts-extended` specifiers whose parent is the GIC
//!   (3 cells, type 0); other controllers' specifiers and PPIs are ignored.
//! - Every device node not in [`Passthrough::nodes`] is disabled in the
//!   output; every node in it is byte-for-byte as on the board.
//!
//! **Limits.** `dtoolkit` 0.4 rejects node and property names longer than
//! 31 characters (the specification's limit, which many Linux board trees
//! exceed, e.g. `arm,coresight-loses-context-with-cpu`): such boards get
//! [`HwdomError::Malformed`]. Two children of one node with the same name
//! are merged by `dtoolkit` (the last one wins). Phandles of removed cpu
//! nodes may be left dangling in other nodes (e.g. a PMU's
//! `interrupt-affinity`, disabled anyway).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use dtoolkit::fdt::Fdt;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use dtoolkit::{Node, Property};

use crate::{MAX_VCPUS, UART_CLOCK_HZ, UART_WINDOW};

/// The MMIO granule the hypervisor maps at.
pub const PAGE: u64 = 0x1000;

/// GICv2 `compatible`s the editor recognises.
pub const GIC_COMPATIBLES: [&str; 4] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];

/// Highest SPI INTID on a GICv2.
const MAX_SPI_INTID: u32 = 1019;
const IRQ_LEVEL_HIGH: u32 = 4;

/// What the hwdom is given. Addresses are physical (= the hwdom's IPAs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwdomSpec<'a> {
    /// The hwdom's RAM ranges `(base, size)`, IPA = PA.
    pub ram: &'a [(u64, u64)],
    /// 1..=[`MAX_VCPUS`].
    pub vcpus: u32,
    pub bootargs: &'a str,
    /// Initrd `[start, end)` in its RAM, if any.
    pub initrd: Option<(u64, u64)>,
    /// MMIO ranges `(base, size)` the hypervisor keeps: GICH, GICV, its own
    /// console UART.
    pub keep: &'a [(u64, u64)],
    /// The hwdom's console: an emulated PL011 at this physical address with
    /// this SPI number (GIC SPI n = INTID 32+n).
    pub console: (u64, u32),
    /// Device node paths the hwdom owns; `None` = every eligible device.
    pub passthrough: Option<&'a [&'a str]>,
}

/// What the hypervisor gives the hwdom besides its RAM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Passthrough {
    /// MMIO the hwdom owns: 4 KiB-rounded, sorted, merged `(base, size)`,
    /// CPU physical addresses.
    pub regions: Vec<(u64, u64)>,
    /// GIC INTIDs (>= 32) of the SPIs of the devices it owns, sorted,
    /// deduplicated.
    pub spis: Vec<u32>,
    /// Those of [`Passthrough::spis`] the tree says are edge-triggered (a
    /// flags cell with bit 0 or 1 set); the rest are level. Sorted.
    pub edge: Vec<u32>,
    /// Paths of the nodes passed through, in tree order (for the boot log).
    pub nodes: Vec<String>,
}

/// Why no hwdom tree was made. Each displays as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HwdomError {
    /// The board blob does not parse, or a node the edit needs is broken.
    Malformed(String),
    /// No node with a GICv2 `compatible`.
    NoGic,
    /// The board has fewer cpu nodes than the hwdom has vCPUs.
    TooFewCpus { have: u32, want: u32 },
    /// The spec itself is wrong (vCPUs, RAM, initrd, bootargs, an address
    /// the root's cells cannot hold).
    Spec(String),
    /// A passthrough path names no node.
    NoSuchNode(String),
    /// A passthrough path names a node that is not a device node.
    NotDevice(String),
    /// A passthrough path is listed twice.
    ClaimedTwice(String),
    /// A passthrough path is the hwdom console's node.
    Console(String),
    /// A passthrough node's `reg` cannot be translated to CPU addresses.
    NotTranslatable(String),
    /// A passthrough node is a PCI host bridge.
    PciHost(String),
    /// A passthrough node's pages overlap a range the hypervisor keeps.
    Kept { path: String, base: u64, size: u64 },
    /// A passthrough node's pages overlap the hwdom's RAM.
    InRam(String),
}

impl fmt::Display for HwdomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HwdomError::*;
        match self {
            Malformed(why) => write!(f, "board DTB malformed: {why}"),
            NoGic => f.write_str("board DTB has no GICv2 node"),
            TooFewCpus { have, want } => write!(
                f,
                "board DTB has {have} cpu nodes, the hwdom wants {want} vCPUs"
            ),
            Spec(why) => write!(f, "hwdom spec: {why}"),
            NoSuchNode(p) => write!(f, "hwdom passthrough: no node {p}"),
            NotDevice(p) => write!(
                f,
                "hwdom passthrough: {p} is not a device node (no MMIO reg of its own)"
            ),
            ClaimedTwice(p) => write!(f, "hwdom device {p} is claimed twice"),
            Console(p) => write!(
                f,
                "hwdom device {p} is claimed by the hypervisor (its console)"
            ),
            NotTranslatable(p) => write!(
                f,
                "hwdom device {p}: its reg cannot be translated to CPU addresses"
            ),
            PciHost(p) => write!(
                f,
                "hwdom device {p} is a PCI host bridge (its windows are not mapped)"
            ),
            Kept { path, base, size } => write!(
                f,
                "hwdom device {path} is claimed by the hypervisor (MMIO {base:#x}+{size:#x})"
            ),
            InRam(p) => write!(f, "hwdom device {p} overlaps the hwdom's RAM"),
        }
    }
}

// ---------------------------------------------------------------- reading

fn prop<'a>(n: &'a DeviceTreeNode, name: &str) -> Option<&'a [u8]> {
    // `value_as` keeps the tree's lifetime (`value` ties it to the borrow).
    n.property(name).and_then(|p| p.value_as::<&[u8]>().ok())
}

fn prop_u32(n: &DeviceTreeNode, name: &str) -> Option<u32> {
    let v: [u8; 4] = prop(n, name)?.try_into().ok()?;
    Some(u32::from_be_bytes(v))
}

fn cells(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The strings of a string-list property.
fn strs(v: &[u8]) -> impl Iterator<Item = &str> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    v.split(|b| *b == 0)
        .filter_map(|s| core::str::from_utf8(s).ok())
}

fn compatibles(n: &DeviceTreeNode) -> impl Iterator<Item = &str> {
    strs(prop(n, "compatible").unwrap_or(&[]))
}

fn str_prop<'a>(n: &'a DeviceTreeNode, name: &str) -> Option<&'a str> {
    strs(prop(n, name)?).next()
}

fn enabled(n: &DeviceTreeNode) -> bool {
    match prop(n, "status") {
        None => true,
        Some(_) => matches!(str_prop(n, "status"), Some("okay" | "ok")),
    }
}

fn phandle(n: &DeviceTreeNode) -> Option<u32> {
    prop_u32(n, "phandle").or_else(|| prop_u32(n, "linux,phandle"))
}

fn is_gic(n: &DeviceTreeNode) -> bool {
    compatibles(n).any(|c| GIC_COMPATIBLES.contains(&c))
}

fn is_pmu(n: &DeviceTreeNode) -> bool {
    compatibles(n).any(|c| c.starts_with("arm,") && c.contains("pmu"))
}

fn is_psci(n: &DeviceTreeNode) -> bool {
    compatibles(n).any(|c| c.starts_with("arm,psci"))
}

fn is_memory(n: &DeviceTreeNode) -> bool {
    str_prop(n, "device_type") == Some("memory")
}

/// A number of `cells` cells: cells past the last two must be 0 (a PCI
/// address's space code is not).
fn number(c: &[u32]) -> Option<u64> {
    let split = c.len().saturating_sub(2);
    let (high, low) = c.split_at(split);
    if high.iter().any(|&x| x != 0) {
        return None;
    }
    Some(low.iter().fold(0u64, |acc, &x| (acc << 32) | u64::from(x)))
}

// ------------------------------------------------------------ translation

/// How the children of a node reach their parent's address space.
#[derive(Clone, Debug)]
enum Level {
    /// No `ranges`: the children's addresses are local to this node.
    Closed { has_reg: bool },
    /// Empty `ranges`.
    Identity,
    /// `(child base, parent base, length)` windows.
    Map(Vec<(u64, u64, u64)>),
}

/// What a node's `reg` means.
#[derive(Clone, Debug)]
enum Reg {
    /// A child of a `#size-cells = 0` bus: not MMIO.
    NotMmio,
    /// Addresses local to a device ancestor: part of that device.
    SubBlock,
    /// Cannot reach CPU addresses.
    Untranslatable,
    /// CPU physical `(base, size)`s.
    Mmio(Vec<(u64, u64)>),
}

fn translate(levels: &[Level], mut addr: u64, size: u64) -> Result<u64, Reg> {
    for level in levels.iter().rev() {
        match level {
            Level::Closed { has_reg: true } => return Err(Reg::SubBlock),
            Level::Closed { has_reg: false } => return Err(Reg::Untranslatable),
            Level::Identity => {}
            Level::Map(windows) => {
                let end = addr.checked_add(size).ok_or(Reg::Untranslatable)?;
                let (child, parent, _) = windows
                    .iter()
                    .find(|&&(c, _, len)| c <= addr && c.checked_add(len).is_some_and(|e| end <= e))
                    .ok_or(Reg::Untranslatable)?;
                addr = parent
                    .checked_add(addr - child)
                    .ok_or(Reg::Untranslatable)?;
            }
        }
    }
    Ok(addr)
}

/// The `(address, size)` entries of a `reg`-style value.
fn entries(v: &[u8], ac: u32, sc: u32) -> Option<Vec<(u64, u64)>> {
    let c = cells(v);
    let stride = ac as usize + sc as usize;
    if stride == 0 || !v.len().is_multiple_of(4) || !c.len().is_multiple_of(stride) {
        return None;
    }
    c.chunks_exact(stride)
        .map(|e| {
            let (a, s) = e.split_at(ac as usize);
            Some((number(a)?, number(s)?))
        })
        .collect()
}

fn node_reg(v: &[u8], ac: u32, sc: u32, levels: &[Level]) -> Reg {
    if sc == 0 {
        return Reg::NotMmio;
    }
    let Some(raw) = entries(v, ac, sc) else {
        return Reg::Untranslatable;
    };
    let mut out = Vec::with_capacity(raw.len());
    for (a, s) in raw {
        match translate(levels, a, s) {
            Ok(pa) => out.push((pa, s)),
            Err(r) => return r,
        }
    }
    Reg::Mmio(out)
}

fn level_of(n: &DeviceTreeNode, parent_ac: u32) -> Level {
    let Some(v) = prop(n, "ranges") else {
        return Level::Closed {
            has_reg: n.property("reg").is_some(),
        };
    };
    if v.is_empty() {
        return Level::Identity;
    }
    let ac = prop_u32(n, "#address-cells").unwrap_or(2);
    let sc = prop_u32(n, "#size-cells").unwrap_or(1);
    let stride = (ac as usize) + (parent_ac as usize) + (sc as usize);
    let c = cells(v);
    let mut windows = Vec::new();
    if stride != 0 && v.len().is_multiple_of(4) && c.len().is_multiple_of(stride) {
        for e in c.chunks_exact(stride) {
            let (child, rest) = e.split_at(ac as usize);
            let (parent, len) = rest.split_at(parent_ac as usize);
            if let (Some(c), Some(p), Some(l)) = (number(child), number(parent), number(len)) {
                windows.push((c, p, l));
            }
        }
    }
    Level::Map(windows)
}

// ---------------------------------------------------------------- survey

/// Why a node with `reg` is not a device node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    /// Root, memory, `/cpus`, `/chosen`, `/aliases`, `/__symbols__`,
    /// `/reserved-memory`, PSCI.
    System,
    /// The GIC itself.
    Gic,
    /// A node inside the GIC.
    InGic,
}

/// One node, as the survey saw it.
#[derive(Debug)]
struct Info {
    path: String,
    special: Option<Special>,
    reg: Option<Reg>,
    enabled: bool,
    pci: bool,
    pmu: bool,
    /// INTIDs of its GIC SPIs, each with whether it is edge-triggered.
    spis: Vec<(u32, bool)>,
}

impl Info {
    fn is_device(&self) -> bool {
        self.special.is_none() && matches!(self.reg, Some(Reg::Mmio(_) | Reg::Untranslatable))
    }

    fn mmio(&self) -> Option<&[(u64, u64)]> {
        match &self.reg {
            Some(Reg::Mmio(r)) => Some(r),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct Ctx {
    /// The parent's `#address-cells`/`#size-cells` (this node's `reg`).
    ac: u32,
    sc: u32,
    levels: Vec<Level>,
    irq_parent: Option<u32>,
    /// Inside a system subtree or the GIC.
    inside: Option<Special>,
}

struct Survey {
    /// phandle -> `#interrupt-cells` of that node.
    icells: Vec<(u32, Option<u32>)>,
    gic_phandle: Option<u32>,
    nodes: Vec<Info>,
}

fn collect_phandles(n: &DeviceTreeNode, out: &mut Vec<(u32, Option<u32>)>, max: &mut u32) {
    if let Some(p) = phandle(n) {
        out.push((p, prop_u32(n, "#interrupt-cells")));
        *max = (*max).max(p);
    }
    for c in n.children() {
        collect_phandles(c, out, max);
    }
}

impl Survey {
    fn icells_of(&self, ph: u32) -> Option<u32> {
        self.icells
            .iter()
            .find(|(p, _)| *p == ph)
            .and_then(|(_, c)| *c)
    }

    /// The SPI INTIDs of one node's interrupt properties, each with
    /// whether it is edge-triggered.
    fn spis(&self, n: &DeviceTreeNode, parent: Option<u32>) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        let Some(gic) = self.gic_phandle else {
            return out;
        };
        let mut take = |spec: &[u32]| {
            if let [0, n, flags] = *spec {
                if let Some(id) = n.checked_add(32).filter(|&id| id <= MAX_SPI_INTID) {
                    out.push((id, flags & 3 != 0));
                }
            }
        };
        if let Some(v) = prop(n, "interrupts-extended") {
            let c = cells(v);
            let mut rest = &c[..];
            while let [ph, tail @ ..] = rest {
                let Some(k) = self.icells_of(*ph) else { break };
                let Some(spec) = tail.get(..k as usize) else {
                    break;
                };
                if *ph == gic {
                    take(spec);
                }
                rest = &tail[k as usize..];
            }
        } else if let (Some(v), Some(p)) = (prop(n, "interrupts"), parent) {
            if p == gic {
                for spec in cells(v).chunks_exact(3) {
                    take(spec);
                }
            }
        }
        out
    }

    fn walk(&mut self, n: &DeviceTreeNode, path: String, ctx: &Ctx, depth: usize) {
        let root = depth == 0;
        let irq_parent = prop_u32(n, "interrupt-parent").or(ctx.irq_parent);
        let top = path.split('/').nth(1).unwrap_or("");
        let system_top = depth == 1
            && matches!(
                top.split('@').next().unwrap_or(""),
                "cpus" | "chosen" | "aliases" | "__symbols__" | "reserved-memory"
            );
        let special = if ctx.inside == Some(Special::Gic) || ctx.inside == Some(Special::InGic) {
            Some(Special::InGic)
        } else if ctx.inside.is_some() || root || system_top || is_memory(n) || is_psci(n) {
            Some(Special::System)
        } else if is_gic(n) {
            Some(Special::Gic)
        } else {
            None
        };
        let reg = prop(n, "reg").map(|v| node_reg(v, ctx.ac, ctx.sc, &ctx.levels));
        self.nodes.push(Info {
            special,
            reg,
            enabled: enabled(n),
            pci: str_prop(n, "device_type") == Some("pci"),
            pmu: is_pmu(n),
            spis: self.spis(n, irq_parent),
            path: path.clone(),
        });

        let mut child_ctx = Ctx {
            ac: prop_u32(n, "#address-cells").unwrap_or(2),
            sc: prop_u32(n, "#size-cells").unwrap_or(1),
            levels: ctx.levels.clone(),
            irq_parent,
            inside: match special {
                Some(Special::InGic) => Some(Special::InGic),
                Some(Special::Gic) => Some(Special::Gic),
                Some(Special::System) if !root => Some(Special::System),
                _ => None,
            },
        };
        if !root {
            child_ctx.levels.push(level_of(n, ctx.ac));
        }
        for c in n.children() {
            let name = c.name();
            let p = if root {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            self.walk(c, p, &child_ctx, depth + 1);
        }
    }
}

// ---------------------------------------------------------------- editing

fn set(n: &mut DeviceTreeNode, name: &str, value: impl dtoolkit::ToPropertyValue) {
    n.add_property(DeviceTreeProperty::new_unchecked(name, value));
}

fn set_strs(n: &mut DeviceTreeNode, name: &str, list: &[&str]) {
    set(n, name, list);
}

/// A number in `cells` cells, big-endian bytes; `None` if it does not fit.
fn encode(v: u64, cells: u32, out: &mut Vec<u8>) -> Option<()> {
    match cells {
        1 => out.extend_from_slice(&u32::try_from(v).ok()?.to_be_bytes()),
        2 => out.extend_from_slice(&v.to_be_bytes()),
        _ => return None,
    }
    Some(())
}

fn reg_bytes(ranges: &[(u64, u64)], ac: u32, sc: u32) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for &(a, s) in ranges {
        encode(a, ac, &mut out)?;
        encode(s, sc, &mut out)?;
    }
    Some(out)
}

fn u32s(c: &[u32]) -> Vec<u8> {
    c.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// The node at `path`, matching every name exactly (`dtoolkit`'s own
/// lookup lets `foo` match `foo@1`).
fn find<'a>(tree: &'a DeviceTree, path: &str) -> Option<&'a DeviceTreeNode> {
    let mut n = &tree.root;
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        n = n.children().find(|c| c.name() == comp)?;
    }
    Some(n)
}

/// As [`find`], mutable (`dtoolkit`'s mutable lookup is exact).
fn find_mut<'a>(tree: &'a mut DeviceTree, path: &str) -> Option<&'a mut DeviceTreeNode> {
    tree.find_node_mut(path)
}

fn page_span(base: u64, size: u64) -> Option<(u64, u64)> {
    let start = base & !(PAGE - 1);
    let end = base.checked_add(size)?.checked_add(PAGE - 1)? & !(PAGE - 1);
    Some((start, end))
}

fn overlaps((s, e): (u64, u64), (base, size): (u64, u64)) -> bool {
    let end = base.saturating_add(size);
    size != 0 && s < end && base < e
}

fn check_spec(spec: &HwdomSpec) -> Result<(), HwdomError> {
    let bad = |why: String| Err(HwdomError::Spec(why));
    if !(1..=MAX_VCPUS).contains(&spec.vcpus) {
        return bad(format!("vcpus = {} (allowed: 1..={MAX_VCPUS})", spec.vcpus));
    }
    if spec.ram.is_empty() {
        return bad("no RAM ranges".to_owned());
    }
    for &(b, s) in spec.ram {
        if s == 0 || b.checked_add(s).is_none() {
            return bad(format!("RAM at {b:#x} size {s:#x} is empty or wraps"));
        }
    }
    if let Some((start, end)) = spec.initrd {
        let inside = spec.ram.iter().any(|&(b, s)| b <= start && end <= b + s);
        if start >= end || !inside {
            return bad(format!(
                "initrd {start:#x}..{end:#x} is empty or outside the hwdom's RAM"
            ));
        }
    }
    if spec.bootargs.contains('\0') {
        return bad("bootargs contain NUL".to_owned());
    }
    if spec.console.1 > MAX_SPI_INTID - 32 {
        return bad(format!("console SPI {} is not a GICv2 SPI", spec.console.1));
    }
    Ok(())
}

/// The board's tree edited for the hardware domain, and what it owns.
///
/// `board` is the board's DTB (bytes past its header's `totalsize` are
/// ignored). See the module documentation for every edit and rule.
pub fn hwdom_dtb(board: &[u8], spec: &HwdomSpec) -> Result<(Vec<u8>, Passthrough), HwdomError> {
    check_spec(spec)?;
    let board = match board.get(4..8) {
        Some(t) => {
            let total = u32::from_be_bytes([t[0], t[1], t[2], t[3]]) as usize;
            board.get(..total).unwrap_or(board)
        }
        None => board,
    };
    let fdt = Fdt::new(board).map_err(|e| HwdomError::Malformed(format!("{e}")))?;
    let mut tree = DeviceTree::from_fdt(&fdt);

    // Survey: every node's role, reg and SPIs.
    let mut icells = Vec::new();
    let mut max_phandle = 0;
    collect_phandles(&tree.root, &mut icells, &mut max_phandle);
    let mut survey = Survey {
        icells,
        gic_phandle: None,
        nodes: Vec::new(),
    };
    let root_ac = prop_u32(&tree.root, "#address-cells").unwrap_or(2);
    let root_sc = prop_u32(&tree.root, "#size-cells").unwrap_or(1);
    let ctx = Ctx {
        ac: root_ac,
        sc: root_sc,
        levels: Vec::new(),
        irq_parent: None,
        inside: None,
    };
    // First pass finds the GIC, the second reads SPIs against it.
    survey.walk(&tree.root, "/".to_owned(), &ctx, 0);
    let gic_path = survey
        .nodes
        .iter()
        .find(|i| i.special == Some(Special::Gic))
        .map(|i| i.path.clone())
        .ok_or(HwdomError::NoGic)?;
    let gic_node = find(&tree, &gic_path).ok_or(HwdomError::NoGic)?;
    let mut next_phandle = || -> Result<u32, HwdomError> {
        max_phandle = max_phandle
            .checked_add(1)
            .ok_or_else(|| HwdomError::Malformed("phandles exhausted".to_owned()))?;
        Ok(max_phandle)
    };
    let (gic_phandle, gic_new_phandle) = match phandle(gic_node) {
        Some(p) => (p, false),
        None => (next_phandle()?, true),
    };
    survey.gic_phandle = Some(gic_phandle);
    survey.nodes.clear();
    survey.walk(&tree.root, "/".to_owned(), &ctx, 0);
    let nodes = survey.nodes;

    // The GIC's parent cells, to cut its reg.
    let gic_parent = gic_path
        .rsplit_once('/')
        .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
    let (gac, gsc) = find(&tree, gic_parent)
        .map(|p| {
            (
                prop_u32(p, "#address-cells").unwrap_or(2),
                prop_u32(p, "#size-cells").unwrap_or(1),
            )
        })
        .unwrap_or((2, 1));
    let gic_reg = find(&tree, &gic_path)
        .and_then(|g| prop(g, "reg"))
        .unwrap_or(&[]);
    let two = 8 * (gac as usize + gsc as usize);
    let gic_reg = gic_reg
        .get(..two)
        .filter(|_| two != 0)
        .ok_or_else(|| {
            HwdomError::Malformed(format!("GIC {gic_path} has fewer than two reg entries"))
        })?
        .to_vec();

    // The console: a device node whose first reg starts at its address.
    let (con_addr, con_spi) = spec.console;
    let console_idx = nodes.iter().position(|i| {
        i.is_device()
            && i.mmio()
                .and_then(|r| r.first())
                .is_some_and(|r| r.0 == con_addr)
    });

    // Kept ranges: the spec's and the console's page.
    let mut keep: Vec<(u64, u64)> = spec.keep.to_vec();
    keep.push((con_addr & !(PAGE - 1), PAGE));

    let pages_of = |i: &Info| -> Option<Vec<(u64, u64)>> {
        i.mmio()?
            .iter()
            .filter(|r| r.1 != 0)
            .map(|&(b, s)| page_span(b, s))
            .collect()
    };
    let kept_by = |pages: &[(u64, u64)]| -> Option<(u64, u64)> {
        keep.iter()
            .copied()
            .find(|&k| pages.iter().any(|&p| overlaps(p, k)))
    };
    let in_ram = |pages: &[(u64, u64)]| -> bool {
        spec.ram
            .iter()
            .any(|&r| pages.iter().any(|&p| overlaps(p, r)))
    };

    // Which device nodes are passed.
    let mut passed = alloc::vec![false; nodes.len()];
    match spec.passthrough {
        Some(list) => {
            for (k, &path) in list.iter().enumerate() {
                if list[..k].contains(&path) {
                    return Err(HwdomError::ClaimedTwice(path.to_owned()));
                }
                let idx = nodes
                    .iter()
                    .position(|i| i.path == path)
                    .ok_or_else(|| HwdomError::NoSuchNode(path.to_owned()))?;
                let i = &nodes[idx];
                if Some(idx) == console_idx {
                    return Err(HwdomError::Console(path.to_owned()));
                }
                if !i.is_device() {
                    return Err(HwdomError::NotDevice(path.to_owned()));
                }
                if i.pci {
                    return Err(HwdomError::PciHost(path.to_owned()));
                }
                let pages =
                    pages_of(i).ok_or_else(|| HwdomError::NotTranslatable(path.to_owned()))?;
                if let Some((base, size)) = kept_by(&pages) {
                    return Err(HwdomError::Kept {
                        path: path.to_owned(),
                        base,
                        size,
                    });
                }
                if in_ram(&pages) {
                    return Err(HwdomError::InRam(path.to_owned()));
                }
                passed[idx] = true;
            }
        }
        None => {
            for (idx, i) in nodes.iter().enumerate() {
                if !i.is_device() || !i.enabled || i.pci || Some(idx) == console_idx {
                    continue;
                }
                if let Some(pages) = pages_of(i) {
                    passed[idx] = kept_by(&pages).is_none() && !in_ram(&pages);
                }
            }
        }
    }

    let mut out = Passthrough::default();
    let mut regions = Vec::new();
    for (_, i) in nodes.iter().enumerate().filter(|(k, _)| passed[*k]) {
        regions.extend(pages_of(i).unwrap_or_default());
        out.spis.extend(i.spis.iter().map(|s| s.0));
        out.edge.extend(i.spis.iter().filter(|s| s.1).map(|s| s.0));
        out.nodes.push(i.path.clone());
    }
    regions.sort_unstable();
    for (s, e) in regions {
        match out.regions.last_mut() {
            Some((b, size)) if s <= *b + *size => *size = (*size).max(e - *b),
            _ => out.regions.push((s, e - s)),
        }
    }
    out.spis.sort_unstable();
    out.spis.dedup();
    out.edge.sort_unstable();
    out.edge.dedup();
    // One SPI two nodes disagree on is level: a level device programmed as
    // edge could miss its interrupt, an edge one programmed level cannot.
    let level: Vec<u32> = nodes
        .iter()
        .enumerate()
        .filter(|(k, _)| passed[*k])
        .flat_map(|(_, i)| i.spis.iter().filter(|s| !s.1).map(|s| s.0))
        .collect();
    out.edge.retain(|i| !level.contains(i));

    // ---- Edits.
    let disable = |tree: &mut DeviceTree, path: &str| {
        if let Some(n) = find_mut(tree, path) {
            set(n, "status", "disabled");
        }
    };
    for (idx, i) in nodes.iter().enumerate() {
        let off = (i.is_device() && !passed[idx] && Some(idx) != console_idx) || i.pmu;
        if off {
            disable(&mut tree, &i.path);
        }
    }
    // Nodes inside the GIC (GICv2m MSI frames) go: Linux's GIC driver
    // probes them whatever their status, and their frames are not mapped.
    for i in nodes.iter().rev().filter(|i| i.special == Some(Special::InGic)) {
        remove(&mut tree, &i.path);
    }

    // GIC.
    if let Some(g) = find_mut(&mut tree, &gic_path) {
        set(g, "reg", gic_reg);
        g.remove_property("interrupts");
        if gic_new_phandle {
            set(g, "phandle", gic_phandle);
        }
    }

    // Console.
    let irq = u32s(&[0, con_spi, IRQ_LEVEL_HIGH]);
    let console_path = match console_idx {
        Some(idx) => {
            let path = nodes[idx].path.clone();
            if let Some(c) = find_mut(&mut tree, &path) {
                set(c, "status", "okay");
                c.remove_property("interrupts-extended");
                set(c, "interrupts", irq);
                set(c, "interrupt-parent", gic_phandle);
            }
            path
        }
        None => {
            let name = format!("pl011@{con_addr:x}");
            let reg = reg_bytes(&[(con_addr, UART_WINDOW)], root_ac, root_sc).ok_or_else(|| {
                HwdomError::Spec(format!(
                    "console address {con_addr:#x} does not fit the root's #address-cells"
                ))
            })?;
            let clk = next_phandle()?;
            let mut clock = DeviceTreeNode::new_unchecked("hwdom-uart-clk");
            set(&mut clock, "compatible", "fixed-clock");
            set(&mut clock, "#clock-cells", 0u32);
            set(&mut clock, "clock-frequency", UART_CLOCK_HZ);
            set(&mut clock, "clock-output-names", "hwdom-uartclk");
            set(&mut clock, "phandle", clk);
            tree.root.add_child(clock);
            let mut uart = DeviceTreeNode::new_unchecked(name.clone());
            set_strs(&mut uart, "compatible", &["arm,pl011", "arm,primecell"]);
            set(&mut uart, "reg", reg);
            set(&mut uart, "interrupt-parent", gic_phandle);
            set(&mut uart, "interrupts", irq);
            set(&mut uart, "clocks", u32s(&[clk, clk]));
            set_strs(&mut uart, "clock-names", &["uartclk", "apb_pclk"]);
            tree.root.add_child(uart);
            format!("/{name}")
        }
    };

    // Memory.
    for i in nodes.iter().rev() {
        if i.path != "/" && find(&tree, &i.path).is_some_and(is_memory) {
            remove(&mut tree, &i.path);
        }
    }
    let mem_reg = reg_bytes(spec.ram, root_ac, root_sc).ok_or_else(|| {
        HwdomError::Spec(
            "a RAM range does not fit the root's #address-cells/#size-cells".to_owned(),
        )
    })?;
    let mut mem = DeviceTreeNode::new_unchecked(format!("memory@{:x}", spec.ram[0].0));
    set(&mut mem, "device_type", "memory");
    set(&mut mem, "reg", mem_reg);
    tree.root.add_child(mem);

    // CPUs.
    edit_cpus(&mut tree, spec.vcpus)?;

    // PSCI.
    for i in nodes.iter().rev() {
        if find(&tree, &i.path).is_some_and(is_psci) {
            remove(&mut tree, &i.path);
        }
    }
    let mut psci = DeviceTreeNode::new_unchecked("psci");
    set_strs(&mut psci, "compatible", &["arm,psci-1.0", "arm,psci-0.2"]);
    set(&mut psci, "method", "hvc");
    tree.root.add_child(psci);

    // /chosen.
    if tree.root.child_mut("chosen").is_none() {
        tree.root.add_child(DeviceTreeNode::new_unchecked("chosen"));
    }
    let chosen = tree
        .root
        .child_mut("chosen")
        .ok_or_else(|| HwdomError::Malformed("no /chosen".to_owned()))?;
    let kids: Vec<String> = chosen.children().map(|c| c.name().to_owned()).collect();
    for k in kids {
        chosen.remove_child(&k);
    }
    let drop: Vec<String> = chosen
        .properties()
        .map(|p| p.name().to_owned())
        .filter(|n| {
            n.starts_with("hyp,")
                || n.starts_with("xen,")
                || n.starts_with("linux,initrd-")
                || matches!(n.as_str(), "stdin-path" | "linux,stdout-path")
        })
        .collect();
    for p in drop {
        chosen.remove_property(&p);
    }
    set(chosen, "bootargs", spec.bootargs);
    set(chosen, "stdout-path", console_path.as_str());
    if let Some((start, end)) = spec.initrd {
        set(chosen, "linux,initrd-start", start);
        set(chosen, "linux,initrd-end", end);
    }

    Ok((tree.to_dtb(), out))
}

fn remove(tree: &mut DeviceTree, path: &str) {
    if let Some((parent, name)) = path.rsplit_once('/') {
        let parent = if parent.is_empty() { "/" } else { parent };
        if let Some(p) = tree.find_node_mut(parent) {
            p.remove_child(name);
        }
    }
}

fn is_cpu(n: &DeviceTreeNode) -> bool {
    str_prop(n, "device_type") == Some("cpu")
}

fn edit_cpus(tree: &mut DeviceTree, vcpus: u32) -> Result<(), HwdomError> {
    let none = HwdomError::TooFewCpus {
        have: 0,
        want: vcpus,
    };
    let cpus = tree.root.child_mut("cpus").ok_or(none)?;
    let ac = prop_u32(cpus, "#address-cells").unwrap_or(1);
    cpus.remove_property("enable-method");
    let names: Vec<(String, bool)> = cpus
        .children()
        .map(|c| (c.name().to_owned(), is_cpu(c)))
        .collect();
    let have = names.iter().filter(|(_, cpu)| *cpu).count();
    if have < vcpus as usize {
        return Err(HwdomError::TooFewCpus {
            have: have as u32,
            want: vcpus,
        });
    }
    let mut index = 0u32;
    for (name, cpu) in names {
        if name == "cpu-map" || (cpu && index >= vcpus) {
            cpus.remove_child(&name);
            continue;
        }
        if !cpu {
            continue;
        }
        let mut reg = Vec::new();
        encode(u64::from(index), ac, &mut reg)
            .ok_or_else(|| HwdomError::Malformed(format!("/cpus has #address-cells = {ac}")))?;
        if let Some(c) = cpus.child_mut(&name) {
            set(c, "reg", reg);
            set(c, "enable-method", "psci");
            c.remove_property("cpu-release-addr");
        }
        index += 1;
    }
    Ok(())
}

//! # vgic: the virtual GICv2 a guest sees
//!
//! Unmodified Linux guests (arm64 and armhf) need a GICv2: a distributor
//! (GICD) they program, and a CPU interface (GICC) they acknowledge and EOI
//! interrupts on. arm-gic drives the physical GIC but has no virtual
//! interface (GICH), so this crate is the guest's distributor and the keeper
//! of the list registers, in the style of KVM's and Xen's vGICv2.
//!
//! **Responsible for:**
//! - emulating every GICv2 distributor register Linux uses, trapped access by
//!   trapped access ([`Vgic::mmio`]), with the banked per-vCPU state of SGIs
//!   and PPIs (INTIDs 0-31) and GIC-400 identification values;
//! - software-generated interrupts (GICD_SGIR, GICD_SPENDSGIR/CPENDSGIR), one
//!   pending bit per SGI per source vCPU;
//! - interrupts the hypervisor raises: [`Vgic::inject`] (an edge, for PPIs
//!   such as the virtual timer and for SPIs such as the emulated UART),
//!   [`Vgic::set_level`] and [`Vgic::set_ppi_level`] (level lines);
//! - routing SPIs by GICD_ITARGETSR, and telling the kernel which vCPU to
//!   kick or wake ([`VcpuSet`], [`Vgic::pending_for`]);
//! - hardware (passed-through) SPIs of the hardware domain
//!   ([`Vgic::set_hw`], [`Vgic::hw_fire`]): delivered in list registers with
//!   HW = 1 and PhysicalID = the same INTID, so the guest's EOI deactivates
//!   the physical interrupt; telling the kernel which physical interrupts it
//!   must deactivate itself ([`Vgic::take_hw_released`],
//!   [`Vgic::hw_outstanding`]);
//! - the list registers: [`Vgic::flush`] writes the highest-priority pending
//!   interrupts into them before the vCPU runs, [`Vgic::sync`] reads back what
//!   the guest did (acknowledge, EOI) after it exits; more pending interrupts
//!   than list registers wait in the distributor behind a maintenance
//!   interrupt.
//!
//! **Not responsible for:**
//! - the virtual CPU interface itself: the kernel maps the GICV frame at the
//!   guest's GICC address through stage 2 (8 KiB, so GICV_DIR at 0x1000 is
//!   there too) and the guest's GICC accesses go to hardware untrapped;
//! - the vCPU's GICH_VMCR (the guest's GICC_CTLR, PMR, BPR) and GICH_APR
//!   (active priorities): the kernel saves them at exit and restores them at
//!   entry with the rest of the vCPU's registers, including when it moves a
//!   vCPU to another pCPU. List registers need no saving: [`Vgic::sync`]
//!   folds them into the distributor state and [`Vgic::flush`] rewrites them;
//! - the physical GIC (arm-gic, in the kernel), the maintenance interrupt's
//!   physical PPI, and decoding the trapped access (the kernel's trap decoder
//!   hands in an offset, a width and a value);
//! - Group 1 / FIQ: GICD_IGROUPR is RAZ/WI and every list register has
//!   Grp1 = 0, so all interrupts reach the guest as IRQs (as with KVM);
//! - the physical side of hardware SPIs: acknowledging them at EL2 (the
//!   kernel runs GICC_CTLR.EOImode = 1, so its EOI only drops the priority),
//!   routing and enabling them in the physical distributor, and GICC_DIR for
//!   the ones this crate names. Interrupts the hypervisor emulates are never
//!   HW-mapped: level ones get LR.EOI instead, so the kernel sees the
//!   guest's EOI and can re-sample the line;
//! - checking that the caller holds this VM's capability: the kernel's
//!   capability-checked glue owns one `Vgic` per VM and serialises calls to
//!   it (a per-VM lock), as with cache-maint.
//!
//! **Invariants** (checked by [`Vgic::check`]):
//! - A vGIC is made only by consuming its VM's `VgicCap` ([`Vgic::new`]),
//!   so one exists per capability; a restart takes it back
//!   ([`Vgic::into_cap`]) for the next one (`tests/ui`).
//! - An interrupt is in at most one list register of one vCPU at a time. An
//!   SGI is in at most one list register whatever its sources: one source at
//!   a time, the others wait.
//! - An interrupt in a list register ("queued") has handed its pending and
//!   active state to it; what the guest does there comes back at
//!   [`Vgic::sync`]. An active interrupt is only ever put back on the vCPU it
//!   is active on, never queued a second time.
//! - While a vCPU is outside the guest, none of its interrupts are queued
//!   (after [`Vgic::sync`]), so its trapped distributor accesses see and
//!   change the whole state. SPIs queued on *another* running vCPU keep the
//!   changes made meanwhile (set-pending, clear-pending, set/clear-active)
//!   and merge them at that vCPU's next sync. Until then, reads show such
//!   an SPI as it was flushed: an acknowledge is seen only after the sync.
//! - A hardware SPI pending or active in the vGIC (or in a list register)
//!   has its physical interrupt active, so it cannot fire again; each fire
//!   is deactivated physically exactly once: by the guest through its HW
//!   list register, or by the kernel for those [`Vgic::take_hw_released`]
//!   or, at teardown, [`Vgic::hw_outstanding`] names. [`Vgic::check`]
//!   verifies what the vGIC can see: HW list registers only for hardware
//!   SPIs, with PhysicalID = VirtualID, never the EOI bit and never
//!   pending+active; never in two list registers; never pending and active
//!   at once outside a list register; never released while still held.
//! - No allocation, no panics: capacity is fixed ([`MAX_VCPUS`],
//!   [`MAX_SPIS`], [`MAX_LRS`]); a bad access is RAZ/WI and counted.
//!
//! ## Interrupt state
//!
//! Each interrupt has: enabled; a pending latch (an edge, an injection, a
//! GICD_ISPENDR write; for an SGI one bit per source vCPU); a line (level
//! inputs); active; edge or level (GICD_ICFGR); priority; and for SPIs a
//! target mask. It is pending when the latch is set, or when it is level
//! sensitive and the line is high. SGIs are edge and always enabled
//! (GIC-400: `GICD_ISENABLER0[15:0]` are RAO/WI).
//!
//! An SPI goes to the lowest-numbered vCPU in its GICD_ITARGETSR byte (the
//! GICv2 1-of-N model resolved up front, as KVM does). With one vCPU,
//! GICD_ITARGETSR reads as 1 for every interrupt and ignores writes, as the
//! GICv2 architecture says for a uniprocessor.
//!
//! ## List registers
//!
//! [`Vgic::flush`], before the vCPU enters the guest:
//! 1. interrupts active on this vCPU go back in first (the guest must be able
//!    to EOI them), with their pending bit if they are edge and pending
//!    again (pending+active; never for level, whose line is re-sampled
//!    after the EOI instead);
//! 2. then pending, enabled interrupts routed to this vCPU, highest priority
//!    (lowest value) first, lowest INTID first among equals, while list
//!    registers are free; an SGI takes its lowest pending source;
//! 3. the pending latch moves into the list register (it is "taken"); a new
//!    edge that arrives meanwhile sets the latch again and is not lost;
//! 4. LR.EOI is set for level interrupts and for SGIs that have more sources
//!    waiting, so the guest's EOI causes an exit;
//! 5. if pending interrupts are left over, GICH_HCR.UIE is set: when the
//!    guest has at most one valid list register left, the maintenance
//!    interrupt makes it exit and the next flush fills them again (with a
//!    single list register, LR.EOI on it does the same job).
//!
//! [`Vgic::sync`], after the vCPU exits, per list register it filled:
//! | state read back | meaning | effect |
//! |---|---|---|
//! | pending (01) | not acknowledged yet | the taken latch goes back |
//! | active (10) | acknowledged, not EOIed | active on this vCPU |
//! | pending+active (11) | acknowledged, and pending again | both |
//! | invalid (00) | EOIed | nothing; a level line still high makes it pending again |
//!
//! A HW list register (a hardware SPI) is never pending+active and never has
//! LR.EOI; found invalid, the guest's EOI has deactivated the physical
//! interrupt too. With a single list register holding a HW one, left-over
//! interrupts wait for the next exit (no EOI maintenance interrupt there).
//!
//! ## Hardware SPIs
//!
//! The kernel marks the hardware domain's device SPIs with [`Vgic::set_hw`]
//! (SPIs only, before the VM runs). When one fires it acknowledges it at EL2
//! and calls [`Vgic::hw_fire`]: the SPI becomes pending (delivered when the
//! guest enables and routes it, like any SPI), and flush writes it with
//! HW = 1. Fired again while the vGIC holds it (impossible with the physical
//! one active) it is merged and counted ([`Counters::hw_refires`]); fired while
//! still in a list register the guest may already have EOIed, it is latched
//! and sync sorts it out. `inject` and `set_level` refuse hardware SPIs.
//!
//! Guest accesses to a hardware SPI's state:
//! - GICD_ISPENDR, GICD_ISACTIVER: ignored for it (counted,
//!   [`Counters::hw_ignored_writes`]): the vGIC cannot make the physical
//!   interrupt pending or active, and a virtual state without it would have
//!   the guest deactivate an inactive physical interrupt.
//! - GICD_ICPENDR of a pending one, GICD_ICACTIVER of an active one: applied;
//!   when that leaves it neither pending nor active in the vGIC (at once, or
//!   at the sync of the vCPU whose list register held it, unless the guest
//!   EOIed it there first), it is *released*: the kernel must deactivate
//!   the physical interrupt (GICC_DIR), and finds it in
//!   [`Vgic::take_hw_released`]. A level device still asserting then fires
//!   again, as on real hardware. So no physical interrupt is ever left
//!   active with nothing in the vGIC that will deactivate it.
//!
//! ## What the kernel calls
//!
//! 1. At VM creation: [`Vgic::new`]. Per pCPU, the kernel implements
//!    [`ListRegs`] on its GICH frame (flush clears what other vCPUs left in
//!    the list registers, found through GICH_ELRSR).
//! 2. On a stage-2 fault in the guest's GICD frame: [`Vgic::mmio`] with the
//!    offset in the frame and the access; write [`MmioReply::value`] to the
//!    register for a read, advance the PC, and kick every vCPU in
//!    [`MmioReply::kick`] other than this one.
//! 3. When a device raises an interrupt: [`Vgic::inject`],
//!    [`Vgic::set_level`] or [`Vgic::set_ppi_level`]; kick the vCPU it names
//!    (IPI its pCPU if it is running there, wake it if blocked in WFI).
//! 4. On every exit from the guest, before anything else touches this VM's
//!    vGIC: [`Vgic::sync`] (it also turns GICH_HCR off, so no maintenance
//!    interrupt fires while the hypervisor runs); kick what it returns.
//!    After a sync or an `mmio`: GICC_DIR each INTID of
//!    [`Vgic::take_hw_released`] (usually empty).
//! 5. Before every entry: [`Vgic::flush`].
//! 6. The maintenance interrupt (PPI 9, INTID 25 on our boards) is only an
//!    exit reason: sync, then flush before re-entering.
//! 7. On a trapped WFI: block the vCPU unless [`Vgic::pending_for`]; wake it
//!    when a kick names it.
//! 8. A hardware SPI acknowledged at EL2 (GICC_IAR, GICC_EOIR): [`Vgic::hw_fire`];
//!    kick the vCPU it names.
//! 9. Tearing the VM down or restarting it: sync every vCPU, then GICC_DIR
//!    each INTID of [`Vgic::hw_outstanding`], then drop this `Vgic`.
#![no_std]
#![forbid(unsafe_code)]

use capabilities::{VgicCap, VmId};
use core::fmt;

mod lr;
mod regs;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use lr::{
    ListRegs, Lr, HCR_EN, HCR_UIE, LR_ACTIVE, LR_CPUID_MASK, LR_CPUID_SHIFT, LR_EOI, LR_GRP1, LR_HW, LR_PENDING,
    LR_PINTID_MASK, LR_PINTID_SHIFT, LR_PRIO_SHIFT, LR_STATE_SHIFT, LR_VID_MASK,
};
pub use regs::*;

/// Most vCPUs one VM can have (GICv2 has 8 CPU interfaces).
pub const MAX_VCPUS: usize = 8;
/// Most SPIs (INTIDs 32..256).
pub const MAX_SPIS: usize = 224;
/// Most interrupts: 16 SGIs, 16 PPIs and the SPIs.
pub const MAX_INTIDS: usize = 32 + MAX_SPIS;
/// Most list registers GICv2 allows (GICH_VTR.ListRegs is 6 bits).
pub const MAX_LRS: usize = 64;

const SPI_WORDS: usize = MAX_SPIS / 32;
const SGI_BITS: u32 = 0xffff;

/// A vCPU of this VM, by index (0-based; also its GIC CPU interface number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u8);

/// A set of vCPUs, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct VcpuSet(u8);

impl VcpuSet {
    /// No vCPU.
    pub const EMPTY: VcpuSet = VcpuSet(0);

    /// The set with bit n for vCPU n.
    pub const fn from_bits(bits: u8) -> Self {
        VcpuSet(bits)
    }

    /// Bit n for vCPU n.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True for the empty set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets.
    pub const fn union(self, other: VcpuSet) -> VcpuSet {
        VcpuSet(self.0 | other.0)
    }

    /// True when `v` is in the set.
    pub const fn contains(self, v: VcpuId) -> bool {
        v.0 < 8 && self.0 & (1 << v.0) != 0
    }

    /// The vCPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = VcpuId> {
        (0..8u8).filter(move |i| self.0 & (1 << i) != 0).map(VcpuId)
    }

    fn add(&mut self, v: usize) {
        self.0 |= 1 << v;
    }
}

/// A set of SPIs (INTIDs 32..32 + [`MAX_SPIS`]), one bit each: the hardware
/// interrupts [`Vgic::hw_outstanding`] and [`Vgic::take_hw_released`] name.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct SpiSet([u32; SPI_WORDS]);

impl SpiSet {
    /// No SPI.
    pub const EMPTY: SpiSet = SpiSet([0; SPI_WORDS]);

    /// True for the empty set.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// How many SPIs.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when SPI `intid` is in the set.
    pub fn contains(&self, intid: u32) -> bool {
        let i = intid as usize;
        (32..MAX_INTIDS).contains(&i) && self.0[i / 32 - 1] & (1 << (i % 32)) != 0
    }

    /// The INTIDs in the set, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> {
        let set = *self;
        (32..MAX_INTIDS as u32).filter(move |&i| set.contains(i))
    }
}

impl fmt::Debug for SpiSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Debug for VcpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|v| v.0)).finish()
    }
}

/// How one VM's vGIC is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of vCPUs, 1..=[`MAX_VCPUS`]. GICD_TYPER.CPUNumber is this - 1.
    pub vcpus: u8,
    /// Number of SPIs: a multiple of 32, at most [`MAX_SPIS`].
    /// GICD_TYPER.ITLinesNumber is (32 + spis) / 32 - 1.
    pub spis: u16,
}

impl Config {
    /// `vcpus` vCPUs and `spis` SPIs.
    pub const fn new(vcpus: u8, spis: u16) -> Self {
        Config { vcpus, spis }
    }

    /// Number of INTIDs: 32 + spis.
    pub const fn lines(&self) -> usize {
        32 + self.spis as usize
    }
}

/// Why a [`Config`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `vcpus` is 0 or above [`MAX_VCPUS`].
    VcpuCount(u8),
    /// `spis` is not a multiple of 32 or above [`MAX_SPIS`].
    SpiCount(u16),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::VcpuCount(n) => write!(f, "vgic: {n} vCPUs (allowed: 1..={MAX_VCPUS})"),
            ConfigError::SpiCount(n) => {
                write!(f, "vgic: {n} SPIs (allowed: a multiple of 32, at most {MAX_SPIS})")
            }
        }
    }
}

/// A call the vGIC refuses. Bad guest accesses are never errors (they are
/// RAZ/WI, see [`MmioReply::ignored`]); these are kernel mistakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// The VM has no such vCPU.
    NoSuchVcpu(VcpuId),
    /// The INTID is not below 32 + the configured SPIs.
    NoSuchInterrupt(u32),
    /// The call does not apply to this INTID: `inject` of an SGI (they come
    /// from GICD_SGIR), `set_level` of a non-SPI, `set_ppi_level` of a
    /// non-PPI, `set_hw` of an SGI or PPI.
    WrongKind(u32),
    /// `inject` or `set_level` of a hardware SPI (it comes only from
    /// [`Vgic::hw_fire`]).
    HwInterrupt(u32),
    /// `hw_fire` of an SPI not configured as a hardware one.
    NotHw(u32),
    /// `set_hw` of an SPI that is pending, active or in a list register
    /// (configure hardware SPIs while they are idle, before the VM runs).
    HwBusy(u32),
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VgicError::NoSuchVcpu(v) => write!(f, "vgic: no vCPU {}", v.0),
            VgicError::NoSuchInterrupt(i) => write!(f, "vgic: no interrupt {i}"),
            VgicError::WrongKind(i) => write!(f, "vgic: interrupt {i} cannot be raised this way"),
            VgicError::HwInterrupt(i) => write!(f, "vgic: interrupt {i} is a hardware one, raised only by hw_fire"),
            VgicError::NotHw(i) => write!(f, "vgic: interrupt {i} is not a hardware one"),
            VgicError::HwBusy(i) => {
                write!(f, "vgic: interrupt {i} is pending or active: cannot change its hardware mapping")
            }
        }
    }
}

/// Counters of one VM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Distributor reads trapped.
    pub mmio_reads: u64,
    /// Distributor writes trapped.
    pub mmio_writes: u64,
    /// Accesses treated as RAZ/WI: reserved offsets, widths or alignments
    /// GICv2 does not allow, writes to read-only and reads of write-only
    /// registers, GICD_SGIR with the reserved filter 3.
    pub bad_accesses: u64,
    /// SGIs made pending by GICD_SGIR (one per target).
    pub sgis: u64,
    /// `inject` calls.
    pub injections: u64,
    /// `flush` calls.
    pub flushes: u64,
    /// `sync` calls.
    pub syncs: u64,
    /// List registers found EOIed (invalid) at sync.
    pub eois: u64,
    /// Flushes that left pending interrupts out for want of list registers.
    pub overflows: u64,
    /// Active interrupts that found no list register (more active than list
    /// registers: the guest cannot EOI them until one frees).
    pub active_overflows: u64,
    /// List registers that no longer held what flush wrote (another vCPU
    /// used the pCPU's GICH in between: a kernel bug). Taken as untouched.
    pub lr_mismatches: u64,
    /// `flush` calls without a `sync` since the last flush (it synced first).
    pub missed_syncs: u64,
    /// `hw_fire` calls taken (the hardware interrupt became pending).
    pub hw_fires: u64,
    /// Hardware interrupts fired while the vGIC still held them pending or
    /// active (impossible while the physical one is active: a kernel bug);
    /// merged into the one held.
    pub hw_refires: u64,
    /// Hardware interrupts the guest dropped (GICD_ICPENDR, GICD_ICACTIVER)
    /// whose physical interrupt the kernel must deactivate
    /// ([`Vgic::take_hw_released`]).
    pub hw_released: u64,
    /// Guest writes of GICD_ISPENDR / GICD_ISACTIVER bits of hardware
    /// interrupts, ignored.
    pub hw_ignored_writes: u64,
}

/// A broken invariant, from [`Vgic::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// Which invariant.
    pub what: &'static str,
    /// The vCPU whose state broke it.
    pub vcpu: u8,
    /// The interrupt.
    pub intid: u16,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vgic: {} (vCPU {}, interrupt {})", self.what, self.vcpu, self.intid)
    }
}

/// Per-interrupt state bits for 32 interrupts (one GICD bitmap word).
#[derive(Clone, Copy, Debug, Default)]
struct Word {
    enabled: u32,
    /// Pending latch. For SGIs: set when any source is pending.
    latch: u32,
    /// Input line, for level-sensitive interrupts.
    line: u32,
    active: u32,
    /// GICD_ICFGR: 1 = edge.
    edge: u32,
    /// In a list register (between flush and sync).
    queued: u32,
    /// Queued with the latch taken (the list register holds that pending).
    q_pending: u32,
    /// Queued with its active state.
    q_active: u32,
    /// Cleared pending (GICD_ICPENDR) while queued: dropped at sync.
    drop_pending: u32,
    /// Cleared active (GICD_ICACTIVER) while queued: dropped at sync.
    drop_active: u32,
}

impl Word {
    fn pending(&self) -> u32 {
        self.latch | (self.line & !self.edge)
    }

    /// Pending as the guest would read it, including a taken latch.
    fn pending_view(&self) -> u32 {
        self.pending() | (self.q_pending & !self.drop_pending)
    }

    fn active_view(&self) -> u32 {
        self.active | (self.q_active & !self.drop_active)
    }
}

/// What flush wrote into one list register.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    intid: u16,
    source: u8,
    value: u32,
}

#[derive(Clone, Copy, Debug)]
struct Vcpu {
    /// INTIDs 0-31, banked.
    private: Word,
    priority: [u8; 32],
    /// Pending sources of each SGI, one bit per source vCPU.
    sources: [u8; 16],
    /// The source of each active SGI.
    active_source: [u8; 16],
    /// The source of each queued SGI.
    queued_source: [u8; 16],
    /// List registers 0..used, as flush wrote them.
    slots: [Slot; MAX_LRS],
    used: u8,
}

impl Vcpu {
    const fn new() -> Self {
        Vcpu {
            private: Word {
                enabled: SGI_BITS,
                latch: 0,
                line: 0,
                active: 0,
                edge: SGI_BITS,
                queued: 0,
                q_pending: 0,
                q_active: 0,
                drop_pending: 0,
                drop_active: 0,
            },
            priority: [0; 32],
            sources: [0; 16],
            active_source: [0; 16],
            queued_source: [0; 16],
            slots: [Slot { intid: 0, source: 0, value: 0 }; MAX_LRS],
            used: 0,
        }
    }
}

/// The virtual GICv2 of one VM.
pub struct Vgic {
    cfg: Config,
    /// GICD_CTLR.Enable.
    enabled: bool,
    vcpus: [Vcpu; MAX_VCPUS],
    spi: [Word; SPI_WORDS],
    spi_priority: [u8; MAX_SPIS],
    spi_targets: [u8; MAX_SPIS],
    /// The vCPU an SPI is queued on, or active on.
    spi_owner: [u8; MAX_SPIS],
    /// Hardware SPIs ([`Vgic::set_hw`]).
    hw: [u32; SPI_WORDS],
    /// Hardware SPIs dropped by the guest whose physical interrupt is still
    /// active: the kernel deactivates them ([`Vgic::take_hw_released`]).
    hw_released: [u32; SPI_WORDS],
    /// Hardware SPIs, queued, whose latch (a fire after the guest's EOI)
    /// GICD_ICPENDR cleared: if sync finds the list register EOIed, that
    /// fire's physical interrupt is released.
    hw_latch_drop: [u32; SPI_WORDS],
    counters: Counters,
    /// The right to raise this VM's interrupts, consumed at creation.
    cap: VgicCap,
}

impl Vgic {
    /// The distributor of a new VM, as after reset: disabled, every
    /// interrupt disabled (SGIs excepted), inactive, not pending, priority 0,
    /// level-sensitive (SGIs edge), SPI targets 0. It consumes the VM's
    /// `VgicCap`: without it no vGIC for that VM can be made.
    pub fn new(cap: VgicCap, cfg: Config) -> Result<Self, ConfigError> {
        if cfg.vcpus == 0 || cfg.vcpus as usize > MAX_VCPUS {
            return Err(ConfigError::VcpuCount(cfg.vcpus));
        }
        if cfg.spis as usize > MAX_SPIS || !cfg.spis.is_multiple_of(32) {
            return Err(ConfigError::SpiCount(cfg.spis));
        }
        Ok(Vgic {
            cfg,
            enabled: false,
            vcpus: [Vcpu::new(); MAX_VCPUS],
            spi: [Word::default(); SPI_WORDS],
            spi_priority: [0; MAX_SPIS],
            spi_targets: [0; MAX_SPIS],
            spi_owner: [0; MAX_SPIS],
            hw: [0; SPI_WORDS],
            hw_released: [0; SPI_WORDS],
            hw_latch_drop: [0; SPI_WORDS],
            counters: Counters::default(),
            cap,
        })
    }

    /// The VM this vGIC belongs to (its capability's).
    pub fn vm(&self) -> VmId {
        self.cap.vm()
    }

    /// The capability back, for a new vGIC of the same VM (a restart).
    pub fn into_cap(self) -> VgicCap {
        self.cap
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Raise an edge on `intid`: a PPI of `vcpu` (the virtual timer, INTID
    /// 27), or an SPI (then `vcpu` is only checked; GICD_ITARGETSR routes it).
    /// Returns the vCPU to kick, if the interrupt can now be delivered.
    pub fn inject(&mut self, vcpu: VcpuId, intid: u32) -> Result<Option<VcpuId>, VgicError> {
        let v = self.index(vcpu)?;
        let i = self.intid(intid)?;
        if i < 16 {
            return Err(VgicError::WrongKind(intid));
        }
        if self.is_hw(i) {
            return Err(VgicError::HwInterrupt(intid));
        }
        self.counters.injections += 1;
        let (w, b) = self.word_mut(v, i);
        w.latch |= b;
        Ok(self.kick_for(v, i).map(|t| VcpuId(t as u8)))
    }

    /// Set the input line of an SPI. A level-sensitive SPI is pending while
    /// the line is high; an edge-triggered one latches a rising edge.
    /// Returns the vCPU to kick, if the interrupt can now be delivered.
    pub fn set_level(&mut self, intid: u32, level: bool) -> Result<Option<VcpuId>, VgicError> {
        let i = self.intid(intid)?;
        if i < 32 {
            return Err(VgicError::WrongKind(intid));
        }
        if self.is_hw(i) {
            return Err(VgicError::HwInterrupt(intid));
        }
        Ok(self.set_line(0, i, level))
    }

    /// Make SPI `intid` a hardware one (`hw`), tied to the physical SPI with
    /// the same INTID, or an ordinary one again. Refused for SGIs and PPIs
    /// ([`VgicError::WrongKind`]), INTIDs beyond the lines, and while the
    /// SPI is pending, active, in a list register or released and not yet
    /// taken ([`VgicError::HwBusy`]): configure them before the VM runs.
    pub fn set_hw(&mut self, intid: u32, hw: bool) -> Result<(), VgicError> {
        let i = self.intid(intid)?;
        if i < 32 {
            return Err(VgicError::WrongKind(intid));
        }
        let (wi, b) = (i / 32 - 1, 1u32 << (i % 32));
        let w = &self.spi[wi];
        let busy = w.latch | w.line | w.active | w.queued | self.hw_released[wi] | self.hw_latch_drop[wi];
        if busy & b != 0 {
            return Err(VgicError::HwBusy(intid));
        }
        if hw {
            self.hw[wi] |= b;
        } else {
            self.hw[wi] &= !b;
        }
        Ok(())
    }

    /// True when `intid` is a hardware SPI.
    pub fn is_hw_spi(&self, intid: u32) -> bool {
        (intid as usize) < self.cfg.lines() && self.is_hw(intid as usize)
    }

    /// The kernel acknowledged hardware SPI `intid` at EL2 (GICC_IAR, then
    /// GICC_EOIR with EOImode 1: the priority drops, the physical interrupt
    /// stays active). It becomes pending in the vGIC, and [`Vgic::flush`]
    /// gives it to the guest in a HW list register, so the guest's
    /// deactivation deactivates the physical one. Returns the vCPU to kick
    /// (per GICD_ITARGETSR), if it can be delivered now; a disabled one
    /// waits, pending, until the guest enables it.
    ///
    /// Fired while the vGIC still holds it pending or active (the physical
    /// one could not have fired: a kernel bug) it is merged with that one
    /// and counted ([`Counters::hw_refires`]).
    pub fn hw_fire(&mut self, intid: u32) -> Result<Option<VcpuId>, VgicError> {
        let i = self.intid(intid)?;
        if !self.is_hw(i) {
            return Err(VgicError::NotHw(intid));
        }
        let (wi, b) = (i / 32 - 1, 1u32 << (i % 32));
        let w = &self.spi[wi];
        // Queued: the guest may have deactivated it already, so a new fire
        // is real; sync sorts it out.
        let held = (w.latch | (w.active & !w.queued) | self.hw_released[wi]) & b != 0;
        if held {
            self.counters.hw_refires += 1;
            return Ok(None);
        }
        self.counters.hw_fires += 1;
        self.spi[wi].latch |= b;
        Ok(self.kick_for(0, i).map(|t| VcpuId(t as u8)))
    }

    /// The hardware SPIs whose physical interrupt the vGIC still owes a
    /// deactivation: pending, active or in a list register in the vGIC, or
    /// released and not yet taken. When the VM is torn down or restarted,
    /// after [`Vgic::sync`] of every vCPU (list registers the guest EOIed
    /// are then no longer counted), the kernel deactivates each one
    /// (GICC_DIR) and drops this `Vgic`.
    pub fn hw_outstanding(&self) -> SpiSet {
        let mut out = SpiSet::EMPTY;
        for (wi, w) in self.spi.iter().enumerate() {
            out.0[wi] = self.hw[wi] & (w.latch | w.active | w.queued | self.hw_released[wi]);
        }
        out
    }

    /// Hardware SPIs the guest dropped (GICD_ICPENDR of a pending one,
    /// GICD_ICACTIVER of an active one, applied at once or, for one in a
    /// running vCPU's list registers, at that vCPU's sync) whose physical
    /// interrupt is still active with nothing in the vGIC left to
    /// deactivate it. The kernel deactivates each (GICC_DIR) exactly once;
    /// this empties the set. Call it after [`Vgic::mmio`] and
    /// [`Vgic::sync`].
    pub fn take_hw_released(&mut self) -> SpiSet {
        let out = SpiSet(self.hw_released);
        self.hw_released = [0; SPI_WORDS];
        out
    }

    /// Set the input line of a PPI of `vcpu` (a level-sensitive virtual
    /// timer, say). As [`Vgic::set_level`].
    pub fn set_ppi_level(&mut self, vcpu: VcpuId, intid: u32, level: bool) -> Result<Option<VcpuId>, VgicError> {
        let v = self.index(vcpu)?;
        let i = self.intid(intid)?;
        if !(16..32).contains(&i) {
            return Err(VgicError::WrongKind(intid));
        }
        Ok(self.set_line(v, i, level))
    }

    /// Whether private interrupt `intid` (16..32) of `vcpu` is neither
    /// pending, active nor in a list register: the guest has taken and
    /// finished the last one. False for anything else.
    pub fn ppi_idle(&self, vcpu: VcpuId, intid: u32) -> bool {
        let (Ok(v), true) = (self.index(vcpu), (16..32).contains(&intid)) else { return false };
        let w = &self.vcpus[v].private;
        (w.pending() | w.active | w.queued) & (1 << intid) == 0
    }

    /// True when `vcpu` has an interrupt waiting that it would take: pending,
    /// enabled, not active, routed to it, distributor on. For a vCPU outside
    /// the guest (after [`Vgic::sync`]): the kernel does not block it in WFI
    /// while this holds.
    pub fn pending_for(&self, vcpu: VcpuId) -> bool {
        match self.index(vcpu) {
            Ok(v) => self.best_pending(v).is_some(),
            Err(_) => false,
        }
    }

    /// Before `vcpu` enters the guest: fill `lrs` with its active and
    /// highest-priority pending interrupts and program GICH_HCR (En, and UIE
    /// when some are left over). If the last flush had no [`Vgic::sync`]
    /// after it (a kernel bug, counted), it syncs first; an SPI that sync
    /// would have sent elsewhere then waits for that vCPU's next entry.
    pub fn flush(&mut self, vcpu: VcpuId, lrs: &mut dyn ListRegs) -> Result<(), VgicError> {
        let v = self.index(vcpu)?;
        if self.vcpus[v].used > 0 {
            self.counters.missed_syncs += 1;
            let _ = self.fold(v, lrs);
        }
        self.counters.flushes += 1;
        let n = core::cmp::min(lrs.count(), MAX_LRS);
        let mut placed = 0;

        // Active ones first: the guest must find them to EOI them.
        for wi in 0..self.words() {
            let mut act = self.active_mask(v, wi);
            while act != 0 {
                let bit = act.trailing_zeros() as usize;
                act &= act - 1;
                if placed < n {
                    self.place(v, wi * 32 + bit, placed, lrs);
                    placed += 1;
                } else {
                    self.counters.active_overflows += 1;
                }
            }
        }

        // Then pending ones, best priority first.
        let mut left_over = false;
        while let Some(i) = self.best_pending(v) {
            if placed == n {
                left_over = true;
                break;
            }
            self.place(v, i, placed, lrs);
            placed += 1;
        }

        let mut hcr = HCR_EN;
        if left_over {
            self.counters.overflows += 1;
            if n >= 2 {
                hcr |= HCR_UIE;
            } else if n == 1 && self.vcpus[v].slots[0].value & LR_HW == 0 {
                // Underflow would fire at once with one list register: ask
                // for the EOI of the one there instead. (A hardware one
                // cannot have it: the rest then waits for the next exit.)
                let s = &mut self.vcpus[v].slots[0];
                s.value |= LR_EOI;
                lrs.write(0, s.value);
            }
        }

        // Whatever else this pCPU's list registers still hold is stale.
        let empty = lrs.elrsr();
        for i in placed..n {
            if empty & (1 << i) == 0 {
                lrs.write(i, 0);
            }
        }
        lrs.set_hcr(hcr);
        Ok(())
    }

    /// After `vcpu` exits the guest: turn GICH_HCR off and read back the list
    /// registers the last flush filled (see the table in the crate docs).
    /// Returns the other vCPUs to kick: SPIs that came back pending and are
    /// now routed elsewhere.
    pub fn sync(&mut self, vcpu: VcpuId, lrs: &mut dyn ListRegs) -> Result<VcpuSet, VgicError> {
        let v = self.index(vcpu)?;
        lrs.set_hcr(0);
        self.counters.syncs += 1;
        Ok(self.fold(v, lrs))
    }

    /// Check the invariants in the crate docs and the state's own
    /// consistency; for tests and debug builds.
    pub fn check(&self) -> Result<(), InvariantError> {
        let nv = self.cfg.vcpus as usize;
        let vmask = self.vcpu_mask();
        let err = |what, vcpu: usize, intid: usize| Err(InvariantError { what, vcpu: vcpu as u8, intid: intid as u16 });
        let mut spi_slots = [0u32; SPI_WORDS];
        for v in 0..MAX_VCPUS {
            let c = &self.vcpus[v];
            let w = &c.private;
            if v >= nv && (c.used != 0 || w.latch != 0 || w.queued != 0) {
                return err("state on a vCPU the VM does not have", v, 0);
            }
            if w.enabled & SGI_BITS != SGI_BITS || w.edge & SGI_BITS != SGI_BITS {
                return err("an SGI is disabled or level-sensitive", v, 0);
            }
            for s in 0..16 {
                if (c.sources[s] != 0) != (w.latch & (1 << s) != 0) {
                    return err("SGI latch does not match its sources", v, s);
                }
                if c.sources[s] & !vmask != 0 {
                    return err("SGI pending from a vCPU the VM does not have", v, s);
                }
            }
            let mut private_slots = 0u32;
            for k in 0..c.used as usize {
                let i = c.slots[k].intid as usize;
                if i >= self.cfg.lines() {
                    return err("list register holds no such interrupt", v, i);
                }
                let (w, b) = self.word(v, i);
                if w.queued & b == 0 {
                    return err("list register holds an interrupt not marked queued", v, i);
                }
                let seen = if i < 32 { &mut private_slots } else { &mut spi_slots[i / 32 - 1] };
                if *seen & b != 0 {
                    return err("interrupt in two list registers", v, i);
                }
                *seen |= b;
                if i >= 32 && self.spi_owner[i - 32] as usize != v {
                    return err("queued SPI owned by another vCPU", v, i);
                }
                let value = c.slots[k].value;
                if value & LR_VID_MASK != i as u32 || value & LR_GRP1 != 0 {
                    return err("list register value does not match its interrupt", v, i);
                }
                if (value & LR_HW != 0) != self.is_hw(i) {
                    return err("list register HW bit does not match the interrupt's kind", v, i);
                }
                if value & LR_HW != 0 {
                    if (value & LR_PINTID_MASK) >> LR_PINTID_SHIFT != i as u32 || value & LR_EOI != 0 {
                        return err("HW list register with another physical ID or the EOI bit", v, i);
                    }
                    if value & (LR_PENDING | LR_ACTIVE) == LR_PENDING | LR_ACTIVE {
                        return err("HW list register pending and active", v, i);
                    }
                }
            }
            if c.used as usize > MAX_LRS {
                return err("more list registers used than exist", v, 0);
            }
            if w.queued != private_slots {
                return err("private interrupt queued but in no list register", v, 0);
            }
            if let Some(e) = Self::check_word(w, v, 0) {
                return Err(e);
            }
        }
        for (wi, w) in self.spi.iter().enumerate() {
            let first = 32 + wi * 32;
            if first >= self.cfg.lines() && (w.enabled | w.latch | w.line | w.active | w.queued) != 0 {
                return err("state on an SPI the VM does not have", 0, first);
            }
            if w.queued != spi_slots[wi] {
                return err("SPI queued but in no list register", 0, first);
            }
            if let Some(e) = Self::check_word(w, 0, first) {
                return Err(e);
            }
            // Hardware SPIs: while one is pending or active in the vGIC, its
            // physical interrupt is active and cannot fire again, so it is
            // never pending and active at once outside a list register,
            // never a level line, and never both held and released.
            let hw = self.hw[wi];
            if (self.hw_released[wi] | self.hw_latch_drop[wi]) & !hw != 0 {
                return err("hardware bookkeeping on an ordinary SPI", 0, first);
            }
            if first >= self.cfg.lines() && hw != 0 {
                return err("hardware SPI the VM does not have", 0, first);
            }
            if hw & w.latch & w.active != 0 {
                return err("hardware SPI pending and active at once", 0, first);
            }
            if hw & w.line != 0 {
                return err("hardware SPI with a level line", 0, first);
            }
            if self.hw_released[wi] & (w.latch | w.active | w.queued) != 0 {
                return err("hardware SPI released while the vGIC holds it", 0, first);
            }
            if self.hw_latch_drop[wi] & !w.queued != 0 {
                return err("hardware latch drop on an SPI not queued", 0, first);
            }
            for bit in 0..32 {
                let s = wi * 32 + bit;
                let b = 1 << bit;
                if self.spi_targets[s] & !vmask != 0 {
                    return err("SPI targets a vCPU the VM does not have", 0, 32 + s);
                }
                if (w.active | w.queued) & b != 0 && self.spi_owner[s] as usize >= nv {
                    return err("active SPI owned by no vCPU", 0, 32 + s);
                }
            }
        }
        if let Some(s) = self.spi_priority.iter().position(|p| p & !PRIORITY_MASK != 0) {
            return err("priority with its low 3 bits set", 0, 32 + s);
        }
        for (v, c) in self.vcpus.iter().enumerate() {
            if let Some(i) = c.priority.iter().position(|p| p & !PRIORITY_MASK != 0) {
                return err("priority with its low 3 bits set", v, i);
            }
        }
        Ok(())
    }

    fn check_word(w: &Word, v: usize, first: usize) -> Option<InvariantError> {
        let bad = |what| Some(InvariantError { what, vcpu: v as u8, intid: first as u16 });
        if (w.q_pending | w.q_active | w.drop_pending | w.drop_active) & !w.queued != 0 {
            return bad("list-register bookkeeping on an interrupt not queued");
        }
        None
    }

    // ---- flush and sync ----

    /// Put interrupt `i` of vCPU `v` into list register `lr`.
    fn place(&mut self, v: usize, i: usize, lr: usize, lrs: &mut dyn ListRegs) {
        let dist_on = self.enabled;
        let hw = self.is_hw(i);
        let prio = self.priority(v, i);
        let (w, b) = self.word(v, i);
        let (active, edge, latched) = (w.active & b != 0, w.edge & b != 0, w.latch & b != 0);
        let mut source = 0u8;
        let pending;
        let mut took = false;
        let eoi;
        if i < 16 {
            let c = &mut self.vcpus[v];
            let srcs = c.sources[i];
            if active {
                source = c.active_source[i];
                pending = dist_on && srcs & (1 << source) != 0;
            } else {
                source = (srcs.trailing_zeros() & 7) as u8;
                pending = true;
            }
            if pending {
                c.sources[i] &= !(1 << source);
                took = true;
            }
            c.queued_source[i] = source;
            // More sources wait: exit at this one's EOI to load the next.
            eoi = c.sources[i] != 0;
            if c.sources[i] == 0 {
                c.private.latch &= !b;
            }
        } else {
            // Pending+active only for edge: a level line is re-sampled after
            // the EOI instead. Never for a hardware one: its physical
            // interrupt is active, so it cannot be pending again.
            pending = if active { edge && dist_on && latched && !hw } else { true };
            if pending && latched {
                self.word_mut(v, i).0.latch &= !b;
                took = true;
            }
            // A hardware one has no EOI bit (bit 19 is PhysicalID there):
            // the guest's EOI deactivates the physical interrupt itself.
            eoi = !edge && !hw;
        }

        let (w, b) = self.word_mut(v, i);
        w.queued |= b;
        if took {
            w.q_pending |= b;
        }
        if active {
            w.q_active |= b;
            w.active &= !b;
        }
        if i >= 32 {
            self.spi_owner[i - 32] = v as u8;
        }

        let mut value = i as u32 | ((source as u32) << LR_CPUID_SHIFT) | ((prio as u32 >> 3) << LR_PRIO_SHIFT);
        if pending {
            value |= LR_PENDING;
        }
        if active {
            value |= LR_ACTIVE;
        }
        if eoi {
            value |= LR_EOI;
        }
        if hw {
            value |= LR_HW | ((i as u32) << LR_PINTID_SHIFT);
        }
        let c = &mut self.vcpus[v];
        c.slots[lr] = Slot { intid: i as u16, source, value };
        c.used = (lr + 1) as u8;
        lrs.write(lr, value);
    }

    /// Read back the list registers vCPU `v` filled and merge them into the
    /// distributor state.
    fn fold(&mut self, v: usize, lrs: &mut dyn ListRegs) -> VcpuSet {
        let used = self.vcpus[v].used as usize;
        self.vcpus[v].used = 0;
        let mut kick = VcpuSet::EMPTY;
        if used == 0 {
            return kick;
        }
        let empty = lrs.elrsr();
        let n = core::cmp::min(lrs.count(), MAX_LRS);
        for k in 0..used {
            let slot = self.vcpus[v].slots[k];
            let id_bits = LR_VID_MASK | LR_CPUID_MASK;
            let value = if k >= n {
                self.counters.lr_mismatches += 1;
                slot.value
            } else if empty & (1 << k) != 0 {
                0
            } else {
                let now = lrs.read(k);
                if now & id_bits == slot.value & id_bits {
                    now
                } else {
                    self.counters.lr_mismatches += 1;
                    slot.value
                }
            };
            let state = value & (LR_PENDING | LR_ACTIVE);
            if state == 0 {
                self.counters.eois += 1;
                if slot.value & LR_EOI != 0 && k < n {
                    // Do not leave an EOI maintenance interrupt behind.
                    lrs.write(k, 0);
                }
            }
            self.fold_one(v, slot, state & LR_PENDING != 0, state & LR_ACTIVE != 0);
            if let Some(t) = self.kick_for(v, slot.intid as usize) {
                if t != v {
                    kick.add(t);
                }
            }
        }
        kick
    }

    fn fold_one(&mut self, v: usize, slot: Slot, pending: bool, active: bool) {
        let i = slot.intid as usize;
        if self.is_hw(i) {
            self.fold_hw(v, slot, pending, active);
            return;
        }
        self.fold_state(v, slot, pending, active);
    }

    /// [`Vgic::fold_one`] of a hardware SPI. A valid list register (pending
    /// or active) read back means the physical interrupt is still active,
    /// held by it; an invalid one, that the guest deactivated both.
    fn fold_hw(&mut self, v: usize, slot: Slot, pending: bool, active: bool) {
        let i = slot.intid as usize;
        let (wi, b) = (i / 32 - 1, 1u32 << (i % 32));
        let lr_valid = pending || active;
        let latch_dropped = self.hw_latch_drop[wi] & b != 0;
        self.hw_latch_drop[wi] &= !b;
        if lr_valid && self.spi[wi].latch & b != 0 {
            // Fired again while the list register still held it: the
            // physical one cannot have been. Merge.
            self.spi[wi].latch &= !b;
            self.counters.hw_refires += 1;
        }
        self.fold_state(v, slot, pending, active);
        let w = &self.spi[wi];
        let held = (w.latch | w.active) & b != 0;
        // Dropped by GICD_ICPENDR/ICACTIVER while queued, still active
        // physically: the list register's, or (EOIed) a later fire's whose
        // latch was cleared.
        if !held && (lr_valid || latch_dropped) {
            self.hw_released[wi] |= b;
            self.counters.hw_released += 1;
        }
    }

    fn fold_state(&mut self, v: usize, slot: Slot, pending: bool, active: bool) {
        let i = slot.intid as usize;
        let (w, b) = self.word_mut(v, i);
        let took = w.q_pending & b != 0;
        let drop_p = w.drop_pending & b != 0;
        let drop_a = w.drop_active & b != 0;
        w.queued &= !b;
        w.q_pending &= !b;
        w.q_active &= !b;
        w.drop_pending &= !b;
        w.drop_active &= !b;
        let pending = pending && took && !drop_p;
        let active = active && !drop_a;
        if pending {
            w.latch |= b;
        }
        if active {
            w.active |= b;
        }
        if i < 16 {
            let c = &mut self.vcpus[v];
            if pending {
                c.sources[i] |= 1 << slot.source;
            }
            if active {
                c.active_source[i] = slot.source;
            }
        } else if i >= 32 && active {
            self.spi_owner[i - 32] = v as u8;
        }
    }

    /// Active interrupts of word `wi` to put back on vCPU `v`.
    fn active_mask(&self, v: usize, wi: usize) -> u32 {
        if wi == 0 {
            let w = &self.vcpus[v].private;
            return w.active & !w.queued;
        }
        let w = &self.spi[wi - 1];
        let mut m = w.active & !w.queued;
        let mut out = 0;
        while m != 0 {
            let bit = m.trailing_zeros() as usize;
            m &= m - 1;
            if self.spi_owner[(wi - 1) * 32 + bit] as usize == v {
                out |= 1 << bit;
            }
        }
        out
    }

    /// Interrupts of word `wi` that vCPU `v` would take now.
    fn pending_mask(&self, v: usize, wi: usize) -> u32 {
        if !self.enabled {
            return 0;
        }
        let w = if wi == 0 { &self.vcpus[v].private } else { &self.spi[wi - 1] };
        let m = w.pending() & w.enabled & !w.active & !w.queued;
        if wi == 0 {
            return m;
        }
        let mut left = m;
        let mut out = 0;
        while left != 0 {
            let bit = left.trailing_zeros() as usize;
            left &= left - 1;
            if self.route((wi - 1) * 32 + bit) == Some(v) {
                out |= 1 << bit;
            }
        }
        out
    }

    /// The pending interrupt vCPU `v` would take first.
    fn best_pending(&self, v: usize) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for wi in 0..self.words() {
            let mut m = self.pending_mask(v, wi);
            while m != 0 {
                let i = wi * 32 + m.trailing_zeros() as usize;
                m &= m - 1;
                let p = self.priority(v, i);
                if best.is_none_or(|(bp, _)| p < bp) {
                    best = Some((p, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Pending sources of SGI `s` of vCPU `v` as the guest would read them,
    /// including one taken into a list register.
    fn sources_view(&self, v: usize, s: usize) -> u8 {
        let c = &self.vcpus[v];
        let b = 1 << s;
        let taken = c.private.q_pending & !c.private.drop_pending & b != 0;
        c.sources[s] | if taken { 1 << c.queued_source[s] } else { 0 }
    }

    // ---- routing and kicks ----

    /// The vCPU an SPI (index from 0) goes to when it is neither queued nor
    /// active: the lowest in its target mask.
    fn route(&self, s: usize) -> Option<usize> {
        if self.cfg.vcpus == 1 {
            return Some(0);
        }
        let t = self.spi_targets[s] & self.vcpu_mask();
        if t == 0 {
            None
        } else {
            Some(t.trailing_zeros() as usize)
        }
    }

    /// The vCPU that should run soon because interrupt `i` (a private one
    /// of `v`, or an SPI) is pending: the vCPU holding it in a list register
    /// or active, or else its route.
    fn kick_for(&self, v: usize, i: usize) -> Option<usize> {
        let (w, b) = self.word(v, i);
        if !self.enabled || w.enabled & b == 0 || w.pending() & b == 0 {
            return None;
        }
        if i < 32 {
            return Some(v);
        }
        if (w.queued | w.active) & b != 0 {
            Some(self.spi_owner[i - 32] as usize)
        } else {
            self.route(i - 32)
        }
    }

    fn set_line(&mut self, v: usize, i: usize, level: bool) -> Option<VcpuId> {
        let (w, b) = self.word_mut(v, i);
        if level {
            if w.line & b == 0 && w.edge & b != 0 {
                w.latch |= b;
            }
            w.line |= b;
        } else {
            w.line &= !b;
        }
        self.kick_for(v, i).map(|t| VcpuId(t as u8))
    }

    // ---- helpers ----

    fn index(&self, vcpu: VcpuId) -> Result<usize, VgicError> {
        if vcpu.0 < self.cfg.vcpus {
            Ok(vcpu.0 as usize)
        } else {
            Err(VgicError::NoSuchVcpu(vcpu))
        }
    }

    fn intid(&self, intid: u32) -> Result<usize, VgicError> {
        if (intid as usize) < self.cfg.lines() {
            Ok(intid as usize)
        } else {
            Err(VgicError::NoSuchInterrupt(intid))
        }
    }

    /// True when `i` is a hardware SPI (any `i` below [`MAX_INTIDS`]).
    fn is_hw(&self, i: usize) -> bool {
        (32..MAX_INTIDS).contains(&i) && self.hw[i / 32 - 1] & (1 << (i % 32)) != 0
    }

    /// The hardware bits of bitmap word `n` (interrupts 32n..32n+31).
    fn hw_word(&self, n: usize) -> u32 {
        if n == 0 || n > SPI_WORDS {
            0
        } else {
            self.hw[n - 1]
        }
    }

    fn vcpu_mask(&self) -> u8 {
        ((1u16 << self.cfg.vcpus) - 1) as u8
    }

    /// Bitmap words in use: the private one and the SPI ones.
    fn words(&self) -> usize {
        1 + self.cfg.spis as usize / 32
    }

    /// The word holding interrupt `i` as vCPU `v` sees it, and its bit.
    fn word(&self, v: usize, i: usize) -> (&Word, u32) {
        let b = 1 << (i % 32);
        if i < 32 {
            (&self.vcpus[v].private, b)
        } else {
            (&self.spi[i / 32 - 1], b)
        }
    }

    fn word_mut(&mut self, v: usize, i: usize) -> (&mut Word, u32) {
        let b = 1 << (i % 32);
        if i < 32 {
            (&mut self.vcpus[v].private, b)
        } else {
            (&mut self.spi[i / 32 - 1], b)
        }
    }

    fn priority(&self, v: usize, i: usize) -> u8 {
        if i < 32 {
            self.vcpus[v].priority[i]
        } else {
            self.spi_priority[i - 32]
        }
    }
}

//! # cache-maint: the set/way policy, as an explicit state machine
//!
//! Guests clean their caches by set/way (`DC ISW/CSW/CISW`; `DCISW`,
//! `DCCSW`, `DCCISW` on ARMv7). Those instructions only reach the cache of
//! the pCPU they run on. If the hypervisor migrates a vCPU in the middle of
//! a set/way loop, dirty lines stay behind on the old pCPU and the guest
//! loses data when it then turns its caches off. This crate decides, per VM and per vCPU, what to do
//! about it, in the style of KVM (`kvm_set_way_flush`, `kvm_toggle_cache`)
//! and Xen (`p2m_set_way_flush`, `p2m_toggle_cache`).
//!
//! **Responsible for:**
//! - the trap policy: `HCR.TSW` per [`SwMode`], and `HCR.TVM` per vCPU
//!   (on after a set/way op, off once the guest's caches are on);
//! - deciding when guest memory must be cleaned to the PoC (a set/way op seen
//!   with TVM off; a change of the caches-on state, SCTLR.M and SCTLR.C);
//! - doing that clean in bounded slices with a resumable per-VM cursor, by
//!   address, on the VM's own memory only, walking what a [`CleanSource`]
//!   reports;
//! - keeping a vCPU that waits for a clean from running ([`ResumeToken`]);
//! - counters: set/way traps, TVM traps, cleans, bytes cleaned, largest slice.
//!
//! **Not responsible for:** decoding traps or touching vCPU registers (the
//! kernel hands typed requests in and writes the real register, see
//! [`Reply::write`]); knowing which memory a VM has or was touched (the pager,
//! behind [`CleanSource`]); issuing barriers (the kernel's [`CacheOps`]);
//! scheduling, or pinning the hardware domain (the scheduler acts on
//! [`Reply::sw_first_seen`]); checking that the source and the state belong to
//! the same VM (the kernel's capability-checked glue pairs them).
//!
//! **Invariants:**
//! - A VM's state is made only by consuming its [`CacheCap`]; once the
//!   capability is taken back ([`CacheMaint::take_cap`]; the kernel does it
//!   when it rebuilds a restarting VM) [`CacheMaint::handle`] refuses every
//!   request, so nothing is maintained (the read-only queries still answer).
//! - A guest set/way op is never executed. It is emulated by clean+invalidate
//!   by address over ranges the VM's own source reports, so one guest can
//!   never discard or even touch another guest's lines. `DC ISW` is emulated
//!   as a clean+invalidate, which the architecture allows (that is what
//!   `HCR.SWIO` does in hardware); nothing here ever invalidates without
//!   cleaning.
//! - A vCPU that waits for a clean is never handed a [`ResumeToken`]: the
//!   only constructor checks that it waits for nothing.
//! - A vCPU that asked for a clean is released only by the end of a pass that
//!   *started after* its request, so the pass saw everything it wrote before.
//! - One reply does bounded work: at most [`VmConfig::slice_bytes`] bytes and
//!   [`VmConfig::slice_steps`] source look-ups per [`Request::RunSlice`];
//!   other requests do no maintenance at all.
//! - With the touched walk, a 2 MiB chunk's touched mark is cleared *before*
//!   its runs are cleaned, so a write that races with the clean marks the
//!   chunk again and the next pass picks it up.
//! - With `fwb` (FEAT_S2FWB) and [`SwMode::Auto`] or [`SwMode::No`]: TVM is
//!   never set and nothing is ever cleaned. Stage 2 then forces write-back
//!   cacheable memory, so a guest with caches off still reads coherently and
//!   set/way has nothing to make visible.
//!
//! ## State machine
//!
//! Each vCPU is in one of three states; the VM has one clean cursor.
//!
//! ```text
//!                 SetWay: TVM on, request a clean
//!   +-----------+ ------------------------------------> +---------+
//!   | Untrapped |                                       | Waiting | RunSlice:
//!   |  TVM off  | <--- pass done, TVM was turned off -- |         | one slice
//!   +-----------+                                       +---------+
//!         ^                                               ^     |
//!         |                      SCTLR write, M&C changed |     | pass done,
//!         |                      (to on: TVM off)         |     | TVM still on
//!         |                                               |     v
//!         |  VM-register write, caches on: TVM off       +----------+
//!         +--------------------------------------------- | Trapping | SetWay:
//!                                                        |  TVM on  | nothing
//!                                                        +----------+
//! ```
//!
//! | vCPU state | input | effect |
//! |---|---|---|
//! | Untrapped | `SetWay` | TVM on, request a clean, wait |
//! | Trapping | `SetWay` | nothing (the rule below) |
//! | Untrapped or Trapping | `VmRegWrite` SCTLR, caches-on state changed | request a clean, wait; TVM off if caches are now on |
//! | Untrapped or Trapping | `VmRegWrite` SCTLR, unchanged | TVM off if caches are on |
//! | Untrapped or Trapping | `VmRegWrite` other register, caches on | TVM off (as KVM and Xen) |
//! | Untrapped or Trapping | `VmRegWrite` other register, caches off | nothing |
//! | Waiting | `RunSlice` | one slice of the VM's pass; released when a pass that started after the request ends |
//! | Waiting | `SetWay`, `VmRegWrite` | [`Error::CleanPending`]: it cannot have trapped |
//! | any | `Reset` | TVM off; a pending wait stays |
//!
//! The VM's clean is `Idle`, or a pass with generation `g` and a cursor. A
//! request while idle starts pass `g+1`; a request during pass `g` marks
//! pass `g+1` to follow, and the requester waits for it. Other vCPUs of the
//! VM keep running while a pass is in progress, as in KVM.
//!
//! ## The rule for set/way ops while TVM is on
//!
//! A trapped set/way op cleans only when the trapping vCPU's TVM is off.
//! When TVM went on, the VM was cleaned; from then on every change of that
//! vCPU's caches-on state traps and cleans again, until a VM-register write
//! with caches on turns TVM off (KVM's and Xen's rule); the next set/way op
//! then cleans and turns it on again. So a guest that, between a set/way op
//! and turning its caches off, writes a VM register with its caches still on
//! is not covered: neither KVM nor Xen covers it, and Linux does not do it
//! (`flush_cache_all` then `cpu_proc_fin`; ARMv7 turns C off before its
//! set/way flush). The Arm ARM limits set/way
//! maintenance to cache power-up and power-down sequences, where the CPU turns
//! its caches off (or has not turned them on yet); a guest cannot use it to
//! reach another observer. So between the first op and the toggle the guest
//! either still reads through coherent caches (caches on: it sees its data on
//! whatever pCPU it runs), or writes straight to the PoC (caches off). The
//! toggle's clean then covers everything written since the first op, and the
//! remaining ops of the loop (Linux issues tens of thousands) cost only a trap.
//!
//! ## The clean
//!
//! [`Walk::Touched`] (populate-on-demand and eager memory alike): find the next chunk with
//! `next_run(from, all = false)`, call `clear_touched(chunk, 2 MiB)`, then
//! clean every run of that chunk found with `next_run(.., all = true)`, one
//! [`CacheOps::clean_invalidate_range`] per contiguous run (split only where
//! a slice's byte budget ends). [`Walk::All`] (the
//! hardware domain) walks `next_run(.., all = true)` and never calls
//! `clear_touched`. Clean+invalidate serves both directions: it pushes dirty
//! lines out before caches go off, and drops stale lines before they come on.
//!
//! ## The hardware domain
//!
//! It is direct-mapped and has no populate-on-demand, so nothing tracks
//! touches: `direct_mapped` forces [`Walk::All`] over the RAM ranges its
//! source reports. [`Reply::sw_first_seen`] tells the kernel when a VM used
//! set/way for the first time, so the scheduler can pin the hardware domain.
//!
//! ## What the kernel calls
//!
//! 1. At vCPU creation: [`CacheMaint::hcr`] for its initial trap bits.
//! 2. On a trapped `DC ISW/CSW/CISW`: `handle(SetWay)`. On a TVM trap:
//!    `handle(VmRegWrite)`, then write [`Reply::write`] to the real register.
//!    In both cases: program [`Reply::hcr`], advance the PC (the instruction
//!    is emulated), and if [`Reply::sw_first_seen`], tell the scheduler.
//! 3. Before entering any vCPU: [`CacheMaint::may_run`]. `Ok(token)`: enter.
//!    `Err(CleanPending)`: `handle(RunSlice)` once (one bounded slice), let
//!    interrupts and the scheduler in, and try again.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

pub use capabilities::{CacheCap, VmId};
pub use hwops::{CacheOps, CleanSource, MemRun, TlbOps};
use hwops::{BLOCK_SIZE, PAGE_SIZE};

/// Most vCPUs one VM can have.
pub const MAX_VCPUS: usize = 8;
/// Default clean budget per slice, in bytes.
pub const DEFAULT_SLICE_BYTES: u64 = 64 * 1024;
/// Default bound on source look-ups per slice.
pub const DEFAULT_SLICE_STEPS: u32 = 64;
/// SCTLR.M: stage-1 MMU enable.
pub const SCTLR_M: u64 = 1 << 0;
/// SCTLR.C: data cache enable.
pub const SCTLR_C: u64 = 1 << 2;

/// True when an SCTLR value has the MMU and the data cache both on; only then
/// are the guest's normal accesses cacheable.
pub fn caches_enabled(sctlr: u64) -> bool {
    sctlr & (SCTLR_M | SCTLR_C) == SCTLR_M | SCTLR_C
}

/// A vCPU of this VM, by index (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuId(pub u8);

/// Which set/way instruction trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwOp {
    /// `DC ISW` / `DCISW`: invalidate.
    Isw,
    /// `DC CSW` / `DCCSW`: clean.
    Csw,
    /// `DC CISW` / `DCCISW`: clean and invalidate.
    Cisw,
}

/// A VM register whose writes TVM traps. SCTLR's value matters to the
/// policy; for the others only whether caches are on (the vCPU's SCTLR,
/// `Request::VmRegWrite::sctlr`). The kernel writes every one of them back
/// (see [`Reply::write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmReg {
    /// SCTLR_EL1 / SCTLR.
    Sctlr,
    /// TTBR0_EL1 / TTBR0.
    Ttbr0,
    /// TTBR1_EL1 / TTBR1.
    Ttbr1,
    /// TCR_EL1 / TTBCR.
    Tcr,
    /// ESR_EL1 / DFSR, IFSR.
    Esr,
    /// FAR_EL1 / DFAR, IFAR.
    Far,
    /// AFSR0_EL1 / ADFSR.
    Afsr0,
    /// AFSR1_EL1 / AIFSR.
    Afsr1,
    /// MAIR_EL1 / PRRR, NMRR (MAIR0, MAIR1).
    Mair,
    /// AMAIR_EL1 / AMAIR0, AMAIR1.
    Amair,
    /// CONTEXTIDR_EL1 / CONTEXTIDR.
    ContextIdr,
    /// Any other TVM-trapped register (ARMv7 DACR, ...), by the kernel's own
    /// encoding; passed back untouched.
    Other(u16),
}

/// How a VM's set/way ops are handled (`sw=` in the boot configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SwMode {
    /// Trap set/way (TSW on) and apply the policy, unless FEAT_S2FWB makes
    /// it unnecessary (then trapped ops are no-ops). The default.
    #[default]
    Auto,
    /// Trap set/way and apply the policy even with FEAT_S2FWB.
    Yes,
    /// Do not trap set/way: the guest's ops run natively (the kernel keeps
    /// `HCR.SWIO` set, so a native `DC ISW` acts as `DC CISW` and cannot
    /// discard other guests' lines). Only safe for a guest that is never
    /// migrated in the middle of a set/way loop, e.g. a pinned one.
    No,
}

impl SwMode {
    /// The spelling used in the boot configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SwMode::Auto => "auto",
            SwMode::Yes => "yes",
            SwMode::No => "no",
        }
    }
}

impl fmt::Display for SwMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a clean walks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Walk {
    /// Only chunks populated or touched since the last clean.
    #[default]
    Touched,
    /// Everything populated, no touch tracking (for comparison).
    All,
}

/// How one VM is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Number of vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: u8,
    /// The `sw=` mode.
    pub sw: SwMode,
    /// FEAT_S2FWB is present and the VM's stage 2 uses it.
    pub fwb: bool,
    /// The hardware domain: direct-mapped, no touch tracking (forces
    /// [`Walk::All`]).
    pub direct_mapped: bool,
    /// What a clean walks.
    pub walk: Walk,
    /// Bytes cleaned at most per slice: a multiple of 4 KiB, at least 4 KiB.
    pub slice_bytes: u64,
    /// Source look-ups at most per slice, at least 1.
    pub slice_steps: u32,
}

impl VmConfig {
    /// An ordinary guest with `vcpus` vCPUs and default settings.
    pub const fn new(vcpus: u8) -> Self {
        VmConfig {
            vcpus,
            sw: SwMode::Auto,
            fwb: false,
            direct_mapped: false,
            walk: Walk::Touched,
            slice_bytes: DEFAULT_SLICE_BYTES,
            slice_steps: DEFAULT_SLICE_STEPS,
        }
    }
}

/// Why a [`VmConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `vcpus` is 0 or above [`MAX_VCPUS`].
    VcpuCount(u8),
    /// `slice_bytes` is below 4 KiB or not a multiple of it.
    SliceBytes(u64),
    /// `slice_steps` is 0.
    SliceSteps,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::VcpuCount(n) => write!(f, "cache-maint: {n} vCPUs (allowed: 1..={MAX_VCPUS})"),
            ConfigError::SliceBytes(n) => {
                write!(f, "cache-maint: slice of {n} bytes (allowed: a multiple of 4096, at least 4096)")
            }
            ConfigError::SliceSteps => write!(f, "cache-maint: slice of 0 steps (allowed: at least 1)"),
        }
    }
}

/// The HCR trap bits this crate decides for one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hcr {
    /// HCR.TSW: trap data cache maintenance by set/way.
    pub tsw: bool,
    /// HCR.TVM: trap writes to the VM registers.
    pub tvm: bool,
}

/// A register write the kernel must perform for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegWrite {
    /// Which register.
    pub reg: VmReg,
    /// The value the guest wrote.
    pub value: u64,
}

/// What the kernel asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A trapped set/way op. `level` is the instruction's Level field
    /// (0 = L1); it does not change the policy.
    SetWay {
        /// The trapping vCPU.
        vcpu: VcpuId,
        /// Which op.
        op: SwOp,
        /// Level field of the operand.
        level: u8,
    },
    /// A TVM-trapped write of `value` to `reg`, whose value before the
    /// write was `old` (the kernel reads it from the vCPU's context).
    VmRegWrite {
        /// The trapping vCPU.
        vcpu: VcpuId,
        /// Which register.
        reg: VmReg,
        /// The value written.
        value: u64,
        /// The register's value before the write.
        old: u64,
        /// The vCPU's SCTLR after the write (`value` when `reg` is SCTLR).
        sctlr: u64,
    },
    /// Run one bounded slice of the clean this vCPU waits for.
    RunSlice {
        /// The waiting vCPU.
        vcpu: VcpuId,
    },
    /// The vCPU was reset (PSCI CPU_ON, system reset): its caches are off
    /// and VM-register trapping starts over. A pending wait stays.
    Reset {
        /// The vCPU.
        vcpu: VcpuId,
    },
}

/// Proof that a vCPU waits for no clean: the kernel enters a vCPU only with
/// one. It can only be made by this crate, and only for a vCPU that is not
/// waiting.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct ResumeToken {
    vcpu: VcpuId,
    hcr: Hcr,
}

impl ResumeToken {
    /// The vCPU it is for.
    pub fn vcpu(&self) -> VcpuId {
        self.vcpu
    }

    /// The trap bits to run it with.
    pub fn hcr(&self) -> Hcr {
        self.hcr
    }
}

/// Whether the vCPU may run now.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Next {
    /// It may run: its clean, if any, is done ("Done" after `RunSlice`).
    Resume(ResumeToken),
    /// Its clean is not done ("More"): run `RunSlice` for it again, after
    /// letting interrupts and the scheduler in, before it may run.
    MoreWork,
}

/// The answer to a [`Request`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Reply {
    /// Trap bits for this vCPU, to program before it next runs.
    pub hcr: Hcr,
    /// For `VmRegWrite`: the write the kernel performs on the real register.
    pub write: Option<RegWrite>,
    /// The VM trapped a set/way op for the first time: tell the scheduler
    /// (it pins the hardware domain under `hwdom_pin=auto`).
    pub sw_first_seen: bool,
    /// Run the vCPU, or do more cleaning first.
    pub next: Next,
}

/// The hardware a slice uses: cache maintenance, the VM's memory as the pager
/// sees it, and the TLB (for `clear_touched`).
pub struct Hw<'a> {
    /// By-address cache maintenance to the PoC.
    pub cache: &'a mut dyn CacheOps,
    /// The VM's populated and touched memory.
    pub source: &'a mut dyn CleanSource,
    /// Stage-2 TLB maintenance, passed to the source.
    pub tlb: &'a mut dyn TlbOps,
}

/// A request the state machine refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The VM has no such vCPU.
    NoSuchVcpu(VcpuId),
    /// The vCPU waits for a clean, so it cannot have trapped: run `RunSlice`.
    CleanPending(VcpuId),
    /// Its [`CacheCap`] was taken back ([`CacheMaint::take_cap`]).
    Revoked,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchVcpu(v) => write!(f, "cache-maint: no vCPU {}", v.0),
            Error::CleanPending(v) => write!(f, "cache-maint: vCPU {} waits for a clean", v.0),
            Error::Revoked => write!(f, "cache-maint: the VM's capability was taken back"),
        }
    }
}

/// Counters of one VM (add them up with [`Counters::add`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Set/way ops trapped.
    pub sw_traps: u64,
    /// VM-register writes trapped.
    pub tvm_traps: u64,
    /// Clean requests (set/way with TVM off, caches-on changes).
    pub clean_requests: u64,
    /// Clean passes completed.
    pub cleans: u64,
    /// Bytes cleaned to the PoC.
    pub cleaned_bytes: u64,
    /// Most bytes cleaned in one slice.
    pub max_slice_bytes: u64,
    /// Slices run.
    pub slices: u64,
    /// Runs from the source that ended at or before the cursor (a source
    /// bug); each ended its pass early.
    pub source_faults: u64,
}

impl Counters {
    /// Sum `other` into `self` (the maximum for `max_slice_bytes`).
    pub fn add(&mut self, other: &Counters) {
        self.sw_traps += other.sw_traps;
        self.tvm_traps += other.tvm_traps;
        self.clean_requests += other.clean_requests;
        self.cleans += other.cleans;
        self.cleaned_bytes += other.cleaned_bytes;
        self.max_slice_bytes = core::cmp::max(self.max_slice_bytes, other.max_slice_bytes);
        self.slices += other.slices;
        self.source_faults += other.source_faults;
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct VcpuState {
    tvm: bool,
    /// The pass generation this vCPU waits for.
    waits_for: Option<u64>,
}

/// Where a pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Look for the next chunk to clean at or after `from`.
    Find { from: u64 },
    /// Clean the runs of the chunk that ends at `end`, from `from` on.
    Chunk { end: u64, from: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Pass {
    gen: u64,
    phase: Phase,
    /// A request came during this pass: run another one after it.
    again: bool,
}

/// The set/way policy state of one VM: per-vCPU trap state and the VM's clean
/// cursor.
pub struct CacheMaint {
    /// The right to maintain this VM's memory; `None` once taken back.
    cap: Option<CacheCap>,
    cfg: VmConfig,
    vcpus: [VcpuState; MAX_VCPUS],
    pass: Option<Pass>,
    last_gen: u64,
    sw_seen: bool,
    counters: Counters,
}

fn chunk_of(ipa: u64) -> u64 {
    ipa & !(BLOCK_SIZE - 1)
}

impl CacheMaint {
    /// State for the VM `cap` names, all vCPUs untrapped and waiting for
    /// nothing. It consumes the capability: without one, no state.
    ///
    /// ```
    /// let mut granter = capabilities::Granter::take().unwrap();
    /// let caps = granter.grant_vm(capabilities::VmId::new(1)).unwrap();
    /// let cm = cache_maint::CacheMaint::new(caps.cache, cache_maint::VmConfig::new(1)).unwrap();
    /// assert_eq!(cm.vm(), Some(capabilities::VmId::new(1)));
    /// ```
    /// A capability cannot be made anywhere else, so neither can the state:
    /// ```compile_fail
    /// let cap = cache_maint::CacheCap { vm: capabilities::VmId::new(1) };
    /// let cm = cache_maint::CacheMaint::new(cap, cache_maint::VmConfig::new(1));
    /// ```
    pub fn new(cap: CacheCap, cfg: VmConfig) -> Result<Self, ConfigError> {
        if cfg.vcpus == 0 || cfg.vcpus as usize > MAX_VCPUS {
            return Err(ConfigError::VcpuCount(cfg.vcpus));
        }
        if cfg.slice_bytes < PAGE_SIZE || !cfg.slice_bytes.is_multiple_of(PAGE_SIZE) {
            return Err(ConfigError::SliceBytes(cfg.slice_bytes));
        }
        if cfg.slice_steps == 0 {
            return Err(ConfigError::SliceSteps);
        }
        Ok(CacheMaint {
            cap: Some(cap),
            cfg,
            vcpus: [VcpuState::default(); MAX_VCPUS],
            pass: None,
            last_gen: 0,
            sw_seen: false,
            counters: Counters::default(),
        })
    }

    /// The VM this state is for (`None` once its capability is taken back).
    pub fn vm(&self) -> Option<VmId> {
        self.cap.as_ref().map(CacheCap::vm)
    }

    /// Take the capability back (VM teardown or restart): every later
    /// [`CacheMaint::handle`] is refused with [`Error::Revoked`].
    pub fn take_cap(&mut self) -> Option<CacheCap> {
        self.cap.take()
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// True while a clean pass is under way.
    pub fn clean_in_progress(&self) -> bool {
        self.pass.is_some()
    }

    /// True when the VM has trapped a set/way op.
    pub fn sw_seen(&self) -> bool {
        self.sw_seen
    }

    /// The trap bits for `vcpu` (its initial ones at creation).
    pub fn hcr(&self, vcpu: VcpuId) -> Result<Hcr, Error> {
        Ok(self.hcr_of(self.index(vcpu)?))
    }

    /// A token to enter `vcpu`, or [`Error::CleanPending`] while it waits.
    pub fn may_run(&self, vcpu: VcpuId) -> Result<ResumeToken, Error> {
        self.token(self.index(vcpu)?).ok_or(Error::CleanPending(vcpu))
    }

    /// Handle one request; see the state machine in the crate docs. Only
    /// `RunSlice` uses `hw`.
    pub fn handle(&mut self, req: Request, hw: &mut Hw<'_>) -> Result<Reply, Error> {
        if self.cap.is_none() {
            return Err(Error::Revoked);
        }
        match req {
            Request::SetWay { vcpu, op, level: _ } => {
                // Every op is emulated the same way: clean+invalidate by
                // address. The op kind matters only for the first-seen event.
                match op {
                    SwOp::Isw | SwOp::Csw | SwOp::Cisw => self.set_way(vcpu),
                }
            }
            Request::VmRegWrite { vcpu, reg, value, old, sctlr } => self.vm_reg_write(vcpu, reg, value, old, sctlr),
            Request::RunSlice { vcpu } => {
                let i = self.index(vcpu)?;
                if self.vcpus[i].waits_for.is_some() {
                    self.run_slice(hw);
                }
                Ok(self.reply(i, None, false))
            }
            Request::Reset { vcpu } => {
                let i = self.index(vcpu)?;
                self.vcpus[i].tvm = false;
                Ok(self.reply(i, None, false))
            }
        }
    }

    // ---- transitions ----

    fn set_way(&mut self, vcpu: VcpuId) -> Result<Reply, Error> {
        let i = self.runnable(vcpu)?;
        self.counters.sw_traps += 1;
        let first = !self.sw_seen;
        self.sw_seen = true;
        if self.cleans_needed() && !self.vcpus[i].tvm {
            self.vcpus[i].tvm = true;
            self.request_clean(i);
        }
        Ok(self.reply(i, None, first))
    }

    fn vm_reg_write(&mut self, vcpu: VcpuId, reg: VmReg, value: u64, old: u64, sctlr: u64) -> Result<Reply, Error> {
        let i = self.runnable(vcpu)?;
        self.counters.tvm_traps += 1;
        if !self.cleans_needed() {
            self.vcpus[i].tvm = false;
        } else if reg == VmReg::Sctlr {
            let now = caches_enabled(value);
            if caches_enabled(old) != now {
                self.request_clean(i);
            }
            if now {
                self.vcpus[i].tvm = false;
            }
        } else if caches_enabled(sctlr) {
            // Caches on: stop trapping VM registers until the next set/way
            // op, whichever register trapped (as KVM and Xen do).
            self.vcpus[i].tvm = false;
        }
        Ok(self.reply(i, Some(RegWrite { reg, value }), false))
    }

    fn request_clean(&mut self, i: usize) {
        self.counters.clean_requests += 1;
        let gen = match &mut self.pass {
            Some(p) => {
                p.again = true;
                p.gen + 1
            }
            None => self.start_pass(),
        };
        self.vcpus[i].waits_for = Some(gen);
    }

    fn start_pass(&mut self) -> u64 {
        self.last_gen += 1;
        self.pass = Some(Pass { gen: self.last_gen, phase: Phase::Find { from: 0 }, again: false });
        self.last_gen
    }

    fn finish_pass(&mut self) {
        let Some(p) = self.pass.take() else { return };
        self.counters.cleans += 1;
        for v in self.vcpus.iter_mut() {
            if v.waits_for.is_some_and(|g| g <= p.gen) {
                v.waits_for = None;
            }
        }
        if p.again {
            self.start_pass();
        }
    }

    // ---- the clean ----

    fn walks_all(&self) -> bool {
        self.cfg.direct_mapped || self.cfg.walk == Walk::All
    }

    fn cleans_needed(&self) -> bool {
        match self.cfg.sw {
            SwMode::Yes => true,
            SwMode::Auto | SwMode::No => !self.cfg.fwb,
        }
    }

    /// The source's next run at or after `from`, clipped to start at `from`
    /// and to end at its chunk's end. A run that ends at or before `from`,
    /// or is empty, is a source bug: it ends the walk (and is counted)
    /// rather than loop for ever.
    fn next_run(&mut self, src: &dyn CleanSource, from: u64, all: bool) -> Option<MemRun> {
        let r = src.next_run(from, all)?;
        let end = r.ipa.saturating_add(r.len);
        if r.len == 0 || end <= from {
            self.counters.source_faults += 1;
            return None;
        }
        let start = core::cmp::max(r.ipa, from);
        let end = core::cmp::min(end, chunk_of(start) + BLOCK_SIZE);
        Some(MemRun { ipa: start, pa: r.pa + (start - r.ipa), len: end - start })
    }

    /// True when the pass at `phase` still has something to clean.
    fn has_more(&mut self, phase: Phase, src: &dyn CleanSource) -> bool {
        let all = self.walks_all();
        match phase {
            Phase::Find { from } => self.next_run(src, from, all).is_some(),
            Phase::Chunk { end, from } => {
                self.next_run(src, from, true).is_some_and(|r| r.ipa < end) || self.next_run(src, end, all).is_some()
            }
        }
    }

    /// One bounded slice of the current pass. Returns the bytes cleaned.
    fn run_slice(&mut self, hw: &mut Hw<'_>) -> u64 {
        let Some(mut pass) = self.pass else { return 0 };
        let all = self.walks_all();
        let budget = self.cfg.slice_bytes;
        let (mut bytes, mut steps) = (0u64, 0u32);
        let finished = loop {
            if bytes >= budget || steps >= self.cfg.slice_steps {
                break !self.has_more(pass.phase, &*hw.source);
            }
            steps += 1;
            match pass.phase {
                Phase::Find { from } => match self.next_run(&*hw.source, from, all) {
                    None => break true,
                    Some(run) => {
                        let chunk = chunk_of(run.ipa);
                        if !all {
                            // Clear first: a write racing with the clean
                            // marks the chunk again.
                            hw.source.clear_touched(chunk, BLOCK_SIZE, &mut *hw.tlb);
                        }
                        pass.phase = Phase::Chunk { end: chunk + BLOCK_SIZE, from: core::cmp::max(chunk, from) };
                    }
                },
                Phase::Chunk { end, from } => match self.next_run(&*hw.source, from, true) {
                    Some(run) if run.ipa < end => {
                        let len = core::cmp::min(run.len, budget - bytes);
                        hw.cache.clean_invalidate_range(run.pa, len);
                        bytes += len;
                        pass.phase = Phase::Chunk { end, from: run.ipa + len };
                    }
                    _ => pass.phase = Phase::Find { from: end },
                },
            }
        };
        self.pass = Some(pass);
        self.counters.slices += 1;
        self.counters.cleaned_bytes += bytes;
        self.counters.max_slice_bytes = core::cmp::max(self.counters.max_slice_bytes, bytes);
        if finished {
            self.finish_pass();
        }
        bytes
    }

    // ---- helpers ----

    fn index(&self, vcpu: VcpuId) -> Result<usize, Error> {
        if vcpu.0 < self.cfg.vcpus {
            Ok(vcpu.0 as usize)
        } else {
            Err(Error::NoSuchVcpu(vcpu))
        }
    }

    /// The index of a vCPU that may have trapped (it is not waiting).
    fn runnable(&self, vcpu: VcpuId) -> Result<usize, Error> {
        let i = self.index(vcpu)?;
        match self.vcpus[i].waits_for {
            Some(_) => Err(Error::CleanPending(vcpu)),
            None => Ok(i),
        }
    }

    fn hcr_of(&self, i: usize) -> Hcr {
        Hcr { tsw: self.cfg.sw != SwMode::No, tvm: self.vcpus[i].tvm }
    }

    /// The only place a [`ResumeToken`] is made.
    fn token(&self, i: usize) -> Option<ResumeToken> {
        match self.vcpus[i].waits_for {
            Some(_) => None,
            None => Some(ResumeToken { vcpu: VcpuId(i as u8), hcr: self.hcr_of(i) }),
        }
    }

    fn reply(&self, i: usize, write: Option<RegWrite>, sw_first_seen: bool) -> Reply {
        let next = match self.token(i) {
            Some(t) => Next::Resume(t),
            None => Next::MoreWork,
        };
        Reply { hcr: self.hcr_of(i), write, sw_first_seen, next }
    }
}

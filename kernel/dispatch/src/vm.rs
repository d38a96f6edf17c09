//! A VM as the dispatch sees it: the components it is wired to (stage-2
//! pager, PoD, cache-maintenance service), its vCPUs, its devices and
//! counters. Building one is the platform's job.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::ops::Range;

use bootcfg::Faults;
use cache_maint::{CacheMaint, VcpuId};
use hwops::{CacheOps, Scoped, TlbOps};
use pod::Pod;
use stage2_pager::Pager;

use crate::frame::TrapFrame;
use crate::platform::{Devices, Out, Platform};

/// HCR_EL2 bits every guest runs with: VM, SWIO, FMO, IMO, AMO, TWI (an
/// idle vCPU gives its pCPU away), TSC, TACR (ACTLR is shadowed), RW. TSW
/// and TVM come from the cache-maintenance service. A guest's local TLB
/// maintenance is made safe across vCPU moves by `Hyp::load`.
pub const HCR_BASE: u64 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | HCR_TWI | (1 << 19) | (1 << 21) | (1 << 31);
pub const HCR_TWI: u64 = 1 << 13;
pub const HCR_TSW: u64 = 1 << 22;
pub const HCR_TVM: u64 = 1 << 26;
pub const HCR_RW: u64 = 1 << 31;

/// SPSR for entering a guest: EL1h (AArch64) or SVC (AArch32), A/I/F masked.
const SPSR_A64: u64 = 0x3c5;
const SPSR_A32: u64 = 0x1d3;

/// Log lines a guest may cause per second; the rest are counted, and the
/// count is printed when the next second starts.
pub const LOG_LINES_PER_S: u32 = 20;

/// What the kernel says when a component named memory outside its VM's.
pub const SCOPE_BUG: &str = "BUG: a component named host memory outside its guest's";

#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    pub stage2_faults: u64,
    pub hvc: u64,
    pub migrations: u64,
    /// Emulated MMIO accesses, and physical interrupts taken while it ran.
    pub mmio: u64,
    pub irq_exits: u64,
    /// WFIs trapped, and those that blocked the vCPU (nothing pending).
    pub wfi: u64,
    pub wfi_blocks: u64,
    /// Writes to a firmware guest's flash, dropped.
    pub flash_writes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Power {
    Off,
    On,
}

pub struct Vcpu<P: Platform> {
    pub frame: TrapFrame,
    /// Its registers outside the frame, while it does not run.
    pub ctx: P::Ctx,
    pub power: Power,
    pub last_pcpu: Option<usize>,
    /// Trapped debug, PMU and ACTLR registers (not switched: shadowed).
    pub shadow: vsysreg::Shadow,
    /// Its console output (hypercalls), a line at a time.
    pub out: P::Out,
}

impl<P: Platform> Vcpu<P> {
    pub fn new(plat: &P, index: usize, aarch32: bool) -> Self {
        Vcpu {
            frame: TrapFrame::default(),
            ctx: plat.reset_ctx(index, aarch32),
            power: Power::Off,
            last_pcpu: None,
            shadow: vsysreg::Shadow::new(),
            out: P::Out::default(),
        }
    }

    /// Power on at `entry` with `x0`/`r0 = context`, MMU and caches off.
    /// An AArch32 entry with bit 0 set starts in Thumb state.
    pub fn reset(&mut self, plat: &P, index: usize, entry: u64, context: u64, aarch32: bool) {
        let last = self.last_pcpu;
        let out = core::mem::take(&mut self.out);
        *self = Vcpu::new(plat, index, aarch32);
        self.last_pcpu = last;
        self.out = out;
        self.frame.x[0] = context;
        if aarch32 {
            self.frame.elr = entry & !1;
            self.frame.spsr = SPSR_A32 | ((entry & 1) << 5);
        } else {
            self.frame.elr = entry;
            self.frame.spsr = SPSR_A64;
        }
        self.power = Power::On;
    }
}

#[derive(Default, Clone, Copy)]
pub struct LogLimit {
    second: u64,
    used: u32,
    dropped: u64,
}

impl LogLimit {
    /// Lines dropped and not reported yet.
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }

    /// Whether one more line may go out in second `now`; also the number
    /// dropped in earlier seconds, to report once (0 when none).
    pub fn allow(&mut self, now: u64) -> (bool, u64) {
        let mut report = 0;
        if now != self.second {
            self.second = now;
            self.used = 0;
            report = core::mem::take(&mut self.dropped);
        }
        if self.used < LOG_LINES_PER_S {
            self.used += 1;
            (true, report)
        } else {
            self.dropped += 1;
            (false, report)
        }
    }
}

/// Why a component's request ([`Vm::cache_maint`], [`Vm::fill_step`])
/// failed: the component's own error, or it named memory outside the VM's
/// (a line said so).
#[derive(Debug)]
pub enum CompError<E> {
    Comp(E),
    Scope,
}

impl<E: core::fmt::Display> core::fmt::Display for CompError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CompError::Comp(e) => write!(f, "{e}"),
            CompError::Scope => f.write_str(SCOPE_BUG),
        }
    }
}

pub struct Vm<P: Platform> {
    /// Guest-caused log lines (aborts it provoked, reports it made).
    pub log: LogLimit,
    /// How it was built, for a restart.
    pub boot: P::Boot,
    /// The host memory it owns (its pool, or the hardware domain's RAM):
    /// all its components may touch.
    pub memory: Range<u64>,
    /// Restarts so far (PSCI SYSTEM_RESET), and one asked for: it happens
    /// once no pCPU holds any of its vCPUs.
    pub restarts: u32,
    pub restart_pending: bool,
    pub name: heapless::String<16>,
    pub pager: Pager<P::Table>,
    pub pod: Pod,
    pub cm: CacheMaint,
    pub vcpus: Vec<Vcpu<P>>,
    /// Per vCPU: the 2 MiB block its last fault waits for
    /// (`pod::Outcome::Filling`); it runs again once that block is mapped.
    pub fills: [Option<u64>; vcpu_sched::MAX_VCPUS_PER_VM],
    pub counters: Counters,
    pub exit_ok: Option<bool>,
    /// The guest's EL1 runs in AArch32 (HCR_EL2.RW = 0).
    pub aarch32: bool,
    /// A Linux guest's emulated devices (vGIC, PL011); `None` for the
    /// bare-metal test guests.
    pub devices: Option<P::Devices>,
    /// CNTVOFF_EL2: the guest's virtual counter starts near 0 at creation.
    pub cntvoff: u64,
    /// TEST ONLY `fault=` (always empty in a normal build).
    pub faults: Faults,
    /// The hardware domain: whether its vCPUs are pinned (`None` for any
    /// other guest).
    pub hwdom_pinned: Option<bool>,
    /// The hardware domain's SPIs (GIC INTIDs), delivered as hardware
    /// interrupts; empty for any other guest.
    pub hw_spis: Vec<u32>,
}

/// TEST ONLY (`fault=clean-skips-walk`): a clean source with no memory, so a
/// clean pass ends at once having cleaned 0 bytes.
struct NothingToClean;

impl hwops::CleanSource for NothingToClean {
    fn next_run(&self, _from: u64, _all: bool) -> Option<hwops::MemRun> {
        None
    }
    fn clear_touched(&mut self, _ipa: u64, _len: u64, _tlb: &mut dyn TlbOps) {}
}

/// One scoped hardware value seen as cache-maint's two halves (its cache
/// and its TLB operations), which it never uses at the same time.
struct CacheHalf<'a, H>(&'a RefCell<H>);
struct TlbHalf<'a, H>(&'a RefCell<H>);

impl<H: CacheOps> CacheOps for CacheHalf<'_, H> {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().clean_range(pa, len)
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().clean_invalidate_range(pa, len)
    }
    fn invalidate_icache_all(&mut self) {
        self.0.borrow_mut().invalidate_icache_all()
    }
}

impl<H: TlbOps> TlbOps for TlbHalf<'_, H> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.0.borrow_mut().invalidate_ipa(vmid, ipa)
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.0.borrow_mut().invalidate_vmid(vmid)
    }
}

impl<P: Platform> Vm<P> {
    /// The hardware operations this VM's components may ask for: its
    /// memory only.
    pub fn hw<'p>(&self, plat: &'p mut P) -> Scoped<P::Hw<'p>> {
        plat.hw(self.vttbr(), self.memory.clone(), false)
    }

    /// [`Vm::hw`] for a PoD fault: TEST ONLY (`fault=no-pod-clean`), the
    /// new frame is zeroed but not cleaned to the PoC before it is mapped.
    pub fn pod_fault_hw<'p>(&self, plat: &'p mut P) -> Scoped<P::Hw<'p>> {
        plat.hw(self.vttbr(), self.memory.clone(), self.faults.contains(Faults::NO_POD_CLEAN))
    }

    pub fn vttbr(&self) -> u64 {
        self.pager.vttbr()
    }

    /// Hand a request to this VM's cache-maintenance service, with the
    /// pager as what a clean walks and the platform's cache and TLB
    /// operations.
    pub fn cache_maint(&mut self, plat: &mut P, req: cache_maint::Request) -> Result<cache_maint::Reply, CompError<cache_maint::Error>> {
        let hw = RefCell::new(plat.hw(self.pager.vttbr(), self.memory.clone(), false));
        let (mut cache, mut tlb) = (CacheHalf(&hw), TlbHalf(&hw));
        // TEST ONLY (`fault=clean-skips-walk`): every clean finds nothing.
        let source: &mut dyn hwops::CleanSource =
            if self.faults.contains(Faults::CLEAN_SKIPS_WALK) { &mut NothingToClean } else { &mut self.pager };
        let r = self.cm.handle(req, &mut cache_maint::Hw { cache: &mut cache, source, tlb: &mut tlb });
        let refused = hw.into_inner().refused();
        if refused != 0 {
            scope_broken(plat, &self.name, refused);
            return Err(CompError::Scope);
        }
        r.map_err(CompError::Comp)
    }

    /// One step of the fill vCPU `v` waits for. `Ok(true)`: its block is
    /// mapped (or another step finished it), so it may run.
    pub fn fill_step(&mut self, plat: &mut P, v: usize) -> Result<bool, CompError<pod::PodError>> {
        let Some(chunk) = self.fills[v] else { return Ok(true) };
        let mut hw = self.pod_fault_hw(plat);
        let r = self.pod.fill_step(&mut self.pager, &mut hw, chunk);
        let refused = hw.refused();
        drop(hw);
        if refused != 0 {
            scope_broken(plat, &self.name, refused);
            return Err(CompError::Scope);
        }
        let done = !matches!(r.map_err(CompError::Comp)?, pod::Outcome::Filling { .. });
        if done {
            self.fills[v] = None;
        }
        Ok(done)
    }

    pub fn in_ram(&self, ipa: u64) -> bool {
        let c = self.pod.config();
        ipa >= c.ram_base && ipa - c.ram_base < c.ram_size
    }

    /// Start each of its console lines with `[name] ` (several guests).
    pub fn prefix_console(&mut self) {
        let name = self.name.clone();
        for c in self.vcpus.iter_mut() {
            c.out.set_prefix(&name);
        }
        if let Some(d) = self.devices.as_mut() {
            d.out().set_prefix(&name);
        }
    }

    /// Whether a line this guest caused may be logged now (see [`LogLimit`]).
    pub fn may_log(&mut self, plat: &mut P) -> bool {
        let (ok, dropped) = self.log.allow(plat.now_s());
        if dropped > 0 {
            plat.log(format_args!("hyp: guest {}: {} log lines suppressed (at most {} a second)", self.name, dropped, LOG_LINES_PER_S));
        }
        ok
    }

    pub fn finished(&self) -> bool {
        self.exit_ok.is_some()
    }

    /// The HCR_EL2 value vCPU `v` runs with now.
    pub fn hcr(&self, v: usize) -> u64 {
        self.hcr_with(self.cm.hcr(VcpuId(v as u8)).unwrap_or(cache_maint::Hcr { tsw: true, tvm: true }))
    }

    /// The HCR_EL2 value for cache-maint's trap bits `t`.
    pub fn hcr_with(&self, t: cache_maint::Hcr) -> u64 {
        let rw = if self.aarch32 { HCR_RW } else { 0 };
        (HCR_BASE & !rw) | if t.tsw { HCR_TSW } else { 0 } | if t.tvm { HCR_TVM } else { 0 }
    }
}

/// The line said when `Scoped` refused `n` operations of guest `name`'s
/// components: nothing outside was touched, but what they meant to zero or
/// clean was not, so the VM must stop.
pub fn scope_broken<P: Platform>(plat: &mut P, name: &str, n: u64) {
    plat.log(format_args!("hyp: {}: guest {} ({} operations refused)", SCOPE_BUG, name, n));
}

/// False (with a line) when `hw` refused any operation for guest `name`.
pub fn scope_kept<P: Platform, H>(plat: &mut P, name: &str, hw: &Scoped<H>) -> bool {
    if hw.refused() == 0 {
        return true;
    }
    scope_broken(plat, name, hw.refused());
    false
}

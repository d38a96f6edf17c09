//! The kernel's implementation of the hardware traits components call
//! (`hwops`): real cache maintenance, TLB invalidation and frame zeroing.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::{self, sysreg_read, sysreg_write};
use hwops::{CacheOps, Frames, Scoped, TlbOps, PAGE_SIZE};

/// Instructions retired (PMU counter 0, when a benchmark guest programs it
/// for event 0x08 with EL2 counting) spent zeroing and cleaning new frames,
/// for 4 KiB and 2 MiB frames: `[zero_4k, zero_2m, clean_4k, clean_2m]`.
/// Otherwise the counter does not run and these stay meaningless but cheap.
pub static FILL_INSNS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// Instructions spent inside the PoD component's fault handling (zeroing
/// and cleaning included), for the same benchmark.
pub static POD_FAULT_INSNS: AtomicU64 = AtomicU64::new(0);

/// Bytes each pCPU zeroed and cleaned since it last let interrupts in (an
/// entry into a guest, or a poll between slices). Each pCPU touches only
/// its own (plain loads and stores: no read-modify-write on the trap path).
static WORK: [AtomicU64; dispatch::MAX_PCPUS] = [const { AtomicU64::new(0) }; dispatch::MAX_PCPUS];
/// The most bytes zeroed and cleaned between two such points since guests
/// started (`max_nonpreempt_bytes` in the summary).
pub static MAX_NONPREEMPT: AtomicU64 = AtomicU64::new(0);

/// This pCPU's entry of [`WORK`].
fn my_work() -> &'static AtomicU64 {
    &WORK[arch::cpu_id() % dispatch::MAX_PCPUS]
}

fn work(len: u64) {
    let w = my_work();
    w.store(w.load(Relaxed) + len, Relaxed);
}

/// This pCPU takes interrupts now: the work since its last point ends.
#[inline]
pub fn preempt_point() {
    let w = my_work();
    let n = w.load(Relaxed);
    if n != 0 {
        w.store(0, Relaxed);
        MAX_NONPREEMPT.fetch_max(n, Relaxed);
    }
}

/// Forget this pCPU's work so far (building VMs at boot, before guests run).
pub fn forget_work() {
    my_work().store(0, Relaxed);
}

pub fn pmu0() -> u64 {
    sysreg_read!("pmevcntr0_el0")
}

fn account(slot: usize, len: u64, start: u64) {
    // A 4 KiB frame is done in one call; a 2 MiB one in steps of more.
    let i = slot * 2 + (len > PAGE_SIZE) as usize;
    FILL_INSNS[i].fetch_add(pmu0().wrapping_sub(start), Relaxed);
}

/// Hardware access on behalf of one VM (its VTTBR names its VMID and root).
/// Components get it only inside a `hwops::Scoped` of the VM's own memory
/// (`Vm::hw`), which is what makes its raw-address operations sound.
pub struct KernelHw {
    vttbr: u64,
    /// TEST ONLY (`fault=no-pod-clean`): `clean_range`, which only PoD's
    /// zero-clean-map of a new frame calls, does nothing.
    skip_frame_clean: bool,
}

/// The only way to get a `KernelHw`: inside a scope of `memory`.
///
/// # Safety
/// `memory` is host RAM mapped at EL2 that the VM `vttbr` names owns (its
/// pool, or the hardware domain's RAM) and nothing else uses.
pub unsafe fn scoped(vttbr: u64, skip_frame_clean: bool, memory: core::ops::Range<u64>) -> Scoped<KernelHw> {
    Scoped::new(KernelHw { vttbr, skip_frame_clean }, memory)
}

impl CacheOps for KernelHw {
    fn clean_range(&mut self, pa: u64, len: u64) {
        if self.skip_frame_clean {
            return;
        }
        let t = pmu0();
        // Clean and invalidate: new guest frames must leave no clean lines
        // behind that a guest writing with caches off would later read past.
        // SAFETY: `Scoped` passes only the VM's own memory, host RAM mapped
        // at EL2 that only this VM uses.
        unsafe { arch::dc_civac_range(pa, len) };
        account(1, len, t);
        work(len);
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        // SAFETY: as in `clean_range`.
        unsafe { arch::dc_civac_range(pa, len) };
        work(len);
    }
    fn invalidate_icache_all(&mut self) {
        arch::ic_iallu_is();
    }
}

impl KernelHw {
    /// Run `f` with this VM's VTTBR loaded (TLB maintenance by IPA uses the
    /// VMID in VTTBR_EL2), then put the previous one back.
    fn with_vttbr(&self, f: impl FnOnce()) {
        let prev = sysreg_read!("vttbr_el2");
        if prev != self.vttbr {
            sysreg_write!("vttbr_el2", self.vttbr);
            arch::isb();
        }
        f();
        if prev != self.vttbr {
            sysreg_write!("vttbr_el2", prev);
            arch::isb();
        }
    }
}

impl TlbOps for KernelHw {
    fn invalidate_ipa(&mut self, _vmid: u16, ipa: u64) {
        self.with_vttbr(|| arch::tlbi_ipa(ipa));
    }
    fn invalidate_vmid(&mut self, _vmid: u16) {
        self.with_vttbr(arch::tlbi_vmid);
    }
}

impl Frames for KernelHw {
    fn zero(&mut self, pa: u64, len: u64) {
        let t = pmu0();
        // SAFETY: `Scoped` passes only the VM's own memory (its pool, or
        // the hardware domain's RAM), which nothing else uses.
        unsafe { arch::zero_range(pa, len) };
        account(0, len, t);
        work(len);
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        // SAFETY: as in `zero`; read-only and volatile (a vCPU may be
        // writing the page while the pod looks at it).
        (0..len / 8).all(|i| unsafe { core::ptr::read_volatile((pa + i * 8) as *const u64) } == 0)
    }
}

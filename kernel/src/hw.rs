//! The kernel's implementation of the hardware traits components call
//! (`hwops`): real cache maintenance, TLB invalidation and frame zeroing.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::arch::{self, sysreg_read, sysreg_write};
use hwops::{CacheOps, Frames, TlbOps, BLOCK_SIZE};

/// Instructions retired (PMU counter 0, when a benchmark guest programs it
/// for event 0x08 with EL2 counting) spent zeroing and cleaning new frames,
/// for 4 KiB and 2 MiB frames: `[zero_4k, zero_2m, clean_4k, clean_2m]`.
/// Otherwise the counter does not run and these stay meaningless but cheap.
pub static FILL_INSNS: [AtomicU64; 4] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// Instructions spent inside the PoD component's fault handling (zeroing
/// and cleaning included), for the same benchmark.
pub static POD_FAULT_INSNS: AtomicU64 = AtomicU64::new(0);

pub fn pmu0() -> u64 {
    sysreg_read!("pmevcntr0_el0")
}

fn account(slot: usize, len: u64, start: u64) {
    let i = slot * 2 + (len >= BLOCK_SIZE) as usize;
    FILL_INSNS[i].fetch_add(pmu0().wrapping_sub(start), Relaxed);
}

/// Hardware access on behalf of one VM (its VTTBR names its VMID and root).
pub struct KernelHw {
    pub vttbr: u64,
    /// TEST ONLY (`fault=no-pod-clean`): `clean_range`, which only PoD's
    /// zero-clean-map of a new frame calls, does nothing.
    pub skip_frame_clean: bool,
}

impl CacheOps for KernelHw {
    fn clean_range(&mut self, pa: u64, len: u64) {
        if self.skip_frame_clean {
            return;
        }
        let t = pmu0();
        // Clean and invalidate: new guest frames must leave no clean lines
        // behind that a guest writing with caches off would later read past.
        arch::dc_civac_range(pa, len);
        account(1, len, t);
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        arch::dc_civac_range(pa, len);
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
        // Components only name frames the kernel granted to the VM's pool.
        arch::zero_range(pa, len);
        account(0, len, t);
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        // SAFETY: as in `zero`; read-only.
        let words = unsafe { core::slice::from_raw_parts(pa as *const u64, (len / 8) as usize) };
        words.iter().all(|&w| w == 0)
    }
}

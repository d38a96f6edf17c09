//! The kernel's implementation of the hardware traits components call
//! (`hwops`): real cache maintenance, TLB invalidation and frame zeroing.

use crate::arch::{self, sysreg_read, sysreg_write, DcOp};
use hwops::{CacheOps, Frames, TlbOps};

/// Hardware access on behalf of one VM (its VTTBR names its VMID and root).
pub struct KernelHw {
    pub vttbr: u64,
}

impl CacheOps for KernelHw {
    fn clean_range(&mut self, pa: u64, len: u64) {
        arch::dc_range(DcOp::Clean, pa, len);
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        arch::dc_range(DcOp::CleanInval, pa, len);
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
        // SAFETY: components only name frames the kernel granted to the VM's
        // pool (or its own tables); RAM is mapped 1:1 at EL2.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len as usize) };
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        // SAFETY: as in `zero`; read-only.
        let words = unsafe { core::slice::from_raw_parts(pa as *const u64, (len / 8) as usize) };
        words.iter().all(|&w| w == 0)
    }
}

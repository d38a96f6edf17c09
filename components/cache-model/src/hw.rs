//! [`ModelHw`]: the kernel's `KernelHw` over the models. One value that is
//! `hwops::Frames + CacheOps + TlbOps`, as the pod and the pager take it, so
//! the real components run against the cache model and the TLB model.

use hwops::{CacheOps, Frames, TlbOps};

use crate::tlb::Tlb;
use crate::CacheModel;

/// What `CacheOps::clean_range` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CleanRange {
    /// Clean and invalidate (`DC CIVAC`), as the kernel's `KernelHw` does
    /// so that a new frame leaves no clean line behind that a guest writing
    /// with its caches off would later read past. The default.
    #[default]
    CleanInvalidate,
    /// Only clean (`DC CVAC`): the least the `hwops::CacheOps` contract
    /// promises ("lines stay valid").
    Clean,
}

/// The hardware the kernel hands the pod and the pager, over the models:
/// frames zeroed through the hypervisor pCPU's cache
/// ([`CacheModel::set_hyp_cpu`]), maintenance by address broadcast to every
/// cache, TLB invalidations broadcast to every pCPU's TLB.
pub struct ModelHw<'a> {
    /// Caches and memory.
    pub cache: &'a mut CacheModel,
    /// Stage-2 TLBs.
    pub tlb: &'a mut Tlb,
    /// What `clean_range` does.
    pub clean_range: CleanRange,
}

impl<'a> ModelHw<'a> {
    /// Kernel-like hardware over `cache` and `tlb`.
    pub fn new(cache: &'a mut CacheModel, tlb: &'a mut Tlb) -> Self {
        ModelHw { cache, tlb, clean_range: CleanRange::default() }
    }
}

impl Frames for ModelHw<'_> {
    fn zero(&mut self, pa: u64, len: u64) {
        self.cache.zero(pa, len);
    }

    fn is_zero(&self, pa: u64, len: u64) -> bool {
        self.cache.is_zero(pa, len)
    }
}

impl CacheOps for ModelHw<'_> {
    fn clean_range(&mut self, pa: u64, len: u64) {
        match self.clean_range {
            CleanRange::CleanInvalidate => self.cache.clean_invalidate_va(pa, len),
            CleanRange::Clean => self.cache.clean_va(pa, len),
        }
    }

    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.cache.clean_invalidate_va(pa, len);
    }

    fn invalidate_icache_all(&mut self) {
        self.cache.invalidate_icache_all();
    }
}

impl TlbOps for ModelHw<'_> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.tlb.invalidate_ipa(vmid, ipa);
    }

    fn invalidate_vmid(&mut self, vmid: u16) {
        self.tlb.invalidate_vmid(vmid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlb::{Translation, Walked};
    use crate::{Access, Config};

    #[test]
    fn clean_range_modes() {
        for (mode, stays) in [(CleanRange::CleanInvalidate, false), (CleanRange::Clean, true)] {
            let mut m = CacheModel::new(Config::small(2));
            let mut tlb = Tlb::new(2, 4);
            m.set_hyp_cpu(1);
            let mut hw = ModelHw { cache: &mut m, tlb: &mut tlb, clean_range: mode };
            hw.zero(0x10_0000, 4096);
            hw.clean_range(0x10_0000, 4096);
            assert!(hw.is_zero(0x10_0000, 4096));
            // A write with caches off goes to the PoC; a clean line left by
            // the zeroing would hide it from a later cacheable read.
            m.store_u64(Access::Uncached, 0x10_0040, 5);
            assert_eq!(m.load_u64(Access::Cached(0), 0x10_0040) == 0, stays);
        }
    }

    #[test]
    fn tlb_ops_reach_the_tlb() {
        let mut m = CacheModel::new(Config::small(1));
        let mut tlb = Tlb::new(1, 4);
        let table = |ipa: u64| (ipa < 4096).then_some(Walked { ipa: 0, pa: 0x5000, size: 4096, accessed: true });
        assert!(matches!(tlb.translate(0, 3, 8, &table), Translation::Filled { .. }));
        ModelHw::new(&mut m, &mut tlb).invalidate_ipa(3, 0);
        assert_eq!(tlb.entries(0), 0);
    }
}

//! The EL2 stage-1 MMU: an identity map built with aarch64-paging's EL2
//! regime. The devices the kernel drives are Device-nGnRE; RAM is Normal
//! write-back.
//! Caches must be on: exclusive loads/stores (our locks) need cacheable
//! memory on the boards.

use super::{isb, sysreg_write};
use aarch64_paging::descriptor::El23Attributes as A;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};

/// MAIR index 0: Device-nGnRE. Index 1: Normal, inner/outer write-back RA/WA.
const MAIR: u64 = 0x04 | (0xff << 8);
const DEVICE: A = A::ATTRIBUTE_INDEX_0.union(A::VALID).union(A::ACCESSED).union(A::XN);
const NORMAL: A = A::ATTRIBUTE_INDEX_1
    .union(A::INNER_SHAREABLE)
    .union(A::VALID)
    .union(A::ACCESSED);

/// TCR_EL2: T0SZ=25 (39-bit VA, root level 1), WBWA inner/outer, inner
/// shareable, 4 KiB granule, PS=40 bits; bits 31 and 23 are RES1.
const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 23) | (1 << 31);

/// SCTLR_EL2 RES1 bits, plus M, C, I (and SA).
const SCTLR_RES1: u64 = 0x30c5_0830;
const SCTLR_ON: u64 = SCTLR_RES1 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

pub struct El2Map {
    map: IdMap<El2>,
}

impl El2Map {
    /// Map each device range (widened to whole pages) as Device memory and
    /// each RAM range as normal memory.
    pub fn new(ram: &[(u64, u64)], devices: &[(u64, u64)]) -> Self {
        let mut map = IdMap::new(1, El2);
        for &(base, size) in devices {
            let start = base & !0xfff;
            let end = (base + size.max(1)).next_multiple_of(0x1000);
            map.map_range(&MemoryRegion::new(start as usize, end as usize), DEVICE)
                .expect("EL2 map: device range");
        }
        for &(base, size) in ram {
            map.map_range(&MemoryRegion::new(base as usize, (base + size) as usize), NORMAL)
                .expect("EL2 map: RAM range");
        }
        Self { map }
    }

    /// Load the tables and turn the MMU and caches on for this pCPU.
    pub fn enable(&mut self) {
        sysreg_write!("mair_el2", MAIR);
        sysreg_write!("tcr_el2", TCR);
        isb();
        // SAFETY: the identity map covers the image, stacks, heap and
        // devices the kernel uses, with the same addresses.
        unsafe {
            self.map.activate();
        }
        // SAFETY: invalidating EL2 TLB entries only.
        unsafe { core::arch::asm!("tlbi alle2", "dsb sy", "isb", options(nostack)) };
        sysreg_write!("sctlr_el2", SCTLR_ON);
        isb();
    }

    /// What a secondary pCPU loads, with its MMU still off, to use these
    /// tables: MAIR, TCR, TTBR0 and SCTLR of EL2 (see `_secondary_start`).
    pub fn secondary_regs(&self) -> [u64; 4] {
        [MAIR, TCR, self.map.root_address().0 as u64, SCTLR_ON]
    }
}

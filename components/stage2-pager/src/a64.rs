//! The AArch64 backend: aarch64-paging's `Stage2` regime.
//!
//! Layout: 4 KiB granule, 39-bit IPA space (512 GiB), walks start at level 1
//! with a single 4 KiB root table. So `VTCR_EL2.T0SZ = 25`, `SL0 = 1`, no
//! concatenated root tables (aarch64-paging has none). The same choice works
//! for the ARMv7 LPAE backend (T0SZ = -7, SL0 = 1, one root table), so both
//! architectures share one IPA layout.
//!
//! The library's `Mapping` is never marked active. Marked active, it would
//! issue `TLBI IPAS2E1IS` itself, which acts on whatever VMID `VTTBR_EL2`
//! holds at that moment, not necessarily this VM's. Kept inactive, it only
//! writes descriptors, and the pager does break-before-make and all TLB
//! maintenance through `hwops::TlbOps` with the right VMID.
//!
//! ## What the kernel's `Translation` must do
//! - `allocate_table`: return a zeroed, 4 KiB-aligned frame mapped at EL2
//!   (VA = PA). The trait has no failure path, so the kernel reserves enough
//!   table frames for each VM (or stops the VM when it runs out).
//! - `deallocate_table`: the pager frees a page table only when it replaces
//!   an empty one by a block, and invalidates the TLB for that 2 MiB range
//!   right after the free. Until that invalidation a walk cache may still
//!   point at the frame, so the kernel must not hand it out again before the
//!   pager's call returns (simplest: the per-VM `Translation` runs
//!   `TLBI VMALLS12E1IS` for its own VMID before freeing).

use crate::format::{FormatError, Leaf, LeafSize, MemAttrs, TableFormat};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2, Translation};
use aarch64_paging::Mapping;
use core::ops::ControlFlow;
use hwops::{BLOCK_SIZE, PAGE_SIZE};

/// IPA bits translated by this layout.
pub const IPA_BITS: u32 = 39;
const ROOT_LEVEL: usize = 1;

/// `VTCR_EL2` bits for this layout: T0SZ = 25 (39-bit IPA), SL0 = 1 (start
/// at level 1), IRGN0 = ORGN0 = 1 (write-back, write-allocate walks), SH0 = 3
/// (inner shareable), TG0 = 0 (4 KiB), and bit 31 (RES1). PS is left for the
/// kernel (from `ID_AA64MMFR0_EL1.PARange`); it must allow at least 40 bits.
pub const VTCR_BITS: u64 = (64 - IPA_BITS as u64) // T0SZ
    | (1 << 6) // SL0: level 1
    | (1 << 8) // IRGN0
    | (1 << 10) // ORGN0
    | (3 << 12) // SH0
    | (1 << 31); // RES1

const NORMAL: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER);
const ROM: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RO)
    .union(Stage2Attributes::SH_INNER);
const DEVICE: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::XN);
// MemAttr[3:2] is the outer cacheability of Normal memory; zero means Device.
const OUTER_ATTR_MASK: usize = 0b11 << 4;

fn flags(attrs: MemAttrs, accessed: bool) -> Stage2Attributes {
    let base = match attrs {
        MemAttrs::Normal => NORMAL,
        MemAttrs::Device => DEVICE,
        MemAttrs::Rom => ROM,
    };
    if accessed {
        base | Stage2Attributes::ACCESS_FLAG
    } else {
        base
    }
}

fn region(ipa: u64, len: u64) -> MemoryRegion {
    MemoryRegion::new(ipa as usize, (ipa + len) as usize)
}

/// A stage-2 table built with aarch64-paging. `T` gives it table frames: the
/// kernel's frame allocator on target, the heap in host tests.
pub struct A64Table<T: Translation<Stage2Attributes>> {
    map: Mapping<T, Stage2>,
}

impl<T: Translation<Stage2Attributes>> A64Table<T> {
    /// An empty table; allocates the root table through `translation`.
    pub fn new(translation: T) -> Self {
        A64Table {
            map: Mapping::new(translation, ROOT_LEVEL, Stage2),
        }
    }

    /// The translation (frame source) in use.
    pub fn translation(&self) -> &T {
        self.map.translation()
    }

    // Visits the descriptors covering [start, end): (range, descriptor, level).
    fn visit(
        &self,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, usize, &Stage2Attributes, u64) -> ControlFlow<()>,
    ) {
        // A `Break` from `f` ends the walk with an error the library reports
        // as a PTE fault; that is the expected way out, so it is ignored.
        let _ = self
            .map
            .walk_range(&region(start, end - start), &mut |mr, d, level| match f(
                mr.start().0 as u64,
                level,
                &d.flags(),
                d.output_address().0 as u64,
            ) {
                ControlFlow::Continue(()) => Ok(()),
                ControlFlow::Break(()) => Err(()),
            });
    }
}

fn decode(at: u64, level: usize, fl: &Stage2Attributes, oa: u64) -> Option<Leaf> {
    if !fl.contains(Stage2Attributes::VALID) {
        return None;
    }
    let size = match level {
        3 => LeafSize::Page4K,
        2 => LeafSize::Block2M,
        // Level-1 (1 GiB) blocks are never written by this backend.
        _ => return None,
    };
    let attrs = if fl.bits() & OUTER_ATTR_MASK == 0 {
        MemAttrs::Device
    } else if fl.contains(Stage2Attributes::S2AP_ACCESS_WO) {
        MemAttrs::Normal
    } else {
        MemAttrs::Rom
    };
    Some(Leaf {
        ipa: at & !(size.bytes() - 1),
        pa: oa,
        size,
        attrs,
        accessed: fl.contains(Stage2Attributes::ACCESS_FLAG),
    })
}

impl<T: Translation<Stage2Attributes>> TableFormat for A64Table<T> {
    fn ipa_bits(&self) -> u32 {
        IPA_BITS
    }

    fn root_pa(&self) -> u64 {
        self.map.root_address().0 as u64
    }

    fn vtcr_bits(&self) -> u64 {
        VTCR_BITS
    }

    fn leaf(&self, ipa: u64) -> Option<Leaf> {
        let page = ipa & !(PAGE_SIZE - 1);
        let mut found = None;
        self.visit(page, page + PAGE_SIZE, &mut |at, level, fl, oa| {
            found = decode(at, level, fl, oa);
            ControlFlow::Break(())
        });
        found
    }

    fn walk(&self, start: u64, end: u64, f: &mut dyn FnMut(&Leaf) -> ControlFlow<()>) {
        let start = start & !(PAGE_SIZE - 1);
        if start >= end {
            return;
        }
        self.visit(
            start,
            end,
            &mut |at, level, fl, oa| match decode(at, level, fl, oa) {
                Some(leaf) => f(&leaf),
                None => ControlFlow::Continue(()),
            },
        );
    }

    fn write(
        &mut self,
        ipa: u64,
        pa: u64,
        len: u64,
        size: LeafSize,
        attrs: MemAttrs,
        accessed: bool,
    ) -> Result<(), FormatError> {
        let fl = flags(attrs, accessed);
        match size {
            LeafSize::Page4K => self
                .map
                .map_range(
                    &region(ipa, len),
                    PhysicalAddress(pa as usize),
                    fl,
                    Constraints::NO_BLOCK_MAPPINGS,
                )
                .map_err(|_| FormatError::Rejected { ipa }),
            LeafSize::Block2M => {
                // One call per block, so the library never folds aligned
                // runs into a level-1 (1 GiB) block.
                let mut off = 0;
                while off < len {
                    self.map
                        .map_range(
                            &region(ipa + off, BLOCK_SIZE),
                            PhysicalAddress((pa + off) as usize),
                            fl,
                            Constraints::empty(),
                        )
                        .map_err(|_| FormatError::Rejected { ipa: ipa + off })?;
                    off += BLOCK_SIZE;
                }
                Ok(())
            }
        }
    }

    fn clear(&mut self, ipa: u64, size: LeafSize) -> Result<(), FormatError> {
        // Invalid flags unmap; on an existing leaf of exactly this size the
        // library only rewrites that one entry (no split, no table freed).
        self.map
            .map_range(
                &region(ipa, size.bytes()),
                PhysicalAddress(0),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| FormatError::Rejected { ipa })
    }

    fn set_accessed(&mut self, ipa: u64, size: LeafSize, on: bool) -> Result<(), FormatError> {
        let (set, clear) = if on {
            (Stage2Attributes::ACCESS_FLAG, Stage2Attributes::empty())
        } else {
            (Stage2Attributes::empty(), Stage2Attributes::ACCESS_FLAG)
        };
        // The range is exactly one existing leaf, so the library neither
        // splits a block nor creates a table.
        self.map
            .modify_range(&region(ipa, size.bytes()), &|_, d| {
                if d.flags().contains(Stage2Attributes::VALID) {
                    d.modify_flags(set, clear)
                } else {
                    Ok(())
                }
            })
            .map_err(|_| FormatError::Rejected { ipa })
    }

    fn set_chunk_accessed(&mut self, chunk: u64, on: bool) -> Result<(), FormatError> {
        let (set, clear) = if on {
            (Stage2Attributes::ACCESS_FLAG, Stage2Attributes::empty())
        } else {
            (Stage2Attributes::empty(), Stage2Attributes::ACCESS_FLAG)
        };
        // One walk over the chunk's entry: its block, or each entry of its
        // page table (with a leaf in the chunk, the tables above exist, so
        // a 2 MiB aligned range splits and allocates nothing).
        self.map
            .modify_range(&region(chunk, BLOCK_SIZE), &|_, d| {
                let fl = d.flags();
                if fl.contains(Stage2Attributes::VALID) && fl.bits() & OUTER_ATTR_MASK != 0 {
                    d.modify_flags(set, clear)
                } else {
                    Ok(())
                }
            })
            .map_err(|_| FormatError::Rejected { ipa: chunk })
    }

    fn has_page_table(&self, ipa: u64) -> bool {
        let chunk = ipa & !(BLOCK_SIZE - 1);
        let mut table = false;
        // Behind a page table the walk reaches level 3; otherwise it stops
        // at the invalid or block entry above.
        self.visit(chunk, chunk + BLOCK_SIZE, &mut |_, level, _, _| {
            table = level == 3;
            ControlFlow::Break(())
        });
        table
    }

    fn remove_page_table(&mut self, ipa: u64) -> Result<(), FormatError> {
        let chunk = ipa & !(BLOCK_SIZE - 1);
        // Unmapping a whole 2 MiB entry that holds a table frees the table.
        self.map
            .map_range(
                &region(chunk, BLOCK_SIZE),
                PhysicalAddress(0),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| FormatError::Rejected { ipa: chunk })
    }
}

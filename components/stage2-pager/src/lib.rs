//! # stage2-pager: each VM's stage-2 table and its touched-since-clean record
//!
//! **Responsible for:**
//! - Mapping and unmapping 4 KiB pages and 2 MiB blocks of one VM, as Normal
//!   RAM or Device memory; splitting a block into 512 pages that map the
//!   same memory; translating an IPA; walking what is mapped.
//! - Break-before-make on every change of a valid entry: the old entry is
//!   made invalid, the TLB is invalidated through [`hwops::TlbOps`] with this
//!   VM's VMID, and only then is the new entry written.
//! - The touched-since-last-clean record, as a [`hwops::CleanSource`].
//! - The values the kernel loads for this VM: [`Pager::vttbr`] and
//!   [`Pager::vtcr_bits`].
//!
//! **Not responsible for:** choosing frames or zeroing them (the `pod`
//! crate), cleaning caches (the cache-maint service drives the
//! [`hwops::CleanSource`] and cleans), deciding what a fault means (the
//! kernel routes translation faults to `pod`, access-flag faults here), or
//! table memory (a [`TableFormat`] backend; on AArch64 the kernel supplies
//! the frames through aarch64-paging's `Translation`).
//!
//! **Invariants:**
//! - A [`Pager`] is made by consuming the VM's [`Stage2Cap`], so each VM has
//!   at most one pager, and holding `&mut Pager` is the right to edit it.
//! - Only 4 KiB and 2 MiB leaves exist; every leaf is aligned to its size in
//!   IPA and PA. A map never cuts through a leaf of another size (that is
//!   [`PagerError::Overlap`]; split first).
//! - When any public method returns, no TLB can hold a translation that the
//!   table no longer has (every invalidated or access-flag-cleared entry has
//!   had its `TlbOps` invalidation).
//! - Touch record, kept exact with access flags (stage-2 hardware AF update
//!   is off, `VTCR_EL2.HA = 0`, so an access to an entry with AF = 0 traps):
//!   * every map writes the entry with AF = 1 and marks its 2 MiB chunk
//!     touched (the frame was just zeroed and cleaned, but the guest is about
//!     to write it);
//!   * [`CleanSource::clear_touched`] clears AF on every Normal leaf of the
//!     chunk, invalidates the TLB, then forgets the chunk;
//!   * [`Pager::handle_access_fault`], called by the kernel on a stage-2
//!     access-flag fault, marks the chunk touched and sets AF again on all
//!     its Normal leaves (one fault per chunk and clean, not per page).
//!
//!   Hence: a chunk not marked touched has AF = 0 on all its Normal leaves,
//!   so the guest cannot have accessed it since it was last cleared.
//! - Touch tracking covers Normal mappings in one 64 GiB window starting at
//!   the `track_base` given at creation; a Normal mapping outside it is
//!   refused. Device mappings may sit anywhere and are never reported as runs.
//!
//! ## IPA layout and VTCR
//! The AArch64 backend ([`A64Table`]) uses a 4 KiB granule, a 39-bit IPA
//! space (512 GiB) and starts walks at level 1 with a single root table:
//! `VTCR_EL2.T0SZ = 25`, `SL0 = 1`. This needs no concatenated root tables,
//! which aarch64-paging cannot build. A 40-bit IPA would need two
//! concatenated level-1 tables; 512 GiB is far beyond the RAM and device
//! space of every supported board.
//!
//! ## ARMv7 (Cubietruck)
//! aarch64-paging does not build for 32-bit Arm, so the [`A64Table`] backend
//! exists only off `target_arch = "arm"` and with the `aarch64-backend`
//! feature (on by default). An LPAE backend (same 64-bit descriptors, same
//! 39-bit layout with `VTCR.T0SZ = -7`, `SL0 = 1`) is not written yet: it is
//! another [`TableFormat`] implementation, and nothing above that trait
//! changes.
//!
//! ## How the kernel calls it
//! ```text
//! boot:  let caps = granter.grant_vm(vm)?;
//!        let pager = Pager::new(caps.stage2, A64Table::new(kernel_translation), ram_base)?;
//!        VTTBR_EL2 <- pager.vttbr();  VTCR_EL2 <- pager.vtcr_bits() | PS | VS
//! trap:  stage-2 translation fault on RAM  -> pod (which maps through the pager)
//!        stage-2 access-flag fault          -> pager.handle_access_fault(ipa)
//!                                              or pager.handle(Request::AccessFault{..}, tlb)
//! clean: cache-maint drives `&mut pager` as a hwops::CleanSource
//! ```
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "testing"))]
extern crate std;

#[cfg(all(feature = "aarch64-backend", not(target_arch = "arm")))]
mod a64;
mod chunks;
mod format;
#[cfg(all(feature = "testing", not(target_arch = "arm")))]
pub mod testing;

#[cfg(all(feature = "aarch64-backend", not(target_arch = "arm")))]
pub use a64::{A64Table, IPA_BITS as A64_IPA_BITS, VTCR_BITS as A64_VTCR_BITS};
pub use capabilities::{Stage2Cap, VmId};
pub use format::{FormatError, Leaf, LeafSize, MemAttrs, TableFormat};

use chunks::{ChunkSet, CHUNKS};
use format::ChunkFlips;
use core::fmt;
use core::ops::ControlFlow;
use hwops::{CleanSource, MemRun, TlbOps, BLOCK_SIZE, PAGE_SIZE};

/// Size of the touch-tracking window (64 GiB).
pub const TRACK_SPAN: u64 = CHUNKS as u64 * BLOCK_SIZE;

/// Above this many invalidations in one operation, one whole-VMID
/// invalidation replaces the per-IPA ones.
pub const TLBI_BATCH: usize = 16;

/// Highest physical address a descriptor can hold, plus one (48 bits).
pub const PA_LIMIT: u64 = 1 << 48;

/// Why the pager refused a request. Nothing changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagerError {
    /// IPA or PA not aligned to the leaf size.
    Misaligned {
        /// Guest address asked for.
        ipa: u64,
        /// Physical address asked for.
        pa: u64,
    },
    /// The IPA is beyond the table's address space.
    OutOfRange {
        /// Guest address asked for.
        ipa: u64,
    },
    /// The PA does not fit a descriptor (48 bits).
    BadPa {
        /// Physical address asked for.
        pa: u64,
    },
    /// A Normal mapping outside the touch-tracking window.
    OutsideTracked {
        /// Guest address asked for.
        ipa: u64,
    },
    /// The request would cut through a leaf of another size (split the
    /// block, or unmap the pages, first).
    Overlap {
        /// Guest address asked for.
        ipa: u64,
    },
    /// Nothing is mapped there.
    NotMapped {
        /// Guest address asked for.
        ipa: u64,
    },
    /// Split asked for where no 2 MiB block is mapped.
    NotABlock {
        /// Guest address asked for.
        ipa: u64,
    },
    /// The table backend refused.
    Format(FormatError),
}

impl fmt::Display for PagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PagerError::Misaligned { ipa, pa } => {
                write!(f, "misaligned mapping ipa {ipa:#x} pa {pa:#x}")
            }
            PagerError::OutOfRange { ipa } => write!(f, "ipa {ipa:#x} beyond the IPA space"),
            PagerError::BadPa { pa } => write!(f, "pa {pa:#x} beyond 48 bits"),
            PagerError::OutsideTracked { ipa } => {
                write!(
                    f,
                    "normal memory at ipa {ipa:#x} outside the tracked window"
                )
            }
            PagerError::Overlap { ipa } => {
                write!(f, "ipa {ipa:#x} overlaps a mapping of another size")
            }
            PagerError::NotMapped { ipa } => write!(f, "ipa {ipa:#x} not mapped"),
            PagerError::NotABlock { ipa } => write!(f, "ipa {ipa:#x} is not a 2 MiB block"),
            PagerError::Format(FormatError::Rejected { ipa }) => {
                write!(f, "table backend refused ipa {ipa:#x}")
            }
        }
    }
}

impl From<FormatError> for PagerError {
    fn from(e: FormatError) -> Self {
        PagerError::Format(e)
    }
}

/// What an access-flag fault found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFlag {
    /// AF was clear and is now set; the chunk is marked touched.
    Set,
    /// AF was already set (another vCPU got there first); nothing to do
    /// beyond resuming the guest.
    AlreadySet,
}

/// A request to the pager, as the kernel's dispatcher sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Map one leaf.
    Map {
        /// Guest address.
        ipa: u64,
        /// Backing physical address.
        pa: u64,
        /// Page or block.
        size: LeafSize,
        /// Normal or Device.
        attrs: MemAttrs,
    },
    /// Unmap one page, or everything in one 2 MiB chunk.
    Unmap {
        /// Guest address.
        ipa: u64,
        /// Page, or the whole chunk.
        size: LeafSize,
    },
    /// Split the block containing `ipa` into pages.
    Split {
        /// Guest address.
        ipa: u64,
    },
    /// A stage-2 access-flag fault at `ipa`.
    AccessFault {
        /// Faulting guest address.
        ipa: u64,
    },
    /// Translate `ipa`.
    Translate {
        /// Guest address.
        ipa: u64,
    },
}

/// The pager's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Map, unmap or split done.
    Done,
    /// Access-flag fault handled; resume the guest.
    AccessFlag(AccessFlag),
    /// Translation of the asked IPA: `(pa, leaf size in bytes)`.
    Translated(Option<(u64, u64)>),
    /// Refused; nothing changed.
    Error(PagerError),
}

/// [`Pager::new`] refused; the capability and table are handed back.
pub struct Refused<F> {
    /// Why.
    pub error: PagerError,
    /// The capability, unused.
    pub cap: Stage2Cap,
    /// The table, unused.
    pub table: F,
}

impl<F> fmt::Debug for Refused<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refused({:?}, {})", self.error, self.cap.vm())
    }
}

/// One VM's stage-2 table, owned through its [`Stage2Cap`].
pub struct Pager<F: TableFormat> {
    cap: Stage2Cap,
    table: F,
    track_base: u64,
    track_end: u64,
    touched: ChunkSet,
    /// Tracked chunks with at least one leaf mapped, so that
    /// `chunk_is_empty` (asked on every PoD fault) needs no table walk.
    mapped: ChunkSet,
    normal_bytes: u64,
}

const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

// Collects TLB invalidations of one operation; falls back to one
// whole-VMID invalidation when there are too many.
struct TlbBatch {
    ipas: [u64; TLBI_BATCH],
    n: usize,
    whole_vm: bool,
}

impl TlbBatch {
    fn new() -> Self {
        TlbBatch {
            ipas: [0; TLBI_BATCH],
            n: 0,
            whole_vm: false,
        }
    }

    fn add(&mut self, ipa: u64) {
        if self.n < TLBI_BATCH {
            self.ipas[self.n] = ipa;
            self.n += 1;
        } else {
            self.whole_vm = true;
        }
    }

    fn flush(self, vmid: u16, tlb: &mut dyn TlbOps) {
        if self.whole_vm {
            tlb.invalidate_vmid(vmid);
        } else {
            for &ipa in &self.ipas[..self.n] {
                tlb.invalidate_ipa(vmid, ipa);
            }
        }
    }
}

impl<F: TableFormat> Pager<F> {
    /// The pager of the VM that `cap` names, over an empty `table`. Touch
    /// tracking (and Normal mappings) cover `[track_base, track_base +
    /// TRACK_SPAN)`, cut at the end of the IPA space; put guest RAM there.
    /// On refusal the capability and table come back in [`Refused`].
    pub fn new(cap: Stage2Cap, table: F, track_base: u64) -> Result<Self, Refused<F>> {
        let limit = 1u64 << table.ipa_bits();
        let error = if !track_base.is_multiple_of(BLOCK_SIZE) {
            Some(PagerError::Misaligned {
                ipa: track_base,
                pa: 0,
            })
        } else if track_base >= limit {
            Some(PagerError::OutOfRange { ipa: track_base })
        } else {
            None
        };
        if let Some(error) = error {
            return Err(Refused { error, cap, table });
        }
        Ok(Pager {
            cap,
            table,
            track_base,
            track_end: (track_base + TRACK_SPAN).min(limit),
            touched: ChunkSet::new(),
            mapped: ChunkSet::new(),
            normal_bytes: 0,
        })
    }

    /// Tear down: give back the capability and the table. Only after the VM
    /// has stopped and its VMID's TLB entries were invalidated.
    pub fn into_parts(self) -> (Stage2Cap, F) {
        (self.cap, self.table)
    }

    /// The VM this pager belongs to.
    pub fn vm(&self) -> VmId {
        self.cap.vm()
    }

    fn vmid(&self) -> u16 {
        self.cap.vm().vmid()
    }

    /// Physical address of the root table.
    pub fn root_pa(&self) -> u64 {
        self.table.root_pa()
    }

    /// `VTTBR_EL2` for this VM: root table address and VMID (bits 63:48).
    pub fn vttbr(&self) -> u64 {
        self.table.root_pa() | (u64::from(self.vmid()) << 48)
    }

    /// The `VTCR_EL2` fields the table layout needs (see the crate docs); the
    /// kernel ORs in PS (and VS for 16-bit VMIDs) and leaves HA = 0.
    pub fn vtcr_bits(&self) -> u64 {
        self.table.vtcr_bits()
    }

    /// One past the highest translatable IPA.
    pub fn ipa_limit(&self) -> u64 {
        1 << self.table.ipa_bits()
    }

    /// The touch-tracking window `[start, end)`.
    pub fn tracked(&self) -> (u64, u64) {
        (self.track_base, self.track_end)
    }

    /// Bytes currently mapped as Normal memory.
    pub fn normal_bytes(&self) -> u64 {
        self.normal_bytes
    }

    /// The table backend, for inspection.
    pub fn table(&self) -> &F {
        &self.table
    }

    fn chunk_index(&self, ipa: u64) -> Option<usize> {
        if ipa >= self.track_base && ipa < self.track_end {
            Some(((ipa - self.track_base) / BLOCK_SIZE) as usize)
        } else {
            None
        }
    }

    fn mark_touched(&mut self, ipa: u64) {
        if let Some(i) = self.chunk_index(ipa) {
            self.touched.insert(i);
        }
    }

    /// Whether the 2 MiB chunk holding `ipa` is marked touched.
    pub fn is_touched(&self, ipa: u64) -> bool {
        self.chunk_index(ipa)
            .is_some_and(|i| self.touched.contains(i))
    }

    /// How many chunks are marked touched.
    pub fn touched_chunks(&self) -> usize {
        self.touched.len()
    }

    /// `(pa, leaf size in bytes)` for `ipa`: the physical address backing
    /// that exact guest address, and the size of the leaf mapping it.
    pub fn translate(&self, ipa: u64) -> Option<(u64, u64)> {
        if ipa >= self.ipa_limit() {
            return None;
        }
        self.table
            .leaf(ipa)
            .map(|l| (l.pa + (ipa - l.ipa), l.size.bytes()))
    }

    /// The leaf covering `ipa`.
    pub fn leaf(&self, ipa: u64) -> Option<Leaf> {
        if ipa >= self.ipa_limit() {
            return None;
        }
        self.table.leaf(ipa)
    }

    /// Calls `f` with each mapped leaf intersecting `[start, end)`, in
    /// address order, until it breaks.
    pub fn walk(&self, start: u64, end: u64, f: &mut dyn FnMut(&Leaf) -> ControlFlow<()>) {
        let end = end.min(self.ipa_limit());
        if start < end {
            self.table.walk(start, end, f);
        }
    }

    /// Whether nothing is mapped in the 2 MiB chunk holding `ipa`. Inside
    /// the tracked window this is a bit test.
    pub fn chunk_is_empty(&self, ipa: u64) -> bool {
        match self.chunk_index(ipa) {
            Some(i) => !self.mapped.contains(i),
            None => self.scan_chunk_empty(ipa),
        }
    }

    /// `chunk_is_empty` by walking the table.
    fn scan_chunk_empty(&self, ipa: u64) -> bool {
        let c = align_down(ipa, BLOCK_SIZE);
        let mut empty = true;
        self.walk(c, c + BLOCK_SIZE, &mut |_| {
            empty = false;
            ControlFlow::Break(())
        });
        empty
    }

    fn check_leaf_args(&self, ipa: u64, pa: u64, size: LeafSize) -> Result<(), PagerError> {
        let bytes = size.bytes();
        if !ipa.is_multiple_of(bytes) || !pa.is_multiple_of(bytes) {
            return Err(PagerError::Misaligned { ipa, pa });
        }
        if ipa >= self.ipa_limit() {
            return Err(PagerError::OutOfRange { ipa });
        }
        if pa >= PA_LIMIT {
            return Err(PagerError::BadPa { pa });
        }
        Ok(())
    }

    /// Map one leaf: `ipa` to `pa`, a 4 KiB page or a 2 MiB block.
    ///
    /// Mapping over a leaf of the same size and address replaces it with
    /// break-before-make. Mapping a page inside a block, or a block over
    /// mapped pages, is [`PagerError::Overlap`]. A block over an empty page
    /// table frees that table (after invalidating it from the TLB).
    /// Normal mappings get AF = 1 and mark their chunk touched.
    pub fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        size: LeafSize,
        attrs: MemAttrs,
        tlb: &mut dyn TlbOps,
    ) -> Result<(), PagerError> {
        self.check_leaf_args(ipa, pa, size)?;
        if attrs == MemAttrs::Normal && self.chunk_index(ipa).is_none() {
            return Err(PagerError::OutsideTracked { ipa });
        }
        let vmid = self.vmid();
        let old = self.table.leaf(ipa);
        match (size, old) {
            (LeafSize::Page4K, Some(l)) if l.size == LeafSize::Block2M => {
                return Err(PagerError::Overlap { ipa });
            }
            (LeafSize::Block2M, None) => {
                if !self.chunk_is_empty(ipa) {
                    return Err(PagerError::Overlap { ipa });
                }
                if self.table.has_page_table(ipa) {
                    // Break: drop the empty table, flush walk caches.
                    self.table.remove_page_table(ipa)?;
                    tlb.invalidate_ipa(vmid, ipa);
                }
            }
            (LeafSize::Block2M, Some(l)) if l.size == LeafSize::Page4K => {
                return Err(PagerError::Overlap { ipa });
            }
            _ => {}
        }
        if let Some(l) = old {
            // Same size, same place: break before make.
            self.table.clear(l.ipa, l.size)?;
            tlb.invalidate_ipa(vmid, l.ipa);
            if l.attrs == MemAttrs::Normal {
                self.normal_bytes -= l.size.bytes();
            }
        }
        self.table.write(ipa, pa, size.bytes(), size, attrs, true)?;
        if let Some(i) = self.chunk_index(ipa) {
            self.mapped.insert(i);
        }
        if attrs == MemAttrs::Normal {
            self.normal_bytes += size.bytes();
            self.mark_touched(ipa);
        }
        Ok(())
    }

    /// Unmap the page at `ipa` (`Page4K`), or everything mapped in the 2 MiB
    /// chunk at `ipa` (`Block2M`: the block, or all its pages). Unmapping a
    /// page inside a block is [`PagerError::Overlap`]; unmapping where
    /// nothing is mapped is [`PagerError::NotMapped`]. The TLB is invalidated
    /// before this returns. Empty page tables are kept for reuse.
    pub fn unmap(
        &mut self,
        ipa: u64,
        size: LeafSize,
        tlb: &mut dyn TlbOps,
    ) -> Result<(), PagerError> {
        if !ipa.is_multiple_of(size.bytes()) {
            return Err(PagerError::Misaligned { ipa, pa: 0 });
        }
        if ipa >= self.ipa_limit() {
            return Err(PagerError::OutOfRange { ipa });
        }
        let vmid = self.vmid();
        match size {
            LeafSize::Page4K => {
                let l = self.table.leaf(ipa).ok_or(PagerError::NotMapped { ipa })?;
                if l.size != LeafSize::Page4K {
                    return Err(PagerError::Overlap { ipa });
                }
                self.table.clear(ipa, LeafSize::Page4K)?;
                tlb.invalidate_ipa(vmid, ipa);
                if l.attrs == MemAttrs::Normal {
                    self.normal_bytes -= PAGE_SIZE;
                }
                if let Some(i) = self.chunk_index(ipa) {
                    if self.scan_chunk_empty(ipa) {
                        self.mapped.remove(i);
                    }
                }
            }
            LeafSize::Block2M => {
                // Which of the chunk's 512 pages (or the block) are mapped.
                let mut pages = [0u64; 8];
                let mut block: Option<Leaf> = None;
                let mut normal = 0;
                self.table.walk(ipa, ipa + BLOCK_SIZE, &mut |l| {
                    if l.size == LeafSize::Block2M {
                        block = Some(*l);
                    } else {
                        let i = ((l.ipa - ipa) / PAGE_SIZE) as usize;
                        pages[i / 64] |= 1 << (i % 64);
                    }
                    if l.attrs == MemAttrs::Normal {
                        normal += l.size.bytes();
                    }
                    ControlFlow::Continue(())
                });
                let mut batch = TlbBatch::new();
                if let Some(b) = block {
                    self.table.clear(b.ipa, LeafSize::Block2M)?;
                    batch.add(b.ipa);
                } else if pages == [0; 8] {
                    return Err(PagerError::NotMapped { ipa });
                } else {
                    for (w, bits) in pages.iter().enumerate() {
                        let mut bits = *bits;
                        while bits != 0 {
                            let i = w * 64 + bits.trailing_zeros() as usize;
                            bits &= bits - 1;
                            let page = ipa + i as u64 * PAGE_SIZE;
                            self.table.clear(page, LeafSize::Page4K)?;
                            batch.add(page);
                        }
                    }
                }
                batch.flush(vmid, tlb);
                self.normal_bytes -= normal;
                if let Some(i) = self.chunk_index(ipa) {
                    self.mapped.remove(i);
                }
            }
        }
        Ok(())
    }

    /// Split the 2 MiB block containing `ipa` into 512 pages mapping the same
    /// memory with the same attributes and access flag.
    pub fn split(&mut self, ipa: u64, tlb: &mut dyn TlbOps) -> Result<(), PagerError> {
        if ipa >= self.ipa_limit() {
            return Err(PagerError::OutOfRange { ipa });
        }
        let b = match self.table.leaf(ipa) {
            Some(l) if l.size == LeafSize::Block2M => l,
            _ => return Err(PagerError::NotABlock { ipa }),
        };
        self.table.clear(b.ipa, LeafSize::Block2M)?;
        tlb.invalidate_ipa(self.vmid(), b.ipa);
        self.table.write(
            b.ipa,
            b.pa,
            BLOCK_SIZE,
            LeafSize::Page4K,
            b.attrs,
            b.accessed,
        )?;
        Ok(())
    }

    /// Handle a stage-2 access-flag fault at `ipa`: mark its chunk touched
    /// and set AF on every Normal leaf of that chunk (it will be cleaned
    /// whole anyway, so its other pages need not fault one by one). No TLB
    /// maintenance is needed (an entry with AF = 0 is never cached).
    pub fn handle_access_fault(&mut self, ipa: u64) -> Result<AccessFlag, PagerError> {
        let l = self.leaf(ipa).ok_or(PagerError::NotMapped { ipa })?;
        if l.attrs != MemAttrs::Normal {
            if l.accessed {
                return Ok(AccessFlag::AlreadySet);
            }
            self.table.set_accessed(l.ipa, l.size, true)?;
            return Ok(AccessFlag::Set);
        }
        self.mark_touched(l.ipa);
        if l.accessed {
            return Ok(AccessFlag::AlreadySet);
        }
        self.table.set_chunk_accessed(align_down(l.ipa, BLOCK_SIZE), true)?;
        Ok(AccessFlag::Set)
    }

    /// Answer one request (the message-style entry point).
    pub fn handle(&mut self, req: Request, tlb: &mut dyn TlbOps) -> Reply {
        let done = |r: Result<(), PagerError>| match r {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Error(e),
        };
        match req {
            Request::Map {
                ipa,
                pa,
                size,
                attrs,
            } => done(self.map(ipa, pa, size, attrs, tlb)),
            Request::Unmap { ipa, size } => done(self.unmap(ipa, size, tlb)),
            Request::Split { ipa } => done(self.split(ipa, tlb)),
            Request::AccessFault { ipa } => match self.handle_access_fault(ipa) {
                Ok(a) => Reply::AccessFlag(a),
                Err(e) => Reply::Error(e),
            },
            Request::Translate { ipa } => Reply::Translated(self.translate(ipa)),
        }
    }

    // The first run of Normal memory in [start, end), cut at 2 MiB.
    fn first_run(&self, start: u64, end: u64) -> Option<MemRun> {
        let mut run: Option<MemRun> = None;
        self.table.walk(start, end, &mut |l| {
            if l.attrs != MemAttrs::Normal {
                return if run.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            let lo = l.ipa.max(start);
            let pa = l.pa + (lo - l.ipa);
            let chunk_end = align_down(lo, BLOCK_SIZE) + BLOCK_SIZE;
            let hi = l.end().min(chunk_end).min(end);
            match &mut run {
                None => {
                    run = Some(MemRun {
                        ipa: lo,
                        pa,
                        len: hi - lo,
                    })
                }
                Some(r) => {
                    let contiguous = r.ipa + r.len == lo
                        && r.pa + r.len == pa
                        && align_down(r.ipa, BLOCK_SIZE) == align_down(lo, BLOCK_SIZE);
                    if !contiguous {
                        return ControlFlow::Break(());
                    }
                    r.len += hi - lo;
                }
            }
            if hi == chunk_end {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        run
    }
}

impl<F: TableFormat> CleanSource for Pager<F> {
    fn next_run(&self, from: u64, all: bool) -> Option<MemRun> {
        let start = from.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
        let start = start.max(self.track_base);
        if start >= self.track_end {
            return None;
        }
        if all {
            return self.first_run(start, self.track_end);
        }
        let mut i = self.chunk_index(start)?;
        while let Some(c) = self.touched.next_from(i) {
            let base = self.track_base + c as u64 * BLOCK_SIZE;
            if let Some(run) = self.first_run(start.max(base), base + BLOCK_SIZE) {
                return Some(run);
            }
            i = c + 1;
        }
        None
    }

    fn clear_touched(&mut self, ipa: u64, len: u64, tlb: &mut dyn TlbOps) {
        if len == 0 {
            return;
        }
        let lo = align_down(ipa, BLOCK_SIZE).max(self.track_base);
        let hi = ipa.saturating_add(len).min(self.track_end);
        if lo >= hi {
            return;
        }
        let Some(mut i) = self.chunk_index(lo) else {
            return;
        };
        let vmid = self.vmid();
        let mut batch = TlbBatch::new();
        while let Some(c) = self.touched.next_from(i) {
            let base = self.track_base + c as u64 * BLOCK_SIZE;
            if base >= hi {
                break;
            }
            // Clear AF on the chunk's Normal leaves in one walk; the TLB
            // entries of those that had it are invalidated below.
            let flips = ChunkFlips::of(&self.table, base, false);
            if flips.is_empty() {
                self.touched.remove(c);
                i = c + 1;
                continue;
            }
            // Backend errors cannot happen on a chunk with a leaf just
            // found; if one did, the chunk stays touched (safe: it will be
            // cleaned again).
            let ok = self.table.set_chunk_accessed(base, false).is_ok();
            for (ipa, _) in flips.leaves(base) {
                batch.add(ipa);
            }
            if ok {
                self.touched.remove(c);
            }
            i = c + 1;
        }
        batch.flush(vmid, tlb);
    }
}

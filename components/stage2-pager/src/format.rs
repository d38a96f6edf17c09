//! The table format seam: what the pager needs from a stage-2 table,
//! independent of who lays out the descriptors.

use core::ops::ControlFlow;
use hwops::{BLOCK_SIZE, PAGE_SIZE};

/// The size of one leaf mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeafSize {
    /// A 4 KiB page (level-3 entry).
    Page4K,
    /// A 2 MiB block (level-2 entry).
    Block2M,
}

impl LeafSize {
    /// Bytes covered.
    pub const fn bytes(self) -> u64 {
        match self {
            LeafSize::Page4K => PAGE_SIZE,
            LeafSize::Block2M => BLOCK_SIZE,
        }
    }

    /// 4 KiB pages covered.
    pub const fn pages(self) -> u64 {
        self.bytes() / PAGE_SIZE
    }
}

/// What kind of memory a leaf maps, as the guest sees it at stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemAttrs {
    /// Normal memory, write-back cacheable, inner shareable, read-write,
    /// executable. Guest RAM. Tracked for cleaning.
    Normal,
    /// Device-nGnRE, read-write, execute-never. Passed-through MMIO. Never
    /// tracked for cleaning (it holds no cache lines).
    Device,
    /// Normal memory like [`MemAttrs::Normal`] but read-only: a firmware
    /// guest's flash. The guest never dirties it, so it is never tracked
    /// for cleaning; a write is a permission fault.
    Rom,
}

/// One valid leaf entry of a stage-2 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// First guest address (aligned to `size`).
    pub ipa: u64,
    /// First host physical address (aligned to `size`).
    pub pa: u64,
    /// Page or block.
    pub size: LeafSize,
    /// Memory type.
    pub attrs: MemAttrs,
    /// The access flag (AF). Zero means the next guest access faults.
    pub accessed: bool,
}

impl Leaf {
    /// One past the last guest address.
    pub const fn end(&self) -> u64 {
        self.ipa + self.size.bytes()
    }
}

/// A table backend refused an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The backend's library rejected the range or attributes at `ipa`.
    Rejected {
        /// Where.
        ipa: u64,
    },
}

/// A stage-2 translation table format: the descriptor layout and table
/// memory, nothing else.
///
/// The pager owns all policy: alignment and overlap checks, break-before-make
/// and TLB maintenance, touch tracking. A backend only reads and writes
/// entries, and it must never do TLB maintenance itself (it does not know
/// which VMID the hardware currently has loaded).
///
/// Preconditions the pager guarantees are written on each method; a backend
/// may assume them.
pub trait TableFormat {
    /// Guest addresses below `1 << ipa_bits()` can be translated.
    fn ipa_bits(&self) -> u32;

    /// Physical address of the root table (for `VTTBR.BADDR`).
    fn root_pa(&self) -> u64;

    /// The `VTCR` fields this layout needs: T0SZ, SL0, TG0, and the
    /// cacheability and shareability of table walks. Physical-size (PS),
    /// VMID-size (VS) and hardware-flag (HA, HD) fields are left zero for the
    /// kernel to fill from the CPU's ID registers.
    fn vtcr_bits(&self) -> u64;

    /// The valid leaf covering `ipa`, if any.
    fn leaf(&self, ipa: u64) -> Option<Leaf>;

    /// Calls `f` with each valid leaf that intersects `[start, end)`, in
    /// ascending address order, until `f` breaks. `end <= 1 << ipa_bits()`.
    fn walk(&self, start: u64, end: u64, f: &mut dyn FnMut(&Leaf) -> ControlFlow<()>);

    /// Writes `len / size.bytes()` consecutive leaves of `size` mapping
    /// `[ipa, ipa+len)` to `[pa, pa+len)` with `attrs` and the access flag
    /// `accessed`, allocating next-level tables as needed.
    ///
    /// Preconditions: `ipa`, `pa` and `len` are aligned to `size`; no valid
    /// leaf intersects the range; for blocks, no next-level table sits at any
    /// of the 2 MiB entries.
    fn write(
        &mut self,
        ipa: u64,
        pa: u64,
        len: u64,
        size: LeafSize,
        attrs: MemAttrs,
        accessed: bool,
    ) -> Result<(), FormatError>;

    /// Makes the leaf of `size` at `ipa` invalid. Precondition: such a valid
    /// leaf exists there.
    fn clear(&mut self, ipa: u64, size: LeafSize) -> Result<(), FormatError>;

    /// Sets or clears the access flag of the leaf of `size` at `ipa`.
    /// Precondition: such a valid leaf exists there.
    fn set_accessed(&mut self, ipa: u64, size: LeafSize, on: bool) -> Result<(), FormatError>;

    /// Sets (`on`) or clears the access flag of every valid Normal leaf in
    /// the 2 MiB chunk at `chunk` (2 MiB aligned). Precondition: a leaf
    /// exists in the chunk (so the tables above it do, and nothing is
    /// allocated or split). Backends override this with one walk.
    fn set_chunk_accessed(&mut self, chunk: u64, on: bool) -> Result<(), FormatError> {
        for (ipa, size) in ChunkFlips::of(self, chunk, on).leaves(chunk) {
            self.set_accessed(ipa, size, on)?;
        }
        Ok(())
    }

    /// Whether a next-level (page) table sits at the 2 MiB entry containing
    /// `ipa`.
    fn has_page_table(&self, ipa: u64) -> bool;

    /// Replaces the page table at the 2 MiB entry containing `ipa` by an
    /// invalid entry and frees it. Precondition: the table holds no valid
    /// leaf. The pager invalidates the TLB for that range right after.
    fn remove_page_table(&mut self, ipa: u64) -> Result<(), FormatError>;
}

/// The Normal leaves of one 2 MiB chunk whose access flag is not yet `on`:
/// its block, or its pages (bit k of `pages` for page k), found in one walk.
pub(crate) struct ChunkFlips {
    block: bool,
    pages: [u64; 8],
}

impl ChunkFlips {
    pub(crate) fn of<T: TableFormat + ?Sized>(table: &T, chunk: u64, on: bool) -> Self {
        let mut f = ChunkFlips { block: false, pages: [0; 8] };
        table.walk(chunk, chunk + BLOCK_SIZE, &mut |l| {
            if l.attrs == MemAttrs::Normal && l.accessed != on {
                match l.size {
                    LeafSize::Block2M => f.block = true,
                    LeafSize::Page4K => {
                        let k = ((l.ipa - chunk) / PAGE_SIZE) as usize;
                        f.pages[k / 64] |= 1 << (k % 64);
                    }
                }
            }
            ControlFlow::Continue(())
        });
        f
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.block && self.pages.iter().all(|&w| w == 0)
    }

    /// Each leaf's address and size: the block first, then the pages.
    pub(crate) fn leaves(&self, chunk: u64) -> impl Iterator<Item = (u64, LeafSize)> + '_ {
        let block = self.block.then_some((chunk, LeafSize::Block2M));
        let pages = self.pages.iter().enumerate().flat_map(move |(w, &bits)| {
            (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| (chunk + (w * 64 + b) as u64 * PAGE_SIZE, LeafSize::Page4K))
        });
        block.into_iter().chain(pages)
    }
}

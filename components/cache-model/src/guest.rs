//! Guest memory for tests: [`FakeSource`], a `CleanSource` that knows which
//! runs are populated and which 2 MiB chunks were touched since the last
//! `clear_touched`, and [`GuestMem`], which populates on first access (2 MiB
//! blocks, 4 KiB pages, or both) and routes guest accesses to the model.
//!
//! These stand in for the stage-2 pager and the PoD pool; they keep the
//! contract of `hwops::CleanSource`: runs never span a 2 MiB boundary, runs
//! start at or after `from`, newly populated memory counts as touched. They
//! are perfect (no access flags, no TLB): the soak in this crate's tests runs
//! the real pager and pod instead; these serve tests that want the policy
//! alone (cache-maint's own).

use alloc::collections::{BTreeMap, BTreeSet};
use core::cell::Cell;
use hwops::{CleanSource, MemRun, TlbOps, BLOCK_SIZE, PAGE_SIZE};

use crate::{Access, CacheModel};

fn chunk_of(ipa: u64) -> u64 {
    ipa & !(BLOCK_SIZE - 1)
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or length not a multiple of 4 KiB, or zero length.
    Unaligned,
    /// The mapping would cross a 2 MiB boundary.
    CrossesBlock,
    /// The range is already (partly) mapped.
    Overlaps,
}

/// A fake stage-2 view: populated mappings and touched chunks.
#[derive(Debug, Default)]
pub struct FakeSource {
    vmid: u16,
    maps: BTreeMap<u64, (u64, u64)>,
    touched: BTreeSet<u64>,
    next_run_calls: Cell<u64>,
    clear_calls: u64,
}

impl FakeSource {
    /// An empty source for VM `vmid` (the id goes to `TlbOps`).
    pub fn new(vmid: u16) -> Self {
        FakeSource { vmid, ..Default::default() }
    }

    /// Map `[ipa, ipa+len)` to `pa`: one block or a run of pages inside one
    /// 2 MiB chunk. The chunk counts as touched.
    pub fn map(&mut self, ipa: u64, pa: u64, len: u64) -> Result<(), MapError> {
        if len == 0 || !(ipa | pa | len).is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        if chunk_of(ipa) != chunk_of(ipa + len - 1) {
            return Err(MapError::CrossesBlock);
        }
        if let Some((&i, &(_, l))) = self.maps.range(..ipa + len).next_back() {
            if i + l > ipa {
                return Err(MapError::Overlaps);
            }
        }
        self.maps.insert(ipa, (pa, len));
        self.touched.insert(chunk_of(ipa));
        Ok(())
    }

    /// Map a range of any length, split at 2 MiB boundaries.
    pub fn map_range(&mut self, ipa: u64, pa: u64, len: u64) -> Result<(), MapError> {
        let mut off = 0;
        while off < len {
            let n = core::cmp::min(chunk_of(ipa + off) + BLOCK_SIZE - (ipa + off), len - off);
            self.map(ipa + off, pa + off, n)?;
            off += n;
        }
        Ok(())
    }

    fn covering(&self, ipa: u64) -> Option<(u64, u64, u64)> {
        let (&i, &(p, l)) = self.maps.range(..=ipa).next_back()?;
        (i + l > ipa).then_some((i, p, l))
    }

    /// The PA backing `ipa`, if populated.
    pub fn translate(&self, ipa: u64) -> Option<u64> {
        self.covering(ipa).map(|(i, p, _)| p + (ipa - i))
    }

    /// Record a guest access to `ipa` (the pager would see an access flag).
    pub fn touch(&mut self, ipa: u64) {
        self.touched.insert(chunk_of(ipa));
    }

    /// True when the chunk of `ipa` was touched since it was last cleared.
    pub fn is_touched(&self, ipa: u64) -> bool {
        self.touched.contains(&chunk_of(ipa))
    }

    /// Number of touched chunks.
    pub fn touched_chunks(&self) -> usize {
        self.touched.len()
    }

    /// Bytes populated.
    pub fn populated_bytes(&self) -> u64 {
        self.maps.values().map(|&(_, l)| l).sum()
    }

    /// Each mapping as it was made (not merged).
    pub fn mappings(&self) -> impl Iterator<Item = MemRun> + '_ {
        self.maps.iter().map(|(&ipa, &(pa, len))| MemRun { ipa, pa, len })
    }

    /// Calls to `next_run` so far.
    pub fn next_run_calls(&self) -> u64 {
        self.next_run_calls.get()
    }

    /// Calls to `clear_touched` so far.
    pub fn clear_calls(&self) -> u64 {
        self.clear_calls
    }

    /// The first run in `[lo, hi)` (`hi` no further than the end of `lo`'s
    /// chunk), merged with contiguous mappings after it.
    fn run_between(&self, lo: u64, hi: u64) -> Option<MemRun> {
        let (i, p, l) = match self.covering(lo) {
            Some(m) => m,
            None => {
                let (&i, &(p, l)) = self.maps.range(lo..).next()?;
                (i, p, l)
            }
        };
        if i >= hi {
            return None;
        }
        let start = core::cmp::max(i, lo);
        let limit = core::cmp::min(hi, chunk_of(start) + BLOCK_SIZE);
        let mut run = MemRun { ipa: start, pa: p + (start - i), len: core::cmp::min(i + l, limit) - start };
        while run.ipa + run.len < limit {
            match self.maps.get(&(run.ipa + run.len)) {
                Some(&(np, nl)) if np == run.pa + run.len => {
                    run.len = core::cmp::min(run.ipa + run.len + nl, limit) - run.ipa;
                }
                _ => break,
            }
        }
        Some(run)
    }
}

impl CleanSource for FakeSource {
    fn next_run(&self, from: u64, all: bool) -> Option<MemRun> {
        self.next_run_calls.set(self.next_run_calls.get() + 1);
        if all {
            let mut lo = from;
            loop {
                let chunk_end = chunk_of(lo) + BLOCK_SIZE;
                if let Some(r) = self.run_between(lo, chunk_end) {
                    return Some(r);
                }
                // Nothing in this chunk: jump to the next mapping.
                let (&i, _) = self.maps.range(chunk_end..).next()?;
                lo = i;
            }
        }
        for &chunk in self.touched.range(chunk_of(from)..) {
            if let Some(r) = self.run_between(core::cmp::max(from, chunk), chunk + BLOCK_SIZE) {
                return Some(r);
            }
        }
        None
    }

    fn clear_touched(&mut self, ipa: u64, len: u64, tlb: &mut dyn TlbOps) {
        self.clear_calls += 1;
        let mut c = chunk_of(ipa);
        while c < ipa + len {
            if self.touched.remove(&c) {
                tlb.invalidate_ipa(self.vmid, c);
            }
            c += BLOCK_SIZE;
        }
    }
}

/// How [`GuestMem`] populates a chunk on first access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Populate {
    /// One 2 MiB block.
    Block,
    /// One 4 KiB page per access to a new page.
    Page,
    /// Blocks for even chunks, pages for odd ones.
    Mixed,
}

/// A guest's memory: populate on demand, then access through the model.
#[derive(Debug)]
pub struct GuestMem {
    /// What the cache-maintenance service walks.
    pub source: FakeSource,
    populate: Populate,
    pa_base: u64,
    next_pa: u64,
}

impl GuestMem {
    /// An empty guest whose frames come from `pa_base` upwards.
    pub fn new(vmid: u16, pa_base: u64, populate: Populate) -> Self {
        GuestMem { source: FakeSource::new(vmid), populate, pa_base, next_pa: pa_base }
    }

    /// `[start, end)` of every PA this guest was given.
    pub fn pa_range(&self) -> (u64, u64) {
        (self.pa_base, self.next_pa)
    }

    /// The PA of `ipa`, populating it first if needed (fresh frames read as
    /// zero at the PoC and are in no cache).
    pub fn populate_at(&mut self, ipa: u64) -> u64 {
        if let Some(pa) = self.source.translate(ipa) {
            return pa;
        }
        let block = match self.populate {
            Populate::Block => true,
            Populate::Page => false,
            Populate::Mixed => (ipa / BLOCK_SIZE).is_multiple_of(2),
        };
        // A chunk that already has pages keeps getting pages.
        let chunk = chunk_of(ipa);
        let has_pages = self.source.run_between(chunk, chunk + BLOCK_SIZE).is_some();
        if block && !has_pages {
            let pa = self.next_pa.next_multiple_of(BLOCK_SIZE);
            self.source.map(chunk, pa, BLOCK_SIZE).expect("fresh block");
            self.next_pa = pa + BLOCK_SIZE;
            pa + (ipa - chunk)
        } else {
            let page = ipa & !(PAGE_SIZE - 1);
            let pa = self.next_pa;
            self.source.map(page, pa, PAGE_SIZE).expect("fresh page");
            self.next_pa += PAGE_SIZE;
            pa + (ipa - page)
        }
    }

    /// Populate `[ipa, ipa+len)` at once in 2 MiB blocks (eager mapping).
    pub fn map_eager(&mut self, ipa: u64, len: u64) {
        let pa = self.next_pa.next_multiple_of(BLOCK_SIZE);
        self.source.map_range(ipa, pa, len).expect("eager range is free and aligned");
        self.next_pa = pa + len;
    }

    /// A guest store of a `u64` at `ipa`.
    pub fn write_u64(&mut self, m: &mut CacheModel, access: Access, ipa: u64, v: u64) {
        let pa = self.populate_at(ipa);
        self.source.touch(ipa);
        m.store_u64(access, pa, v);
    }

    /// A guest load of a `u64` at `ipa`.
    pub fn read_u64(&mut self, m: &mut CacheModel, access: Access, ipa: u64) -> u64 {
        let pa = self.populate_at(ipa);
        self.source.touch(ipa);
        m.load_u64(access, pa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::CountingTlb;
    use alloc::vec::Vec;

    const M: u64 = BLOCK_SIZE;
    const K4: u64 = PAGE_SIZE;

    fn walk(s: &FakeSource, all: bool) -> Vec<MemRun> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(r) = s.next_run(from, all) {
            assert!(r.ipa >= from && r.len > 0);
            assert_eq!(chunk_of(r.ipa), chunk_of(r.ipa + r.len - 1), "run crosses 2 MiB");
            from = r.ipa + r.len;
            out.push(r);
        }
        out
    }

    #[test]
    fn map_checks() {
        let mut s = FakeSource::new(1);
        assert_eq!(s.map(0x1000, 0, 0x800), Err(MapError::Unaligned));
        assert_eq!(s.map(M - K4, 0, 2 * K4), Err(MapError::CrossesBlock));
        s.map(0x2000, 0x10_0000, 2 * K4).unwrap();
        assert_eq!(s.map(0x3000, 0, K4), Err(MapError::Overlaps));
        assert_eq!(s.map(0x1000, 0, 2 * K4), Err(MapError::Overlaps));
        s.map(0x1000, 0x20_0000, K4).unwrap();
        assert_eq!(s.translate(0x2abc), Some(0x10_0abc));
        assert_eq!(s.translate(0x4000), None);
    }

    #[test]
    fn contiguous_pages_merge_within_a_chunk_only() {
        let mut s = FakeSource::new(1);
        // Three contiguous pages, then a PA gap, then pages across a chunk edge.
        s.map(0, 0x100_0000, K4).unwrap();
        s.map(K4, 0x100_1000, K4).unwrap();
        s.map(2 * K4, 0x100_2000, K4).unwrap();
        s.map(3 * K4, 0x900_0000, K4).unwrap();
        s.map(M - K4, 0x200_0000 - K4, K4).unwrap();
        s.map(M, 0x200_0000, M).unwrap();
        let runs = walk(&s, true);
        assert_eq!(
            runs,
            [
                MemRun { ipa: 0, pa: 0x100_0000, len: 3 * K4 },
                MemRun { ipa: 3 * K4, pa: 0x900_0000, len: K4 },
                MemRun { ipa: M - K4, pa: 0x200_0000 - K4, len: K4 },
                MemRun { ipa: M, pa: 0x200_0000, len: M },
            ]
        );
        // A start inside a run is clipped.
        assert_eq!(s.next_run(K4 + 8, true), Some(MemRun { ipa: K4 + 8, pa: 0x100_1008, len: 2 * K4 - 8 }));
    }

    #[test]
    fn touched_walk_skips_cleared_chunks_until_touched_again() {
        let mut s = FakeSource::new(3);
        let mut tlb = CountingTlb::default();
        s.map_range(0, 0x4000_0000, 4 * M).unwrap();
        assert_eq!(walk(&s, false).len(), 4);
        s.clear_touched(0, 4 * M, &mut tlb);
        assert_eq!(tlb.ipa, 4);
        assert!(walk(&s, false).is_empty());
        assert_eq!(walk(&s, true).len(), 4);
        s.touch(2 * M + 5);
        assert_eq!(walk(&s, false), [MemRun { ipa: 2 * M, pa: 0x4000_0000 + 2 * M, len: M }]);
    }

    #[test]
    fn guest_mem_populates_by_mode() {
        let mut g = GuestMem::new(1, 1 << 40, Populate::Mixed);
        let a = g.populate_at(5);
        let b = g.populate_at(M + 5);
        assert_eq!(a % M, 5, "even chunk gets a block");
        assert_eq!(g.source.populated_bytes(), M + K4, "odd chunk gets a page");
        assert_eq!(b % K4, 5);
        assert_eq!(g.populate_at(5), a);
        let (lo, hi) = g.pa_range();
        assert!(a >= lo && b < hi);
        let mut m = CacheModel::new(crate::Config::small(1));
        g.write_u64(&mut m, Access::Cached(0), 3 * M + 8, 77);
        assert_eq!(g.read_u64(&mut m, Access::Cached(0), 3 * M + 8), 77);
        assert!(g.source.is_touched(3 * M));
    }
}

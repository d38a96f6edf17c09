//! Host-only helpers for tests and benches (feature `testing`, uses std).
//! Never enabled in the kernel.
//!
//! - [`HostTable`]: the AArch64 backend over heap-allocated tables.
//! - [`grant`] / [`revoke`]: capabilities from one granter shared by the
//!   whole test process (the real one can be taken only once);
//!   [`cache_cap`] / [`return_cache_cap`]: one VM's `CacheCap` alone.
//! - [`RecordingTable`] and [`RecordingHw`]: fakes that append every table
//!   write and every hardware operation to one shared [`Log`], so a test can
//!   check their order.
//! - [`BbmChecker`]: replays a log and fails on any write over an entry whose
//!   old translation may still sit in a TLB.
//! - [`proptest_config`]: the property-test settings this crate and `pod`
//!   share.

use crate::format::{FormatError, Leaf, LeafSize, MemAttrs, TableFormat};
use crate::A64Table;
use aarch64_paging::descriptor::Stage2Attributes;
use aarch64_paging::idmap::IdTranslation;
use core::cell::RefCell;
use core::ops::ControlFlow;
use hwops::{CacheOps, Frames, TlbOps, BLOCK_SIZE, PAGE_SIZE};
use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

/// The AArch64 backend with tables on the heap (table PA = heap address).
pub type HostTable = A64Table<IdTranslation<Stage2Attributes>>;

/// An empty heap-backed stage-2 table.
pub fn host_table() -> HostTable {
    A64Table::new(IdTranslation::new())
}

pub use capabilities::testing::{cache_cap, grant, return_cache_cap, revoke};

/// One recorded table update or hardware operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `Frames::zero`.
    Zero { pa: u64, len: u64 },
    /// `CacheOps::clean_range`.
    Clean { pa: u64, len: u64 },
    /// `CacheOps::clean_invalidate_range`.
    CleanInvalidate { pa: u64, len: u64 },
    /// `CacheOps::invalidate_icache_all`.
    InvalidateIcache,
    /// `TlbOps::invalidate_ipa`.
    TlbIpa { vmid: u16, ipa: u64 },
    /// `TlbOps::invalidate_vmid`.
    TlbVmid { vmid: u16 },
    /// `TableFormat::write`.
    Write {
        ipa: u64,
        pa: u64,
        len: u64,
        size: LeafSize,
        attrs: MemAttrs,
        accessed: bool,
    },
    /// `TableFormat::clear`.
    Clear { ipa: u64, size: LeafSize },
    /// `TableFormat::set_accessed`.
    Accessed { ipa: u64, size: LeafSize, on: bool },
    /// `TableFormat::set_chunk_accessed`.
    ChunkAccessed { chunk: u64, on: bool },
    /// `TableFormat::remove_page_table`.
    RemoveTable { ipa: u64 },
}

/// A shared, ordered event log.
pub type Log = Rc<RefCell<Vec<Event>>>;

/// An empty log.
pub fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// A table backend that logs each update, then forwards it.
pub struct RecordingTable<F> {
    inner: F,
    log: Log,
}

impl<F: TableFormat> RecordingTable<F> {
    /// Wrap `inner`, logging to `log`.
    pub fn new(inner: F, log: Log) -> Self {
        RecordingTable { inner, log }
    }

    fn push(&self, e: Event) {
        self.log.borrow_mut().push(e);
    }
}

impl<F: TableFormat> TableFormat for RecordingTable<F> {
    fn ipa_bits(&self) -> u32 {
        self.inner.ipa_bits()
    }
    fn root_pa(&self) -> u64 {
        self.inner.root_pa()
    }
    fn vtcr_bits(&self) -> u64 {
        self.inner.vtcr_bits()
    }
    fn leaf(&self, ipa: u64) -> Option<Leaf> {
        self.inner.leaf(ipa)
    }
    fn walk(&self, start: u64, end: u64, f: &mut dyn FnMut(&Leaf) -> ControlFlow<()>) {
        self.inner.walk(start, end, f)
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
        self.push(Event::Write {
            ipa,
            pa,
            len,
            size,
            attrs,
            accessed,
        });
        self.inner.write(ipa, pa, len, size, attrs, accessed)
    }
    fn clear(&mut self, ipa: u64, size: LeafSize) -> Result<(), FormatError> {
        self.push(Event::Clear { ipa, size });
        self.inner.clear(ipa, size)
    }
    fn set_accessed(&mut self, ipa: u64, size: LeafSize, on: bool) -> Result<(), FormatError> {
        self.push(Event::Accessed { ipa, size, on });
        self.inner.set_accessed(ipa, size, on)
    }
    fn set_chunk_accessed(&mut self, chunk: u64, on: bool) -> Result<(), FormatError> {
        self.push(Event::ChunkAccessed { chunk, on });
        self.inner.set_chunk_accessed(chunk, on)
    }
    fn has_page_table(&self, ipa: u64) -> bool {
        self.inner.has_page_table(ipa)
    }
    fn remove_page_table(&mut self, ipa: u64) -> Result<(), FormatError> {
        self.push(Event::RemoveTable { ipa });
        self.inner.remove_page_table(ipa)
    }
}

/// Fake hardware: frames modelled as "which pages hold non-zero data" (no
/// memory is allocated, so a 4 GiB guest is cheap), cache and TLB operations
/// logged when a log is attached.
#[derive(Default)]
pub struct RecordingHw {
    log: Option<Log>,
    nonzero: BTreeSet<u64>,
    hidden: BTreeSet<u64>,
    /// Calls to `TlbOps` so far.
    pub tlb_ops: u64,
    /// Bytes zeroed so far.
    pub zeroed: u64,
}

impl RecordingHw {
    /// Logging to `log`.
    pub fn new(log: Log) -> Self {
        RecordingHw {
            log: Some(log),
            ..Default::default()
        }
    }

    /// Not logging (for benches).
    pub fn quiet() -> Self {
        Self::default()
    }

    /// The guest (or anyone) stores non-zero data in the page holding `pa`.
    pub fn write(&mut self, pa: u64) {
        self.nonzero.insert(pa & !(PAGE_SIZE - 1));
    }

    /// Whether the page holding `pa` holds data (seen or hidden).
    pub fn is_zero_page(&self, pa: u64) -> bool {
        let p = pa & !(PAGE_SIZE - 1);
        !self.nonzero.contains(&p) && !self.hidden.contains(&p)
    }

    /// A write that reached memory behind a stale clean line in the
    /// hypervisor's cache (the guest wrote with its caches off): `is_zero`
    /// does not see it until `clean_invalidate_range` drops that line.
    pub fn write_hidden(&mut self, pa: u64) {
        self.hidden.insert(pa & !(PAGE_SIZE - 1));
    }

    fn push(&self, e: Event) {
        if let Some(l) = &self.log {
            l.borrow_mut().push(e);
        }
    }
}

impl Frames for RecordingHw {
    fn zero(&mut self, pa: u64, len: u64) {
        self.push(Event::Zero { pa, len });
        self.zeroed += len;
        for set in [&mut self.nonzero, &mut self.hidden] {
            let gone: Vec<u64> = set.range(pa..pa + len).copied().collect();
            for p in gone {
                set.remove(&p);
            }
        }
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        self.nonzero.range(pa..pa + len).next().is_none()
    }
}

impl CacheOps for RecordingHw {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.push(Event::Clean { pa, len });
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.push(Event::CleanInvalidate { pa, len });
        let seen: Vec<u64> = self.hidden.range(pa..pa + len).copied().collect();
        for p in seen {
            self.hidden.remove(&p);
            self.nonzero.insert(p);
        }
    }
    fn invalidate_icache_all(&mut self) {
        self.push(Event::InvalidateIcache);
    }
}

impl TlbOps for RecordingHw {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.tlb_ops += 1;
        self.push(Event::TlbIpa { vmid, ipa });
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.tlb_ops += 1;
        self.push(Event::TlbVmid { vmid });
    }
}

/// Replays a log and checks break-before-make and TLB hygiene for one VM:
/// - no write lands on a range that holds a valid leaf;
/// - no write lands on a range whose old entry (cleared leaf, cleared access
///   flag, removed table) has not yet had a TLB invalidation;
/// - every TLB invalidation names this VM's VMID;
/// - [`BbmChecker::settled`]: nothing is left awaiting invalidation.
pub struct BbmChecker {
    vmid: u16,
    valid: BTreeMap<u64, u64>,
    stale: Vec<(u64, u64)>,
    seen: usize,
}

impl BbmChecker {
    /// A checker for the VM with `vmid`, starting from an empty table.
    pub fn new(vmid: u16) -> Self {
        BbmChecker {
            vmid,
            valid: BTreeMap::new(),
            stale: Vec::new(),
            seen: 0,
        }
    }

    fn overlaps_valid(&self, lo: u64, hi: u64) -> bool {
        self.valid
            .range(..hi)
            .next_back()
            .is_some_and(|(_, &end)| end > lo)
    }

    /// Check the events appended since the last call.
    pub fn advance(&mut self, log: &Log) -> Result<(), String> {
        let events: Vec<Event> = log.borrow()[self.seen..].to_vec();
        self.seen += events.len();
        for e in events {
            match e {
                Event::Write { ipa, len, size, .. } => {
                    if let Some(s) = self.stale.iter().find(|s| s.0 < ipa + len && ipa < s.1) {
                        return Err(format!(
                            "write at {ipa:#x} over {s:x?} before its TLB invalidation"
                        ));
                    }
                    if self.overlaps_valid(ipa, ipa + len) {
                        return Err(format!("write at {ipa:#x}+{len:#x} over a valid leaf"));
                    }
                    let mut a = ipa;
                    while a < ipa + len {
                        self.valid.insert(a, a + size.bytes());
                        a += size.bytes();
                    }
                }
                Event::Clear { ipa, size } => {
                    if self.valid.remove(&ipa) != Some(ipa + size.bytes()) {
                        return Err(format!("clear at {ipa:#x} of a leaf that is not there"));
                    }
                    self.stale.push((ipa, ipa + size.bytes()));
                }
                Event::Accessed {
                    ipa,
                    size,
                    on: false,
                } => {
                    self.stale.push((ipa, ipa + size.bytes()));
                }
                Event::ChunkAccessed { chunk, on: false } => {
                    self.stale.push((chunk, chunk + BLOCK_SIZE));
                }
                Event::RemoveTable { ipa } => {
                    let c = ipa & !(BLOCK_SIZE - 1);
                    if self.overlaps_valid(c, c + BLOCK_SIZE) {
                        return Err(format!("table at {c:#x} removed while it maps pages"));
                    }
                    self.stale.push((c, c + BLOCK_SIZE));
                }
                Event::TlbIpa { vmid, ipa } => {
                    if vmid != self.vmid {
                        return Err(format!(
                            "TLB invalidation for vmid {vmid}, not {}",
                            self.vmid
                        ));
                    }
                    self.stale.retain(|s| !(s.0 <= ipa && ipa < s.1));
                }
                Event::TlbVmid { vmid } => {
                    if vmid != self.vmid {
                        return Err(format!(
                            "TLB invalidation for vmid {vmid}, not {}",
                            self.vmid
                        ));
                    }
                    self.stale.clear();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `advance`, then require that nothing awaits a TLB invalidation (true
    /// whenever a pager operation has returned).
    pub fn settled(&mut self, log: &Log) -> Result<(), String> {
        self.advance(log)?;
        if self.stale.is_empty() {
            Ok(())
        } else {
            Err(format!("left without TLB invalidation: {:x?}", self.stale))
        }
    }
}

/// Property-test settings: 64 cases and a fixed seed, unless the
/// PROPTEST_CASES / PROPTEST_RNG_SEED environment variables say otherwise.
pub fn proptest_config() -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x5eed_2026);
    }
    // Failures are kept in proptest-regressions/ (committed), so a found
    // case is replayed first on every later run.
    c
}

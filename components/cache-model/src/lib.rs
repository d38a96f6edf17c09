//! # cache-model: a deterministic model of Arm data caches and stage-2 TLBs
//!
//! **Responsible for:** modelling, for host tests of any crate, `N` pCPUs
//! that each have a private write-back, set-associative L1 data cache, an
//! optional shared L2, main memory at the point of coherency (PoC), and a
//! stage-2 TLB:
//! - cacheable loads and stores through one pCPU's caches, kept coherent
//!   between the pCPUs (a store invalidates the other L1 copies, a miss takes
//!   the line from a peer L1 first), as Arm SMP cores are for cacheable memory;
//! - non-cacheable loads and stores (a guest running with its caches off),
//!   which go straight to PoC memory and never look in a cache;
//! - maintenance by address to the PoC (clean, invalidate, clean+invalidate),
//!   broadcast to every pCPU and the L2, like inner-shareable `DC CVAC`,
//!   `DC IVAC`, `DC CIVAC`;
//! - maintenance by set/way on **one** pCPU's L1 (or the shared L2), like
//!   `DC CSW`, `DC ISW`, `DC CISW`, with CCSIDR-style geometry so a test guest
//!   can run a loop shaped like Linux's `v7_flush_dcache_all`;
//! - per-pCPU, VMID-tagged stage-2 TLBs ([`tlb::Tlb`]): filled by guest
//!   accesses from a table behind the small [`tlb::Stage2Walk`] trait (a miss
//!   on no leaf is a translation fault, on AF = 0 an access-flag fault),
//!   emptied only by `hwops::TlbOps` invalidations and capacity. A hit is
//!   used without a look at the table, so an entry left behind by a missing
//!   invalidation lets a guest access through, as on hardware; such hits are
//!   counted ([`tlb::TlbStats::stale_hits`]);
//! - the hwops traits: `CacheOps` and `Frames` on [`CacheModel`], `TlbOps`
//!   on [`tlb::Tlb`], and all three together as the kernel's `KernelHw`
//!   does them ([`hw::ModelHw`], which the real `pod` and `stage2-pager`
//!   take); fakes for tests that need no model ([`guest::FakeSource`], a
//!   perfect pager stand-in, [`fakes::CountingTlb`], [`fakes::RecordingCache`]);
//!   and a tiny seeded generator ([`rng::Rng`]).
//!
//! Its tests run the real kernel-independent components together on these
//! models (`tests/soak.rs`, `tests/real_pager.rs`): the `cache-maint` policy
//! cleaning through the real `stage2-pager` (access flags, touched record,
//! TLB invalidations) while the real `pod` populates, zeroes and reclaims,
//! under random multi-vCPU, multi-pCPU schedules with migrations.
//!
//! **Not responsible for:** timing, instruction caches, stage-1 translation
//! and walk caches, speculation, prefetching, memory ordering, or caches
//! beyond two levels. The line size is fixed at 64 bytes (Cortex-A7 and
//! Cortex-A72 both use it). It holds no policy: what the hypervisor does is
//! the real components' code, driven by the tests.
//!
//! **Invariants:**
//! - Deterministic: the same calls give the same state. Cache victims are
//!   chosen round-robin per set, after any invalid way; TLB victims
//!   round-robin per pCPU.
//! - Among the L1s, a line is either dirty in exactly one L1 and valid in no
//!   other, or clean wherever it is valid. The newest value of a line is its
//!   L1 copy if one exists, else its L2 copy, else PoC memory ([`CacheModel::peek`]).
//! - A set/way operation touches exactly one cache: the named pCPU's L1
//!   (level 0) or the shared L2 (level 1). Cleaning an L1 line by set/way
//!   writes it to the L2, not to the PoC, as on real hardware.
//! - Memory never written reads as zero.
//! - A TLB entry is only ever made from a leaf with AF = 1, and an
//!   invalidation by IPA drops every entry of that VMID translating that
//!   address (a whole block), on every pCPU.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod fakes;
pub mod guest;
pub mod hw;
pub mod rng;
pub mod tlb;

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Cache line size in bytes.
pub const LINE: u64 = 64;
const LINE_SHIFT: u32 = 6;

/// Shape of one cache: `sets` × `ways` lines of [`LINE`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of sets (a power of two).
    pub sets: u32,
    /// Associativity (a power of two).
    pub ways: u32,
}

impl Geometry {
    /// The geometry of a cache of `bytes` bytes with `ways` ways.
    pub const fn of_size(bytes: u64, ways: u32) -> Geometry {
        Geometry { sets: (bytes / (ways as u64 * LINE)) as u32, ways }
    }

    /// Capacity in bytes.
    pub const fn bytes(&self) -> u64 {
        self.sets as u64 * self.ways as u64 * LINE
    }

    /// The value CCSIDR would read for this cache: LineSize in bits `[2:0]`
    /// (log2 of words per line, minus 2), Associativity-1 in bits `[12:3]`,
    /// NumSets-1 in bits `[27:13]`.
    pub const fn ccsidr(&self) -> u32 {
        (LINE_SHIFT - 4) | ((self.ways - 1) << 3) | ((self.sets - 1) << 13)
    }

    fn way_shift(&self) -> u32 {
        // The way number sits in the top bits of a set/way operand.
        32 - self.ways.trailing_zeros()
    }
}

/// What the model is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of pCPUs, each with its own L1.
    pub cpus: usize,
    /// Geometry of each private L1 data cache.
    pub l1: Geometry,
    /// Geometry of the shared L2, if there is one.
    pub l2: Option<Geometry>,
}

impl Config {
    /// Cortex-A7-like (Cubietruck): 32 KiB 4-way L1, 256 KiB 8-way L2.
    pub const fn cortex_a7(cpus: usize) -> Config {
        Config {
            cpus,
            l1: Geometry::of_size(32 * 1024, 4),
            l2: Some(Geometry::of_size(256 * 1024, 8)),
        }
    }

    /// Cortex-A72-like (Raspberry Pi 4): 32 KiB 2-way L1, 1 MiB 16-way L2.
    pub const fn cortex_a72(cpus: usize) -> Config {
        Config {
            cpus,
            l1: Geometry::of_size(32 * 1024, 2),
            l2: Some(Geometry::of_size(1024 * 1024, 16)),
        }
    }

    /// A small geometry for fast randomised tests: 2 KiB 2-way L1 (16 sets),
    /// 8 KiB 4-way L2 (32 sets).
    pub const fn small(cpus: usize) -> Config {
        Config {
            cpus,
            l1: Geometry::of_size(2 * 1024, 2),
            l2: Some(Geometry::of_size(8 * 1024, 4)),
        }
    }
}

/// Who makes an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A cacheable access from this pCPU (caches on).
    Cached(usize),
    /// A non-cacheable access (caches off): straight to PoC memory.
    Uncached,
}

/// A set/way operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwOp {
    /// `DC CSW`: write a dirty line to the next level; it stays valid.
    Clean,
    /// `DC ISW`: drop the line, dirty or not.
    Invalidate,
    /// `DC CISW`: write a dirty line to the next level, then drop it.
    CleanInvalidate,
}

/// Kind of a by-address maintenance operation, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaOp {
    /// `DC CVAC` over a range.
    Clean,
    /// `DC IVAC` over a range.
    Invalidate,
    /// `DC CIVAC` over a range.
    CleanInvalidate,
}

/// One logged by-address maintenance call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintOp {
    /// What was done.
    pub op: VaOp,
    /// Start physical address.
    pub pa: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Operation counts since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// By-address maintenance calls.
    pub va_calls: u64,
    /// Bytes covered by by-address maintenance calls.
    pub va_bytes: u64,
    /// Set/way operations executed.
    pub sw_ops: u64,
    /// Lines written to PoC memory by evictions or maintenance.
    pub poc_writebacks: u64,
    /// `invalidate_icache_all` calls.
    pub icache_invalidations: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    line: u64,
    valid: bool,
    dirty: bool,
    data: [u8; LINE as usize],
}

const EMPTY: Slot = Slot { line: 0, valid: false, dirty: false, data: [0; LINE as usize] };

struct Cache {
    geo: Geometry,
    slots: Vec<Slot>,
    next_victim: Vec<u32>,
}

impl Cache {
    fn new(geo: Geometry) -> Cache {
        Cache {
            geo,
            slots: vec![EMPTY; (geo.sets * geo.ways) as usize],
            next_victim: vec![0; geo.sets as usize],
        }
    }

    fn set_of(&self, line: u64) -> usize {
        ((line >> LINE_SHIFT) & (self.geo.sets as u64 - 1)) as usize
    }

    fn find(&self, line: u64) -> Option<usize> {
        let base = self.set_of(line) * self.geo.ways as usize;
        (base..base + self.geo.ways as usize)
            .find(|&i| self.slots[i].valid && self.slots[i].line == line)
    }

    /// The slot a new line of `set` goes into: the first invalid way, else
    /// the round-robin victim.
    fn victim(&mut self, set: usize) -> usize {
        let ways = self.geo.ways as usize;
        let base = set * ways;
        if let Some(i) = (base..base + ways).find(|&i| !self.slots[i].valid) {
            return i;
        }
        let w = self.next_victim[set];
        self.next_victim[set] = (w + 1) % self.geo.ways;
        base + w as usize
    }
}

/// The model: per-pCPU L1s, an optional shared L2, and PoC memory.
pub struct CacheModel {
    cfg: Config,
    l1: Vec<Cache>,
    l2: Option<Cache>,
    mem: BTreeMap<u64, [u8; LINE as usize]>,
    hyp_cpu: usize,
    stats: Stats,
    log: Option<Vec<MaintOp>>,
}

fn line_of(pa: u64) -> u64 {
    pa & !(LINE - 1)
}

impl CacheModel {
    /// A model with empty caches and zeroed memory.
    ///
    /// Panics when `cfg` has no pCPU, or a geometry whose sets or ways are
    /// not powers of two.
    pub fn new(cfg: Config) -> CacheModel {
        assert!(cfg.cpus >= 1, "cache-model: at least one pCPU");
        for g in core::iter::once(cfg.l1).chain(cfg.l2) {
            assert!(
                g.sets.is_power_of_two() && g.ways.is_power_of_two(),
                "cache-model: sets and ways must be powers of two: {:?}",
                g
            );
        }
        CacheModel {
            cfg,
            l1: (0..cfg.cpus).map(|_| Cache::new(cfg.l1)).collect(),
            l2: cfg.l2.map(Cache::new),
            mem: BTreeMap::new(),
            hyp_cpu: 0,
            stats: Stats::default(),
            log: None,
        }
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Number of pCPUs.
    pub fn cpus(&self) -> usize {
        self.cfg.cpus
    }

    /// Number of cache levels up to the PoC (CLIDR.LoC): 1 or 2.
    pub fn levels(&self) -> u8 {
        if self.l2.is_some() {
            2
        } else {
            1
        }
    }

    /// Geometry of cache `level` (0 = L1, 1 = L2), as CSSELR/CCSIDR name it.
    pub fn geometry(&self, level: u8) -> Option<Geometry> {
        match level {
            0 => Some(self.cfg.l1),
            1 => self.cfg.l2,
            _ => None,
        }
    }

    /// CCSIDR of cache `level` (0 = L1).
    pub fn ccsidr(&self, level: u8) -> Option<u32> {
        self.geometry(level).map(|g| g.ccsidr())
    }

    /// The operands of a Linux `v7_flush_dcache_all`-shaped set/way loop
    /// over cache `levels`: for each level, sets from the top down, ways
    /// from the top down, each operand built as Linux builds it
    /// (`level << 1 | way << clz(ways - 1) | set << line_shift`).
    pub fn linux_flush_operands(&self, levels: core::ops::Range<u8>) -> Vec<u32> {
        let mut ops = Vec::new();
        for level in levels {
            let Some(ccsidr) = self.ccsidr(level) else { continue };
            let line_shift = (ccsidr & 7) + 4;
            let ways_max = (ccsidr >> 3) & 0x3ff;
            let sets_max = (ccsidr >> 13) & 0x7fff;
            let way_shift = ways_max.leading_zeros();
            for set in (0..=sets_max).rev() {
                for way in (0..=ways_max).rev() {
                    ops.push((u32::from(level) << 1) | way.checked_shl(way_shift).unwrap_or(0) | (set << line_shift));
                }
            }
        }
        ops
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The pCPU the hypervisor's own accesses (`Frames`) go through.
    pub fn set_hyp_cpu(&mut self, cpu: usize) {
        assert!(cpu < self.cfg.cpus);
        self.hyp_cpu = cpu;
    }

    /// Start recording by-address maintenance calls.
    pub fn enable_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The calls recorded since the last take; recording goes on.
    pub fn take_log(&mut self) -> Vec<MaintOp> {
        match &mut self.log {
            Some(l) => core::mem::take(l),
            None => Vec::new(),
        }
    }

    // ---- memory and write-back paths ----

    fn mem_line(&self, line: u64) -> [u8; LINE as usize] {
        self.mem.get(&line).copied().unwrap_or([0; LINE as usize])
    }

    fn write_poc(&mut self, line: u64, data: [u8; LINE as usize]) {
        self.stats.poc_writebacks += 1;
        // Memory holds only non-zero lines (a missing line reads as zero),
        // so zeroed guest frames cost nothing to keep.
        if data == [0; LINE as usize] {
            self.mem.remove(&line);
        } else {
            self.mem.insert(line, data);
        }
    }

    /// Put a line into the L2 (or memory when there is no L2).
    fn l2_put(&mut self, line: u64, data: [u8; LINE as usize], dirty: bool) {
        let Some(l2) = self.l2.as_mut() else {
            if dirty {
                self.write_poc(line, data);
            }
            return;
        };
        if let Some(i) = l2.find(line) {
            let s = &mut l2.slots[i];
            s.data = data;
            s.dirty |= dirty;
            return;
        }
        let set = l2.set_of(line);
        let i = l2.victim(set);
        let old = l2.slots[i];
        l2.slots[i] = Slot { line, valid: true, dirty, data };
        if old.valid && old.dirty {
            self.write_poc(old.line, old.data);
        }
    }

    /// Allocate `line` in `cpu`'s L1, evicting (and writing back) a victim.
    fn l1_alloc(&mut self, cpu: usize, line: u64, data: [u8; LINE as usize]) -> usize {
        let c = &mut self.l1[cpu];
        let set = c.set_of(line);
        let i = c.victim(set);
        let old = c.slots[i];
        c.slots[i] = Slot { line, valid: true, dirty: false, data };
        if old.valid && old.dirty {
            self.l2_put(old.line, old.data, true);
        }
        i
    }

    /// Make `line` valid in `cpu`'s L1 and return its slot. With
    /// `exclusive`, every other L1 copy is dropped (a store is coming).
    fn l1_get(&mut self, cpu: usize, line: u64, exclusive: bool) -> usize {
        let hit = self.l1[cpu].find(line);
        let mut data = None;
        for o in 0..self.cfg.cpus {
            if o == cpu {
                continue;
            }
            if let Some(i) = self.l1[o].find(line) {
                let s = self.l1[o].slots[i];
                if s.dirty {
                    // Snoop: the owner writes its line down before sharing.
                    self.l1[o].slots[i].dirty = false;
                    self.l2_put(line, s.data, true);
                }
                if exclusive {
                    self.l1[o].slots[i].valid = false;
                }
                data.get_or_insert(s.data);
            }
        }
        if let Some(i) = hit {
            return i;
        }
        let data = match data {
            Some(d) => d,
            None => match self.l2.as_ref().and_then(|l2| l2.find(line).map(|i| l2.slots[i].data)) {
                Some(d) => d,
                None => {
                    let d = self.mem_line(line);
                    if self.l2.is_some() {
                        self.l2_put(line, d, false);
                    }
                    d
                }
            },
        };
        self.l1_alloc(cpu, line, data)
    }

    // ---- loads and stores ----

    /// Store `data` at `pa`.
    pub fn store(&mut self, access: Access, pa: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let a = pa + done as u64;
            let line = line_of(a);
            let off = (a - line) as usize;
            let n = core::cmp::min(LINE as usize - off, data.len() - done);
            match access {
                Access::Cached(cpu) => {
                    let i = self.l1_get(cpu, line, true);
                    let s = &mut self.l1[cpu].slots[i];
                    s.data[off..off + n].copy_from_slice(&data[done..done + n]);
                    s.dirty = true;
                }
                Access::Uncached => {
                    let mut l = self.mem_line(line);
                    l[off..off + n].copy_from_slice(&data[done..done + n]);
                    self.mem.insert(line, l);
                }
            }
            done += n;
        }
    }

    /// Load `buf.len()` bytes at `pa`.
    pub fn load(&mut self, access: Access, pa: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let a = pa + done as u64;
            let line = line_of(a);
            let off = (a - line) as usize;
            let n = core::cmp::min(LINE as usize - off, buf.len() - done);
            let l = match access {
                Access::Cached(cpu) => {
                    let i = self.l1_get(cpu, line, false);
                    self.l1[cpu].slots[i].data
                }
                Access::Uncached => self.mem_line(line),
            };
            buf[done..done + n].copy_from_slice(&l[off..off + n]);
            done += n;
        }
    }

    /// Store a little-endian `u64` at `pa`.
    pub fn store_u64(&mut self, access: Access, pa: u64, v: u64) {
        self.store(access, pa, &v.to_le_bytes());
    }

    /// Load a little-endian `u64` from `pa`.
    pub fn load_u64(&mut self, access: Access, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.load(access, pa, &mut b);
        u64::from_le_bytes(b)
    }

    /// The newest value of a line, as a coherent cacheable read would see
    /// it, without changing any state.
    fn peek_line(&self, line: u64) -> [u8; LINE as usize] {
        for c in &self.l1 {
            if let Some(i) = c.find(line) {
                return c.slots[i].data;
            }
        }
        if let Some(l2) = &self.l2 {
            if let Some(i) = l2.find(line) {
                return l2.slots[i].data;
            }
        }
        self.mem_line(line)
    }

    /// Read as a coherent cacheable access would, without side effects.
    pub fn peek(&self, pa: u64, buf: &mut [u8]) {
        for (k, b) in buf.iter_mut().enumerate() {
            let a = pa + k as u64;
            *b = self.peek_line(line_of(a))[(a - line_of(a)) as usize];
        }
    }

    /// [`CacheModel::peek`] of a `u64`.
    pub fn peek_u64(&self, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.peek(pa, &mut b);
        u64::from_le_bytes(b)
    }

    /// What PoC memory holds at `pa` (caches ignored), as a `u64`.
    pub fn poc_u64(&self, pa: u64) -> u64 {
        let mut b = [0u8; 8];
        for (k, x) in b.iter_mut().enumerate() {
            let a = pa + k as u64;
            *x = self.mem_line(line_of(a))[(a - line_of(a)) as usize];
        }
        u64::from_le_bytes(b)
    }

    // ---- introspection ----

    /// True when the line holding `pa` is dirty in `cpu`'s L1.
    pub fn dirty_in_l1(&self, cpu: usize, pa: u64) -> bool {
        let c = &self.l1[cpu];
        c.find(line_of(pa)).is_some_and(|i| c.slots[i].dirty)
    }

    /// True when the line holding `pa` is dirty in any cache.
    pub fn dirty_anywhere(&self, pa: u64) -> bool {
        let line = line_of(pa);
        (0..self.cfg.cpus).any(|c| self.dirty_in_l1(c, pa))
            || self.l2.as_ref().is_some_and(|l2| l2.find(line).is_some_and(|i| l2.slots[i].dirty))
    }

    /// Number of dirty lines in all caches.
    pub fn dirty_lines(&self) -> usize {
        self.l1
            .iter()
            .chain(self.l2.iter())
            .map(|c| c.slots.iter().filter(|s| s.valid && s.dirty).count())
            .sum()
    }

    /// Bytes all caches together can hold.
    fn cache_bytes(&self) -> u64 {
        self.l1.iter().chain(self.l2.iter()).map(|c| c.geo.bytes()).sum()
    }

    /// Drop the lines of `[lo, hi)` (line-aligned) from every cache and make
    /// them read zero at the PoC.
    fn zero_at_poc(&mut self, lo: u64, hi: u64) {
        for c in self.l1.iter_mut().chain(self.l2.iter_mut()) {
            for s in c.slots.iter_mut().filter(|s| s.valid && s.line >= lo && s.line < hi) {
                s.valid = false;
                s.dirty = false;
            }
        }
        let mut tail = self.mem.split_off(&lo);
        let mut rest = tail.split_off(&hi);
        self.mem.append(&mut rest);
        self.stats.poc_writebacks += (hi - lo) / LINE;
    }

    /// The L1 set index `pa` falls in.
    pub fn l1_set_of(&self, pa: u64) -> u32 {
        self.l1[0].set_of(line_of(pa)) as u32
    }

    // ---- maintenance by address (PoC, broadcast) ----

    fn va_line(&mut self, line: u64, clean: bool, inval: bool) {
        let mut newest = None;
        for c in self.l1.iter_mut() {
            if let Some(i) = c.find(line) {
                let s = &mut c.slots[i];
                if s.dirty && clean {
                    newest = Some(s.data);
                }
                if clean {
                    s.dirty = false;
                }
                if inval {
                    s.valid = false;
                    s.dirty = false;
                }
            }
        }
        if let Some(l2) = self.l2.as_mut() {
            if let Some(i) = l2.find(line) {
                let s = &mut l2.slots[i];
                if clean {
                    if s.dirty && newest.is_none() {
                        newest = Some(s.data);
                    }
                    if let Some(d) = newest {
                        s.data = d;
                    }
                    s.dirty = false;
                }
                if inval {
                    s.valid = false;
                    s.dirty = false;
                }
            }
        }
        if let Some(d) = newest {
            self.write_poc(line, d);
        }
    }

    /// Apply a by-address operation to every line of `[pa, pa+len)`. Large
    /// ranges scan the caches instead of the range, so the cost is bounded
    /// by the cache size.
    fn va_range(&mut self, op: VaOp, pa: u64, len: u64) {
        self.stats.va_calls += 1;
        self.stats.va_bytes += len;
        if let Some(l) = &mut self.log {
            l.push(MaintOp { op, pa, len });
        }
        if len == 0 {
            return;
        }
        let (clean, inval) = match op {
            VaOp::Clean => (true, false),
            VaOp::Invalidate => (false, true),
            VaOp::CleanInvalidate => (true, true),
        };
        let first = line_of(pa);
        let end = pa.saturating_add(len);
        let nlines = (end - first).div_ceil(LINE);
        // Looking a line up costs a probe of every cache; scanning costs a
        // visit of every slot. Same lines, same order: take the cheaper.
        let slots: u64 = self.l1.iter().chain(self.l2.iter()).map(|c| c.slots.len() as u64).sum();
        let caches = (self.l1.len() + self.l2.iter().count()) as u64;
        if nlines * caches <= slots {
            let mut line = first;
            while line < end {
                self.va_line(line, clean, inval);
                line += LINE;
            }
        } else {
            let mut lines: Vec<u64> = self
                .l1
                .iter()
                .chain(self.l2.iter())
                .flat_map(|c| c.slots.iter())
                .filter(|s| s.valid && s.line >= first && s.line < end)
                .map(|s| s.line)
                .collect();
            lines.sort_unstable();
            lines.dedup();
            for line in lines {
                self.va_line(line, clean, inval);
            }
        }
    }

    /// `DC CVAC` over `[pa, pa+len)` on every cache.
    pub fn clean_va(&mut self, pa: u64, len: u64) {
        self.va_range(VaOp::Clean, pa, len);
    }

    /// `DC IVAC` over `[pa, pa+len)` on every cache: dirty data is dropped.
    pub fn invalidate_va(&mut self, pa: u64, len: u64) {
        self.va_range(VaOp::Invalidate, pa, len);
    }

    /// `DC CIVAC` over `[pa, pa+len)` on every cache.
    pub fn clean_invalidate_va(&mut self, pa: u64, len: u64) {
        self.va_range(VaOp::CleanInvalidate, pa, len);
    }

    // ---- maintenance by set/way (one cache) ----

    /// Run a set/way operation on `cpu`'s cache at `level` (0 = its L1,
    /// 1 = the shared L2). Set and way are taken modulo the geometry, as
    /// hardware ignores bits it does not decode; a level past the last
    /// cache does nothing.
    pub fn set_way(&mut self, cpu: usize, op: SwOp, level: u8, set: u32, way: u32) {
        self.stats.sw_ops += 1;
        let (clean, inval) = match op {
            SwOp::Clean => (true, false),
            SwOp::Invalidate => (false, true),
            SwOp::CleanInvalidate => (true, true),
        };
        let cache = match level {
            0 => &mut self.l1[cpu],
            1 => match self.l2.as_mut() {
                Some(l2) => l2,
                None => return,
            },
            _ => return,
        };
        let g = cache.geo;
        let i = ((set % g.sets) * g.ways + (way % g.ways)) as usize;
        let s = cache.slots[i];
        if !s.valid {
            return;
        }
        if inval {
            cache.slots[i].valid = false;
            cache.slots[i].dirty = false;
        } else if clean {
            cache.slots[i].dirty = false;
        }
        if clean && s.dirty {
            if level == 0 {
                self.l2_put(s.line, s.data, true);
            } else {
                self.write_poc(s.line, s.data);
            }
        }
    }

    /// The operand a guest puts in `DC CISW` and friends for `level`, `set`
    /// and `way`: level in bits `[3:1]`, set from bit log2(line size), way in
    /// the top bits.
    pub fn sw_operand(&self, level: u8, set: u32, way: u32) -> u32 {
        let g = self.geometry(level).unwrap_or(self.cfg.l1);
        let way_bits = if g.ways > 1 { way << g.way_shift() } else { 0 };
        ((level as u32) << 1) | (set << LINE_SHIFT) | way_bits
    }

    /// Run a set/way operation given its raw operand, decoded as hardware
    /// does from the geometry of the level it names.
    pub fn dc_sw(&mut self, cpu: usize, op: SwOp, operand: u32) {
        let level = ((operand >> 1) & 7) as u8;
        let Some(g) = self.geometry(level) else {
            self.stats.sw_ops += 1;
            return;
        };
        let set = (operand >> LINE_SHIFT) & (g.sets - 1);
        let way = if g.ways > 1 { operand >> g.way_shift() } else { 0 };
        self.set_way(cpu, op, level, set, way);
    }
}

impl hwops::CacheOps for CacheModel {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.clean_va(pa, len);
    }

    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.clean_invalidate_va(pa, len);
    }

    fn invalidate_icache_all(&mut self) {
        self.stats.icache_invalidations += 1;
    }
}

impl hwops::Frames for CacheModel {
    /// Zeros are stored through the hypervisor pCPU's cache (see
    /// [`CacheModel::set_hyp_cpu`]), so they may sit dirty in it afterwards.
    ///
    /// A range larger than twice the caches takes a short cut: storing line
    /// after line through one L1 leaves at most the last cache-full of lines
    /// cached, every earlier one written back (to the L2 or the PoC). So all
    /// but that tail are dropped from every cache and zeroed at the PoC at
    /// once (counted as written back), and only the tail is stored line by
    /// line. Same newest values, same PoC after a clean; only a line that
    /// would have waited dirty in the L2 reaches the PoC sooner.
    fn zero(&mut self, pa: u64, len: u64) {
        let zeros = [0u8; LINE as usize];
        let end = pa + len;
        let mut a = pa;
        let keep = self.cache_bytes();
        let first = pa.next_multiple_of(LINE);
        if len > 2 * keep && first < line_of(end - keep) {
            let cut = line_of(end - keep);
            while a < first {
                let n = core::cmp::min(first - a, end - a);
                self.store(Access::Cached(self.hyp_cpu), a, &zeros[..n as usize]);
                a += n;
            }
            self.zero_at_poc(first, cut);
            a = cut;
        }
        while a < end {
            let n = core::cmp::min(LINE - (a - line_of(a)), end - a);
            self.store(Access::Cached(self.hyp_cpu), a, &zeros[..n as usize]);
            a += n;
        }
    }

    fn is_zero(&self, pa: u64, len: u64) -> bool {
        let end = pa + len;
        let mut a = pa;
        while a < end {
            let line = line_of(a);
            let n = core::cmp::min(LINE - (a - line), end - a);
            let d = self.peek_line(line);
            let off = (a - line) as usize;
            if d[off..off + n as usize].iter().any(|&b| b != 0) {
                return false;
            }
            a += n;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwops::{CacheOps, Frames};

    fn model(cpus: usize) -> CacheModel {
        CacheModel::new(Config::small(cpus))
    }

    #[test]
    fn cached_store_stays_in_cache_until_cleaned() {
        let mut m = model(2);
        m.store_u64(Access::Cached(0), 0x1000, 7);
        assert_eq!(m.poc_u64(0x1000), 0);
        assert_eq!(m.load_u64(Access::Uncached, 0x1000), 0);
        assert_eq!(m.peek_u64(0x1000), 7);
        assert!(m.dirty_in_l1(0, 0x1000));
        m.clean_va(0x1000, 8);
        assert_eq!(m.poc_u64(0x1000), 7);
        assert!(!m.dirty_anywhere(0x1000));
    }

    #[test]
    fn cacheable_accesses_are_coherent_between_cpus() {
        let mut m = model(3);
        m.store_u64(Access::Cached(0), 0x40, 1);
        assert_eq!(m.load_u64(Access::Cached(1), 0x40), 1);
        m.store_u64(Access::Cached(2), 0x40, 2);
        assert!(!m.dirty_in_l1(0, 0x40));
        assert!(m.dirty_in_l1(2, 0x40));
        assert_eq!(m.load_u64(Access::Cached(0), 0x40), 2);
        assert_eq!(m.load_u64(Access::Cached(1), 0x40), 2);
    }

    #[test]
    fn invalidate_by_address_drops_dirty_data() {
        let mut m = model(2);
        m.store_u64(Access::Cached(1), 0x80, 9);
        m.invalidate_va(0x80, 64);
        assert_eq!(m.peek_u64(0x80), 0);
        assert_eq!(m.dirty_lines(), 0);
    }

    #[test]
    fn by_address_maintenance_is_broadcast() {
        let mut m = model(4);
        for c in 0..4 {
            m.store_u64(Access::Cached(c), 0x1000 + 64 * c as u64, c as u64 + 1);
        }
        m.clean_invalidate_va(0x1000, 4 * 64);
        for c in 0..4u64 {
            assert_eq!(m.poc_u64(0x1000 + 64 * c), c + 1);
        }
        assert_eq!(m.dirty_lines(), 0);
    }

    #[test]
    fn large_range_scan_path_matches_line_path() {
        // Same work through the two range paths gives the same PoC.
        let mut a = model(2);
        let mut b = model(2);
        for k in 0..40u64 {
            let pa = 0x10_0000 + k * 4096 + (k % 7) * 64;
            a.store_u64(Access::Cached((k % 2) as usize), pa, k);
            b.store_u64(Access::Cached((k % 2) as usize), pa, k);
        }
        a.clean_va(0, 1 << 30); // scan path
        let mut pa = 0x10_0000;
        while pa < 0x10_0000 + 41 * 4096 {
            b.clean_va(pa, 4096); // line path
            pa += 4096;
        }
        for k in 0..40u64 {
            let pa = 0x10_0000 + k * 4096 + (k % 7) * 64;
            assert_eq!(a.poc_u64(pa), k);
            assert_eq!(b.poc_u64(pa), k);
        }
    }

    #[test]
    fn set_way_clean_of_l1_goes_to_l2_not_poc() {
        let mut m = model(1);
        m.store_u64(Access::Cached(0), 0x2000, 5);
        let set = m.l1_set_of(0x2000);
        for way in 0..2 {
            m.set_way(0, SwOp::Clean, 0, set, way);
        }
        assert!(!m.dirty_in_l1(0, 0x2000));
        assert_eq!(m.poc_u64(0x2000), 0, "L1 clean by set/way stops at L2");
        assert!(m.dirty_anywhere(0x2000));
        let g2 = m.geometry(1).unwrap();
        for set in 0..g2.sets {
            for way in 0..g2.ways {
                m.set_way(0, SwOp::Clean, 1, set, way);
            }
        }
        assert_eq!(m.poc_u64(0x2000), 5);
    }

    #[test]
    fn set_way_only_touches_one_cpu() {
        let mut m = model(2);
        m.store_u64(Access::Cached(0), 0x3000, 3);
        let g = m.geometry(0).unwrap();
        for set in 0..g.sets {
            for way in 0..g.ways {
                m.set_way(1, SwOp::CleanInvalidate, 0, set, way);
            }
        }
        assert!(m.dirty_in_l1(0, 0x3000));
    }

    #[test]
    fn set_way_invalidate_discards() {
        let mut m = model(1);
        m.store_u64(Access::Cached(0), 0x3000, 3);
        let set = m.l1_set_of(0x3000);
        for way in 0..2 {
            m.set_way(0, SwOp::Invalidate, 0, set, way);
        }
        assert_eq!(m.peek_u64(0x3000), 0);
    }

    #[test]
    fn eviction_writes_back_and_is_round_robin() {
        let mut m = CacheModel::new(Config { cpus: 1, l1: Geometry { sets: 1, ways: 2 }, l2: None });
        m.store_u64(Access::Cached(0), 0, 1);
        m.store_u64(Access::Cached(0), 64, 2);
        m.store_u64(Access::Cached(0), 128, 3); // evicts way 0 (line 0)
        assert_eq!(m.poc_u64(0), 1);
        assert_eq!(m.poc_u64(64), 0);
        m.store_u64(Access::Cached(0), 192, 4); // evicts way 1 (line 64)
        assert_eq!(m.poc_u64(64), 2);
        assert_eq!(m.load_u64(Access::Cached(0), 0), 1);
    }

    #[test]
    fn uncached_access_ignores_caches() {
        let mut m = model(1);
        m.store_u64(Access::Cached(0), 0x100, 1);
        m.store_u64(Access::Uncached, 0x100, 2);
        assert_eq!(m.load_u64(Access::Cached(0), 0x100), 1, "stale line wins for cacheable reads");
        m.clean_invalidate_va(0x100, 8);
        assert_eq!(m.load_u64(Access::Uncached, 0x100), 1, "the dirty line overwrote the PoC");
    }

    #[test]
    fn operands_round_trip_like_linux() {
        for cfg in [Config::cortex_a7(1), Config::cortex_a72(1), Config::small(1)] {
            let mut m = CacheModel::new(cfg);
            for level in 0..m.levels() {
                let ccsidr = m.ccsidr(level).unwrap();
                let line_shift = (ccsidr & 7) + 4;
                let ways_max = (ccsidr >> 3) & 0x3ff;
                let sets_max = (ccsidr >> 13) & 0x7fff;
                let g = m.geometry(level).unwrap();
                assert_eq!(line_shift, 6);
                assert_eq!(ways_max + 1, g.ways);
                assert_eq!(sets_max + 1, g.sets);
                let way_shift = ways_max.leading_zeros();
                let op = ((level as u32) << 1) | (ways_max << way_shift) | (sets_max << line_shift);
                assert_eq!(op, m.sw_operand(level, sets_max, ways_max));
            }
            // Decoding hits the slot the line is in.
            m.store_u64(Access::Cached(0), 0x4_0040, 1);
            let set = m.l1_set_of(0x4_0040);
            for way in 0..cfg.l1.ways {
                let op = m.sw_operand(0, set, way);
                m.dc_sw(0, SwOp::CleanInvalidate, op);
            }
            assert!(!m.dirty_in_l1(0, 0x4_0040));
        }
    }

    #[test]
    fn frames_zero_goes_through_cache() {
        let mut m = model(2);
        m.store(Access::Uncached, 0x5000, &[0xff; 256]);
        m.set_hyp_cpu(1);
        m.zero(0x5000, 256);
        assert!(m.is_zero(0x5000, 256));
        assert_eq!(m.poc_u64(0x5000), u64::MAX, "zeros not cleaned yet");
        m.clean_range(0x5000, 256);
        assert_eq!(m.poc_u64(0x5000), 0);
        m.store(Access::Cached(0), 0x5010, &[1]);
        assert!(!m.is_zero(0x5000, 256));
    }

    #[test]
    fn zeroing_a_large_range_matches_line_by_line() {
        // The short cut and the slow path leave the same newest values and
        // PoC contents, and both keep the tail dirty in the hypervisor pCPU.
        let fill = |m: &mut CacheModel| {
            for k in 0..600u64 {
                m.store_u64(Access::Cached((k % 2) as usize), 0x10_0000 + k * 72, k + 1);
                m.store_u64(Access::Uncached, 0x20_0000 + k * 4096, k + 1);
            }
        };
        let (pa, len) = (0x10_0000 - 24, 3 * 4096 * 16 + 40);
        let mut fast = model(2);
        fill(&mut fast);
        fast.set_hyp_cpu(1);
        fast.zero(pa, len);
        let mut slow = model(2);
        fill(&mut slow);
        slow.set_hyp_cpu(1);
        let mut a = pa;
        while a < pa + len {
            let n = core::cmp::min(8 - a % 8, pa + len - a);
            slow.store(Access::Cached(1), a, &[0u8; 8][..n as usize]);
            a += n;
        }
        assert!(fast.is_zero(pa, len));
        assert!(fast.dirty_in_l1(1, pa + len - 1), "the tail stays dirty");
        let probes: Vec<u64> = (0..(len + 0x2000) / 8)
            .map(|k| pa - 0x1000 + k * 8)
            .chain((0..600).map(|k| 0x20_0000 + k * 4096))
            .collect();
        for &a in &probes {
            assert_eq!(fast.peek_u64(a), slow.peek_u64(a), "newest at {a:#x}");
        }
        fast.clean_va(0, 1 << 40);
        slow.clean_va(0, 1 << 40);
        for &a in &probes {
            assert_eq!(fast.poc_u64(a), slow.poc_u64(a), "PoC at {a:#x}");
        }
    }

    #[test]
    fn random_cacheable_traffic_is_coherent_and_cleans_write_poc() {
        // Reference: a plain map of the last value stored at each address.
        let mut rng = crate::rng::Rng::new(7);
        for cfg in [Config::small(3), Config { cpus: 2, l1: Geometry { sets: 2, ways: 2 }, l2: None }] {
            let mut m = CacheModel::new(cfg);
            let mut reference = alloc::collections::BTreeMap::new();
            for _ in 0..4000 {
                let pa = rng.below(512) * 8 + 0x10000;
                let cpu = rng.below(cfg.cpus as u64) as usize;
                match rng.below(10) {
                    0..=4 => {
                        let v = rng.next_u64();
                        m.store_u64(Access::Cached(cpu), pa, v);
                        reference.insert(pa, v);
                    }
                    5..=8 => {
                        let want = reference.get(&pa).copied().unwrap_or(0);
                        assert_eq!(m.load_u64(Access::Cached(cpu), pa), want);
                        assert_eq!(m.peek_u64(pa), want);
                    }
                    _ => {
                        let level = rng.below(m.levels() as u64) as u8;
                        let g = m.geometry(level).unwrap();
                        let (set, way) = (rng.below(g.sets as u64) as u32, rng.below(g.ways as u64) as u32);
                        m.set_way(cpu, SwOp::Clean, level, set, way);
                    }
                }
            }
            m.clean_va(0, 1 << 32);
            assert_eq!(m.dirty_lines(), 0);
            for (&pa, &v) in &reference {
                assert_eq!(m.poc_u64(pa), v);
            }
        }
    }

    #[test]
    fn log_records_calls() {
        let mut m = model(1);
        m.enable_log();
        m.clean_invalidate_range(0x1000, 0x3000);
        assert_eq!(m.take_log(), [MaintOp { op: VaOp::CleanInvalidate, pa: 0x1000, len: 0x3000 }]);
        assert!(m.take_log().is_empty());
        assert_eq!(m.stats().va_bytes, 0x3000);
    }
}

//! cache-oracle-model: the cache hierarchy the QEMU cache oracle plays
//! every memory access of a run against.
//!
//! **Is responsible for:** a write-back data cache per physical CPU (L1,
//! 64-byte lines) and one L2 shared by all CPUs (one cluster, as on the
//! Cortex-A72 of a Raspberry Pi 4 and the Cortex-A7 of a Cubietruck);
//! coherence among them for cacheable accesses; maintenance by address to
//! the point of coherency (acts on every cache, as broadcast maintenance
//! does); maintenance by set/way (acts on one cache: the issuing CPU's L1,
//! or the L2); and the events real hardware would turn into lost or stale
//! data:
//! The L2 is shared by default (`Model::new`'s `shared_l2`), or private per
//! CPU, as if each CPU were a cluster of its own.
//! - `StaleRead`: a non-cacheable read of bytes whose newest data sits
//!   dirty in a cache (the reader sees old memory; dirty lines keep a
//!   mask of the bytes written, so a neighbour's write is not a loss);
//! - `LostWrite`: a non-cacheable write to such a line (the dirty line's
//!   eviction later overwrites it);
//! - `StaleLine`: a cacheable access that hits a clean line left behind
//!   after memory was written non-cacheably without an invalidate.
//!
//! **Is not responsible for:** deciding whether an access is cacheable or
//! which physical address a virtual one maps to (the plugin does that from
//! the CPU's registers and QEMU's translation), instruction caches, TLBs,
//! or speculation (real caches may also fetch lines early; the model only
//! allocates on access).
//!
//! **Invariants:** a line is dirty in at most one CPU's caches (its L1, its
//! L2 or both), never in two CPUs' at once: a cacheable write takes the
//! other CPUs' copies over, dirty bytes and all; set/way
//! operations never touch another CPU's L1; replacement is round-robin per
//! set, so a run replays the same way every time.
#![forbid(unsafe_code)]

pub mod decode;

pub const LINE_SHIFT: u32 = 6;
pub const LINE: u64 = 1 << LINE_SHIFT;

/// Sets and ways of one cache (64-byte lines). Sets are a power of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub sets: usize,
    pub ways: usize,
}

impl Geometry {
    /// What QEMU's Cortex-A72 reports in CCSIDR (and so what a guest's
    /// set/way loop walks): a 32 KiB 4-way L1 data cache (the real A72's is
    /// 2-way) and a 1 MiB 16-way L2.
    pub const QEMU_A72_L1: Geometry = Geometry { sets: 128, ways: 4 };
    pub const QEMU_A72_L2: Geometry = Geometry { sets: 1024, ways: 16 };

    /// Parse `SETSxWAYS`, for example `256x2`.
    pub fn parse(s: &str) -> Option<Geometry> {
        let (a, b) = s.split_once('x')?;
        let g = Geometry { sets: a.parse().ok()?, ways: b.parse().ok()? };
        (g.sets.is_power_of_two() && (1..=64).contains(&g.ways) && g.sets <= 1 << 16).then_some(g)
    }

    /// The set and way a set/way operand names at this level, as the
    /// Arm ARM lays it out for 64-byte lines: way in the top bits, set
    /// from bit 6.
    pub fn decode_set_way(self, operand: u64) -> (usize, usize) {
        let set = ((operand >> LINE_SHIFT) as usize) & (self.sets - 1);
        let way_bits = usize::BITS - (self.ways - 1).leading_zeros();
        let way = if way_bits == 0 { 0 } else { ((operand as u32) >> (32 - way_bits)) as usize };
        (set, way)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    StaleRead,
    LostWrite,
    StaleLine,
}

/// Where the data that makes an event sat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    L1(usize),
    /// An L2: index 0 when shared, else the CPU's.
    L2(usize),
}

/// Who made an access: its CPU, exception level class and PC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Who {
    pub cpu: usize,
    /// True at EL2 (the hypervisor), false at EL1/EL0 (a guest).
    pub el2: bool,
    pub pc: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub pa: u64,
    pub who: Who,
    pub holder: Holder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Clean,
    Invalidate,
    CleanInvalidate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub stale_reads: u64,
    pub lost_writes: u64,
    pub stale_lines: u64,
    pub cacheable: u64,
    pub uncached: u64,
    pub va_ops: u64,
    pub sw_ops: u64,
    /// Whole-cache operations standing in for maintenance whose operand
    /// could not be read (AArch32 guests).
    pub approx_ops: u64,
}

impl Counts {
    pub fn events(&self) -> u64 {
        self.stale_reads + self.lost_writes + self.stale_lines
    }
}

const EMPTY: u64 = u64::MAX;
const DIRTY: u8 = 1;
const STALE: u8 = 2;

/// One set-associative write-back cache.
struct Cache {
    geo: Geometry,
    tags: Vec<u64>,
    state: Vec<u8>,
    /// The bytes of each dirty line written since it was last clean.
    mask: Vec<u64>,
    next: Vec<u8>,
    /// Slots filled, and slots made dirty, since the last whole-cache
    /// operation (may repeat; `None` once too long: scan everything).
    filled: Option<Vec<u32>>,
    dirtied: Option<Vec<u32>>,
}

impl Cache {
    fn new(geo: Geometry) -> Self {
        let n = geo.sets * geo.ways;
        Cache {
            geo,
            tags: vec![EMPTY; n],
            state: vec![0; n],
            mask: vec![0; n],
            next: vec![0; geo.sets],
            filled: Some(Vec::new()),
            dirtied: Some(Vec::new()),
        }
    }

    fn note(list: &mut Option<Vec<u32>>, i: usize, cap: usize) {
        if let Some(v) = list {
            if v.len() >= cap {
                *list = None;
            } else {
                v.push(i as u32);
            }
        }
    }

    fn mark_dirty(&mut self, i: usize, mask: u64) {
        if self.state[i] & DIRTY == 0 {
            Self::note(&mut self.dirtied, i, 4 * self.tags.len());
        }
        self.state[i] = DIRTY;
        self.mask[i] |= mask;
    }

    /// `op` on every line: by the recorded slots when they are complete.
    fn whole(&mut self, op: Op) {
        let all = || None;
        let slots: Option<Vec<u32>> = match op {
            Op::Clean => self.dirtied.take().or_else(all),
            _ => self.filled.take().or_else(all),
        };
        let slots: Vec<usize> = match slots {
            Some(v) => v.into_iter().map(|i| i as usize).collect(),
            None => (0..self.tags.len()).collect(),
        };
        for i in slots {
            match op {
                Op::Clean => self.clean_slot(i),
                _ => self.drop_slot(i),
            }
        }
        self.dirtied = Some(Vec::new());
        if op != Op::Clean {
            self.filled = Some(Vec::new());
        }
    }

    fn set_of(&self, line: u64) -> usize {
        (line as usize) & (self.geo.sets - 1)
    }

    fn find(&self, line: u64) -> Option<usize> {
        let base = self.set_of(line) * self.geo.ways;
        (base..base + self.geo.ways).find(|&i| self.tags[i] == line)
    }

    /// Put `line` in with `state` and dirty bytes `mask`; returns the line
    /// it pushed out, if dirty, with its mask.
    fn insert(&mut self, line: u64, state: u8, mask: u64) -> Option<(u64, u64)> {
        let set = self.set_of(line);
        let base = set * self.geo.ways;
        let slot = match (base..base + self.geo.ways).find(|&i| self.tags[i] == EMPTY) {
            Some(i) => i,
            None => {
                let w = self.next[set] as usize % self.geo.ways;
                self.next[set] = ((w + 1) % self.geo.ways) as u8;
                base + w
            }
        };
        let out = (self.tags[slot] != EMPTY && self.state[slot] & DIRTY != 0).then_some((self.tags[slot], self.mask[slot]));
        self.tags[slot] = line;
        self.state[slot] = state;
        self.mask[slot] = mask;
        let cap = 4 * self.tags.len();
        Self::note(&mut self.filled, slot, cap);
        if state & DIRTY != 0 {
            Self::note(&mut self.dirtied, slot, cap);
        }
        out
    }

    fn drop_slot(&mut self, i: usize) {
        self.tags[i] = EMPTY;
        self.state[i] = 0;
        self.mask[i] = 0;
    }

    fn clean_slot(&mut self, i: usize) {
        self.state[i] &= !DIRTY;
        self.mask[i] = 0;
    }
}

/// The oracle's caches and what they have seen.
pub struct Model {
    l1: Vec<Cache>,
    /// One shared L2, or one per CPU (as if each CPU were its own cluster:
    /// set/way then reaches no other CPU's data at any level).
    l2: Vec<Cache>,
    pub counts: Counts,
    /// The first events, in order, up to `keep`.
    pub events: Vec<Event>,
    keep: usize,
}

impl Model {
    /// `shared_l2`: one L2 for all CPUs (one cluster, as on the RPi 4 and
    /// the Cubietruck), else a private L2 per CPU.
    pub fn new(cpus: usize, l1: Geometry, l2: Geometry, shared_l2: bool, keep: usize) -> Self {
        Model {
            l1: (0..cpus).map(|_| Cache::new(l1)).collect(),
            l2: (0..if shared_l2 { 1 } else { cpus }).map(|_| Cache::new(l2)).collect(),
            counts: Counts::default(),
            events: Vec::new(),
            keep,
        }
    }

    pub fn shared_l2(&self) -> bool {
        self.l2.len() == 1
    }

    fn l2_of(&self, cpu: usize) -> usize {
        if self.shared_l2() {
            0
        } else {
            cpu
        }
    }

    /// Where `pa`'s line sits (debugging): cache, slot, state.
    pub fn locate(&self, pa: u64) -> String {
        let line = pa >> LINE_SHIFT;
        let mut out = String::new();
        for (d, c) in self.l1.iter().enumerate() {
            if let Some(i) = c.find(line) {
                out += &format!("L1[{d}] slot {i} state {} ", c.state[i]);
            }
        }
        for (k, c) in self.l2.iter().enumerate() {
            if let Some(i) = c.find(line) {
                out += &format!("L2[{k}] slot {i} state {} ", c.state[i]);
            }
        }
        out
    }

    pub fn cpus(&self) -> usize {
        self.l1.len()
    }

    fn event(&mut self, kind: Kind, line: u64, who: Who, holder: Holder) {
        match kind {
            Kind::StaleRead => self.counts.stale_reads += 1,
            Kind::LostWrite => self.counts.lost_writes += 1,
            Kind::StaleLine => self.counts.stale_lines += 1,
        }
        if self.events.len() < self.keep {
            self.events.push(Event { kind, pa: line << LINE_SHIFT, who, holder });
        }
    }

    /// A memory access of `size` bytes at physical `pa`.
    pub fn access(&mut self, who: Who, pa: u64, size: u64, write: bool, cacheable: bool) {
        if who.cpu >= self.l1.len() {
            return;
        }
        let end = pa + size.max(1);
        let first = pa >> LINE_SHIFT;
        let last = (end - 1) >> LINE_SHIFT;
        for line in first..=last {
            let lo = pa.max(line << LINE_SHIFT) - (line << LINE_SHIFT);
            let hi = end.min((line + 1) << LINE_SHIFT) - (line << LINE_SHIFT);
            let bytes = if hi - lo == 64 { u64::MAX } else { ((1u64 << (hi - lo)) - 1) << lo };
            match (cacheable, write) {
                (true, false) => self.read_line(who, line),
                (true, true) => self.write_line(who, line, bytes),
                (false, false) => self.uncached_read(who, line, bytes),
                (false, true) => self.uncached_write(who, line),
            }
        }
        if cacheable {
            self.counts.cacheable += 1;
        } else {
            self.counts.uncached += 1;
        }
    }

    /// `DC ZVA`: a whole-line write of zeros.
    pub fn zero_line(&mut self, who: Who, pa: u64, cacheable: bool) {
        if who.cpu >= self.l1.len() {
            return;
        }
        let line = pa >> LINE_SHIFT;
        if cacheable {
            self.write_line(who, line, u64::MAX);
        } else {
            self.uncached_write(who, line);
        }
    }

    fn l2_write_back(&mut self, k: usize, line: u64, mask: u64) {
        let l2 = &mut self.l2[k];
        match l2.find(line) {
            Some(i) => l2.mark_dirty(i, mask),
            // A dirty L2 victim goes to memory: nothing to track.
            None => {
                l2.insert(line, DIRTY, mask);
            }
        }
    }

    /// A stale copy anywhere `who` could be served from, reported once.
    fn take_stale(&mut self, line: u64) -> Option<Holder> {
        let mut found = None;
        for (d, c) in self.l1.iter_mut().enumerate() {
            if let Some(i) = c.find(line) {
                if c.state[i] & STALE != 0 {
                    c.state[i] &= !STALE;
                    found.get_or_insert(Holder::L1(d));
                }
            }
        }
        for (k, c) in self.l2.iter_mut().enumerate() {
            if let Some(i) = c.find(line) {
                if c.state[i] & STALE != 0 {
                    c.state[i] &= !STALE;
                    found.get_or_insert(Holder::L2(k));
                }
            }
        }
        found
    }

    /// Other CPUs' L1 copies of `line` make way for `who`'s access: a dirty
    /// one is written back to its own CPU's L2 first. For a read they stay,
    /// clean; for a write (`drop`) they go, and a stale one is reported
    /// unless the write covers the whole line (`full`).
    fn pull_from_other_l1s(&mut self, who: Who, line: u64, drop: bool, full: bool) {
        for d in 0..self.l1.len() {
            if d == who.cpu {
                continue;
            }
            let Some(i) = self.l1[d].find(line) else { continue };
            if self.l1[d].state[i] & DIRTY != 0 {
                let m = self.l1[d].mask[i];
                if !drop {
                    self.l1[d].clean_slot(i);
                }
                let k = self.l2_of(d);
                self.l2_write_back(k, line, m);
            }
            if drop {
                if self.l1[d].state[i] & STALE != 0 && !full {
                    self.event(Kind::StaleLine, line, who, Holder::L1(d));
                }
                self.l1[d].drop_slot(i);
            }
        }
    }

    fn read_line(&mut self, who: Who, line: u64) {
        let c = who.cpu;
        if let Some(i) = self.l1[c].find(line) {
            if self.l1[c].state[i] & STALE != 0 {
                self.l1[c].state[i] &= !STALE;
                self.event(Kind::StaleLine, line, who, Holder::L1(c));
            }
            return;
        }
        // Miss: a dirty copy in another L1 goes down to that CPU's L2 and
        // stays owned there; we get a clean copy.
        self.pull_from_other_l1s(who, line, false, false);
        if let Some(h) = self.take_stale(line) {
            self.event(Kind::StaleLine, line, who, h);
        }
        let k = self.l2_of(c);
        if self.l2[k].find(line).is_none() {
            self.l2[k].insert(line, 0, 0);
        }
        if let Some((out, m)) = self.l1[c].insert(line, 0, 0) {
            self.l2_write_back(k, out, m);
        }
    }

    fn write_line(&mut self, who: Who, line: u64, bytes: u64) {
        let full = bytes == u64::MAX;
        let c = who.cpu;
        let own = self.l2_of(c);
        // Other L1s give their copies up; a dirty one goes to its L2 first.
        self.pull_from_other_l1s(who, line, true, full);
        // Other CPUs' L2s give theirs up too; dirty bytes come with them.
        let mut carried = 0;
        for k in 0..self.l2.len() {
            if k == own {
                continue;
            }
            if let Some(i) = self.l2[k].find(line) {
                if self.l2[k].state[i] & DIRTY != 0 {
                    carried |= self.l2[k].mask[i];
                }
                if self.l2[k].state[i] & STALE != 0 && !full {
                    self.event(Kind::StaleLine, line, who, Holder::L2(k));
                }
                self.l2[k].drop_slot(i);
            }
        }
        if let Some(i) = self.l1[c].find(line) {
            if self.l1[c].state[i] & STALE != 0 && !full {
                self.event(Kind::StaleLine, line, who, Holder::L1(c));
            }
            self.l1[c].mark_dirty(i, bytes | carried);
            if full {
                // The whole line is new: no copy below it is stale any more.
                if let Some(j) = self.l2[own].find(line) {
                    self.l2[own].state[j] &= !STALE;
                }
            }
            return;
        }
        if let Some(i) = self.l2[own].find(line) {
            if self.l2[own].state[i] & STALE != 0 {
                self.l2[own].state[i] &= !STALE;
                if !full {
                    self.event(Kind::StaleLine, line, who, Holder::L2(own));
                }
            }
        }
        if let Some((out, m)) = self.l1[c].insert(line, DIRTY, bytes | carried) {
            self.l2_write_back(own, out, m);
        }
    }

    /// A cache holding newer data than memory for any of `bytes` of `line`.
    fn dirty_holder(&self, line: u64, bytes: u64) -> Option<Holder> {
        for (d, c) in self.l1.iter().enumerate() {
            if let Some(i) = c.find(line) {
                if c.state[i] & DIRTY != 0 && c.mask[i] & bytes != 0 {
                    return Some(Holder::L1(d));
                }
            }
        }
        for (k, c) in self.l2.iter().enumerate() {
            if let Some(i) = c.find(line) {
                if c.state[i] & DIRTY != 0 && c.mask[i] & bytes != 0 {
                    return Some(Holder::L2(k));
                }
            }
        }
        None
    }

    /// Reads see memory: stale where a cache holds newer bytes.
    fn uncached_read(&mut self, who: Who, line: u64, bytes: u64) {
        if let Some(h) = self.dirty_holder(line, bytes) {
            self.event(Kind::StaleRead, line, who, h);
        }
    }

    /// Writes go to memory, and a dirty copy of the line, whatever bytes it
    /// changed, is written back over them when it leaves the cache.
    fn uncached_write(&mut self, who: Who, line: u64) {
        if let Some(h) = self.dirty_holder(line, u64::MAX) {
            self.event(Kind::LostWrite, line, who, h);
        }
        // Clean copies now hold older data than memory.
        for c in self.l1.iter_mut().chain(self.l2.iter_mut()) {
            if let Some(i) = c.find(line) {
                if c.state[i] & DIRTY == 0 {
                    c.state[i] |= STALE;
                }
            }
        }
    }

    /// Maintenance by address to the point of coherency, on every cache.
    pub fn by_address(&mut self, pa: u64, op: Op) {
        self.counts.va_ops += 1;
        let line = pa >> LINE_SHIFT;
        for c in self.l1.iter_mut().chain(self.l2.iter_mut()) {
            if let Some(i) = c.find(line) {
                match op {
                    // Memory gets the newest data; a clean copy that was
                    // already stale stays stale (cleaning a clean line does
                    // nothing).
                    Op::Clean => c.clean_slot(i),
                    Op::Invalidate | Op::CleanInvalidate => c.drop_slot(i),
                }
            }
        }
    }

    /// Maintenance by set/way on `cpu`: `level` 0 is that CPU's L1, 1 its
    /// L2 (shared or its own); other levels do not exist here.
    pub fn by_set_way(&mut self, cpu: usize, level: u32, operand: u64, op: Op) {
        self.counts.sw_ops += 1;
        if cpu >= self.l1.len() {
            return;
        }
        let k = self.l2_of(cpu);
        match level {
            0 => {
                let geo = self.l1[cpu].geo;
                let (set, way) = geo.decode_set_way(operand);
                if way >= geo.ways {
                    return;
                }
                let i = set * geo.ways + way;
                let line = self.l1[cpu].tags[i];
                if line == EMPTY {
                    return;
                }
                if op != Op::Invalidate && self.l1[cpu].state[i] & DIRTY != 0 {
                    let m = self.l1[cpu].mask[i];
                    self.l1[cpu].clean_slot(i);
                    self.l2_write_back(k, line, m);
                }
                if op != Op::Clean {
                    self.l1[cpu].drop_slot(i);
                }
            }
            1 => {
                let l2 = &mut self.l2[k];
                let (set, way) = l2.geo.decode_set_way(operand);
                if way >= l2.geo.ways {
                    return;
                }
                let i = set * l2.geo.ways + way;
                if l2.tags[i] == EMPTY {
                    return;
                }
                match op {
                    Op::Clean => l2.clean_slot(i),
                    Op::Invalidate | Op::CleanInvalidate => l2.drop_slot(i),
                }
            }
            _ => {}
        }
    }

    /// A stand-in for maintenance whose operand is unknown: `op` on every
    /// line of the given caches (one CPU's L1 and L2 for set/way, every
    /// cache for an address). It over-approximates the clean, so it can
    /// hide a missing one but never report a false event.
    pub fn whole(&mut self, cpu: Option<usize>, op: Op) {
        self.counts.approx_ops += 1;
        match cpu {
            Some(c) if c < self.l1.len() => {
                let k = self.l2_of(c);
                self.l1[c].whole(op);
                self.l2[k].whole(op);
            }
            Some(_) => {}
            None => {
                for c in self.l1.iter_mut().chain(self.l2.iter_mut()) {
                    c.whole(op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

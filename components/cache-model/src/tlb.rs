//! A stage-2 TLB model: per-pCPU caches of stage-2 leaf translations, tagged
//! with the VMID, filled by guest accesses and emptied only by the
//! `hwops::TlbOps` calls the pager makes (or by capacity evictions).
//!
//! What it models, as the Arm architecture allows it:
//! - a guest access on a pCPU first looks in that pCPU's TLB; a hit is used
//!   as it is, without looking at the table again. So an entry whose table
//!   entry was changed (unmapped, remapped, access flag cleared) without a
//!   TLB invalidation still translates, and the access neither faults nor
//!   reaches the pager;
//! - a miss walks the table through [`Stage2Walk`]: no leaf is a stage-2
//!   translation fault, a leaf with AF = 0 an access-flag fault (stage-2
//!   hardware AF update is off, `VTCR_EL2.HA = 0`), and only a leaf with
//!   AF = 1 is cached (a TLB never holds an entry that would fault);
//! - `invalidate_ipa(vmid, ipa)` drops, on every pCPU (inner shareable, as
//!   `TLBI IPAS2E1IS` + `TLBI VMALLE1IS`), the entries of `vmid` that
//!   translate `ipa` (a whole block entry when `ipa` lies in the block);
//!   `invalidate_vmid` drops every entry of `vmid` on every pCPU.
//!
//! Not modelled: stage-1 entries and walk caches (the kernel invalidates
//! combined entries together with the stage-2 ones), timing, and entries
//! smaller than their leaf (the architecture makes an invalidation of any
//! address of a block drop all of it anyway).
//!
//! Every hit is also compared with the table as it is now: a hit that the
//! table no longer backs (unmapped, AF = 0, another frame) is counted in
//! [`TlbStats::stale_hits`] and remembered in [`Tlb::first_stale`], so a test
//! can name the cause of lost data. The access still goes to the stale
//! frame, as hardware would.

use alloc::vec;
use alloc::vec::Vec;
use hwops::TlbOps;

/// A stage-2 leaf as a table walk finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    /// First guest address of the leaf (aligned to `size`).
    pub ipa: u64,
    /// Frame of the leaf's first address.
    pub pa: u64,
    /// Leaf size in bytes (4 KiB or 2 MiB).
    pub size: u64,
    /// The access flag.
    pub accessed: bool,
}

impl Walked {
    /// The physical address `ipa` (inside this leaf) translates to.
    pub fn pa_of(&self, ipa: u64) -> u64 {
        self.pa + (ipa - self.ipa)
    }
}

/// The table a TLB walks on a miss: the VM's stage-2 table, as it is now.
pub trait Stage2Walk {
    /// The valid leaf of guest RAM covering `ipa`, if any.
    fn walk(&self, ipa: u64) -> Option<Walked>;
}

impl<F: Fn(u64) -> Option<Walked>> Stage2Walk for F {
    fn walk(&self, ipa: u64) -> Option<Walked> {
        self(ipa)
    }
}

/// What one guest access found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// A TLB entry translated it (no walk, no fault).
    Hit {
        /// Where the access goes.
        pa: u64,
    },
    /// A walk found a leaf with AF = 1; it is cached now.
    Filled {
        /// Where the access goes.
        pa: u64,
    },
    /// No leaf: a stage-2 translation fault (the kernel calls the pod).
    TranslationFault,
    /// A leaf with AF = 0: a stage-2 access-flag fault (the kernel calls the
    /// pager).
    AccessFlagFault,
}

impl Translation {
    /// The physical address, when the access goes ahead.
    pub fn pa(&self) -> Option<u64> {
        match *self {
            Translation::Hit { pa } | Translation::Filled { pa } => Some(pa),
            _ => None,
        }
    }
}

/// Counters since creation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbStats {
    /// Accesses translated by a TLB entry.
    pub hits: u64,
    /// Table walks (misses).
    pub walks: u64,
    /// Entries cached.
    pub fills: u64,
    /// Entries pushed out by capacity.
    pub evictions: u64,
    /// `invalidate_ipa` calls.
    pub ipa_invalidations: u64,
    /// `invalidate_vmid` calls.
    pub vmid_invalidations: u64,
    /// Entries dropped by invalidations.
    pub dropped: u64,
    /// Hits on an entry the table no longer backs.
    pub stale_hits: u64,
}

/// One hit on an entry the table no longer backs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleHit {
    /// The pCPU whose TLB held it.
    pub cpu: usize,
    /// The VM.
    pub vmid: u16,
    /// The guest address accessed.
    pub ipa: u64,
    /// Where the stale entry sent the access.
    pub pa: u64,
    /// What the table holds for `ipa` now.
    pub table: Option<Walked>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    vmid: u16,
    ipa: u64,
    size: u64,
    pa: u64,
}

impl Entry {
    fn covers(&self, vmid: u16, ipa: u64) -> bool {
        self.vmid == vmid && ipa >= self.ipa && ipa - self.ipa < self.size
    }
}

/// Per-pCPU stage-2 TLBs of `capacity` entries each, replaced round-robin.
#[derive(Clone, Debug)]
pub struct Tlb {
    cpus: Vec<Vec<Entry>>,
    capacity: usize,
    next_victim: Vec<usize>,
    stats: TlbStats,
    first_stale: Option<StaleHit>,
}

impl Tlb {
    /// Empty TLBs for `cpus` pCPUs of `capacity` entries each.
    ///
    /// Panics when `cpus` or `capacity` is zero.
    pub fn new(cpus: usize, capacity: usize) -> Tlb {
        assert!(cpus >= 1 && capacity >= 1, "tlb: at least one pCPU and one entry");
        Tlb {
            cpus: vec![Vec::new(); cpus],
            capacity,
            next_victim: vec![0; cpus],
            stats: TlbStats::default(),
            first_stale: None,
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> TlbStats {
        self.stats
    }

    /// The first hit on an entry the table no longer backs, if any.
    pub fn first_stale(&self) -> Option<StaleHit> {
        self.first_stale
    }

    /// Entries cached on `cpu` now.
    pub fn entries(&self, cpu: usize) -> usize {
        self.cpus[cpu].len()
    }

    /// Translate a guest access of VM `vmid` at `ipa` on `cpu`: a hit, else
    /// a walk of `table` that caches a leaf with AF = 1 or reports a fault.
    pub fn translate(&mut self, cpu: usize, vmid: u16, ipa: u64, table: &dyn Stage2Walk) -> Translation {
        if let Some(e) = self.cpus[cpu].iter().find(|e| e.covers(vmid, ipa)).copied() {
            self.stats.hits += 1;
            let pa = e.pa + (ipa - e.ipa);
            let now = table.walk(ipa);
            if !now.is_some_and(|l| l.accessed && l.pa_of(ipa) == pa) {
                self.stats.stale_hits += 1;
                self.first_stale.get_or_insert(StaleHit { cpu, vmid, ipa, pa, table: now });
            }
            return Translation::Hit { pa };
        }
        self.stats.walks += 1;
        match table.walk(ipa) {
            None => Translation::TranslationFault,
            Some(l) if !l.accessed => Translation::AccessFlagFault,
            Some(l) => {
                self.fill(cpu, Entry { vmid, ipa: l.ipa, size: l.size, pa: l.pa });
                Translation::Filled { pa: l.pa_of(ipa) }
            }
        }
    }

    fn fill(&mut self, cpu: usize, e: Entry) {
        self.stats.fills += 1;
        let set = &mut self.cpus[cpu];
        if set.len() < self.capacity {
            set.push(e);
            return;
        }
        let v = self.next_victim[cpu];
        self.next_victim[cpu] = (v + 1) % self.capacity;
        set[v] = e;
        self.stats.evictions += 1;
    }

    /// Entries of VM `vmid`, on any pCPU, that its `table` no longer backs:
    /// what the guest could still reach although the table took it away.
    /// Empty whenever every table change had its invalidation.
    pub fn stale_entries(&self, vmid: u16, table: &dyn Stage2Walk) -> Vec<StaleHit> {
        let mut out = Vec::new();
        for (cpu, set) in self.cpus.iter().enumerate() {
            for e in set.iter().filter(|e| e.vmid == vmid) {
                // An entry is backed when every page it covers is still
                // mapped, accessed, to the same frames.
                let mut ipa = e.ipa;
                while ipa < e.ipa + e.size {
                    let now = table.walk(ipa);
                    let pa = e.pa + (ipa - e.ipa);
                    if !now.is_some_and(|l| l.accessed && l.pa_of(ipa) == pa) {
                        out.push(StaleHit { cpu, vmid: e.vmid, ipa, pa, table: now });
                        break;
                    }
                    ipa += match now {
                        Some(l) => l.ipa + l.size - ipa,
                        None => hwops::PAGE_SIZE,
                    };
                }
            }
        }
        out
    }

    fn drop_where(&mut self, f: impl Fn(&Entry) -> bool) {
        for (set, victim) in self.cpus.iter_mut().zip(self.next_victim.iter_mut()) {
            let before = set.len();
            set.retain(|e| !f(e));
            self.stats.dropped += (before - set.len()) as u64;
            if *victim >= set.len().max(1) {
                *victim = 0;
            }
        }
    }
}

impl TlbOps for Tlb {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.stats.ipa_invalidations += 1;
        self.drop_where(|e| e.covers(vmid, ipa));
    }

    fn invalidate_vmid(&mut self, vmid: u16) {
        self.stats.vmid_invalidations += 1;
        self.drop_where(|e| e.vmid == vmid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use core::cell::RefCell;
    use hwops::{BLOCK_SIZE, PAGE_SIZE};

    /// A table: leaf base -> (pa, size, accessed).
    #[derive(Default)]
    struct Table(RefCell<BTreeMap<u64, (u64, u64, bool)>>);

    impl Table {
        fn map(&self, ipa: u64, pa: u64, size: u64) {
            self.0.borrow_mut().insert(ipa, (pa, size, true));
        }
        fn set_af(&self, ipa: u64, on: bool) {
            self.0.borrow_mut().get_mut(&ipa).unwrap().2 = on;
        }
        fn unmap(&self, ipa: u64) {
            self.0.borrow_mut().remove(&ipa);
        }
    }

    impl Stage2Walk for Table {
        fn walk(&self, ipa: u64) -> Option<Walked> {
            let t = self.0.borrow();
            let (&base, &(pa, size, accessed)) = t.range(..=ipa).next_back()?;
            (ipa - base < size).then_some(Walked { ipa: base, pa, size, accessed })
        }
    }

    #[test]
    fn miss_walks_and_faults_then_fills() {
        let t = Table::default();
        let mut tlb = Tlb::new(2, 4);
        assert_eq!(tlb.translate(0, 1, 0x1000, &t), Translation::TranslationFault);
        t.map(0, 0x8000_0000, BLOCK_SIZE);
        t.set_af(0, false);
        assert_eq!(tlb.translate(0, 1, 0x1000, &t), Translation::AccessFlagFault);
        assert_eq!(tlb.entries(0), 0, "an entry with AF = 0 is never cached");
        t.set_af(0, true);
        assert_eq!(tlb.translate(0, 1, 0x1008, &t), Translation::Filled { pa: 0x8000_1008 });
        assert_eq!(tlb.translate(0, 1, 0x1f_0000, &t), Translation::Hit { pa: 0x801f_0000 });
        assert_eq!(tlb.translate(1, 1, 0x10, &t).pa(), Some(0x8000_0010), "pCPU 1 walks for itself");
        assert_eq!(tlb.translate(0, 2, 0x10, &t), Translation::Filled { pa: 0x8000_0010 }, "VMID-tagged");
        assert_eq!(tlb.stats().stale_hits, 0);
    }

    #[test]
    fn a_cleared_access_flag_without_invalidation_still_translates() {
        let t = Table::default();
        let mut tlb = Tlb::new(1, 4);
        t.map(0, 0x8000_0000, BLOCK_SIZE);
        tlb.translate(0, 1, 0, &t);
        t.set_af(0, false);
        // No invalidation: the access goes ahead without a fault.
        assert_eq!(tlb.translate(0, 1, 0x2000, &t), Translation::Hit { pa: 0x8000_2000 });
        assert_eq!(tlb.stats().stale_hits, 1);
        let s = tlb.first_stale().unwrap();
        assert_eq!((s.vmid, s.ipa, s.table.map(|l| l.accessed)), (1, 0x2000, Some(false)));
        assert_eq!(tlb.stale_entries(1, &t).len(), 1);
        // With the invalidation the next access faults.
        tlb.invalidate_ipa(1, 0);
        assert_eq!(tlb.translate(0, 1, 0x2000, &t), Translation::AccessFlagFault);
        assert!(tlb.stale_entries(1, &t).is_empty());
    }

    #[test]
    fn invalidations_are_broadcast_and_per_vmid() {
        let t = Table::default();
        let mut tlb = Tlb::new(3, 8);
        t.map(0, 0x8000_0000, BLOCK_SIZE);
        t.map(BLOCK_SIZE, 0x9000_0000, PAGE_SIZE);
        t.map(BLOCK_SIZE + PAGE_SIZE, 0x9000_5000, PAGE_SIZE);
        for cpu in 0..3 {
            for vmid in [1, 2] {
                tlb.translate(cpu, vmid, 0x40, &t);
                tlb.translate(cpu, vmid, BLOCK_SIZE, &t);
                tlb.translate(cpu, vmid, BLOCK_SIZE + PAGE_SIZE, &t);
            }
            assert_eq!(tlb.entries(cpu), 6);
        }
        // Any address in the block drops the block entry, on every pCPU.
        tlb.invalidate_ipa(1, 0x1234);
        // A page address drops only that page's entry.
        tlb.invalidate_ipa(1, BLOCK_SIZE);
        for cpu in 0..3 {
            assert_eq!(tlb.entries(cpu), 4);
            assert!(matches!(tlb.translate(cpu, 1, BLOCK_SIZE + PAGE_SIZE, &t), Translation::Hit { .. }));
            assert!(matches!(tlb.translate(cpu, 2, 0, &t), Translation::Hit { .. }));
        }
        tlb.invalidate_vmid(2);
        assert_eq!(tlb.entries(0), 1);
        assert_eq!(tlb.stats().dropped, 3 * 2 + 3 * 3);
        t.unmap(BLOCK_SIZE + PAGE_SIZE);
        assert_eq!(tlb.stale_entries(1, &t).len(), 3);
    }

    #[test]
    fn capacity_evicts_round_robin() {
        let t = Table::default();
        let mut tlb = Tlb::new(1, 2);
        for k in 0..3 {
            t.map(k * PAGE_SIZE, 0x10_0000 + k * PAGE_SIZE, PAGE_SIZE);
            tlb.translate(0, 1, k * PAGE_SIZE, &t);
        }
        assert_eq!(tlb.entries(0), 2);
        assert_eq!(tlb.stats().evictions, 1);
        // Page 0 was the victim; pages 1 and 2 still hit.
        assert!(matches!(tlb.translate(0, 1, 0, &t), Translation::Filled { .. }));
        assert!(matches!(tlb.translate(0, 1, 2 * PAGE_SIZE, &t), Translation::Hit { .. }));
    }
}

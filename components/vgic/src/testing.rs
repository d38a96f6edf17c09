//! A model of one pCPU's virtual interface for host tests (feature
//! `testing`): the GICH list registers as the hypervisor sees them, and the
//! GICV acknowledge/EOI the guest performs on them. No allocation.
//!
//! The guest side follows GICv2 for HW = 0 list registers with EOImode 0:
//! - acknowledge (GICV_IAR) takes the highest-priority pending list register
//!   (lowest value, then lowest INTID) whose priority is above the running
//!   priority, and makes it active (pending+active if it was pending+active:
//!   the pending part stays);
//! - EOI (GICV_EOIR) finds the active list register with that INTID (and
//!   source, for an SGI) and clears its active bit; invalid (00) if it was
//!   only active. With HW = 1 it also deactivates the physical interrupt
//!   PhysicalID (EOImode 0: the EOI deactivates), which the model records
//!   ([`GichModel::deactivations`]);
//! - GICH_ELRSR bit n is set when LR n is invalid and has no EOI maintenance
//!   interrupt outstanding (EOI = 1, HW = 0);
//! - the maintenance interrupt is GICH_HCR.En and (underflow: UIE and at
//!   most one valid list register, or an EOI maintenance interrupt).

use core::cell::Cell;

use crate::{ListRegs, Lr, HCR_EN, HCR_UIE, LR_ACTIVE, LR_PENDING, MAX_LRS};

/// One pCPU's list registers and GICH_HCR.
#[derive(Clone, Debug)]
pub struct GichModel {
    lrs: [u32; MAX_LRS],
    n: usize,
    hcr: u32,
    writes: u64,
    reads: Cell<u64>,
    /// Physical deactivations by the guest through HW list registers, per
    /// physical INTID.
    phys: [u32; 1024],
}

impl GichModel {
    /// `n` list registers (1..=[`MAX_LRS`]), all zero.
    pub fn new(n: usize) -> Self {
        assert!((1..=MAX_LRS).contains(&n), "GICv2 has 1 to 64 list registers");
        GichModel { lrs: [0; MAX_LRS], n, hcr: 0, writes: 0, reads: Cell::new(0), phys: [0; 1024] }
    }

    /// GICH_LRn as last written or changed by the guest.
    pub fn lr(&self, i: usize) -> Lr {
        Lr::decode(self.lrs[i])
    }

    /// The raw GICH_LRn value.
    pub fn raw(&self, i: usize) -> u32 {
        self.lrs[i]
    }

    /// GICH_LRn writes so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// GICH_LRn reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    /// GICH_HCR as last written.
    pub fn hcr(&self) -> u32 {
        self.hcr
    }

    /// The valid list registers, by index.
    pub fn valid(&self) -> impl Iterator<Item = (usize, Lr)> + '_ {
        (0..self.n).map(|i| (i, self.lr(i))).filter(|(_, l)| l.is_valid())
    }

    /// The running priority: the best priority among active list registers.
    pub fn running_priority(&self) -> Option<u8> {
        self.valid().filter(|(_, l)| l.active).map(|(_, l)| l.priority).min()
    }

    /// What GICV_HPPIR would name: the list register the next acknowledge
    /// takes, if any.
    pub fn next(&self) -> Option<usize> {
        let run = self.running_priority().unwrap_or(u8::MAX);
        self.valid()
            .filter(|(_, l)| l.pending && !l.active && l.priority < run)
            .min_by_key(|(_, l)| (l.priority, l.intid))
            .map(|(i, _)| i)
    }

    /// The guest reads GICV_IAR: the interrupt it now handles (with its SGI
    /// source), or `None` (1023, spurious).
    pub fn ack(&mut self) -> Option<Lr> {
        let i = self.next()?;
        self.lrs[i] = (self.lrs[i] & !LR_PENDING) | LR_ACTIVE;
        Some(self.lr(i))
    }

    /// The guest writes GICV_EOIR for `intid` (and `source`, for an SGI).
    /// False when no list register holds it active (GICH_HCR.EOICount would
    /// count it). A HW list register also deactivates its physical
    /// interrupt: recorded, see [`GichModel::deactivations`].
    pub fn eoi(&mut self, intid: u16, source: u8) -> bool {
        let hit = self.valid().find(|(_, l)| l.active && l.intid == intid && (intid >= 16 || l.source == source));
        match hit {
            Some((i, l)) => {
                self.lrs[i] &= !LR_ACTIVE;
                if l.hw {
                    self.phys[l.pintid as usize] += 1;
                }
                true
            }
            None => false,
        }
    }

    /// How many times the guest deactivated physical interrupt `pintid`
    /// through a HW list register.
    pub fn deactivations(&self, pintid: u16) -> u32 {
        self.phys.get(pintid as usize).copied().unwrap_or(0)
    }

    /// Physical deactivations through HW list registers, all interrupts.
    pub fn total_deactivations(&self) -> u64 {
        self.phys.iter().map(|&n| n as u64).sum()
    }

    /// Acknowledge and EOI everything deliverable; returns how many.
    pub fn drain(&mut self) -> usize {
        let mut k = 0;
        while let Some(l) = self.ack() {
            self.eoi(l.intid, l.source);
            k += 1;
        }
        k
    }

    /// GICH_MISR.U.
    pub fn underflow(&self) -> bool {
        self.hcr & HCR_UIE != 0 && self.valid().count() <= 1
    }

    /// GICH_MISR.EOI: some GICH_EISR bit is set.
    pub fn eoi_maintenance(&self) -> bool {
        (0..self.n).any(|i| self.eoi_pending(i))
    }

    /// The maintenance interrupt is asserted.
    pub fn maintenance(&self) -> bool {
        self.hcr & HCR_EN != 0 && (self.underflow() || self.eoi_maintenance())
    }

    /// A VirtualID held by two valid list registers, if any.
    pub fn duplicate(&self) -> Option<u16> {
        let mut seen = [false; 1024];
        for (_, l) in self.valid() {
            if seen[l.intid as usize] {
                return Some(l.intid);
            }
            seen[l.intid as usize] = true;
        }
        None
    }

    fn eoi_pending(&self, i: usize) -> bool {
        let l = self.lr(i);
        !l.is_valid() && l.eoi && !l.hw
    }
}

impl ListRegs for GichModel {
    fn count(&self) -> usize {
        self.n
    }

    fn read(&self, i: usize) -> u32 {
        assert!(i < self.n, "list register {i} of {}", self.n);
        self.reads.set(self.reads.get() + 1);
        self.lrs[i]
    }

    fn write(&mut self, i: usize, value: u32) {
        assert!(i < self.n, "list register {i} of {}", self.n);
        self.writes += 1;
        self.lrs[i] = value;
    }

    fn set_hcr(&mut self, value: u32) {
        self.hcr = value;
    }

    fn elrsr(&self) -> u64 {
        let mut e = 0;
        for i in 0..self.n {
            if !self.lr(i).is_valid() && !self.eoi_pending(i) {
                e |= 1 << i;
            }
        }
        e
    }
}

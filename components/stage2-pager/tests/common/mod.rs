//! Shared set-up for the pager's integration tests.
#![allow(dead_code)]

use capabilities::{CacheCap, PodCap, SchedCap, VgicCap, VmCaps};
use hwops::CleanSource;
use stage2_pager::testing::{self, BbmChecker, HostTable, Log, RecordingHw, RecordingTable};
use stage2_pager::{LeafSize, MemAttrs, Pager, PagerError};

pub type TestPager = Pager<RecordingTable<HostTable>>;

/// A pager over a heap table, with a shared log, fake hardware and a BBM
/// checker. Touch tracking starts at `track_base`.
pub struct Vm {
    pub pager: Option<TestPager>,
    pub log: Log,
    pub hw: RecordingHw,
    pub bbm: BbmChecker,
    rest: Option<(PodCap, CacheCap, (SchedCap, VgicCap))>,
}

impl Vm {
    pub fn new(track_base: u64) -> Self {
        let VmCaps {
            stage2,
            pod,
            cache,
            sched,
            vgic,
        } = testing::grant();
        let sched = (sched, vgic);
        let vmid = stage2.vm().vmid();
        let log = testing::new_log();
        let table = RecordingTable::new(testing::host_table(), log.clone());
        let pager = Pager::new(stage2, table, track_base).expect("pager");
        Vm {
            pager: Some(pager),
            hw: RecordingHw::new(log.clone()),
            log,
            bbm: BbmChecker::new(vmid),
            rest: Some((pod, cache, sched)),
        }
    }

    pub fn p(&mut self) -> &mut TestPager {
        self.pager.as_mut().unwrap()
    }

    /// Map, then check break-before-make.
    pub fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        size: LeafSize,
        attrs: MemAttrs,
    ) -> Result<(), PagerError> {
        let r = self
            .pager
            .as_mut()
            .unwrap()
            .map(ipa, pa, size, attrs, &mut self.hw);
        self.settled();
        r
    }

    /// Unmap, then check break-before-make.
    pub fn unmap(&mut self, ipa: u64, size: LeafSize) -> Result<(), PagerError> {
        let r = self.pager.as_mut().unwrap().unmap(ipa, size, &mut self.hw);
        self.settled();
        r
    }

    /// Split, then check break-before-make.
    pub fn split(&mut self, ipa: u64) -> Result<(), PagerError> {
        let r = self.pager.as_mut().unwrap().split(ipa, &mut self.hw);
        self.settled();
        r
    }

    /// Clear touched, then check break-before-make.
    pub fn clear_touched(&mut self, ipa: u64, len: u64) {
        self.pager
            .as_mut()
            .unwrap()
            .clear_touched(ipa, len, &mut self.hw);
        self.settled();
    }

    /// Check break-before-make over everything logged so far.
    pub fn settled(&mut self) {
        let log = self.log.clone();
        if let Err(e) = self.bbm.settled(&log) {
            panic!("{e}");
        }
    }

    pub fn events(&self) -> Vec<testing::Event> {
        self.log.borrow().clone()
    }

    /// Events logged since position `mark` of the log.
    pub fn since(&self, mark: usize) -> Vec<testing::Event> {
        self.log.borrow()[mark..].to_vec()
    }

    pub fn mark(&self) -> usize {
        self.log.borrow().len()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let (Some(p), Some((pod, cache, sched))) = (self.pager.take(), self.rest.take()) {
            let (stage2, _) = p.into_parts();
            testing::revoke(VmCaps {
                stage2,
                pod,
                cache,
                sched: sched.0,
                vgic: sched.1,
            });
        }
    }
}


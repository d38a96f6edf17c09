//! Shared set-up for the pod's integration tests: one VM with a pager over a
//! heap table, a pod, recording fakes and a break-before-make checker.
#![allow(dead_code)]

use capabilities::{CacheCap, SchedCap, VgicCap, VmCaps};
use hwops::{BLOCK_SIZE, PAGE_SIZE};
use pod::{Mode, Outcome, Pod, PodConfig, PodError};
use stage2_pager::testing::{self, BbmChecker, Event, HostTable, Log, RecordingHw, RecordingTable};
use stage2_pager::Pager;

pub const MB2: u64 = BLOCK_SIZE;
pub const K4: u64 = PAGE_SIZE;
pub const RAM: u64 = 0x4000_0000;

pub type TestPager = Pager<RecordingTable<HostTable>>;

pub struct Vm {
    pub pager: Option<TestPager>,
    pub pod: Option<Pod>,
    pub hw: RecordingHw,
    pub log: Log,
    pub bbm: BbmChecker,
    rest: Option<(CacheCap, (SchedCap, VgicCap))>,
}

impl Vm {
    pub fn new(cfg: PodConfig) -> Self {
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
        // Touch tracking must cover RAM: start it at RAM's 2 MiB chunk.
        let pager = Pager::new(stage2, table, cfg.ram_base & !(MB2 - 1)).expect("pager");
        let pod = Pod::new(pod, cfg).expect("pod config");
        Vm {
            pager: Some(pager),
            pod: Some(pod),
            hw: RecordingHw::new(log.clone()),
            log,
            bbm: BbmChecker::new(vmid),
            rest: Some((cache, sched)),
        }
    }

    pub fn on_demand(ram_size: u64) -> Self {
        Self::new(PodConfig::new(RAM, ram_size, Mode::OnDemand))
    }

    pub fn pod(&mut self) -> &mut Pod {
        self.pod.as_mut().unwrap()
    }

    pub fn pager(&mut self) -> &mut TestPager {
        self.pager.as_mut().unwrap()
    }

    /// Check the invariants and break-before-make, panicking with the cause.
    pub fn check(&mut self) {
        let (pod, pager) = (self.pod.as_ref().unwrap(), self.pager.as_ref().unwrap());
        if let Err(e) = pod.check_invariants(pager) {
            panic!("invariant: {e:?}");
        }
        let log = self.log.clone();
        if let Err(e) = self.bbm.settled(&log) {
            panic!("{e}");
        }
    }

    pub fn fault(&mut self, ipa: u64) -> Result<Outcome, PodError> {
        let r = self
            .pod
            .as_mut()
            .unwrap()
            .fault(self.pager.as_mut().unwrap(), &mut self.hw, ipa);
        self.check();
        r
    }

    pub fn fill_step(&mut self, chunk: u64) -> Result<Outcome, PodError> {
        let r = self
            .pod
            .as_mut()
            .unwrap()
            .fill_step(self.pager.as_mut().unwrap(), &mut self.hw, chunk);
        self.check();
        r
    }

    /// Fault until the answer is not `Retry`; also returns the retries.
    pub fn fault_through(&mut self, ipa: u64) -> (Result<Outcome, PodError>, u32) {
        let mut retries = 0;
        loop {
            match self.fault(ipa) {
                Ok(Outcome::Retry) => retries += 1,
                r => return (r, retries),
            }
            assert!(retries < 100_000, "retry without end");
        }
    }

    pub fn populate(&mut self, ipa: u64, len: u64) -> Result<pod::Filled, PodError> {
        let r = self.pod.as_mut().unwrap().populate(
            self.pager.as_mut().unwrap(),
            &mut self.hw,
            ipa,
            len,
        );
        self.check();
        r
    }

    pub fn start(&mut self) -> Result<pod::Filled, PodError> {
        let r = self
            .pod
            .as_mut()
            .unwrap()
            .start(self.pager.as_mut().unwrap(), &mut self.hw);
        self.check();
        r
    }

    pub fn reclaim(&mut self, budget: u64) -> Result<u64, PodError> {
        let r =
            self.pod
                .as_mut()
                .unwrap()
                .reclaim(self.pager.as_mut().unwrap(), &mut self.hw, budget);
        self.check();
        r
    }

    /// The guest stores non-zero data at `ipa` (which must be mapped).
    pub fn guest_write(&mut self, ipa: u64) {
        let (pa, _) = self
            .pager()
            .translate(ipa)
            .expect("guest writes mapped memory");
        self.hw.write(pa);
    }

    pub fn mark(&self) -> usize {
        self.log.borrow().len()
    }

    pub fn since(&self, mark: usize) -> Vec<Event> {
        self.log.borrow()[mark..].to_vec()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let (Some(p), Some(pod), Some((cache, sched))) =
            (self.pager.take(), self.pod.take(), self.rest.take())
        {
            let (stage2, _) = p.into_parts();
            testing::revoke(VmCaps {
                stage2,
                pod: pod.into_cap(),
                cache,
                sched: sched.0,
                vgic: sched.1,
            });
        }
    }
}

/// Every page of the frame `[pa, pa+len)` was zeroed and then cleaned,
/// piece by piece, within `events` (a block filled in steps); returns the
/// most bytes zeroed or cleaned by one operation.
pub fn zeroed_and_cleaned_in_pieces(events: &[Event], pa: u64, len: u64) -> u64 {
    let mut largest = 0;
    for page in (pa..pa + len).step_by(PAGE_SIZE as usize) {
        let covers = |p: u64, l: u64| p <= page && page + PAGE_SIZE <= p + l;
        let z = events.iter().rposition(|e| matches!(*e, Event::Zero { pa: p, len: l } if covers(p, l)));
        let c = events.iter().rposition(|e| matches!(*e, Event::Clean { pa: p, len: l } if covers(p, l)));
        match (z, c) {
            (Some(z), Some(c)) if z < c => {
                for i in [z, c] {
                    if let Event::Zero { len: l, .. } | Event::Clean { len: l, .. } = events[i] {
                        largest = largest.max(l);
                    }
                }
            }
            _ => panic!("page {page:#x} of the filled frame {pa:#x} was not zeroed then cleaned"),
        }
    }
    largest
}

/// Every table write of Normal memory in `events` was preceded, within
/// `events`, by a zero and then a clean of exactly its frame; returns how
/// many writes were checked. Writes of frames listed in `restored` (mapped
/// back unchanged by a sweep) are exempt.
pub fn zeroed_and_cleaned_before_map(events: &[Event], restored: &[u64]) -> usize {
    let mut checked = 0;
    for (i, e) in events.iter().enumerate() {
        if let Event::Write {
            pa,
            len,
            attrs: stage2_pager::MemAttrs::Normal,
            ..
        } = *e
        {
            if restored.contains(&pa) {
                continue;
            }
            let z = events[..i]
                .iter()
                .rposition(|e| *e == Event::Zero { pa, len });
            let c = events[..i]
                .iter()
                .rposition(|e| *e == Event::Clean { pa, len });
            match (z, c) {
                (Some(z), Some(c)) if z < c => checked += 1,
                _ => panic!(
                    "frame {pa:#x}+{len:#x} mapped without zero then clean first: {:x?}",
                    &events[..=i]
                ),
            }
        }
    }
    checked
}


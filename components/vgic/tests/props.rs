//! Random sequences of guest register accesses, injections, level changes,
//! guest entries and exits, acknowledges and EOIs, on up to 8 vCPUs with 1 to
//! 5 list registers each.
//!
//! `random_sequences_keep_invariants`: nothing panics; after every step
//! `Vgic::check` holds; no list register set holds an interrupt twice and no
//! SPI is in two vCPUs' list registers (so an active one is never queued
//! again elsewhere); an access by one vCPU never changes another vCPU's
//! banked registers (SGIR only those of its targets); a running vCPU that has
//! nothing to take and no maintenance interrupt has nothing waiting either
//! (every kick needed was given).
//!
//! `no_edge_is_lost`: every injected edge and every SGI (per target and
//! source) is acknowledged by the guest after it was raised, once the guest
//! drains with only maintenance interrupts and WFI exits to help it.
//!
//! PROPTEST_CASES sets the number of cases (default 128).

mod common;
use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed};

fn config() -> PtConfig {
    let mut c = PtConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 128;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x5eed_2026);
    }
    // Failures are kept in proptest-regressions/ (committed), so a found
    // case is replayed first on every later run.
    c
}

#[derive(Clone, Debug)]
enum Op {
    Mmio { vcpu: u8, off: u64, width: Width, write: Option<u32> },
    Inject { vcpu: u8, intid: u32 },
    Level { intid: u32, level: bool },
    PpiLevel { vcpu: u8, intid: u32, level: bool },
    Enter(u8),
    Exit(u8),
    Ack(u8),
    Eoi(u8),
    Maintenance(u8),
}

const BASES: [u64; 15] = [
    CTLR, TYPER, IGROUPR, ISENABLER, ICENABLER, ISPENDR, ICPENDR, ISACTIVER, ICACTIVER, IPRIORITYR, ITARGETSR, ICFGR,
    SGIR, CPENDSGIR, SPENDSGIR,
];

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (prop::sample::select(&BASES[..]), 0u64..0x48).prop_map(|(b, k)| b + k),
        2 => 0u64..0x1010,
        1 => any::<u64>(),
    ]
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![8 => Just(Width::Word), 4 => Just(Width::Byte), 1 => Just(Width::Half), 1 => Just(Width::Double)]
}

fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (0u32..32).prop_map(|b| 1 << b),
        2 => any::<u32>(),
        1 => Just(u32::MAX),
        2 => (0u32..4, any::<u8>(), 0u32..16).prop_map(|(f, l, i)| sgir(f, l, i)),
        1 => (0u8..32).prop_map(|p| (p as u32 * 8) * 0x0101_0101),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let vcpu = || prop_oneof![10 => 0u8..8, 1 => 8u8..10];
    prop_oneof![
        8 => (vcpu(), offset(), width(), prop::option::weighted(0.7, value()))
            .prop_map(|(vcpu, off, width, write)| Op::Mmio { vcpu, off, width, write }),
        3 => (vcpu(), prop_oneof![16u32..32, 32u32..100, 0u32..300]).prop_map(|(vcpu, intid)| Op::Inject { vcpu, intid }),
        1 => (0u32..120, any::<bool>()).prop_map(|(intid, level)| Op::Level { intid, level }),
        1 => (vcpu(), 14u32..34, any::<bool>()).prop_map(|(vcpu, intid, level)| Op::PpiLevel { vcpu, intid, level }),
        3 => vcpu().prop_map(Op::Enter),
        2 => vcpu().prop_map(Op::Exit),
        3 => vcpu().prop_map(Op::Ack),
        2 => vcpu().prop_map(Op::Eoi),
        1 => vcpu().prop_map(Op::Maintenance),
    ]
}

/// `vcpu`'s banked registers (and the SGI sources), read without side
/// effects on the state.
fn banked(g: &mut Vgic, vcpu: u8) -> Vec<u32> {
    let mut out = vec![];
    let mut read = |off| g.mmio(v(vcpu), off, Access::Read { width: Width::Word }).unwrap().value;
    for base in [ISENABLER, ISPENDR, ISACTIVER] {
        out.push(read(base));
    }
    for n in 0..8 {
        out.push(read(IPRIORITYR + 4 * n));
        out.push(read(ITARGETSR + 4 * n));
    }
    out.push(read(ICFGR));
    out.push(read(ICFGR + 4));
    for n in 0..4 {
        out.push(read(SPENDSGIR + 4 * n));
    }
    out
}

/// The vCPUs an SGIR write by `from` targets (0 when it is not one).
fn sgir_targets(n: u8, from: u8, off: u64, width: Width, write: Option<u32>) -> u8 {
    let (Some(x), SGIR, Width::Word) = (write, off, width) else { return 0 };
    let all = ((1u16 << n) - 1) as u8;
    match x >> 24 & 3 {
        0 => (x >> 16) as u8 & all,
        1 => all & !(1 << from),
        2 => 1 << from,
        _ => 0,
    }
}

struct World {
    mc: Machine,
    n: u8,
    acked: Vec<Vec<Lr>>,
}

impl World {
    fn new(n: u8, spis: u16, lrs: usize) -> Self {
        World { mc: Machine::new(n, spis, lrs), n, acked: vec![vec![]; n as usize] }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let n = self.n;
        let lines = self.mc.g.config().lines() as u32;
        match *op {
            Op::Mmio { vcpu, off, width, write } => {
                let access = match write {
                    Some(x) => Access::Write { width, value: x as u64 },
                    None => Access::Read { width },
                };
                if vcpu >= n {
                    prop_assert_eq!(self.mc.g.mmio(v(vcpu), off, access), Err(VgicError::NoSuchVcpu(v(vcpu))));
                    return Ok(());
                }
                // The kernel exits the vCPU for the trap; others not running
                // must not change, except an SGIR's targets.
                let k = self.mc.exit(vcpu);
                self.mc.kick(k);
                let skip = sgir_targets(n, vcpu, off, width, write) | 1 << vcpu;
                let watch: Vec<u8> = (0..n).filter(|&w| !self.mc.running[w as usize] && skip & (1 << w) == 0).collect();
                let before: Vec<_> = watch.iter().map(|&w| banked(&mut self.mc.g, w)).collect();
                let r = self.mc.mmio(vcpu, off, access);
                if r.ignored {
                    prop_assert_eq!(r.value, 0);
                }
                let after: Vec<_> = watch.iter().map(|&w| banked(&mut self.mc.g, w)).collect();
                prop_assert_eq!(before, after, "vCPU {} changed another vCPU's banked state", vcpu);
            }
            Op::Inject { vcpu, intid } => {
                let watch: Vec<u8> = (0..n).filter(|&w| w != vcpu && !self.mc.running[w as usize]).collect();
                let before: Vec<_> = watch.iter().map(|&w| banked(&mut self.mc.g, w)).collect();
                let r = self.mc.g.inject(v(vcpu), intid);
                if vcpu >= n {
                    prop_assert_eq!(r, Err(VgicError::NoSuchVcpu(v(vcpu))));
                } else if intid >= lines {
                    prop_assert_eq!(r, Err(VgicError::NoSuchInterrupt(intid)));
                } else if intid < 16 {
                    prop_assert_eq!(r, Err(VgicError::WrongKind(intid)));
                } else if let Some(t) = r.unwrap() {
                    self.mc.kick(VcpuSet::from_bits(1 << t.0));
                }
                let after: Vec<_> = watch.iter().map(|&w| banked(&mut self.mc.g, w)).collect();
                if intid < 32 {
                    prop_assert_eq!(before, after, "a PPI of vCPU {} reached another vCPU", vcpu);
                }
            }
            Op::Level { intid, level } => match self.mc.g.set_level(intid, level) {
                Ok(Some(t)) => self.mc.kick(VcpuSet::from_bits(1 << t.0)),
                Ok(None) => {}
                Err(e) => prop_assert!(intid < 32 || intid >= lines, "{:?}", e),
            },
            Op::PpiLevel { vcpu, intid, level } => match self.mc.g.set_ppi_level(v(vcpu), intid, level) {
                Ok(Some(t)) => self.mc.kick(VcpuSet::from_bits(1 << t.0)),
                Ok(None) => {}
                Err(e) => prop_assert!(vcpu >= n || !(16..32).contains(&intid), "{:?}", e),
            },
            Op::Enter(c) if c < n => self.mc.enter(c),
            Op::Exit(c) if c < n => {
                let k = self.mc.exit(c);
                self.mc.kick(k);
            }
            Op::Ack(c) if c < n && self.mc.running[c as usize] => {
                if let Some(l) = self.mc.cpus[c as usize].ack() {
                    self.acked[c as usize].push(l);
                }
            }
            Op::Eoi(c) if c < n && self.mc.running[c as usize] => {
                if let Some(l) = self.acked[c as usize].pop() {
                    // It may be gone: cleared by GICD_ICACTIVER.
                    let _ = self.mc.cpus[c as usize].eoi(l.intid, l.source);
                }
            }
            Op::Maintenance(c) if c < n && self.mc.running[c as usize] && self.mc.cpus[c as usize].maintenance() => {
                let k = self.mc.exit(c);
                self.mc.kick(k);
                self.mc.enter(c);
            }
            _ => {}
        }
        self.check()
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        if let Err(e) = self.mc.g.check() {
            return Err(TestCaseError::fail(e.to_string()));
        }
        let mut spis = BTreeSet::new();
        for c in 0..self.n as usize {
            if !self.mc.running[c] {
                continue;
            }
            let m = &self.mc.cpus[c];
            prop_assert_eq!(m.duplicate(), None, "vCPU {}", c);
            for (_, l) in m.valid() {
                prop_assert!(!l.hw && !l.grp1);
                if l.intid >= 32 {
                    prop_assert!(spis.insert(l.intid), "SPI {} in two vCPUs' list registers", l.intid);
                }
            }
            let idle = m.next().is_none() && m.running_priority().is_none() && !m.maintenance();
            if idle {
                prop_assert!(!self.mc.g.pending_for(v(c as u8)), "vCPU {} idles with an interrupt waiting", c);
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_sequences_keep_invariants(
        n in 1u8..=8,
        spis in prop::sample::select(&[0u16, 32, 64][..]),
        lrs in 1usize..=5,
        ops in prop::collection::vec(op(), 1..250),
    ) {
        let mut w = World::new(n, spis, lrs);
        for op in &ops {
            w.apply(op)?;
        }
    }
}

#[derive(Clone, Debug)]
enum Edge {
    Ppi { vcpu: u8, intid: u32 },
    Spi { intid: u32 },
    Sgi { from: u8, filter: u32, list: u8, id: u32 },
    Retarget { by: u8, intid: u32, targets: u8 },
    Priority { by: u8, intid: u32, prio: u8 },
    Enter(u8),
    Exit(u8),
    Ack(u8),
    Eoi(u8),
    Maintenance(u8),
}

fn edge_op(n: u8, spis: u32) -> impl Strategy<Value = Edge> {
    let vcpu = move || 0..n;
    prop_oneof![
        3 => (vcpu(), 16u32..32).prop_map(|(vcpu, intid)| Edge::Ppi { vcpu, intid }),
        3 => (32..32 + spis).prop_map(|intid| Edge::Spi { intid }),
        3 => (vcpu(), 0u32..3, any::<u8>(), 0u32..16).prop_map(|(from, filter, list, id)| Edge::Sgi { from, filter, list, id }),
        1 => (vcpu(), 32..32 + spis, 1u8..=255)
            .prop_map(move |(by, intid, t)| Edge::Retarget { by, intid, targets: some_of(n, t) }),
        1 => (vcpu(), 0u32..32 + spis, any::<u8>()).prop_map(|(by, intid, prio)| Edge::Priority { by, intid, prio }),
        3 => vcpu().prop_map(Edge::Enter),
        2 => vcpu().prop_map(Edge::Exit),
        4 => vcpu().prop_map(Edge::Ack),
        3 => vcpu().prop_map(Edge::Eoi),
        2 => vcpu().prop_map(Edge::Maintenance),
    ]
}

/// A target mask naming at least one of `n` vCPUs (an SPI with none is
/// never delivered, rightly).
fn some_of(n: u8, t: u8) -> u8 {
    let all = ((1u16 << n) - 1) as u8;
    if t & all == 0 {
        1 << (t % n)
    } else {
        t & all
    }
}

/// What one acknowledge covers: a PPI of a vCPU, an SPI, or an SGI to a
/// target from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Ppi(u8, u16),
    Spi(u16),
    Sgi(u8, u16, u8),
}

fn key(vcpu: u8, l: &Lr) -> Key {
    match l.intid {
        0..16 => Key::Sgi(vcpu, l.intid, l.source),
        16..32 => Key::Ppi(vcpu, l.intid),
        _ => Key::Spi(l.intid),
    }
}

struct Edges {
    w: World,
    owed: BTreeSet<Key>,
}

impl Edges {
    fn ack(&mut self, c: u8) -> Option<Lr> {
        let l = self.w.mc.cpus[c as usize].ack()?;
        self.owed.remove(&key(c, &l));
        Some(l)
    }

    fn apply(&mut self, op: &Edge) -> Result<(), TestCaseError> {
        let mc = &mut self.w.mc;
        match *op {
            Edge::Ppi { vcpu, intid } => {
                if let Some(t) = mc.g.inject(v(vcpu), intid).unwrap() {
                    mc.kick(VcpuSet::from_bits(1 << t.0));
                }
                self.owed.insert(Key::Ppi(vcpu, intid as u16));
            }
            Edge::Spi { intid } => {
                if let Some(t) = mc.g.inject(v(0), intid).unwrap() {
                    mc.kick(VcpuSet::from_bits(1 << t.0));
                }
                self.owed.insert(Key::Spi(intid as u16));
            }
            Edge::Sgi { from, filter, list, id } => {
                let x = sgir(filter, list, id);
                let targets = sgir_targets(self.w.n, from, SGIR, Width::Word, Some(x));
                let r = mc.mmio(from, SGIR, Access::Write { width: Width::Word, value: x as u64 });
                prop_assert!(!r.ignored);
                for t in 0..self.w.n {
                    if targets & (1 << t) != 0 {
                        self.owed.insert(Key::Sgi(t, id as u16, from));
                    }
                }
            }
            Edge::Retarget { by, intid, targets } => {
                let _ =
                    mc.mmio(by, ITARGETSR + intid as u64, Access::Write { width: Width::Byte, value: targets as u64 });
            }
            Edge::Priority { by, intid, prio } => {
                let _ =
                    mc.mmio(by, IPRIORITYR + intid as u64, Access::Write { width: Width::Byte, value: prio as u64 });
            }
            Edge::Enter(c) => mc.enter(c),
            Edge::Exit(c) => {
                let k = mc.exit(c);
                mc.kick(k);
            }
            Edge::Ack(c) if mc.running[c as usize] => {
                if let Some(l) = self.ack(c) {
                    self.w.acked[c as usize].push(l);
                }
            }
            Edge::Eoi(c) if mc.running[c as usize] => {
                if let Some(l) = self.w.acked[c as usize].pop() {
                    prop_assert!(mc.cpus[c as usize].eoi(l.intid, l.source), "EOI of {:?} found no list register", l);
                }
            }
            Edge::Maintenance(c) if mc.running[c as usize] && mc.cpus[c as usize].maintenance() => {
                let k = mc.exit(c);
                mc.kick(k);
                mc.enter(c);
            }
            _ => {}
        }
        self.w.check()?;
        self.check_active()
    }

    /// An SPI a guest acknowledged and has not EOIed is active on that vCPU:
    /// no other vCPU's list registers may hold it.
    fn check_active(&self) -> Result<(), TestCaseError> {
        for (c, stack) in self.w.acked.iter().enumerate() {
            for l in stack.iter().filter(|l| l.intid >= 32) {
                for d in (0..self.w.n as usize).filter(|&d| d != c && self.w.mc.running[d]) {
                    let there = self.w.mc.cpus[d].valid().any(|(_, x)| x.intid == l.intid);
                    prop_assert!(!there, "SPI {} active on vCPU {} is queued on vCPU {}", l.intid, c, d);
                }
            }
        }
        Ok(())
    }

    /// Every vCPU finishes its handlers, then takes what it can, exiting
    /// only for maintenance interrupts and for WFI when it has nothing left.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for c in 0..self.w.n {
            self.w.mc.enter(c);
            while let Some(l) = self.w.acked[c as usize].pop() {
                prop_assert!(self.w.mc.cpus[c as usize].eoi(l.intid, l.source));
            }
        }
        for _round in 0..64 {
            let mut busy = false;
            for c in 0..self.w.n {
                self.w.mc.enter(c);
                for _ in 0..10_000 {
                    if let Some(l) = self.ack(c) {
                        prop_assert!(self.w.mc.cpus[c as usize].eoi(l.intid, l.source));
                        busy = true;
                    } else if self.w.mc.cpus[c as usize].maintenance() {
                        let k = self.w.mc.exit(c);
                        self.w.mc.kick(k);
                        self.w.mc.enter(c);
                    } else {
                        break;
                    }
                }
                self.w.check()?;
                // WFI: the kernel blocks it unless something waits.
                let k = self.w.mc.exit(c);
                self.w.mc.kick(k);
                busy |= self.w.mc.g.pending_for(v(c));
            }
            if !busy {
                prop_assert!(self.owed.is_empty(), "never acknowledged: {:?}", self.owed);
                return Ok(());
            }
        }
        prop_assert!(false, "the drain did not settle");
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_edge_is_lost(
        (n, spis, ops) in (1u8..=4, prop::sample::select(&[32u32, 64][..]))
            .prop_flat_map(|(n, spis)| (Just(n), Just(spis), prop::collection::vec(edge_op(n, spis), 1..300))),
        lrs in 1usize..=4,
        prios in prop::collection::vec(any::<u8>(), 96),
        targets in prop::collection::vec(1u8..=255, 64),
    ) {
        let mut e = Edges { w: World::new(n, spis as u16, lrs), owed: BTreeSet::new() };
        let g = &mut e.w.mc.g;
        wr(g, 0, CTLR, 1);
        for c in 0..n {
            wr(g, c, ISENABLER, 0xffff_ffff);
            wr(g, c, ICFGR + 4, 0xaaaa_aaaa);
            for i in 0..32 {
                wrb(g, c, IPRIORITYR + i, prios[i as usize]);
            }
        }
        for i in 32..32 + spis {
            wrb(g, 0, IPRIORITYR + i as u64, prios[i as usize]);
            wrb(g, 0, ITARGETSR + i as u64, some_of(n, targets[i as usize - 32]));
            set_edge(g, 0, i, true);
            set_bit(g, 0, ISENABLER, i);
        }
        for op in &ops {
            e.apply(op)?;
        }
        e.drain()?;
    }
}

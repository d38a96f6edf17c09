//! Random sequences of ticks, blocks, wakes, pins and set/way reports under
//! every policy and hwdom_pin mode. After every call the invariants hold;
//! pins are honoured; the hardware domain stops migrating once pinned; under
//! `rr` and `pinned` a drain of ticks runs every runnable vCPU; under `null`
//! nothing is time-sliced and a vCPU changes pCPU only after CPU_OFF. Under
//! `hwdom_pin=on` the hardware domain (VM 0, at most one vCPU per pCPU)
//! reserves pCPUs `0..vcpus`: after every call a reserved pCPU `k` runs
//! nothing or hardware-domain vCPU `k`, the hardware domain has 0
//! migrations, other VMs are refused when no pCPU is left for them, and
//! explicit pins of their vCPUs onto reserved pCPUs are refused.
//!
//! `SCHED_CASES` sets the number of cases (default 300).

use capabilities::testing::{return_sched_cap, sched_cap};
use vcpu_sched::{AnySched, BlockKind, Decision, HwdomPin, SchedError, SchedPolicy, Scheduler, State, VcpuRef};

/// `add_vm` with a fresh capability, given back when refused.
fn add<S: Scheduler>(s: &mut S, vm: u8, n: u8, hwdom: bool) -> Result<(), SchedError> {
    s.add_vm(vm, sched_cap(), n, hwdom).map_err(|r| {
        return_sched_cap(r.cap);
        r.error
    })
}

/// SplitMix64, so a failure names a seed that replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

#[derive(Clone, Copy, Default)]
struct Track {
    /// Pinned while running elsewhere: may finish that run there.
    pending_move: bool,
    /// Migrations when its hwdom pin was made.
    migrations_at_hwdom_pin: Option<u32>,
    /// Went off (CPU_OFF) since it last ran.
    off_since_run: bool,
    /// Was pinned explicitly since it last ran.
    pinned_since_run: bool,
    /// Where it last started.
    last: Option<usize>,
}

struct World {
    s: AnySched,
    policy: SchedPolicy,
    hwdom_pin: HwdomPin,
    npcpus: usize,
    vcpus: Vec<VcpuRef>,
    hwdom: Option<u8>,
    track: Vec<Track>,
    states: Vec<State>,
    seed: u64,
    /// Null: which vCPU each pCPU belongs to, as seen from outside.
    owner: Vec<Option<VcpuRef>>,
    /// pCPUs reserved for the hardware domain (hwdom_pin=on), bit n for n.
    reserved: u16,
}

impl World {
    /// Null frees the pCPU of a vCPU that goes off, or is pinned elsewhere.
    fn release(&mut self, v: VcpuRef, keep: Option<usize>) {
        for (p, o) in self.owner.iter_mut().enumerate() {
            if *o == Some(v) && keep != Some(p) {
                *o = None;
            }
        }
    }

    fn idx(&self, v: VcpuRef) -> usize {
        self.vcpus.iter().position(|&x| x == v).unwrap()
    }

    /// Check invariants after a call, and learn what changed.
    fn after(&mut self, what: &str) {
        let seed = self.seed;
        if let Err(e) = self.s.check() {
            panic!("seed {seed:#x}: after {what}: {e}");
        }
        assert_eq!(self.s.reserved_pcpus(), self.reserved, "seed {seed:#x}: after {what}: reserved pCPUs");
        for p in 0..self.npcpus {
            if self.reserved & (1 << p) != 0 {
                if let Some(cur) = self.s.current(p) {
                    assert_eq!(
                        (Some(cur.vm), cur.vcpu as usize),
                        (self.hwdom, p),
                        "seed {seed:#x}: after {what}: reserved pCPU {p} runs {cur:?}"
                    );
                }
            }
        }
        if self.hwdom_pin == HwdomPin::On {
            if let Some(hw) = self.hwdom {
                for &v in self.vcpus.iter().filter(|v| v.vm == hw) {
                    assert_eq!(self.s.migrations_of(v), 0, "seed {seed:#x}: after {what}: hwdom {v:?} migrated");
                    assert_eq!(self.s.pin_of(v), Some(v.vcpu as usize), "seed {seed:#x}: hwdom {v:?} pin");
                }
            }
        }
        for i in 0..self.vcpus.len() {
            let v = self.vcpus[i];
            let now = self.s.state(v).unwrap();
            let before = self.states[i];
            let t = &mut self.track[i];
            let pin = self.s.pin_of(v);
            if let State::Running(p) = now {
                let started = before != now;
                if started {
                    for o in self.owner.iter_mut() {
                        if *o == Some(v) {
                            *o = None;
                        }
                    }
                    self.owner[p] = Some(v);
                    // A start elsewhere than last time: rr may do it any
                    // time; pinned only after an explicit pin; null only
                    // after CPU_OFF or an explicit pin.
                    if t.last.is_some_and(|q| q != p) {
                        let allowed = match self.policy {
                            SchedPolicy::Rr => true,
                            SchedPolicy::Pinned => t.pinned_since_run,
                            SchedPolicy::Null => t.pinned_since_run || t.off_since_run,
                        };
                        assert!(allowed, "seed {seed:#x}: after {what}: {} moved {v:?} without cause", self.policy);
                    }
                    t.last = Some(p);
                    t.pinned_since_run = false;
                    t.off_since_run = false;
                    t.pending_move = false;
                }
                if let Some(q) = pin {
                    assert!(
                        q == p || t.pending_move,
                        "seed {seed:#x}: after {what}: {v:?} pinned to {q} runs on {p}"
                    );
                }
            } else {
                t.pending_move = false;
            }
            // The hardware domain's pins: no migration after them.
            if Some(v.vm) == self.hwdom && self.hwdom_pin != HwdomPin::Off && pin.is_some() {
                let m = self.s.migrations_of(v);
                let at = *t.migrations_at_hwdom_pin.get_or_insert(m);
                assert_eq!(m, at, "seed {seed:#x}: after {what}: hwdom {v:?} migrated after its pin");
                if self.hwdom_pin == HwdomPin::On {
                    assert_eq!(m, 0, "seed {seed:#x}: hwdom_pin=on but {v:?} migrated");
                }
            }
            self.states[i] = now;
        }
    }
}

fn case(seed: u64, policy: SchedPolicy, hwdom_pin: HwdomPin) {
    let mut rng = Rng(seed);
    let npcpus = 1 + rng.below(4) as usize;
    let mut s = AnySched::new(policy, npcpus, hwdom_pin).unwrap();
    let nvms = 1 + rng.below(3) as u8;
    let hwdom = (rng.below(2) == 0).then_some(0u8);
    let mut vcpus = Vec::new();
    let mut reserved = 0u16;
    for vm in 0..nvms {
        let is_hw = hwdom == Some(vm);
        let n = if is_hw && hwdom_pin == HwdomPin::On {
            // Sometimes one too many: refused, then added within bounds.
            let n = 1 + rng.below(npcpus as u64 + 1) as u8;
            if n as usize > npcpus {
                assert_eq!(
                    add(&mut s, vm, n, true),
                    Err(SchedError::HwdomTooBig { vm, vcpus: n, npcpus }),
                    "seed {seed:#x}"
                );
            }
            n.min(npcpus as u8)
        } else {
            1 + rng.below(4) as u8
        };
        if !is_hw && reserved != 0 && reserved.count_ones() as usize == npcpus {
            assert_eq!(add(&mut s, vm, n, false), Err(SchedError::NoFreePcpu { vm, reserved }), "seed {seed:#x}");
            continue;
        }
        add(&mut s, vm, n, is_hw).unwrap();
        if is_hw && hwdom_pin == HwdomPin::On {
            reserved = (1 << n) - 1;
        }
        vcpus.extend((0..n).map(|k| VcpuRef::new(vm, k)));
    }
    let states = vcpus.iter().map(|&v| s.state(v).unwrap()).collect();
    let mut w = World {
        s,
        policy,
        hwdom_pin,
        npcpus,
        track: vec![Track::default(); vcpus.len()],
        vcpus,
        hwdom,
        states,
        seed,
        owner: vec![None; npcpus],
        reserved,
    };
    for &v in &w.vcpus.clone() {
        if rng.below(3) > 0 {
            if let Some(p) = w.s.wake(v).unwrap() {
                w.s.pick_next(p).unwrap();
            }
        }
    }
    w.after("initial wakes");
    for _ in 0..400 {
        let p = rng.below(npcpus as u64) as usize;
        let v = w.vcpus[rng.below(w.vcpus.len() as u64) as usize];
        let what;
        match rng.below(100) {
            0..=49 => {
                let cur = w.s.current(p);
                let d = w.s.tick(p).unwrap();
                if policy == SchedPolicy::Null {
                    if let Some(c) = cur {
                        if w.s.pin_of(c).is_none_or(|q| q == p) {
                            assert_eq!(d, Decision::Keep, "seed {seed:#x}: null time-sliced");
                        }
                    }
                }
                what = "tick";
            }
            50..=61 => {
                let kind = if rng.below(3) == 0 { BlockKind::Off } else { BlockKind::Wait };
                if kind == BlockKind::Off {
                    let i = w.idx(v);
                    w.track[i].off_since_run = true;
                    w.release(v, None);
                }
                if let Some(freed) = w.s.block(v, kind).unwrap() {
                    w.after("block");
                    w.s.pick_next(freed).unwrap();
                }
                what = "block + pick_next";
            }
            62..=89 => {
                if let Some(idle) = w.s.wake(v).unwrap() {
                    w.after("wake");
                    assert_eq!(w.s.current(idle), None);
                    w.s.pick_next(idle).unwrap();
                }
                what = "wake + pick_next";
            }
            90..=93 => {
                w.s.pick_next(p).unwrap();
                what = "yield";
            }
            94..=97 => {
                w.s.report_set_way(v.vm).unwrap();
                what = "report_set_way";
            }
            _ => {
                // Explicit pins for ordinary vCPUs only (the hwdom rule owns
                // the hardware domain's).
                if Some(v.vm) != hwdom && reserved & (1 << p) != 0 {
                    assert_eq!(w.s.pin(v, p), Err(SchedError::Reserved { v, pcpu: p }), "seed {seed:#x}");
                } else if Some(v.vm) != hwdom {
                    let i = w.idx(v);
                    if let State::Running(q) = w.s.state(v).unwrap() {
                        w.track[i].pending_move = q != p;
                    }
                    w.track[i].pinned_since_run = true;
                    w.release(v, Some(p));
                    w.s.pin(v, p).unwrap();
                }
                what = "pin";
            }
        }
        w.after(what);
    }

    // Drain: only ticks, on every pCPU in turn.
    let runnable: Vec<VcpuRef> = w.vcpus.iter().copied().filter(|&v| w.s.state(v) == Some(State::Runnable)).collect();
    let mut ran = vec![false; w.vcpus.len()];
    for _ in 0..=w.vcpus.len() {
        for p in 0..w.npcpus {
            w.s.tick(p).unwrap();
            w.after("drain tick");
            for (i, &v) in w.vcpus.iter().enumerate() {
                if matches!(w.s.state(v), Some(State::Running(_))) {
                    ran[i] = true;
                }
            }
        }
    }
    if policy != SchedPolicy::Null {
        for v in runnable {
            assert!(ran[w.idx(v)], "seed {seed:#x}: {policy} starved {v:?}");
        }
    } else {
        // Null: an idle pCPU is either owned by a blocked vCPU, or no
        // runnable vCPU without a pCPU may run there.
        for p in (0..w.npcpus).filter(|&p| w.s.current(p).is_none()) {
            match w.owner[p] {
                Some(o) => assert_eq!(w.s.state(o), Some(State::Blocked), "seed {seed:#x}: owner of {p} not run"),
                None => {
                    for &v in &w.vcpus {
                        let homeless = !w.owner.contains(&Some(v));
                        if w.s.state(v) == Some(State::Runnable) && homeless {
                            assert!(
                                w.s.pin_of(v).is_some_and(|q| q != p)
                                    || (reserved & (1 << p) != 0 && Some(v.vm) != hwdom),
                                "seed {seed:#x}: null left pCPU {p} idle while {v:?} waits"
                            );
                        }
                    }
                }
            }
        }
    }
    for cap in w.s.take_caps() {
        return_sched_cap(cap);
    }
}

#[test]
fn random_sequences_keep_every_invariant() {
    let cases: u64 = std::env::var("SCHED_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut seeds = Rng(0x5c4e_d001);
    let mut n = 0;
    for _ in 0..cases {
        let seed = seeds.next();
        for policy in [SchedPolicy::Rr, SchedPolicy::Pinned, SchedPolicy::Null] {
            for hwdom_pin in [HwdomPin::Auto, HwdomPin::On, HwdomPin::Off] {
                case(seed, policy, hwdom_pin);
                n += 1;
            }
        }
    }
    assert_eq!(n, cases * 9);
}

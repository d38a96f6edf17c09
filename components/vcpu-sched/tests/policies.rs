//! Behaviour of each policy, hardware-domain pinning, parsing and errors.

use capabilities::testing::{return_sched_cap, sched_cap};
use vcpu_sched::{
    AnySched, BlockKind, Decision, HwdomPin, Null, Pinned, RoundRobin, Sched, SchedError, SchedPolicy, Scheduler,
    State, VcpuRef,
};

/// `add_vm` with a fresh capability, given back when refused.
fn add<S: Scheduler>(s: &mut S, vm: u8, n: u8, hwdom: bool) -> Result<(), SchedError> {
    s.add_vm(vm, sched_cap(), n, hwdom).map_err(|r| {
        return_sched_cap(r.cap);
        r.error
    })
}

fn v(vm: u8, vcpu: u8) -> VcpuRef {
    VcpuRef::new(vm, vcpu)
}

fn woken<S: Scheduler>(mut s: S, vm: u8, n: u8, hwdom: bool) -> S {
    add(&mut s, vm, n, hwdom).unwrap();
    for k in 0..n {
        s.wake(v(vm, k)).unwrap();
    }
    s
}

#[test]
fn boot_value_names() {
    // Parsing lives in bootcfg; these are the spellings it maps from.
    for p in [SchedPolicy::Rr, SchedPolicy::Pinned, SchedPolicy::Null] {
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!(
        [SchedPolicy::Rr.as_str(), SchedPolicy::Pinned.as_str(), SchedPolicy::Null.as_str()],
        ["rr", "pinned", "null"]
    );
    for h in [HwdomPin::Auto, HwdomPin::On, HwdomPin::Off] {
        assert_eq!(h.to_string(), h.as_str());
    }
    assert_eq!(SchedPolicy::default(), SchedPolicy::Rr);
    assert_eq!(HwdomPin::default(), HwdomPin::Auto);
}

#[test]
fn setup_errors() {
    assert_eq!(Sched::new(RoundRobin, 0, HwdomPin::Auto).err(), Some(SchedError::PcpuCount(0)));
    assert_eq!(Sched::new(RoundRobin, 5, HwdomPin::Auto).err(), Some(SchedError::PcpuCount(5)));
    let mut s = AnySched::new(SchedPolicy::Rr, 2, HwdomPin::Auto).unwrap();
    assert_eq!(add(&mut s, 8, 1, false), Err(SchedError::NoSuchVm(8)));
    assert_eq!(add(&mut s, 0, 0, false), Err(SchedError::VcpuCount(0)));
    assert_eq!(add(&mut s, 0, 9, false), Err(SchedError::VcpuCount(9)));
    add(&mut s, 0, 2, true).unwrap();
    assert_eq!(add(&mut s, 0, 1, false), Err(SchedError::VmExists(0)));
    assert_eq!(add(&mut s, 1, 1, true), Err(SchedError::SecondHwdom(1)));
    assert_eq!(s.tick(2), Err(SchedError::NoSuchPcpu(2)));
    assert_eq!(s.pick_next(7), Err(SchedError::NoSuchPcpu(7)));
    assert_eq!(s.wake(v(0, 2)), Err(SchedError::NoSuchVcpu(v(0, 2))));
    assert_eq!(s.block(v(3, 0), BlockKind::Wait), Err(SchedError::NoSuchVcpu(v(3, 0))));
    assert_eq!(s.pin(v(0, 0), 2), Err(SchedError::NoSuchPcpu(2)));
    assert_eq!(s.report_set_way(5), Err(SchedError::NoSuchVm(5)));
    assert_eq!(s.state(v(0, 1)), Some(State::Blocked), "vCPUs start off");
    assert_eq!(SchedError::NoSuchVcpu(v(1, 2)).to_string(), "sched: no vCPU 2 in VM 1");
    for p in [SchedPolicy::Rr, SchedPolicy::Pinned, SchedPolicy::Null] {
        assert_eq!(AnySched::new(p, 1, HwdomPin::Off).unwrap().policy(), p);
    }
}

#[test]
fn rr_time_slices_over_a_shared_queue_so_vcpus_migrate() {
    let mut s = woken(Sched::new(RoundRobin, 2, HwdomPin::Off).unwrap(), 0, 3, false);
    assert_eq!(s.tick(0), Ok(Decision::Run(v(0, 0))));
    assert_eq!(s.tick(1), Ok(Decision::Run(v(0, 1))));
    assert_eq!(s.queue(), [v(0, 2)]);
    assert_eq!(s.tick(0), Ok(Decision::Run(v(0, 2))));
    assert_eq!(s.queue(), [v(0, 0)]);
    assert_eq!(s.tick(1), Ok(Decision::Run(v(0, 0))));
    assert_eq!(s.stats().migrations, 1, "vCPU 0 moved from pCPU 0 to pCPU 1");
    assert_eq!(s.migrations_of(v(0, 0)), 1);
    assert_eq!(s.last_pcpu(v(0, 0)), Some(1));
    assert_eq!(s.stats().switches, 4);
    s.check().unwrap();
}

#[test]
fn rr_keeps_the_running_vcpu_when_nobody_waits() {
    let mut s = woken(Sched::new(RoundRobin, 2, HwdomPin::Off).unwrap(), 0, 1, false);
    assert_eq!(s.tick(1), Ok(Decision::Run(v(0, 0))));
    assert_eq!(s.tick(1), Ok(Decision::Keep));
    assert_eq!(s.tick(0), Ok(Decision::Keep), "an idle pCPU with nothing to run stays idle");
    assert_eq!(s.pick_next(1), Ok(Decision::Keep), "a yield with nobody waiting");
    assert_eq!(s.stats().switches, 1);
}

#[test]
fn block_frees_the_pcpu_and_wake_hints_an_idle_one() {
    let mut s = woken(Sched::new(RoundRobin, 2, HwdomPin::Off).unwrap(), 0, 2, false);
    s.tick(0).unwrap();
    s.tick(1).unwrap();
    assert_eq!(s.block(v(0, 1), BlockKind::Wait), Ok(Some(1)));
    assert_eq!(s.current(1), None);
    assert_eq!(s.pick_next(1), Ok(Decision::Idle));
    assert_eq!(s.block(v(0, 1), BlockKind::Off), Ok(None), "blocking twice is harmless");
    assert_eq!(s.wake(v(0, 1)), Ok(Some(1)));
    assert_eq!(s.wake(v(0, 1)), Ok(None), "already runnable");
    assert_eq!(s.pick_next(1), Ok(Decision::Run(v(0, 1))));
    // Blocking a queued vCPU takes it off the queue.
    add(&mut s, 1, 1, false).unwrap();
    assert_eq!(s.wake(v(1, 0)), Ok(None), "no idle pCPU");
    assert_eq!(s.block(v(1, 0), BlockKind::Wait), Ok(None));
    assert!(s.queue().is_empty());
    s.check().unwrap();
}

#[test]
fn pinned_gives_each_vcpu_a_home_and_never_migrates() {
    let mut s = Sched::new(Pinned::default(), 2, HwdomPin::Off).unwrap();
    let mut s2 = woken(Sched::new(Pinned::default(), 2, HwdomPin::Off).unwrap(), 0, 3, false);
    s = woken(s, 0, 3, false);
    add(&mut s, 1, 1, false).unwrap();
    s.wake(v(1, 0)).unwrap();
    // Homes: creation order 0,1,2,3 -> pCPU 0,1,0,1.
    for _ in 0..20 {
        for p in 0..2 {
            s.tick(p).unwrap();
            if let Some(cur) = s.current(p) {
                let ordinal = if cur.vm == 0 { cur.vcpu as usize } else { 3 };
                assert_eq!(ordinal % 2, p);
            }
        }
    }
    assert_eq!(s.stats().migrations, 0);
    // Both vCPUs of pCPU 0 got turns.
    assert!(s.stats().switches > 10);
    // An explicit pin changes the home.
    s2.tick(0).unwrap();
    assert_eq!(s2.current(0), Some(v(0, 0)));
    assert_eq!(s2.pin(v(0, 0), 1), Ok(Some(0)), "pCPU 0 must reschedule");
    assert_eq!(s2.tick(0), Ok(Decision::Run(v(0, 2))));
    assert_eq!(s2.tick(1), Ok(Decision::Run(v(0, 1))), "FIFO: vCPU 1 queued first");
    assert_eq!(s2.tick(1), Ok(Decision::Run(v(0, 0))));
    assert_eq!(s2.migrations_of(v(0, 0)), 1, "the pin moved it once");
}

#[test]
fn null_gives_one_pcpu_per_vcpu_until_it_goes_off() {
    let mut s = woken(Sched::new(Null::default(), 2, HwdomPin::Off).unwrap(), 0, 3, false);
    assert_eq!(s.tick(0), Ok(Decision::Run(v(0, 0))));
    assert_eq!(s.tick(1), Ok(Decision::Run(v(0, 1))));
    for p in [0, 1, 0, 1] {
        assert_eq!(s.tick(p), Ok(Decision::Keep), "no time slicing");
    }
    assert_eq!(s.pick_next(0), Ok(Decision::Keep), "a yield keeps the pCPU too");
    // WFI keeps the assignment: the pCPU idles, the extra vCPU still waits.
    assert_eq!(s.block(v(0, 0), BlockKind::Wait), Ok(Some(0)));
    assert_eq!(s.pick_next(0), Ok(Decision::Idle));
    assert_eq!(s.tick(0), Ok(Decision::Keep));
    assert_eq!(s.state(v(0, 2)), Some(State::Runnable));
    assert_eq!(s.wake(v(0, 0)), Ok(Some(0)));
    assert_eq!(s.pick_next(0), Ok(Decision::Run(v(0, 0))));
    // CPU_OFF frees the pCPU for the waiting vCPU.
    assert_eq!(s.block(v(0, 1), BlockKind::Off), Ok(Some(1)));
    assert_eq!(s.pick_next(1), Ok(Decision::Run(v(0, 2))));
    // vCPU 1 comes back on: no pCPU is free.
    assert_eq!(s.wake(v(0, 1)), Ok(None));
    for p in [0, 1] {
        assert_eq!(s.tick(p), Ok(Decision::Keep));
    }
    assert_eq!(s.state(v(0, 1)), Some(State::Runnable));
    assert_eq!(s.block(v(0, 0), BlockKind::Off), Ok(Some(0)));
    assert_eq!(s.pick_next(0), Ok(Decision::Run(v(0, 1))));
    assert_eq!(s.migrations_of(v(0, 1)), 1, "moved only after CPU_OFF");
    s.check().unwrap();
}

#[test]
fn hwdom_pin_on_pins_from_creation() {
    let mut s = Sched::new(RoundRobin, 4, HwdomPin::On).unwrap();
    assert_eq!(s.reserved_pcpus(), 0, "nothing reserved before the hardware domain exists");
    add(&mut s, 0, 3, true).unwrap();
    add(&mut s, 1, 2, false).unwrap();
    for k in 0..3 {
        assert_eq!(s.pin_of(v(0, k)), Some(k as usize), "vCPU k on pCPU k");
    }
    assert_eq!(s.reserved_pcpus(), 0b0111);
    assert_eq!(s.pin_of(v(1, 0)), None);
    assert_eq!(s.stats().hwdom_pins, 3);
    assert_eq!(s.report_set_way(0), Ok(false));
}

/// Runs `rounds` rounds of ticks with random blocks and wakes of every vCPU
/// in `vms` (VM index, vCPUs; the hardware domain first), checking after
/// each call that reserved pCPU `k` runs only hardware-domain vCPU `k` (so
/// it never migrates) and calling `check`. Returns which (VM, pCPU) pairs
/// ran.
fn soak_on<S: Scheduler>(
    s: &mut S,
    npcpus: usize,
    vms: &[(u8, u8)],
    rounds: usize,
    check: impl Fn(&S),
) -> Vec<(u8, usize)> {
    let reserved = vms[0].1 as usize;
    let mut seen = Vec::new();
    let mut x = 0x1234_5678_u64;
    for &(vm, n) in vms {
        for k in 0..n {
            if let Some(p) = s.wake(v(vm, k)).unwrap() {
                s.pick_next(p).unwrap();
            }
        }
    }
    for _ in 0..rounds {
        for p in 0..npcpus {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (vm, n) = vms[(x >> 33) as usize % vms.len()];
            let k = (x >> 40) as u8 % n;
            match (x >> 50) % 8 {
                0 => {
                    let kind = if (x >> 60) & 1 == 0 { BlockKind::Wait } else { BlockKind::Off };
                    if let Some(q) = s.block(v(vm, k), kind).unwrap() {
                        s.pick_next(q).unwrap();
                    }
                }
                1 | 2 => {
                    if let Some(q) = s.wake(v(vm, k)).unwrap() {
                        s.pick_next(q).unwrap();
                    }
                }
                3 => {
                    s.pick_next(p).unwrap();
                }
                _ => {
                    s.tick(p).unwrap();
                }
            }
            check(s);
            for q in 0..npcpus {
                if let Some(cur) = s.current(q) {
                    if q < reserved {
                        assert_eq!(cur, v(vms[0].0, q as u8), "reserved pCPU {q} runs {cur:?}");
                    }
                    if !seen.contains(&(cur.vm, q)) {
                        seen.push((cur.vm, q));
                    }
                }
            }
        }
    }
    seen
}

#[test]
fn hwdom_pin_on_reserves_pcpus_under_rr() {
    let mut s = Sched::new(RoundRobin, 4, HwdomPin::On).unwrap();
    add(&mut s, 0, 2, true).unwrap();
    add(&mut s, 1, 3, false).unwrap();
    add(&mut s, 2, 2, false).unwrap();
    assert_eq!(s.reserved_pcpus(), 0b0011);
    let seen = soak_on(&mut s, 4, &[(0, 2), (1, 3), (2, 2)], 300, |s| s.check().unwrap());
    for k in 0..2 {
        assert_eq!(s.migrations_of(v(0, k)), 0);
    }
    assert!(s.stats().migrations > 0, "the other VMs still move between pCPUs 2 and 3");
    for vm in [1, 2] {
        assert!(seen.contains(&(vm, 2)) && seen.contains(&(vm, 3)), "VM {vm} ran on both free pCPUs: {seen:?}");
    }
    assert!(seen.contains(&(0, 0)) && seen.contains(&(0, 1)));
    // A waiting vCPU of another VM is not offered a reserved idle pCPU.
    let mut s = Sched::new(RoundRobin, 2, HwdomPin::On).unwrap();
    add(&mut s, 0, 1, true).unwrap();
    add(&mut s, 1, 2, false).unwrap();
    assert_eq!(s.wake(v(1, 0)), Ok(Some(1)));
    assert_eq!(s.pick_next(1), Ok(Decision::Run(v(1, 0))));
    assert_eq!(s.wake(v(1, 1)), Ok(None), "pCPU 0 is idle but reserved");
    assert_eq!(s.tick(0), Ok(Decision::Keep), "and its tick does not take vCPU 1");
    assert_eq!(s.current(0), None);
    assert_eq!(s.wake(v(0, 0)), Ok(Some(0)));
    assert_eq!(s.pick_next(0), Ok(Decision::Run(v(0, 0))));
    s.check().unwrap();
}

#[test]
fn hwdom_pin_on_homes_other_vms_on_unreserved_pcpus_under_pinned() {
    let mut s = Sched::new(Pinned::default(), 4, HwdomPin::On).unwrap();
    add(&mut s, 0, 2, true).unwrap();
    add(&mut s, 1, 3, false).unwrap();
    add(&mut s, 2, 1, false).unwrap();
    // Other vCPUs in creation order: (1,0) (1,1) (1,2) (2,0) -> 2,3,2,3.
    let home =
        |x: VcpuRef| if x.vm == 0 { x.vcpu as usize } else { 2 + (x.vcpu as usize + 3 * (x.vm as usize - 1)) % 2 };
    let seen = soak_on(&mut s, 4, &[(0, 2), (1, 3), (2, 1)], 300, |s| s.check().unwrap());
    for p in 0..4 {
        if let Some(cur) = s.current(p) {
            assert_eq!(home(cur), p);
        }
    }
    assert_eq!(s.stats().migrations, 0, "pinned never migrates");
    for &(vm, p) in &seen {
        assert!(vm == 0 || p >= 2, "VM {vm} ran on reserved pCPU {p}");
    }
    assert!(seen.contains(&(1, 2)) && seen.contains(&(1, 3)) && seen.contains(&(2, 3)), "{seen:?}");
}

#[test]
fn hwdom_pin_on_assigns_other_vms_unreserved_pcpus_under_null() {
    let mut s = Sched::new(Null::default(), 3, HwdomPin::On).unwrap();
    add(&mut s, 0, 1, true).unwrap();
    add(&mut s, 1, 3, false).unwrap();
    assert_eq!(s.reserved_pcpus(), 0b001);
    for k in 0..3 {
        s.wake(v(1, k)).unwrap();
    }
    assert_eq!(s.tick(0), Ok(Decision::Keep), "pCPU 0 waits for the hardware domain");
    assert_eq!(s.tick(1), Ok(Decision::Run(v(1, 0))));
    assert_eq!(s.tick(2), Ok(Decision::Run(v(1, 1))));
    // CPU_OFF frees pCPU 2 for the waiting vCPU; pCPU 0 never takes it.
    assert_eq!(s.block(v(1, 1), BlockKind::Off), Ok(Some(2)));
    assert_eq!(s.tick(0), Ok(Decision::Keep));
    assert_eq!(s.current(0), None);
    assert_eq!(s.pick_next(2), Ok(Decision::Run(v(1, 2))));
    assert_eq!(s.wake(v(0, 0)), Ok(Some(0)));
    assert_eq!(s.pick_next(0), Ok(Decision::Run(v(0, 0))));
    s.check().unwrap();
    let seen = soak_on(&mut s, 3, &[(0, 1), (1, 3)], 300, |s| s.check().unwrap());
    for &(vm, p) in &seen {
        assert!(vm == 0 || p >= 1, "VM {vm} ran on reserved pCPU {p}");
    }
    assert_eq!(s.migrations_of(v(0, 0)), 0);
}

#[test]
fn hwdom_pin_on_refusals() {
    for policy in [SchedPolicy::Rr, SchedPolicy::Pinned, SchedPolicy::Null] {
        // Too many hwdom vCPUs for one pCPU each.
        let mut s = AnySched::new(policy, 3, HwdomPin::On).unwrap();
        let e = add(&mut s, 0, 4, true).unwrap_err();
        assert_eq!(e, SchedError::HwdomTooBig { vm: 0, vcpus: 4, npcpus: 3 });
        assert_eq!(
            e.to_string(),
            "sched: hwdom_pin=on gives each hardware-domain vCPU a pCPU of its own, \
             but VM 0 has 4 vCPUs and there are 3 pCPUs"
        );
        assert_eq!(s.reserved_pcpus(), 0, "a refused add leaves nothing behind");
        assert_eq!(s.state(v(0, 0)), None);
        // Exactly npcpus is fine, but then no other VM fits.
        add(&mut s, 0, 3, true).unwrap();
        assert_eq!(s.reserved_pcpus(), 0b111);
        let e = add(&mut s, 1, 1, false).unwrap_err();
        assert_eq!(e, SchedError::NoFreePcpu { vm: 1, reserved: 0b111 });
        assert_eq!(
            e.to_string(),
            "sched: VM 1 refused: with pCPUs 0x7 (mask) reserved for the hardware domain \
             (hwdom_pin=on), no pCPU is left for the other VMs"
        );
        assert_eq!(s.state(v(1, 0)), None);
        // A pin moving a hardware-domain vCPU is refused; onto its own pCPU
        // it is a no-op.
        assert_eq!(s.pin(v(0, 1), 2), Err(SchedError::HwdomFixed(v(0, 1))));
        assert_eq!(s.pin(v(0, 1), 1), Ok(None));
        assert_eq!(s.pin_of(v(0, 1)), Some(1));
        assert_eq!(
            SchedError::HwdomFixed(v(0, 1)).to_string(),
            "sched: vCPU 1 of the hardware domain (VM 0) stays on pCPU 1 under hwdom_pin=on"
        );
        s.check().unwrap();

        // Explicit pins of other VMs onto reserved pCPUs are refused.
        let mut s = AnySched::new(policy, 4, HwdomPin::On).unwrap();
        add(&mut s, 0, 2, true).unwrap();
        add(&mut s, 1, 2, false).unwrap();
        for p in 0..2 {
            assert_eq!(s.pin(v(1, 0), p), Err(SchedError::Reserved { v: v(1, 0), pcpu: p }));
        }
        assert_eq!(s.pin_of(v(1, 0)), None);
        assert_eq!(s.pin(v(1, 0), 3), Ok(None));
        assert_eq!(
            SchedError::Reserved { v: v(1, 0), pcpu: 1 }.to_string(),
            "sched: pCPU 1 is reserved for the hardware domain (hwdom_pin=on): vCPU 0 of VM 1 may not run there"
        );
        for e in [
            SchedError::HwdomTooBig { vm: 0, vcpus: 4, npcpus: 3 },
            SchedError::NoFreePcpu { vm: 1, reserved: 1 },
            SchedError::Reserved { v: v(1, 0), pcpu: 1 },
            SchedError::HwdomFixed(v(0, 0)),
        ] {
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }
}

#[test]
fn hwdom_pin_on_added_after_other_vms() {
    // Nothing ran yet (the kernel adds every VM at boot): the hardware
    // domain takes its pCPUs and the other VMs' pinned homes move off them.
    let mut s = Sched::new(Pinned::default(), 4, HwdomPin::On).unwrap();
    add(&mut s, 0, 4, false).unwrap();
    add(&mut s, 1, 2, true).unwrap();
    assert_eq!(s.reserved_pcpus(), 0b0011);
    assert_eq!(s.pin_of(v(1, 0)), Some(0));
    assert_eq!(s.pin_of(v(1, 1)), Some(1));
    let seen = soak_on(&mut s, 4, &[(1, 2), (0, 4)], 200, |s| s.check().unwrap());
    for &(vm, p) in &seen {
        assert!(vm == 1 || p >= 2, "VM {vm} ran on reserved pCPU {p}");
    }
    assert_eq!(s.stats().migrations, 0);
    // Refused while another VM runs on, or is pinned to, a pCPU it would take.
    let mut s = woken(Sched::new(RoundRobin, 4, HwdomPin::On).unwrap(), 0, 1, false);
    s.tick(1).unwrap();
    assert_eq!(add(&mut s, 1, 2, true), Err(SchedError::Reserved { v: v(0, 0), pcpu: 1 }));
    assert_eq!(s.reserved_pcpus(), 0);
    assert_eq!(s.state(v(1, 0)), None, "a refused add leaves nothing behind");
    s.block(v(0, 0), BlockKind::Wait).unwrap();
    s.pin(v(0, 0), 0).unwrap();
    assert_eq!(add(&mut s, 1, 2, true), Err(SchedError::Reserved { v: v(0, 0), pcpu: 0 }));
    s.pin(v(0, 0), 3).unwrap();
    add(&mut s, 1, 2, true).unwrap();
    assert_eq!(add(&mut s, 2, 1, true), Err(SchedError::SecondHwdom(2)));
    // Taking every pCPU would leave VM 0 nowhere.
    let mut s = Sched::new(Null::default(), 2, HwdomPin::On).unwrap();
    add(&mut s, 0, 1, false).unwrap();
    assert_eq!(add(&mut s, 1, 2, true), Err(SchedError::NoFreePcpu { vm: 1, reserved: 0b11 }));
    s.check().unwrap();
}

#[test]
fn hwdom_pin_auto_and_off_reserve_nothing() {
    for pin in [HwdomPin::Auto, HwdomPin::Off] {
        let mut s = Sched::new(RoundRobin, 2, pin).unwrap();
        add(&mut s, 0, 4, true).unwrap();
        add(&mut s, 1, 1, false).unwrap();
        s.report_set_way(0).unwrap();
        assert_eq!(s.reserved_pcpus(), 0);
        assert_eq!(s.pin(v(1, 0), 0), Ok(None));
    }
}

#[test]
fn hwdom_pin_auto_pins_where_each_vcpu_is_when_set_way_is_reported() {
    let mut s = Sched::new(RoundRobin, 2, HwdomPin::Auto).unwrap();
    add(&mut s, 0, 3, true).unwrap();
    add(&mut s, 1, 1, false).unwrap();
    s.wake(v(0, 0)).unwrap();
    s.wake(v(0, 1)).unwrap();
    s.wake(v(1, 0)).unwrap();
    // Before the report hwdom vCPUs move like anyone else.
    for _ in 0..6 {
        s.tick(0).unwrap();
        s.tick(1).unwrap();
    }
    assert!(s.migrations_of(v(0, 0)) + s.migrations_of(v(0, 1)) > 0);
    assert_eq!(s.report_set_way(1), Ok(false), "not the hardware domain");
    let where0 = match s.state(v(0, 0)).unwrap() {
        State::Running(p) => p,
        _ => s.last_pcpu(v(0, 0)).unwrap(),
    };
    let where1 = match s.state(v(0, 1)).unwrap() {
        State::Running(p) => p,
        _ => s.last_pcpu(v(0, 1)).unwrap(),
    };
    assert_eq!(s.report_set_way(0), Ok(true));
    assert_eq!(s.pin_of(v(0, 0)), Some(where0));
    assert_eq!(s.pin_of(v(0, 1)), Some(where1));
    assert_eq!(s.pin_of(v(0, 2)), None, "never ran: pinned where it first runs");
    assert_eq!(s.report_set_way(0), Ok(false), "nothing new to pin");
    let before = [s.migrations_of(v(0, 0)), s.migrations_of(v(0, 1))];
    s.wake(v(0, 2)).unwrap();
    for _ in 0..20 {
        s.tick(0).unwrap();
        s.tick(1).unwrap();
    }
    assert_eq!([s.migrations_of(v(0, 0)), s.migrations_of(v(0, 1))], before);
    assert_eq!(s.pin_of(v(0, 2)), s.last_pcpu(v(0, 2)));
    assert_eq!(s.migrations_of(v(0, 2)), 0);
    assert_eq!(s.stats().hwdom_pins, 3);
    assert_eq!(s.stats().set_way_reports, 3);
    s.check().unwrap();
}

#[test]
fn hwdom_pin_off_ignores_reports() {
    let mut s = woken(Sched::new(RoundRobin, 2, HwdomPin::Off).unwrap(), 0, 2, true);
    s.tick(0).unwrap();
    assert_eq!(s.report_set_way(0), Ok(false));
    assert_eq!(s.pin_of(v(0, 0)), None);
    assert_eq!(s.stats().hwdom_pins, 0);
}

/// The hardware domain's boot-time pin decision.
#[test]
fn hwdom_pin_decision() {
    use vcpu_sched::{HwdomPin, PinDecision as D};
    // (pin, sw expected, vcpus, other guests, pCPUs) -> decision
    let cases = [
        (HwdomPin::On, true, 1, true, 2, D::PinnedOn),
        (HwdomPin::On, false, 1, true, 2, D::PinnedOn),
        (HwdomPin::Auto, true, 1, true, 2, D::PinnedAuto),
        (HwdomPin::Auto, false, 1, true, 2, D::NotPinnedNoSw),
        (HwdomPin::Off, true, 1, true, 2, D::NotPinnedOff),
        // Alone it may take every pCPU; with others it must leave one.
        (HwdomPin::On, true, 2, false, 2, D::PinnedOn),
        (HwdomPin::On, true, 2, true, 2, D::NotPinnedTooFewPcpus),
        (HwdomPin::Auto, true, 3, false, 2, D::NotPinnedTooFewPcpus),
    ];
    for (pin, sw, vcpus, others, n, want) in cases {
        let d = D::new(pin, sw, vcpus, others, n);
        assert_eq!(d, want, "{pin:?} sw={sw} vcpus={vcpus} others={others} pcpus={n}");
        assert_eq!(d.hwdom_pin(), if d.pinned() { HwdomPin::On } else { HwdomPin::Off });
        let text = d.to_string();
        assert!(text.starts_with(if d.pinned() { "pinned" } else { "not pinned" }), "{text}");
        assert!(!text.contains('\n'));
    }
}

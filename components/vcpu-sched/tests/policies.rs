//! Behaviour of each policy, hardware-domain pinning, parsing and errors.

use vcpu_sched::{
    AnySched, BlockKind, Decision, HwdomPin, Null, Pinned, RoundRobin, Sched, SchedError, SchedPolicy, Scheduler,
    State, VcpuRef,
};

fn v(vm: u8, vcpu: u8) -> VcpuRef {
    VcpuRef::new(vm, vcpu)
}

fn woken<S: Scheduler>(mut s: S, vm: u8, n: u8, hwdom: bool) -> S {
    s.add_vm(vm, n, hwdom).unwrap();
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
    assert_eq!(s.add_vm(8, 1, false), Err(SchedError::NoSuchVm(8)));
    assert_eq!(s.add_vm(0, 0, false), Err(SchedError::VcpuCount(0)));
    assert_eq!(s.add_vm(0, 9, false), Err(SchedError::VcpuCount(9)));
    s.add_vm(0, 2, true).unwrap();
    assert_eq!(s.add_vm(0, 1, false), Err(SchedError::VmExists(0)));
    assert_eq!(s.add_vm(1, 1, true), Err(SchedError::SecondHwdom(1)));
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
    s.add_vm(1, 1, false).unwrap();
    assert_eq!(s.wake(v(1, 0)), Ok(None), "no idle pCPU");
    assert_eq!(s.block(v(1, 0), BlockKind::Wait), Ok(None));
    assert!(s.queue().is_empty());
    s.check().unwrap();
}

#[test]
fn pinned_gives_each_vcpu_a_home_and_never_migrates() {
    let mut s = Sched::new(Pinned::default(), 2, HwdomPin::Off).unwrap();
    let mut s2 = woken(s.clone(), 0, 3, false);
    s = woken(s, 0, 3, false);
    s.add_vm(1, 1, false).unwrap();
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
    let mut s = Sched::new(RoundRobin, 3, HwdomPin::On).unwrap();
    s.add_vm(0, 4, true).unwrap();
    s.add_vm(1, 2, false).unwrap();
    for k in 0..4 {
        assert_eq!(s.pin_of(v(0, k)), Some(k as usize % 3));
    }
    assert_eq!(s.pin_of(v(1, 0)), None);
    assert_eq!(s.stats().hwdom_pins, 4);
    for vm in 0..2 {
        for k in 0..if vm == 0 { 4 } else { 2 } {
            s.wake(v(vm, k)).unwrap();
        }
    }
    for _ in 0..30 {
        for p in 0..3 {
            s.tick(p).unwrap();
            if let Some(cur) = s.current(p) {
                if cur.vm == 0 {
                    assert_eq!(cur.vcpu as usize % 3, p);
                }
            }
        }
    }
    for k in 0..4 {
        assert_eq!(s.migrations_of(v(0, k)), 0);
    }
    assert_eq!(s.report_set_way(0), Ok(false));
}

#[test]
fn hwdom_pin_auto_pins_where_each_vcpu_is_when_set_way_is_reported() {
    let mut s = Sched::new(RoundRobin, 2, HwdomPin::Auto).unwrap();
    s.add_vm(0, 3, true).unwrap();
    s.add_vm(1, 1, false).unwrap();
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

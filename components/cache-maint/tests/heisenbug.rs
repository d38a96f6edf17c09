//! The set/way heisenbug on the cache model: a vCPU migrated in the middle
//! of a Linux-style set/way flush loses data without the policy, and loses
//! nothing with it. Also: one guest's ISW cannot discard another's lines.

mod common;

use cache_maint::{SwOp, VmConfig};
use cache_model::guest::Populate;
use cache_model::{CacheModel, Config};
use common::{linux_flush, Mode, Op, Sim, VmSpec};

const BASE: u64 = 0x4000_0000;

/// Caches on, one 64-bit write per line over `lines` lines, a full Linux
/// flush by set/way, caches off, read back at the PoC.
fn program(model: &CacheModel, lines: u64) -> (Vec<Op>, usize) {
    let mut p = vec![Op::Sctlr(true)];
    for k in 0..lines {
        p.push(Op::Write { ipa: BASE + k * 64, val: 0x1000 + k });
    }
    let flush_at = p.len();
    p.extend(linux_flush(model, SwOp::Cisw, 0..model.levels()));
    p.push(Op::Sctlr(false));
    p.push(Op::Check);
    (p, flush_at)
}

/// Run the program on pCPU 0 and move the vCPU to pCPU 1 when half of the
/// L1 part of the flush loop is done.
fn migrate_mid_flush(mode: Mode) -> Sim {
    let model = CacheModel::new(Config::cortex_a7(2));
    let l1 = model.geometry(0).unwrap();
    let lines = l1.sets as u64; // one line per L1 set: nothing evicted
    let (prog, flush_at) = program(&model, lines);
    let half = (l1.sets * l1.ways / 2) as usize;
    let spec = VmSpec { cfg: VmConfig::new(1), populate: Populate::Block, vcpus: vec![(0, prog)] };
    let mut sim = Sim::new(model, mode, vec![spec]);
    sim.run_to(0, 0, flush_at + half);
    sim.migrate(0, 0, 1);
    let end = sim.vms[0].vcpus[0].prog.len();
    sim.run_to(0, 0, end);
    sim
}

#[test]
fn without_policy_a_migrated_set_way_loop_loses_data() {
    let sim = migrate_mid_flush(Mode::Native);
    let g = sim.model.geometry(0).unwrap();
    // Linux walks sets from the top down: on pCPU 0 it reached the upper
    // half; the lower half was "cleaned" on pCPU 1, whose L1 never held them.
    let vcpu = &sim.vms[0].vcpus[0];
    let expected_lost = vcpu
        .expect
        .keys()
        .filter(|&&ipa| {
            let pa = sim.vms[0].mem.source.translate(ipa).unwrap();
            sim.model.l1_set_of(pa) < g.sets / 2
        })
        .count();
    assert!(expected_lost > 0);
    assert_eq!(vcpu.checked, g.sets as usize);
    assert_eq!(vcpu.lost, expected_lost, "exactly the lines left dirty on pCPU 0 are stale at the PoC");
    for &ipa in vcpu.expect.keys() {
        let pa = sim.vms[0].mem.source.translate(ipa).unwrap();
        assert_eq!(sim.model.dirty_in_l1(0, pa), sim.model.l1_set_of(pa) < g.sets / 2);
    }
}

#[test]
fn with_policy_the_same_schedule_loses_nothing() {
    let sim = migrate_mid_flush(Mode::Policy);
    let vm = &sim.vms[0];
    assert_eq!(vm.vcpus[0].checked, sim.model.geometry(0).unwrap().sets as usize);
    assert_eq!(sim.lost(), 0);
    let c = vm.cm.counters();
    let l1 = sim.model.geometry(0).unwrap();
    let l2 = sim.model.geometry(1).unwrap();
    assert_eq!(c.sw_traps, (l1.sets * l1.ways + l2.sets * l2.ways) as u64, "every set/way op trapped");
    assert_eq!(c.tvm_traps, 1, "only the caches-off write trapped");
    assert_eq!(c.cleans, 2, "one clean at the first op, one at caches off");
    // The first clean takes the one populated block; the loop touches no
    // memory, so the caches-off clean finds nothing touched since.
    assert_eq!(c.cleaned_bytes, hwops::BLOCK_SIZE);
    assert_eq!(vm.sw_first_events, 1);
    assert_eq!(vm.foreign_ops, 0);
    assert_eq!(sim.model.dirty_lines(), 0);
}

#[test]
fn with_policy_a_migration_before_the_loop_loses_nothing_either() {
    for mode in [Mode::Native, Mode::Policy] {
        let model = CacheModel::new(Config::small(2));
        let (prog, flush_at) = program(&model, 40);
        let spec = VmSpec { cfg: VmConfig::new(1), populate: Populate::Page, vcpus: vec![(0, prog)] };
        let mut sim = Sim::new(model, mode, vec![spec]);
        sim.run_to(0, 0, flush_at);
        sim.migrate(0, 0, 1);
        let end = sim.vms[0].vcpus[0].prog.len();
        sim.run_to(0, 0, end);
        match mode {
            Mode::Policy => assert_eq!(sim.lost(), 0),
            _ => assert!(sim.lost() > 0, "every line stayed on pCPU 0"),
        }
    }
}

/// VM A (caches off, early boot) runs Linux's `v7_invalidate_l1` (ISW over
/// its L1) on the pCPU where VM B has a dirty line.
fn cross_guest(mode: Mode) -> Sim {
    let model = CacheModel::new(Config::cortex_a7(1));
    let mut a = vec![Op::Write { ipa: BASE, val: 0xa }];
    a.extend(linux_flush(&model, SwOp::Isw, 0..1));
    let mut b = vec![Op::Sctlr(true), Op::Write { ipa: BASE, val: 0xb }, Op::Check];
    b.extend(linux_flush(&model, SwOp::Cisw, 0..model.levels()));
    b.push(Op::Sctlr(false));
    b.push(Op::Check);
    let specs = vec![
        VmSpec { cfg: VmConfig::new(1), populate: Populate::Block, vcpus: vec![(0, a)] },
        VmSpec { cfg: VmConfig::new(1), populate: Populate::Block, vcpus: vec![(0, b)] },
    ];
    let mut sim = Sim::new(model, mode, specs);
    sim.run_to(1, 0, 2); // B: caches on, dirty line in pCPU 0's L1
    let b_pa = sim.vms[1].mem.source.translate(BASE).unwrap();
    assert!(sim.model.dirty_in_l1(0, b_pa));
    let end_a = sim.vms[0].vcpus[0].prog.len();
    sim.run_to(0, 0, end_a); // A: the ISW loop on the same pCPU
    let end_b = sim.vms[1].vcpus[0].prog.len();
    sim.run_to(1, 0, end_b);
    sim
}

#[test]
fn raw_isw_of_one_guest_discards_another_guests_dirty_line() {
    // The hazard the trap exists for, shown on the model.
    let sim = cross_guest(Mode::NativeNoSwio);
    assert_eq!(sim.vms[1].vcpus[0].lost, 2, "B reads stale data both times");
}

#[test]
fn trapped_isw_of_vm_a_does_not_drop_vm_b_dirty_line() {
    let sim = cross_guest(Mode::Policy);
    let (a, b) = (&sim.vms[0], &sim.vms[1]);
    assert_eq!(b.vcpus[0].checked, 2);
    assert_eq!(b.vcpus[0].lost, 0);
    assert_eq!(a.foreign_ops + b.foreign_ops, 0, "maintenance stayed on each VM's own frames");
    assert!(a.cm.counters().cleaned_bytes > 0, "A's own memory was cleaned");
    assert_eq!(a.cm.counters().sw_traps, sim.model.geometry(0).map(|g| (g.sets * g.ways) as u64).unwrap());
}

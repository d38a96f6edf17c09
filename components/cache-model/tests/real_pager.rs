//! Fixed schedules on the real pager, pod and policy (see `common/mod.rs`),
//! one per property the soak relies on, so that a failure names it.

mod common;

use cache_maint::{SwOp, VmConfig};
use cache_model::hw::CleanRange;
use cache_model::{CacheModel, Config};
use common::{linux_flush, Memory, Mode, Op, Sim, VmSpec, MIB, PAGE, RAM_IPA};
use hwops::BLOCK_SIZE;

fn one_vm(memory: Memory, ram: u64, prog: Vec<Op>, cpus: usize) -> Sim {
    let spec = VmSpec { cfg: VmConfig::new(1), memory, ram, vcpus: vec![(0, prog)] };
    Sim::new(CacheModel::new(Config::small(cpus)), 16, Mode::Policy, vec![spec])
}

/// Caches on, a write to A; a Linux flush loop whose first op starts a
/// clean and that writes B (same 2 MiB block) right after it; caches off;
/// read both back at the PoC.
#[test]
fn a_write_after_the_clean_faults_on_the_access_flag_and_is_cleaned() {
    let model = CacheModel::new(Config::small(2));
    let (a, b) = (RAM_IPA + 0x1000, RAM_IPA + 0x8_0040);
    let mut prog = vec![Op::Sctlr(true), Op::Write { ipa: a, val: 0xa }];
    let mut flush = linux_flush(&model, SwOp::Cisw, 0..model.levels());
    flush.insert(1, Op::Write { ipa: b, val: 0xb });
    prog.extend(flush);
    prog.extend([Op::Sctlr(false), Op::Verify { ipa: a, val: 0xa }, Op::Verify { ipa: b, val: 0xb }]);
    let end = prog.len();
    let mut sim = one_vm(Memory::PodBlocks, 4 * MIB, prog, 2);

    sim.run_to(0, 0, 2);
    assert_eq!(sim.tlb.entries(0), 1, "the block is cached in pCPU 0's TLB");
    let leaf = sim.vms[0].pager().leaf(a).unwrap();
    assert_eq!((leaf.size.bytes(), leaf.accessed), (BLOCK_SIZE, true));

    sim.run_to(0, 0, 3); // the first set/way op: TVM on, a whole clean
    let vm = &sim.vms[0];
    assert_eq!(vm.cm.counters().cleans, 1);
    assert!(!vm.pager().leaf(a).unwrap().accessed, "the clean cleared the access flag");
    assert!(!vm.pager().is_touched(a));
    assert_eq!(sim.tlb.entries(0), 0, "and invalidated the TLB");

    let faults = vm.faults.access_flag;
    sim.step(0, 0); // write B: faults on AF = 0
    assert_eq!(sim.vms[0].vcpus[0].pc, 3, "the write did not complete yet");
    assert_eq!(sim.vms[0].faults.access_flag, faults + 1);
    assert!(sim.vms[0].pager().is_touched(b), "the fault marked the chunk touched");
    sim.step(0, 0);
    assert_eq!(sim.vms[0].vcpus[0].pc, 4);

    // The rest of the loop on another pCPU, then caches off.
    sim.migrate(0, 0, 1);
    sim.run_to(0, 0, end);
    assert_eq!(sim.checked(), 2);
    assert_eq!(sim.lost(), 0, "{}", sim.describe());
    assert_eq!(sim.tlb.stats().stale_hits, 0);
    sim.check_invariants().unwrap();
}

/// A pool smaller than the RAM: reading more pages than it holds makes
/// the pod sweep and reclaim zero pages, which the pager unmaps with a TLB
/// invalidation on every pCPU. A write to a reclaimed page then faults and
/// populates again; through a TLB entry left behind it would land in a
/// frame that the pool hands out (and zeroes) again.
#[test]
fn reclaimed_pages_leave_no_tlb_entry_behind() {
    let page = |k: u64| RAM_IPA + k * PAGE;
    let mut prog = vec![Op::Sctlr(true)];
    prog.extend((0..1100).map(|k| Op::Read { ipa: page(k) }));
    prog.push(Op::Write { ipa: page(0) + 8, val: 7 });
    prog.extend((1100..1400).map(|k| Op::Read { ipa: page(k) }));
    prog.push(Op::Verify { ipa: page(0) + 8, val: 7 });
    // Every other page still reads zero (no write went to its frame).
    prog.extend((1..1400).map(|k| Op::Verify { ipa: page(k) + 8, val: 0 }));
    let end = prog.len();
    // TLBs large enough to still hold the entries of reclaimed pages.
    let spec = VmSpec { cfg: VmConfig::new(1), memory: Memory::PodBallooned, ram: 8 * MIB, vcpus: vec![(0, prog)] };
    let mut sim = Sim::new(CacheModel::new(Config::small(3)), 4096, Mode::Policy, vec![spec]);
    for pc in 0..end {
        // Page k is read on pCPU k mod 3; everything else runs on pCPU 0.
        let cpu = match sim.vms[0].vcpus[0].prog[pc] {
            Op::Read { ipa } => ((ipa - RAM_IPA) / PAGE % 3) as usize,
            _ => 0,
        };
        sim.migrate(0, 0, cpu);
        sim.run_to(0, 0, pc + 1);
        if pc % 64 == 0 {
            sim.check_invariants().unwrap();
        }
    }
    let stats = sim.vms[0].pod().stats();
    assert!(stats.reclaimed_pages >= 2 * (1400 - 1024), "{stats:?}");
    assert_eq!(stats.pod_2m, 0, "a pool without 2 MiB frames");
    assert!(sim.vms[0].faults.pod_retries == 0 && sim.vms[0].errors.is_empty());
    assert_eq!(sim.checked(), 1400);
    assert_eq!(sim.lost(), 0, "{}", sim.describe());
    assert_eq!(sim.tlb.stats().stale_hits, 0);
    sim.check_invariants().unwrap();
}

/// The pod zeroes a new frame through the hypervisor pCPU's cache and then
/// calls `clean_range`. The kernel's `clean_range` is `DC CIVAC`, so no line
/// of the frame stays cached. The `hwops::CacheOps` contract only promises a
/// clean ("lines stay valid"): with that, the zeroed lines stay valid, and a
/// guest that writes with its caches off and then reads with them on sees
/// the stale zeros. So the pod depends on the kernel doing more than the
/// trait promises; this test pins that down.
#[test]
fn pod_relies_on_clean_range_also_invalidating() {
    let x = RAM_IPA + 0x2040;
    let prog = vec![Op::Write { ipa: x, val: 0x5a }, Op::Sctlr(true), Op::Verify { ipa: x, val: 0x5a }];
    for (clean_range, lost) in [(CleanRange::CleanInvalidate, 0), (CleanRange::Clean, 1)] {
        let spec = VmSpec { cfg: VmConfig::new(1), memory: Memory::PodPages, ram: MIB, vcpus: vec![(0, prog.clone())] };
        let mut sim = Sim::with_clean_range(CacheModel::new(Config::small(1)), 16, Mode::Policy, clean_range, vec![spec]);
        sim.run_to(0, 0, prog.len());
        assert_eq!(sim.vms[0].cm.counters().cleans, 0, "no set/way, no TVM trap: nothing cleans");
        assert_eq!(
            sim.lost(),
            lost,
            "{clean_range:?}: if the pod now cleans and invalidates new frames itself, this dependency is gone"
        );
    }
}

/// The property the policy exists for, on the real components: a vCPU
/// moved in the middle of its set/way loop loses data without the traps,
/// and nothing with them.
#[test]
fn migrated_flush_loop_loses_data_only_without_the_policy() {
    for mode in [Mode::Native, Mode::Policy] {
        let model = CacheModel::new(Config::small(2));
        let l1 = model.geometry(0).unwrap();
        let mut prog = vec![Op::Sctlr(true)];
        let words: Vec<u64> = (0..l1.sets as u64).map(|k| RAM_IPA + k * 64).collect();
        prog.extend(words.iter().map(|&ipa| Op::Write { ipa, val: ipa ^ 0x77 }));
        let flush_at = prog.len();
        prog.extend(linux_flush(&model, SwOp::Cisw, 0..model.levels()));
        prog.push(Op::Sctlr(false));
        prog.extend(words.iter().map(|&ipa| Op::Verify { ipa, val: ipa ^ 0x77 }));
        let end = prog.len();
        let spec = VmSpec { cfg: VmConfig::new(1), memory: Memory::PodBlocks, ram: 4 * MIB, vcpus: vec![(0, prog)] };
        let mut sim = Sim::new(model, 16, mode, vec![spec]);
        sim.run_to(0, 0, flush_at + (l1.sets * l1.ways / 2) as usize);
        sim.migrate(0, 0, 1);
        sim.run_to(0, 0, end);
        assert_eq!(sim.checked(), words.len());
        match mode {
            Mode::Native => assert!(sim.lost() > 0, "the lines left dirty on pCPU 0 are stale at the PoC"),
            Mode::Policy => assert_eq!(sim.lost(), 0, "{}", sim.describe()),
        }
        sim.check_invariants().unwrap();
    }
}

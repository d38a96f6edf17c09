//! Every transition of the per-vCPU state machine and the VM's clean cursor,
//! with fakes in place of the pager and the caches.

use std::cell::RefCell;
use std::rc::Rc;

use cache_maint::{
    CacheMaint, CacheOps, CleanSource, ConfigError, Counters, Error, Hcr, Hw, MemRun, Next, RegWrite, Reply,
    Request, SwMode, SwOp, TlbOps, VcpuId, VmConfig, VmReg, Walk, SCTLR_C, SCTLR_M,
};
use cache_model::fakes::{CacheCall, CountingTlb, RecordingCache};
use cache_model::guest::FakeSource;
use hwops::{BLOCK_SIZE as M2, PAGE_SIZE as K4};

const ON: u64 = SCTLR_M | SCTLR_C;
const V0: VcpuId = VcpuId(0);
const V1: VcpuId = VcpuId(1);

struct Rig {
    cm: CacheMaint,
    src: FakeSource,
    cache: RecordingCache,
    tlb: CountingTlb,
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Give the VM id back (256 per test process).
        if let Some(cap) = self.cm.take_cap() {
            stage2_pager::testing::return_cache_cap(cap);
        }
    }
}

impl Rig {
    fn new(cfg: VmConfig) -> Rig {
        Rig { cm: CacheMaint::new(stage2_pager::testing::cache_cap(), cfg).unwrap(), src: FakeSource::new(1), cache: RecordingCache::new(), tlb: CountingTlb::default() }
    }

    /// A VM with `blocks` populated (touched) 2 MiB blocks at IPA 0.
    fn with_blocks(cfg: VmConfig, blocks: u64) -> Rig {
        let mut r = Rig::new(cfg);
        r.src.map_range(0, 0x8000_0000, blocks * M2).unwrap();
        r
    }

    fn try_req(&mut self, req: Request) -> Result<Reply, Error> {
        let mut hw = Hw { cache: &mut self.cache, source: &mut self.src, tlb: &mut self.tlb };
        self.cm.handle(req, &mut hw)
    }

    fn req(&mut self, req: Request) -> Reply {
        self.try_req(req).unwrap()
    }

    fn sw(&mut self, v: VcpuId) -> Reply {
        self.req(Request::SetWay { vcpu: v, op: SwOp::Cisw, level: 0 })
    }

    fn sctlr(&mut self, v: VcpuId, old: u64, value: u64) -> Reply {
        self.req(Request::VmRegWrite { vcpu: v, reg: VmReg::Sctlr, value, old, sctlr: value })
    }

    /// RunSlice until the vCPU may run; returns (slices, bytes per slice).
    fn drain(&mut self, v: VcpuId) -> Vec<u64> {
        let mut per_slice = Vec::new();
        loop {
            let before = self.cache.bytes;
            let r = self.req(Request::RunSlice { vcpu: v });
            per_slice.push(self.cache.bytes - before);
            assert!(per_slice.len() < 100_000, "clean never ends");
            if let Next::Resume(_) = r.next {
                return per_slice;
            }
        }
    }
}

fn waits(r: &Reply) -> bool {
    r.next == Next::MoreWork
}

#[test]
fn initial_trap_bits_follow_sw_mode() {
    for (sw, tsw) in [(SwMode::Auto, true), (SwMode::Yes, true), (SwMode::No, false)] {
        let cm = CacheMaint::new(stage2_pager::testing::cache_cap(), VmConfig { sw, ..VmConfig::new(2) }).unwrap();
        assert_eq!(cm.hcr(V1), Ok(Hcr { tsw, tvm: false }));
        assert!(cm.may_run(V1).is_ok());
    }
}

#[test]
fn first_set_way_turns_tvm_on_and_defers_the_clean() {
    let mut r = Rig::with_blocks(VmConfig::new(2), 3);
    let rep = r.sw(V0);
    assert!(rep.hcr.tvm && rep.hcr.tsw);
    assert!(rep.sw_first_seen);
    assert!(waits(&rep));
    assert!(r.cache.calls.is_empty(), "the trap reply itself does no maintenance");
    assert_eq!(r.cm.may_run(V0), Err(Error::CleanPending(V0)));
    assert!(r.cm.may_run(V1).is_ok(), "other vCPUs keep running");
    assert!(!r.cm.hcr(V1).unwrap().tvm, "TVM is per vCPU");
    let slices = r.drain(V0);
    assert_eq!(slices.iter().sum::<u64>(), 3 * M2);
    let c = r.cm.counters();
    assert_eq!((c.sw_traps, c.clean_requests, c.cleans, c.cleaned_bytes), (1, 1, 1, 3 * M2));
    let t = r.cm.may_run(V0).unwrap();
    assert_eq!(t.hcr(), Hcr { tsw: true, tvm: true });
    assert_eq!(t.vcpu(), V0);
}

#[test]
fn set_way_with_tvm_on_does_not_clean_again() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 2);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    r.src.touch(0); // the guest wrote since: still no clean (KVM rule)
    let calls = r.cache.calls.len();
    let rep = r.sw(V0);
    assert!(!waits(&rep));
    assert!(!rep.sw_first_seen);
    assert!(rep.hcr.tvm);
    assert_eq!(r.cache.calls.len(), calls);
    let c = r.cm.counters();
    assert_eq!((c.sw_traps, c.clean_requests, c.cleans), (2, 1, 1));
}

#[test]
fn caches_turned_off_cleans_and_keeps_tvm() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    r.src.touch(0);
    let rep = r.sctlr(V0, ON, 0);
    assert_eq!(rep.write, Some(RegWrite { reg: VmReg::Sctlr, value: 0 }));
    assert!(waits(&rep));
    assert!(rep.hcr.tvm, "caches off: keep watching for them coming on");
    assert_eq!(r.drain(V0).iter().sum::<u64>(), M2);
    assert_eq!(r.cm.counters().cleans, 2);
}

#[test]
fn caches_turned_on_cleans_and_drops_tvm_then_set_way_cleans_again() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    let rep = r.sctlr(V0, 0, ON | 0x1000);
    assert_eq!(rep.write, Some(RegWrite { reg: VmReg::Sctlr, value: ON | 0x1000 }));
    assert!(waits(&rep));
    assert!(!rep.hcr.tvm);
    r.drain(V0);
    assert_eq!(r.cm.counters().cleans, 2);
    let rep = r.sw(V0);
    assert!(rep.hcr.tvm && waits(&rep), "TVM was off, so the next set/way op cleans");
    r.drain(V0);
    assert_eq!(r.cm.counters().cleans, 3);
}

#[test]
fn sctlr_write_without_a_change() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    // Off to off (other bits change): nothing, TVM stays on.
    let rep = r.sctlr(V0, 0, 1 << 12);
    assert!(!waits(&rep) && rep.hcr.tvm);
    // On to on: no clean, but caches are on, so TVM goes off.
    let rep = r.sctlr(V0, ON, ON | 1 << 12);
    assert!(!waits(&rep) && !rep.hcr.tvm);
    let c = r.cm.counters();
    assert_eq!((c.tvm_traps, c.clean_requests), (2, 1));
}

#[test]
fn only_m_and_c_together_count_as_caches_on() {
    let cases = [
        (0, SCTLR_C, false),             // C alone: still not cacheable
        (SCTLR_M, SCTLR_M, false),       // unchanged
        (SCTLR_M, ON, true),             // M then C: caches come on
        (SCTLR_C, ON, true),             // C then M
        (ON, SCTLR_M, true),             // C off
        (ON, SCTLR_C, true),             // M off
        (SCTLR_C, SCTLR_M, false),       // off to off
    ];
    for (old, value, cleans) in cases {
        let mut r = Rig::with_blocks(VmConfig::new(1), 1);
        assert!(waits(&r.sw(V0)));
        r.drain(V0);
        let rep = r.sctlr(V0, old, value);
        assert_eq!(waits(&rep), cleans, "{old:#x} -> {value:#x}");
        assert_eq!(rep.hcr.tvm, value & ON != ON, "{old:#x} -> {value:#x}");
    }
}

#[test]
fn other_vm_registers_with_caches_off_are_written_back_and_change_nothing() {
    let regs = [
        VmReg::Ttbr0,
        VmReg::Ttbr1,
        VmReg::Tcr,
        VmReg::Esr,
        VmReg::Far,
        VmReg::Afsr0,
        VmReg::Afsr1,
        VmReg::Mair,
        VmReg::Amair,
        VmReg::ContextIdr,
        VmReg::Other(7),
    ];
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    for (k, reg) in regs.into_iter().enumerate() {
        // Values with M and C set must not be taken for SCTLR.
        let rep = r.req(Request::VmRegWrite { vcpu: V0, reg, value: ON | k as u64, old: 0, sctlr: 0 });
        assert_eq!(rep.write, Some(RegWrite { reg, value: ON | k as u64 }));
        assert!(!waits(&rep) && rep.hcr.tvm);
    }
    let c = r.cm.counters();
    assert_eq!((c.tvm_traps, c.clean_requests), (regs.len() as u64, 1));
}

/// KVM's and Xen's rule: with caches on, any trapped VM-register write
/// stops the trapping (until the next set/way op turns it on again).
#[test]
fn any_vm_register_write_with_caches_on_turns_tvm_off() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    assert!(waits(&r.sw(V0)));
    r.drain(V0);
    let rep = r.req(Request::VmRegWrite { vcpu: V0, reg: VmReg::Ttbr0, value: 0x1000, old: 0, sctlr: ON });
    assert_eq!(rep.write, Some(RegWrite { reg: VmReg::Ttbr0, value: 0x1000 }));
    assert!(!waits(&rep) && !rep.hcr.tvm, "caches on: TVM off");
    assert_eq!(r.cm.counters().clean_requests, 1, "no clean for it");
    // The next set/way op turns it on again, with a clean.
    assert!(waits(&r.sw(V0)));
    assert_eq!(r.cm.counters().clean_requests, 2);
}

#[test]
fn a_waiting_vcpu_cannot_trap_and_unknown_vcpus_are_refused() {
    let mut r = Rig::with_blocks(VmConfig::new(2), 1);
    assert!(waits(&r.sw(V0)));
    assert_eq!(r.try_req(Request::SetWay { vcpu: V0, op: SwOp::Isw, level: 1 }), Err(Error::CleanPending(V0)));
    assert_eq!(
        r.try_req(Request::VmRegWrite { vcpu: V0, reg: VmReg::Sctlr, value: 0, old: ON, sctlr: 0 }),
        Err(Error::CleanPending(V0))
    );
    let v2 = VcpuId(2);
    assert_eq!(r.try_req(Request::RunSlice { vcpu: v2 }), Err(Error::NoSuchVcpu(v2)));
    assert_eq!(r.cm.may_run(v2), Err(Error::NoSuchVcpu(v2)));
    assert_eq!(r.cm.hcr(v2), Err(Error::NoSuchVcpu(v2)));
    assert_eq!(r.cm.counters().sw_traps, 1, "refused requests count nothing");
    assert_eq!(format!("{}", Error::CleanPending(V0)), "cache-maint: vCPU 0 waits for a clean");
}

#[test]
fn run_slice_for_a_vcpu_that_waits_for_nothing_does_nothing() {
    let mut r = Rig::with_blocks(VmConfig::new(2), 2);
    let rep = r.req(Request::RunSlice { vcpu: V1 });
    assert!(!waits(&rep));
    assert!(waits(&r.sw(V0)));
    let rep = r.req(Request::RunSlice { vcpu: V1 });
    assert!(!waits(&rep));
    assert!(r.cache.calls.is_empty());
    assert_eq!(r.cm.counters().slices, 0);
}

#[test]
fn a_request_during_a_pass_waits_for_the_next_pass() {
    let cfg = VmConfig { slice_bytes: M2, ..VmConfig::new(3) };
    let mut r = Rig::with_blocks(cfg, 4);
    assert!(waits(&r.sw(V0)));
    let _ = r.req(Request::RunSlice { vcpu: V0 }); // chunk 0 done
    assert!(r.cm.clean_in_progress());
    r.src.touch(0); // written again after its clean
    assert!(waits(&r.sw(V1)));
    // V1 helps with pass 1; V0 is released when pass 1 ends, V1 is not.
    let mut guard = 0;
    while r.cm.may_run(V0).is_err() {
        let rep = r.req(Request::RunSlice { vcpu: V1 });
        assert!(waits(&rep), "V1 waits for pass 2");
        guard += 1;
        assert!(guard < 10);
    }
    assert_eq!(r.cm.counters().cleans, 1);
    assert_eq!(r.cm.counters().cleaned_bytes, 4 * M2);
    assert!(r.cm.may_run(V1).is_err());
    // A third request during pass 2 waits for pass 3.
    let _ = r.req(Request::RunSlice { vcpu: V1 });
    r.src.touch(3 * M2);
    assert!(waits(&r.sw(VcpuId(2))));
    r.drain(V1);
    assert_eq!(r.cm.counters().cleans, 2);
    assert_eq!(r.cm.counters().cleaned_bytes, 5 * M2, "pass 2 took only chunk 0, touched again");
    assert!(r.cm.may_run(VcpuId(2)).is_err());
    r.drain(VcpuId(2));
    assert_eq!(r.cm.counters().cleaned_bytes, 6 * M2, "pass 3 took only chunk 3");
    assert!(!r.cm.clean_in_progress());
}

#[test]
fn the_slice_budget_bounds_every_slice() {
    for budget in [4 * K4, 64 * 1024, 96 * 1024, M2, 4 * M2] {
        let cfg = VmConfig { slice_bytes: budget, ..VmConfig::new(1) };
        let mut r = Rig::with_blocks(cfg, 3);
        // And some scattered pages in a fourth chunk.
        for k in [0u64, 1, 2, 7, 8, 100] {
            r.src.map(3 * M2 + k * K4, 0x1_0000_0000 + k * 2 * K4, K4).unwrap();
        }
        let total = 3 * M2 + 6 * K4;
        assert!(waits(&r.sw(V0)));
        let slices = r.drain(V0);
        assert!(slices.iter().all(|&b| b <= budget), "budget {budget}: {slices:?}");
        assert_eq!(slices.iter().sum::<u64>(), total);
        let c = r.cm.counters();
        assert_eq!(c.max_slice_bytes, *slices.iter().max().unwrap());
        assert_eq!(c.max_slice_bytes, core::cmp::min(budget, total));
        assert_eq!(c.slices, slices.len() as u64);
        assert!(slices.len() as u64 >= total.div_ceil(budget));
        assert!(*slices.last().unwrap() > 0 || slices.len() == 1, "no empty last slice: done is seen ahead");
    }
}

#[test]
fn the_steps_bound_limits_source_lookups_per_slice() {
    let cfg = VmConfig { slice_steps: 4, ..VmConfig::new(1) };
    let mut r = Rig::new(cfg);
    for c in 0..20u64 {
        r.src.map(c * M2 + 5 * K4, 0x1_0000_0000 + c * 4 * K4, K4).unwrap();
    }
    assert!(waits(&r.sw(V0)));
    let mut slices = 0;
    loop {
        let before = r.src.next_run_calls();
        let rep = r.req(Request::RunSlice { vcpu: V0 });
        // 4 steps, plus up to 2 look-ahead queries.
        assert!(r.src.next_run_calls() - before <= 6);
        slices += 1;
        if !waits(&rep) {
            break;
        }
    }
    assert!(slices >= 20 * 3 / 4, "each chunk takes 3 steps");
    assert_eq!(r.cm.counters().cleaned_bytes, 20 * K4);
}

/// Logs source and cache calls in one sequence, to check their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Clear(u64),
    Clean(u64, u64),
}

struct Logged {
    inner: FakeSource,
    log: Rc<RefCell<Vec<Ev>>>,
}

impl CleanSource for Logged {
    fn next_run(&self, from: u64, all: bool) -> Option<MemRun> {
        self.inner.next_run(from, all)
    }
    fn clear_touched(&mut self, ipa: u64, len: u64, tlb: &mut dyn TlbOps) {
        assert_eq!(len, M2);
        self.log.borrow_mut().push(Ev::Clear(ipa));
        self.inner.clear_touched(ipa, len, tlb);
    }
}

struct LoggedCache(Rc<RefCell<Vec<Ev>>>);

impl CacheOps for LoggedCache {
    fn clean_range(&mut self, _: u64, _: u64) {
        panic!("a clean alone never drops stale lines: use clean+invalidate");
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.0.borrow_mut().push(Ev::Clean(pa, len));
    }
    fn invalidate_icache_all(&mut self) {}
}

#[test]
fn each_touched_chunk_is_cleared_before_its_runs_are_cleaned_one_call_per_run() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut src = FakeSource::new(1);
    // Chunk 0: three contiguous pages, then one after a PA gap.
    src.map(0, 0x10_0000, K4).unwrap();
    src.map(K4, 0x10_1000, K4).unwrap();
    src.map(2 * K4, 0x10_2000, K4).unwrap();
    src.map(8 * K4, 0x50_0000, K4).unwrap();
    // Chunk 1: a block. Chunk 2: a block, untouched after the first clean.
    src.map(M2, 0x4000_0000, M2).unwrap();
    src.map(2 * M2, 0x4020_0000, M2).unwrap();
    let mut src = Logged { inner: src, log: log.clone() };
    let mut cache = LoggedCache(log.clone());
    let mut tlb = CountingTlb::default();
    let cfg = VmConfig { slice_bytes: 4 * M2, ..VmConfig::new(1) };
    let mut cm = CacheMaint::new(stage2_pager::testing::cache_cap(), cfg).unwrap();
    let mut run = |cm: &mut CacheMaint, src: &mut Logged, req| {
        let mut hw = Hw { cache: &mut cache, source: src, tlb: &mut tlb };
        cm.handle(req, &mut hw).unwrap()
    };
    let rep = run(&mut cm, &mut src, Request::SetWay { vcpu: V0, op: SwOp::Csw, level: 1 });
    assert!(waits(&rep));
    let rep = run(&mut cm, &mut src, Request::RunSlice { vcpu: V0 });
    assert!(!waits(&rep));
    assert_eq!(
        *log.borrow(),
        [
            Ev::Clear(0),
            Ev::Clean(0x10_0000, 3 * K4),
            Ev::Clean(0x50_0000, K4),
            Ev::Clear(M2),
            Ev::Clean(0x4000_0000, M2),
            Ev::Clear(2 * M2),
            Ev::Clean(0x4020_0000, M2),
        ]
    );
    // The guest writes chunk 1 only; caches go off: only chunk 1 is cleaned.
    log.borrow_mut().clear();
    src.inner.touch(M2 + 123);
    let rep = run(&mut cm, &mut src, Request::VmRegWrite { vcpu: V0, reg: VmReg::Sctlr, value: 0, old: ON, sctlr: 0 });
    assert!(waits(&rep));
    let rep = run(&mut cm, &mut src, Request::RunSlice { vcpu: V0 });
    assert!(!waits(&rep));
    assert_eq!(*log.borrow(), [Ev::Clear(M2), Ev::Clean(0x4000_0000, M2)]);
    assert_eq!(tlb.ipa, 4, "the source re-armed touch detection per cleared chunk");
}

#[test]
fn a_write_racing_with_the_clean_is_caught_by_the_next_pass() {
    let cfg = VmConfig { slice_bytes: 64 * 1024, ..VmConfig::new(1) };
    let mut r = Rig::with_blocks(cfg, 2);
    assert!(waits(&r.sw(V0)));
    let _ = r.req(Request::RunSlice { vcpu: V0 }); // chunk 0 cleared, partly cleaned
    assert!(!r.src.is_touched(0));
    r.src.touch(0x1000); // a write lands in the part already cleaned
    r.drain(V0);
    assert!(r.src.is_touched(0), "the chunk stays marked for the next clean");
    let rep = r.sctlr(V0, ON, 0);
    assert!(waits(&rep));
    let before = r.cache.bytes;
    r.drain(V0);
    assert_eq!(r.cache.bytes - before, M2, "only the re-touched chunk");
}

#[test]
fn eager_all_walks_everything_and_never_clears() {
    for cfg in [
        VmConfig { walk: Walk::All, ..VmConfig::new(1) },
        VmConfig { direct_mapped: true, ..VmConfig::new(1) },
    ] {
        let mut r = Rig::with_blocks(cfg, 5);
        assert!(waits(&r.sw(V0)));
        r.drain(V0);
        assert!(waits(&r.sctlr(V0, ON, 0)));
        r.drain(V0);
        assert_eq!(r.src.clear_calls(), 0);
        assert_eq!(r.tlb, CountingTlb::default());
        assert_eq!(r.cm.counters().cleaned_bytes, 2 * 5 * M2, "untouched memory cleaned too");
        assert!(r.cache.calls.iter().all(|c| matches!(c, CacheCall::CleanInvalidate(..))));
    }
}

#[test]
fn fwb_means_no_tvm_and_no_cleans() {
    for sw in [SwMode::Auto, SwMode::No] {
        let mut r = Rig::with_blocks(VmConfig { fwb: true, sw, ..VmConfig::new(1) }, 2);
        let rep = r.sw(V0);
        assert!(!waits(&rep));
        assert!(!rep.hcr.tvm);
        assert!(rep.sw_first_seen, "still reported, for hardware-domain pinning");
        let rep = r.sctlr(V0, 0, ON);
        assert!(!waits(&rep) && !rep.hcr.tvm);
        assert_eq!(rep.write, Some(RegWrite { reg: VmReg::Sctlr, value: ON }));
        let rep = r.sctlr(V0, ON, 0);
        assert!(!waits(&rep) && !rep.hcr.tvm);
        let c = r.cm.counters();
        assert_eq!((c.sw_traps, c.tvm_traps, c.clean_requests, c.cleaned_bytes), (1, 2, 0, 0));
        assert!(r.cache.calls.is_empty());
    }
}

#[test]
fn sw_yes_applies_the_policy_even_with_fwb() {
    let mut r = Rig::with_blocks(VmConfig { fwb: true, sw: SwMode::Yes, ..VmConfig::new(1) }, 2);
    let rep = r.sw(V0);
    assert!(rep.hcr.tvm && waits(&rep));
    r.drain(V0);
    assert_eq!(r.cm.counters().cleaned_bytes, 2 * M2);
}

#[test]
fn sw_no_does_not_trap_but_a_trapped_op_is_still_handled_safely() {
    let mut r = Rig::with_blocks(VmConfig { sw: SwMode::No, ..VmConfig::new(1) }, 1);
    assert!(!r.cm.hcr(V0).unwrap().tsw);
    let rep = r.sw(V0);
    assert!(!rep.hcr.tsw && rep.hcr.tvm && waits(&rep));
}

#[test]
fn reset_drops_tvm_but_keeps_a_pending_wait() {
    let mut r = Rig::with_blocks(VmConfig::new(2), 1);
    assert!(waits(&r.sw(V0)));
    let rep = r.req(Request::Reset { vcpu: V0 });
    assert!(!rep.hcr.tvm && waits(&rep));
    r.drain(V0);
    assert!(waits(&r.sw(V1)));
    r.drain(V1);
    let rep = r.req(Request::Reset { vcpu: V1 });
    assert!(!rep.hcr.tvm && !waits(&rep));
    assert!(waits(&r.sw(V1)), "after a reset the next set/way op cleans again");
}

#[test]
fn the_hardware_domain_cleans_its_ram_and_reports_first_use() {
    let cfg = VmConfig { direct_mapped: true, ..VmConfig::new(2) };
    let mut r = Rig::new(cfg);
    // Direct-mapped: IPA == PA, two RAM banks.
    r.src.map_range(0x4000_0000, 0x4000_0000, 4 * M2).unwrap();
    r.src.map_range(0x8000_0000, 0x8000_0000, M2).unwrap();
    let rep = r.sw(V1);
    assert!(rep.sw_first_seen);
    r.drain(V1);
    assert!(!r.sw(V0).sw_first_seen, "reported once per VM");
    r.drain(V0);
    let cleaned: Vec<(u64, u64)> = r
        .cache
        .calls
        .iter()
        .map(|c| match *c {
            CacheCall::CleanInvalidate(pa, len) => (pa, len),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(cleaned.iter().all(|&(pa, len)| (0x4000_0000..0x4080_0000).contains(&pa) && pa + len <= 0x4080_0000
        || (0x8000_0000..0x8020_0000).contains(&pa) && pa + len <= 0x8020_0000));
    assert_eq!(r.cm.counters().cleaned_bytes, 2 * 5 * M2);
    assert_eq!(r.src.clear_calls(), 0);
}

/// A source that breaks the contract.
struct Broken {
    run: MemRun,
}

impl CleanSource for Broken {
    fn next_run(&self, _from: u64, _all: bool) -> Option<MemRun> {
        Some(self.run)
    }
    fn clear_touched(&mut self, _: u64, _: u64, _: &mut dyn TlbOps) {}
}

#[test]
fn a_faulty_source_cannot_make_the_clean_loop_for_ever() {
    for run in [MemRun { ipa: 0, pa: 0, len: K4 }, MemRun { ipa: 0x5000, pa: 0, len: 0 }] {
        let mut cm = CacheMaint::new(stage2_pager::testing::cache_cap(), VmConfig::new(1)).unwrap();
        let mut src = Broken { run };
        let mut cache = RecordingCache::new();
        let mut tlb = CountingTlb::default();
        let mut go = |cm: &mut CacheMaint, req| {
            let mut hw = Hw { cache: &mut cache, source: &mut src, tlb: &mut tlb };
            cm.handle(req, &mut hw).unwrap()
        };
        assert!(waits(&go(&mut cm, Request::SetWay { vcpu: V0, op: SwOp::Cisw, level: 0 })));
        let mut n = 0;
        while waits(&go(&mut cm, Request::RunSlice { vcpu: V0 })) {
            n += 1;
            assert!(n < 10, "stuck");
        }
        assert!(cm.counters().source_faults > 0);
        assert!(cm.counters().cleaned_bytes <= K4);
    }
}

#[test]
fn config_is_checked() {
    let bad = [
        (VmConfig::new(0), ConfigError::VcpuCount(0)),
        (VmConfig::new(9), ConfigError::VcpuCount(9)),
        (VmConfig { slice_bytes: 1000, ..VmConfig::new(1) }, ConfigError::SliceBytes(1000)),
        (VmConfig { slice_bytes: 6000, ..VmConfig::new(1) }, ConfigError::SliceBytes(6000)),
        (VmConfig { slice_steps: 0, ..VmConfig::new(1) }, ConfigError::SliceSteps),
    ];
    for (cfg, err) in bad {
        assert_eq!(CacheMaint::new(stage2_pager::testing::cache_cap(), cfg).err(), Some(err));
    }
    assert_eq!(
        ConfigError::SliceBytes(6000).to_string(),
        "cache-maint: slice of 6000 bytes (allowed: a multiple of 4096, at least 4096)"
    );
    assert!(CacheMaint::new(stage2_pager::testing::cache_cap(), VmConfig::new(8)).is_ok());
}

#[test]
fn sw_mode_names() {
    for m in [SwMode::Auto, SwMode::Yes, SwMode::No] {
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(SwMode::default(), SwMode::Auto);
}

#[test]
fn counters_add_up() {
    let a = Counters { sw_traps: 1, tvm_traps: 2, clean_requests: 3, cleans: 4, cleaned_bytes: 5, max_slice_bytes: 60, slices: 7, source_faults: 0 };
    let b = Counters { sw_traps: 10, tvm_traps: 20, clean_requests: 30, cleans: 40, cleaned_bytes: 50, max_slice_bytes: 6, slices: 70, source_faults: 1 };
    let mut s = a;
    s.add(&b);
    assert_eq!(s, Counters { sw_traps: 11, tvm_traps: 22, clean_requests: 33, cleans: 44, cleaned_bytes: 55, max_slice_bytes: 60, slices: 77, source_faults: 1 });
}

#[test]
fn the_state_consumes_its_capability_and_refuses_once_it_is_taken_back() {
    let mut r = Rig::with_blocks(VmConfig::new(1), 1);
    let vm = r.cm.vm().expect("made from a capability");
    let mut hw = Hw { cache: &mut r.cache, source: &mut r.src, tlb: &mut r.tlb };
    let reply = r.cm.handle(Request::SetWay { vcpu: V0, op: SwOp::Cisw, level: 0 }, &mut hw).unwrap();
    assert!(waits(&reply), "a clean is pending");
    let cap = r.cm.take_cap().expect("the capability it consumed");
    assert_eq!((cap.vm(), r.cm.vm()), (vm, None));
    assert_eq!(r.cm.handle(Request::RunSlice { vcpu: V0 }, &mut hw).err(), Some(Error::Revoked));
    assert!(r.cache.calls.is_empty() && r.cache.bytes == 0, "a revoked state did no maintenance");
    stage2_pager::testing::return_cache_cap(cap);
}

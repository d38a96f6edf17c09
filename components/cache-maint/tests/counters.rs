//! Bytes cleaned per set/way event: populate-on-demand with touch tracking
//! against eager mapping, on a synthetic boot of a 1 GiB guest that touches
//! 32 MiB. Only addresses move; no memory behind them is needed.

use cache_maint::{CacheMaint, Counters, Hw, Next, Request, SwOp, VcpuId, VmConfig, VmReg, Walk, SCTLR_C, SCTLR_M};
use cache_model::fakes::{CountingTlb, RecordingCache};
use cache_model::guest::{GuestMem, Populate};
use hwops::BLOCK_SIZE as M2;

const GIB: u64 = hwops::GIB;
const MIB: u64 = 1024 * 1024;

struct Guest {
    mem: GuestMem,
    cm: CacheMaint,
    cache: RecordingCache,
    tlb: CountingTlb,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(cap) = self.cm.take_cap() {
            stage2_pager::testing::return_cache_cap(cap);
        }
    }
}

impl Guest {
    fn new(eager: bool) -> Guest {
        let mut mem = GuestMem::new(1, 1 << 40, Populate::Block);
        if eager {
            mem.map_eager(0, GIB);
        }
        let walk = if eager { Walk::All } else { Walk::Touched };
        let cm = CacheMaint::new(stage2_pager::testing::cache_cap(), VmConfig { walk, ..VmConfig::new(1) }).unwrap();
        Guest { mem, cm, cache: RecordingCache::counting(), tlb: CountingTlb::default() }
    }

    /// The guest writes somewhere in `[ipa, ipa+len)`, every 4 KiB.
    fn touch(&mut self, ipa: u64, len: u64) {
        for a in (ipa..ipa + len).step_by(4096) {
            self.mem.populate_at(a);
            self.mem.source.touch(a);
        }
    }

    /// One trapped event, then slices until the vCPU may run; the bytes.
    fn event(&mut self, req: Request) -> u64 {
        let before = self.cache.bytes;
        let mut req = req;
        loop {
            let mut hw = Hw { cache: &mut self.cache, source: &mut self.mem.source, tlb: &mut self.tlb };
            let r = self.cm.handle(req, &mut hw).unwrap();
            if let Next::Resume(_) = r.next {
                break;
            }
            req = Request::RunSlice { vcpu: VcpuId(0) };
        }
        self.cache.bytes - before
    }

    fn counters(&self) -> Counters {
        self.cm.counters()
    }
}

/// Kernel image and initramfs low, page tables and stacks high, 32 MiB in all.
fn boot(g: &mut Guest) {
    g.touch(0, 24 * MIB);
    g.touch(GIB - 8 * MIB, 2 * MIB);
    g.touch(GIB / 2, 4 * MIB);
    g.touch(GIB / 4 + 8 * M2, 2 * MIB);
}

#[test]
fn pod_cleans_about_one_thirty_second_of_eager() {
    let mut pod = Guest::new(false);
    let mut eager = Guest::new(true);
    boot(&mut pod);
    boot(&mut eager);
    let pod_populated = pod.mem.source.populated_bytes();
    let eager_populated = eager.mem.source.populated_bytes();
    assert_eq!(pod_populated, 32 * MIB);
    assert_eq!(eager_populated, GIB);

    // Event 1: the first set/way op of the boot-time flush.
    let sw = Request::SetWay { vcpu: VcpuId(0), op: SwOp::Cisw, level: 0 };
    let pod1 = pod.event(sw);
    let eager1 = eager.event(sw);
    let ratio1 = pod1 as f64 / eager1 as f64;
    let expected = pod_populated as f64 / eager_populated as f64;
    println!("set/way event 1: PoD cleaned {pod1} bytes, eager {eager1} bytes, ratio {ratio1:.5} (1/{:.1})", 1.0 / ratio1);
    assert_eq!(pod1, pod_populated, "PoD cleans what it populated");
    assert_eq!(eager1, eager_populated, "eager cleans all it mapped");
    assert!((ratio1 - expected).abs() < 1e-12);
    assert!((ratio1 * 32.0 - 1.0).abs() < 0.01, "near 1/32: {ratio1}");

    // Event 2: the guest turns its caches on after touching 4 MiB more (one
    // chunk it had, one new); PoD cleans only what was touched since.
    let on = Request::VmRegWrite { vcpu: VcpuId(0), reg: VmReg::Sctlr, value: SCTLR_M | SCTLR_C, old: 0, sctlr: SCTLR_M | SCTLR_C };
    for g in [&mut pod, &mut eager] {
        g.touch(0, 4096);
        g.touch(GIB / 8, 4096);
    }
    let pod2 = pod.event(on);
    let eager2 = eager.event(on);
    let ratio2 = pod2 as f64 / eager2 as f64;
    println!("toggle event 2:  PoD cleaned {pod2} bytes, eager {eager2} bytes, ratio {ratio2:.5} (1/{:.1})", 1.0 / ratio2);
    assert_eq!(pod2, 2 * M2);
    assert_eq!(eager2, GIB);

    for (name, g) in [("pod", &pod), ("eager", &eager)] {
        let c = g.counters();
        println!(
            "{name}: cleans={} cleaned_bytes={} max_slice_bytes={} slices={}",
            c.cleans, c.cleaned_bytes, c.max_slice_bytes, c.slices
        );
        assert_eq!(c.cleans, 2);
        assert_eq!(c.max_slice_bytes, g.cm.config().slice_bytes);
        assert_eq!(c.cleaned_bytes, g.cache.bytes);
    }
}

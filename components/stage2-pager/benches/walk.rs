//! What the touched record buys: finding the runs to clean in a 4 GiB guest
//! with 64 MiB touched, against walking every mapped page of an eagerly
//! populated 4 GiB guest, and against walking a PoD guest's populated set.
//!
//! Frames are only numbers here (the pager never touches guest memory), so
//! a 4 GiB guest costs just its page tables (about 8 MiB of heap).

use capabilities::{CacheCap, PodCap, SchedCap, VgicCap, VmCaps};
use criterion::{criterion_group, Criterion, Throughput};
use hwops::{CleanSource, BLOCK_SIZE, GIB, PAGE_SIZE};
use stage2_pager::testing::{self, HostTable, RecordingHw};
use stage2_pager::{LeafSize, MemAttrs, Pager};
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;

const RAM: u64 = 0x4000_0000;
const GUEST: u64 = 4 * GIB;
const TOUCHED: u64 = 64 << 20;

struct Guest {
    pager: Option<Pager<HostTable>>,
    rest: Option<(PodCap, CacheCap, (SchedCap, VgicCap))>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let (stage2, _) = self.pager.take().unwrap().into_parts();
        let (pod, cache, sched) = self.rest.take().unwrap();
        testing::revoke(VmCaps {
            stage2,
            pod,
            cache,
            sched: sched.0,
                vgic: sched.1,
        });
    }
}

// `mapped` bytes of 4 KiB pages from RAM; then everything is cleaned and
// `touched` bytes (spread over the guest) are touched again.
fn guest(mapped: u64, touched: u64) -> Guest {
    let VmCaps {
        stage2,
        pod,
        cache,
        sched,
        vgic,
    } = testing::grant();
let sched = (sched, vgic);
    let rest = (pod, cache, sched);
    let mut p = Pager::new(stage2, testing::host_table(), RAM).unwrap();
    let mut hw = RecordingHw::quiet();
    let mut ipa = RAM;
    while ipa < RAM + mapped {
        p.map(
            ipa,
            0x10_0000_0000 + (ipa - RAM),
            LeafSize::Page4K,
            MemAttrs::Normal,
            &mut hw,
        )
        .unwrap();
        ipa += PAGE_SIZE;
    }
    p.clear_touched(RAM, GUEST, &mut hw);
    // Touch whole 2 MiB chunks spread evenly over what is mapped.
    let chunks = touched / BLOCK_SIZE;
    let stride = (mapped / BLOCK_SIZE / chunks.max(1)).max(1) * BLOCK_SIZE;
    for k in 0..chunks {
        let c = RAM + k * stride;
        for a in (c..c + BLOCK_SIZE).step_by(PAGE_SIZE as usize) {
            p.handle_access_fault(a).unwrap();
        }
    }
    Guest {
        pager: Some(p),
        rest: Some(rest),
    }
}

// Walk the runs `next_run` gives; returns bytes found.
fn runs(p: &Pager<HostTable>, all: bool) -> u64 {
    let mut from = 0;
    let mut bytes = 0;
    while let Some(r) = p.next_run(from, all) {
        bytes += r.len;
        from = r.ipa + r.len;
    }
    bytes
}

// Visit every mapped leaf.
fn every_page(p: &Pager<HostTable>) -> u64 {
    let mut n = 0;
    p.walk(0, p.ipa_limit(), &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    });
    n
}

fn walks(c: &mut Criterion) {
    let eager = guest(GUEST, TOUCHED);
    let pod = guest(TOUCHED, TOUCHED);
    let e = eager.pager.as_ref().unwrap();
    let d = pod.pager.as_ref().unwrap();
    assert_eq!(runs(e, false), TOUCHED);
    assert_eq!(runs(e, true), GUEST);
    assert_eq!(runs(d, true), TOUCHED);
    let mut g = c.benchmark_group("walk-4GiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(TOUCHED));
    g.bench_function("touched runs, eager guest, 64 MiB touched", |b| {
        b.iter(|| black_box(runs(e, false)))
    });
    g.bench_function("populated runs, PoD guest, 64 MiB populated", |b| {
        b.iter(|| black_box(runs(d, true)))
    });
    g.throughput(Throughput::Bytes(GUEST));
    g.bench_function("every mapped page, eager guest", |b| {
        b.iter(|| black_box(every_page(e)))
    });
    g.bench_function("all runs, eager guest", |b| {
        b.iter(|| black_box(runs(e, true)))
    });
    g.finish();
}

fn best_of<F: FnMut() -> u64>(n: u32, mut f: F) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

// One line for humans: how much cheaper the touched walk is.
fn ratio() {
    let eager = guest(GUEST, TOUCHED);
    let pod = guest(TOUCHED, TOUCHED);
    let e = eager.pager.as_ref().unwrap();
    let d = pod.pager.as_ref().unwrap();
    let touched = best_of(5, || runs(e, false));
    let populated = best_of(5, || runs(d, true));
    let every = best_of(3, || every_page(e));
    println!(
        "walk ratio: every page of an eager 4 GiB guest {:.2} ms; touched 64 MiB {:.3} ms ({:.0}x less); \
         PoD populated 64 MiB {:.3} ms ({:.0}x less)",
        every * 1e3,
        touched * 1e3,
        every / touched,
        populated * 1e3,
        every / populated
    );
}

criterion_group!(benches, walks);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratio();
}

//! Faults per second on the host: 2 MiB populations and 4 KiB populations.
//!
//! The fake frames cost nothing (no memory is zeroed; the pager only needs
//! addresses), so this measures the software path: pool bookkeeping, the
//! stage-2 table update, the TLB and cache calls. On hardware, zeroing and
//! cleaning the frame comes on top.

use capabilities::{CacheCap, SchedCap, VgicCap, VmCaps};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hwops::{BLOCK_SIZE, GIB, PAGE_SIZE};
use pod::{Mode, Outcome, Pod, PodConfig};
use stage2_pager::testing::{self, HostTable, RecordingHw};
use stage2_pager::{LeafSize, Pager};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RAM: u64 = 0x4000_0000;
const GUEST: u64 = 4 * GIB;

struct Guest {
    pager: Option<Pager<HostTable>>,
    pod: Option<Pod>,
    hw: RecordingHw,
    rest: Option<(CacheCap, (SchedCap, VgicCap))>,
}

impl Guest {
    fn new() -> Self {
        let VmCaps {
            stage2,
            pod,
            cache,
            sched,
            vgic,
        } = testing::grant();
        let sched = (sched, vgic);
        Guest {
            pager: Some(Pager::new(stage2, testing::host_table(), RAM).unwrap()),
            pod: Some(Pod::new(pod, PodConfig::new(RAM, GUEST, Mode::OnDemand)).unwrap()),
            hw: RecordingHw::quiet(),
            rest: Some((cache, sched)),
        }
    }

    fn fault(&mut self, ipa: u64) -> Outcome {
        self.pod
            .as_mut()
            .unwrap()
            .fault(self.pager.as_mut().unwrap(), &mut self.hw, ipa)
            .unwrap()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let (stage2, _) = self.pager.take().unwrap().into_parts();
        let pod = self.pod.take().unwrap().into_cap();
        let (cache, sched) = self.rest.take().unwrap();
        testing::revoke(VmCaps {
            stage2,
            pod,
            cache,
            sched: sched.0,
                vgic: sched.1,
        });
    }
}

// A guest whose pool is 2 MiB frames covering all its RAM.
fn guest_2m() -> (Guest, u64) {
    let mut g = Guest::new();
    g.pod
        .as_mut()
        .unwrap()
        .grant(0x10_0000_0000, GUEST)
        .unwrap();
    (g, GUEST / BLOCK_SIZE)
}

// A guest whose pool is only 4 KiB frames: ranges of 511 pages that never
// hold an aligned 2 MiB.
fn guest_4k() -> (Guest, u64) {
    let mut g = Guest::new();
    let mut n = 0;
    for i in 0..pod::EXTENTS as u64 {
        g.pod
            .as_mut()
            .unwrap()
            .grant(
                0x10_0000_0000 + i * 2 * BLOCK_SIZE + PAGE_SIZE,
                511 * PAGE_SIZE,
            )
            .unwrap();
        n += 511;
    }
    (g, n)
}

// Time `iters` faults, building fresh guests (untimed) whenever one is full.
fn run(iters: u64, make: fn() -> (Guest, u64), step: u64, want: LeafSize) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let (mut g, capacity) = make();
        let n = capacity.min(iters - done);
        let t = Instant::now();
        for i in 0..n {
            black_box(g.fault(RAM + i * step));
        }
        total += t.elapsed();
        match g.fault(RAM) {
            Outcome::AlreadyMapped => {}
            o => panic!("{o:?}"),
        }
        assert!(matches!(g.pager.as_ref().unwrap().leaf(RAM), Some(l) if l.size == want));
        done += n;
    }
    total
}

fn faults(c: &mut Criterion) {
    let mut g = c.benchmark_group("pod-faults");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function("2 MiB populate", |b| {
        b.iter_custom(|iters| run(iters, guest_2m, BLOCK_SIZE, LeafSize::Block2M))
    });
    g.bench_function("4 KiB populate", |b| {
        b.iter_custom(|iters| run(iters, guest_4k, PAGE_SIZE, LeafSize::Page4K))
    });
    g.finish();
}

criterion_group!(benches, faults);
criterion_main!(benches);

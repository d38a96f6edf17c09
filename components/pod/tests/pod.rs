//! Every path of the PoD pool, one at a time.

mod common;

use common::*;
use pod::{
    Filled, GrantError, InvariantError, Mode, Outcome, Pod, PodConfig, PodError, Reply, Request,
    Stats,
};
use stage2_pager::testing::Event;
use stage2_pager::LeafSize::*;
use stage2_pager::MemAttrs;

fn populated(size: stage2_pager::LeafSize, ipa: u64, pa: u64) -> Result<Outcome, PodError> {
    Ok(Outcome::Populated { size, ipa, pa })
}

#[test]
fn two_mib_preferred_zeroed_and_cleaned_first() {
    let mut vm = Vm::on_demand(8 * MB2);
    vm.pod().grant(0x8000_0000, 4 * MB2).unwrap();
    let m = vm.mark();
    assert_eq!(
        vm.fault(RAM + MB2 + 0x1234),
        populated(Block2M, RAM + MB2, 0x8000_0000)
    );
    let ev = vm.since(m);
    assert_eq!(
        ev,
        [
            Event::Zero {
                pa: 0x8000_0000,
                len: MB2
            },
            Event::Clean {
                pa: 0x8000_0000,
                len: MB2
            },
            Event::Write {
                ipa: RAM + MB2,
                pa: 0x8000_0000,
                len: MB2,
                size: Block2M,
                attrs: MemAttrs::Normal,
                accessed: true
            },
        ]
    );
    assert_eq!(
        vm.pager().translate(RAM + MB2 + 0x1234),
        Some((0x8000_1234, MB2))
    );
    let s = vm.pod().stats();
    assert_eq!(
        (
            s.pod_2m,
            s.pod_4k,
            s.populated_pages,
            s.pool_pages,
            s.owned_pages
        ),
        (1, 0, 512, 3 * 512, 4 * 512)
    );
    assert_eq!(s.populated_bytes(), MB2);
    assert_eq!(vm.fault(RAM + MB2), Ok(Outcome::AlreadyMapped));
}

#[test]
fn four_k_when_no_2m_frame() {
    let mut vm = Vm::on_demand(4 * MB2);
    vm.pod().grant(0x8000_3000, 5 * K4).unwrap(); // no aligned 2 MiB inside
    let m = vm.mark();
    assert_eq!(
        vm.fault(RAM + 0x5010),
        populated(Page4K, RAM + 0x5000, 0x8000_3000)
    );
    assert_eq!(zeroed_and_cleaned_before_map(&vm.since(m), &[]), 1);
    assert_eq!(vm.pod().stats().splinters, 0);
}

#[test]
fn four_k_when_a_neighbour_is_populated_splinters_a_2m_frame() {
    let mut vm = Vm::on_demand(4 * MB2);
    vm.pod().grant(0x8000_3000, K4).unwrap();
    assert_eq!(vm.fault(RAM), populated(Page4K, RAM, 0x8000_3000));
    vm.pod().grant(0x9000_0000, MB2).unwrap();
    // Same chunk, a 2 MiB frame is free, but a neighbour is populated.
    let m = vm.mark();
    assert_eq!(
        vm.fault(RAM + 7 * K4),
        populated(Page4K, RAM + 7 * K4, 0x9000_0000)
    );
    assert_eq!(zeroed_and_cleaned_before_map(&vm.since(m), &[]), 1);
    let s = vm.pod().stats();
    assert_eq!(
        (s.splinters, s.pool_pages, s.pod_4k, s.pod_2m),
        (1, 511, 2, 0)
    );
    // The next chunk is empty, but no 2 MiB frame is left: 4 KiB from the splinter.
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Page4K, RAM + MB2, 0x9000_1000)
    );
}

#[test]
fn partial_chunks_at_ram_edges_get_pages() {
    // RAM starts 12 KiB into a chunk and ends 8 KiB into one.
    let mut vm = Vm::new(PodConfig::new(RAM + 3 * K4, 2 * MB2, Mode::OnDemand));
    vm.pod().grant(0x8000_0000, 4 * MB2).unwrap();
    assert_eq!(
        vm.fault(RAM + 3 * K4),
        populated(Page4K, RAM + 3 * K4, 0x8000_0000)
    );
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Block2M, RAM + MB2, 0x8020_0000)
    );
    assert_eq!(
        vm.fault(RAM + 2 * MB2),
        populated(Page4K, RAM + 2 * MB2, 0x8000_1000)
    );
    assert_eq!(
        vm.fault(RAM + 2 * MB2 + 3 * K4),
        Err(PodError::OutsideRam {
            ipa: RAM + 2 * MB2 + 3 * K4
        })
    );
    assert_eq!(
        vm.fault(RAM + 2 * K4),
        Err(PodError::OutsideRam { ipa: RAM + 2 * K4 })
    );
}

#[test]
fn outside_ram_is_refused() {
    let mut vm = Vm::on_demand(MB2);
    vm.pod().grant(0x8000_0000, MB2).unwrap();
    for ipa in [0, RAM - 1, RAM + MB2, 0x0900_0000, u64::MAX] {
        let m = vm.mark();
        assert_eq!(vm.fault(ipa), Err(PodError::OutsideRam { ipa }));
        assert!(vm.since(m).is_empty(), "nothing done for {ipa:#x}");
    }
    assert_eq!(
        vm.populate(RAM + MB2 - K4, 2 * K4),
        Err(PodError::OutsideRam { ipa: RAM + MB2 })
    );
    assert_eq!(
        vm.populate(RAM - K4, K4),
        Err(PodError::OutsideRam { ipa: RAM - K4 })
    );
    assert_eq!(vm.pod().stats().populated_pages, 0);
}

#[test]
fn bad_grants_are_rejected() {
    let mut vm = Vm::on_demand(MB2);
    let pod = vm.pod();
    pod.grant(0x8000_0000, 4 * MB2).unwrap();
    let before = pod.stats();
    assert_eq!(pod.grant(0x9000_0000, 0), Err(GrantError::Empty));
    assert_eq!(
        pod.grant(0x9000_0800, K4),
        Err(GrantError::Misaligned {
            pa: 0x9000_0800,
            len: K4
        })
    );
    assert_eq!(
        pod.grant(0x9000_0000, K4 + 1),
        Err(GrantError::Misaligned {
            pa: 0x9000_0000,
            len: K4 + 1
        })
    );
    assert_eq!(
        pod.grant(1 << 48, K4),
        Err(GrantError::OutOfRange {
            pa: 1 << 48,
            len: K4
        })
    );
    assert_eq!(
        pod.grant(u64::MAX - 0xfff, K4),
        Err(GrantError::OutOfRange {
            pa: u64::MAX - 0xfff,
            len: K4
        })
    );
    for (pa, len) in [
        (0x8000_0000, K4),
        (0x7fff_f000, 2 * K4),
        (0x8080_0000 - K4, 2 * K4),
        (0x7000_0000, 0x2000_0000),
    ] {
        assert_eq!(
            pod.grant(pa, len),
            Err(GrantError::Overlap { pa, len }),
            "{pa:#x}+{len:#x}"
        );
    }
    assert_eq!(pod.stats(), before, "refused grants change nothing");
    // Touching (not overlapping) is fine.
    pod.grant(0x8080_0000, K4).unwrap();
    pod.grant(0x7fff_f000, K4).unwrap();
}

#[test]
fn too_many_ranges_is_a_typed_error() {
    let mut vm = Vm::on_demand(MB2);
    let pod = vm.pod();
    for i in 0..pod::EXTENTS as u64 {
        pod.grant(0x8000_0000 + i * 2 * K4, K4).unwrap();
    }
    let before = pod.stats();
    assert_eq!(pod.grant(0x9000_0000, K4), Err(GrantError::TooFragmented));
    assert_eq!(pod.stats(), before);
    // A grant that merges with an existing range still fits.
    pod.grant(0x8000_0000 + K4, K4).unwrap();
}

#[test]
fn grant_splits_into_2m_and_4k_frames() {
    let mut vm = Vm::on_demand(8 * MB2);
    // 2 pages, two aligned 2 MiB frames, 3 pages.
    vm.pod()
        .grant(0x8020_0000 - 2 * K4, 2 * K4 + 2 * MB2 + 3 * K4)
        .unwrap();
    assert_eq!(vm.pod().stats().pool_pages, 2 + 1024 + 3);
    assert_eq!(vm.fault(RAM), populated(Block2M, RAM, 0x8020_0000));
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Block2M, RAM + MB2, 0x8040_0000)
    );
    let mut pages = Vec::new();
    for i in 0..5 {
        match vm.fault(RAM + 2 * MB2 + i * K4) {
            Ok(Outcome::Populated {
                size: Page4K, pa, ..
            }) => pages.push(pa),
            r => panic!("{r:?}"),
        }
    }
    pages.sort();
    assert_eq!(
        pages,
        [
            0x801f_e000,
            0x801f_f000,
            0x8060_0000,
            0x8060_1000,
            0x8060_2000
        ]
    );
    assert_eq!(vm.pod().stats().splinters, 0);
    // Everything is in use and holds data: the pool is exhausted.
    for ipa in [
        RAM,
        RAM + MB2,
        RAM + 2 * MB2,
        RAM + 2 * MB2 + K4,
        RAM + 2 * MB2 + 2 * K4,
        RAM + 2 * MB2 + 3 * K4,
        RAM + 2 * MB2 + 4 * K4,
    ] {
        vm.guest_write(ipa);
    }
    assert_eq!(
        vm.fault_through(RAM + 3 * MB2).0,
        Err(PodError::Exhausted { ipa: RAM + 3 * MB2 })
    );
}

#[test]
fn reclaim_takes_back_zero_pages_when_dry() {
    let mut vm = Vm::on_demand(4 * MB2);
    vm.pod().grant(0x8000_0000, 4 * K4).unwrap();
    for i in 0..4 {
        vm.fault(RAM + i * K4).unwrap();
    }
    // The guest wrote pages 0 and 2; 1 and 3 still read zero.
    vm.guest_write(RAM);
    vm.guest_write(RAM + 2 * K4);
    let vmid = vm.pager().vm().vmid();
    let m = vm.mark();
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Page4K, RAM + MB2, 0x8000_1000)
    );
    let ev = vm.since(m);
    // Unmap (BBM), clean+invalidate, then the new mapping zeroed and cleaned.
    let pos = |e: &Event| {
        ev.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("missing {e:?} in {ev:x?}"))
    };
    assert!(
        pos(&Event::Clear {
            ipa: RAM + K4,
            size: Page4K
        }) < pos(&Event::TlbIpa {
            vmid,
            ipa: RAM + K4
        })
    );
    assert!(
        pos(&Event::TlbIpa {
            vmid,
            ipa: RAM + K4
        }) < pos(&Event::CleanInvalidate {
            pa: 0x8000_1000,
            len: K4
        })
    );
    assert!(
        pos(&Event::Clear {
            ipa: RAM + 3 * K4,
            size: Page4K
        }) > 0
    );
    assert!(
        !ev.contains(&Event::Clear {
            ipa: RAM,
            size: Page4K
        }),
        "written page kept"
    );
    assert_eq!(zeroed_and_cleaned_before_map(&ev, &[]), 1);
    let s = vm.pod().stats();
    assert_eq!(
        (s.reclaimed_pages, s.pool_pages, s.populated_pages),
        (2, 1, 3)
    );
    assert_eq!(
        vm.pager().translate(RAM + K4),
        None,
        "reclaimed page is a PoD entry again"
    );
    assert_eq!(vm.pager().translate(RAM), Some((0x8000_0000, K4)));
    // Touching the reclaimed page populates it again, with zeros.
    assert_eq!(vm.fault(RAM + K4), populated(Page4K, RAM + K4, 0x8000_3000));
}

#[test]
fn reclaim_takes_back_zero_blocks_and_rebuilds_2m_frames() {
    let mut vm = Vm::on_demand(4 * MB2);
    vm.pod().grant(0x8000_0000, MB2).unwrap();
    assert_eq!(vm.fault(RAM), populated(Block2M, RAM, 0x8000_0000));
    assert_eq!(vm.reclaim(10_000), Ok(512));
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Block2M, RAM + MB2, 0x8000_0000)
    );
    assert_eq!(vm.reclaim(10_000), Ok(512));
    // One 4 KiB page first, so the chunk is no longer empty...
    vm.pod().grant(0x7000_0000, K4).unwrap();
    assert_eq!(
        vm.populate(RAM, K4),
        Ok(Filled {
            blocks: 0,
            pages: 1
        })
    );
    assert_eq!(vm.pager().translate(RAM), Some((0x7000_0000, K4)));
    // ...then its neighbours splinter the 2 MiB frame.
    for i in 1..4 {
        assert_eq!(
            vm.fault(RAM + i * K4),
            populated(Page4K, RAM + i * K4, 0x8000_0000 + (i - 1) * K4)
        );
    }
    assert_eq!(vm.pod().stats().splinters, 1);
    // Free them all: the splinter's 512 pages are whole again, a 2 MiB frame.
    assert_eq!(vm.reclaim(10_000), Ok(4));
    assert_eq!(
        vm.fault(RAM + 2 * MB2),
        populated(Block2M, RAM + 2 * MB2, 0x8000_0000)
    );
    assert_eq!(
        vm.fault(RAM + 3 * MB2),
        populated(Page4K, RAM + 3 * MB2, 0x7000_0000)
    );
}

#[test]
fn reclaim_keeps_a_page_written_behind_a_stale_cache_line() {
    let mut vm = Vm::on_demand(MB2);
    vm.pod().grant(0x8000_0000, 2 * K4).unwrap();
    vm.fault(RAM).unwrap();
    vm.fault(RAM + K4).unwrap();
    // Caches-off guest write: memory holds data, the hypervisor's cached view
    // still reads the zeros it wrote at populate.
    vm.hw.write_hidden(0x8000_0000);
    let m = vm.mark();
    assert_eq!(vm.reclaim(100), Ok(1));
    let ev = vm.since(m);
    // Page 0 was unmapped, found non-zero after clean+invalidate, mapped back
    // unchanged (no zeroing); page 1 was reclaimed.
    assert!(ev.contains(&Event::CleanInvalidate {
        pa: 0x8000_0000,
        len: K4
    }));
    assert!(!ev.iter().any(|e| matches!(e, Event::Zero { .. })));
    assert_eq!(vm.pager().translate(RAM), Some((0x8000_0000, K4)));
    assert_eq!(vm.pager().translate(RAM + K4), None);
    assert!(!vm.hw.is_zero_page(0x8000_0000));
}

#[test]
fn sweep_never_takes_a_frame_it_did_not_give() {
    let mut vm = Vm::on_demand(MB2);
    vm.pod().grant(0x8000_0000, K4).unwrap();
    vm.fault(RAM).unwrap();
    // The kernel maps a zero frame of its own into RAM (a wiring bug).
    let Vm { pager, pod, hw, .. } = &mut vm;
    let (pager, pod) = (pager.as_mut().unwrap(), pod.as_mut().unwrap());
    pager
        .map(RAM + K4, 0x9000_0000, Page4K, MemAttrs::Normal, hw)
        .unwrap();
    assert_eq!(pod.reclaim(pager, hw, 100), Ok(1), "only its own page");
    assert_eq!(pager.translate(RAM + K4), Some((0x9000_0000, K4)));
    assert_eq!(pod.stats().pool_pages, 1);
    pager.unmap(RAM + K4, Page4K, hw).unwrap();
    vm.check();
}

#[test]
fn exhaustion_is_typed_after_a_bounded_sweep() {
    let mut vm = Vm::new(PodConfig {
        sweep_pages: 3,
        ..PodConfig::new(RAM, 4 * MB2, Mode::OnDemand)
    });
    vm.pod().grant(0x8000_0000, 10 * K4).unwrap();
    for i in 0..10 {
        vm.fault(RAM + i * K4).unwrap();
        vm.guest_write(RAM + i * K4);
    }
    // Slices of 3 pages: Retry until a whole pass over 10 pages found nothing.
    let (r, retries) = vm.fault_through(RAM + MB2);
    assert_eq!(r, Err(PodError::Exhausted { ipa: RAM + MB2 }));
    assert_eq!(retries, 3);
    assert!(vm.pod().stats().sweeps >= 4);
    // Exhausted stays exhausted, and nothing was lost.
    assert_eq!(
        vm.fault(RAM + MB2),
        Err(PodError::Exhausted { ipa: RAM + MB2 })
    );
    assert_eq!(vm.pod().stats().populated_pages, 10);
    // A new grant ends it.
    vm.pod().grant(0x9000_0000, K4).unwrap();
    assert_eq!(
        vm.fault(RAM + MB2),
        populated(Page4K, RAM + MB2, 0x9000_0000)
    );
}

#[test]
fn empty_pool_and_nothing_populated_is_exhausted_at_once() {
    let mut vm = Vm::on_demand(MB2);
    assert_eq!(vm.fault(RAM), Err(PodError::Exhausted { ipa: RAM }));
}

#[test]
fn pre_ballooned_target_below_ram() {
    // 16 MiB of RAM, 1 MiB of memory: fine while the guest touches little.
    let mut vm = Vm::on_demand(8 * MB2);
    vm.pod().grant(0x8000_0000, 256 * K4).unwrap();
    for i in 0..256 {
        vm.fault(RAM + i * 16 * K4).unwrap();
    }
    let s = vm.pod().stats();
    assert_eq!(
        (
            s.ram_pages,
            s.owned_pages,
            s.populated_pages,
            s.pod_entries,
            s.pool_pages
        ),
        (4096, 256, 256, 3840, 0)
    );
    // All still zero: a further fault reclaims and goes on.
    assert!(matches!(
        vm.fault(RAM + 4 * K4),
        Ok(Outcome::Populated { .. })
    ));
}

#[test]
fn eager_populates_everything_at_start() {
    let mut vm = Vm::new(PodConfig::new(RAM + K4, 3 * MB2, Mode::Eager));
    vm.pod().grant(0x8000_0000, 4 * MB2).unwrap();
    let m = vm.mark();
    let filled = vm.start().unwrap();
    // Chunk 0 partial (511 pages), chunks 1 and 2 whole, chunk 3 one page.
    assert_eq!(
        filled,
        Filled {
            blocks: 2,
            pages: 512
        }
    );
    let writes = zeroed_and_cleaned_before_map(&vm.since(m), &[]);
    assert_eq!(writes, 514);
    let s = vm.pod().stats();
    assert_eq!((s.populated_pages, s.pod_entries), (3 * 512, 0));
    assert_eq!(vm.fault(RAM + MB2 + 5), Ok(Outcome::AlreadyMapped));
    // No reclaim in eager mode: an exhausted eager start is an error.
    let mut small = Vm::new(PodConfig::new(RAM, 3 * MB2, Mode::Eager));
    small.pod().grant(0x8000_0000, 2 * MB2).unwrap();
    assert_eq!(
        small.start(),
        Err(PodError::Exhausted { ipa: RAM + 2 * MB2 })
    );
    assert_eq!(small.pod().stats().populated_pages, 1024);
}

#[test]
fn direct_map_is_identity_and_never_zeroes() {
    let mut vm = Vm::new(PodConfig::new(0x20_0000 - K4, 2 * MB2, Mode::DirectMap));
    assert_eq!(
        vm.pod().grant(0x8000_0000, K4),
        Err(GrantError::DirectMapped)
    );
    let m = vm.mark();
    assert_eq!(
        vm.start(),
        Ok(Filled {
            blocks: 1,
            pages: 512
        })
    );
    assert!(!vm
        .since(m)
        .iter()
        .any(|e| matches!(e, Event::Zero { .. } | Event::Clean { .. })));
    for ipa in [
        0x20_0000 - K4,
        0x20_0000,
        0x3f_ffff,
        0x40_0000,
        0x40_0000 + MB2 - 2 * K4,
    ] {
        let (pa, _) = vm.pager().translate(ipa).unwrap();
        assert_eq!(pa, ipa, "IPA == PA");
    }
    let s = vm.pod().stats();
    assert_eq!(
        (s.owned_pages, s.populated_pages, s.pool_pages),
        (1024, 1024, 0)
    );
    assert_eq!(vm.reclaim(100), Ok(0), "never reclaimed");
}

#[test]
fn direct_map_populates_lazily_too() {
    let mut vm = Vm::new(PodConfig::new(0x4000_0000, 2 * MB2, Mode::DirectMap));
    assert_eq!(
        vm.fault(0x4020_0010),
        populated(Block2M, 0x4020_0000, 0x4020_0000)
    );
}

#[test]
fn wrong_vm_pager_is_refused() {
    let mut a = Vm::on_demand(MB2);
    let mut b = Vm::on_demand(MB2);
    a.pod().grant(0x8000_0000, MB2).unwrap();
    let (pod_a, pager_b) = (a.pod.as_mut().unwrap(), b.pager.as_mut().unwrap());
    let want = pod::WrongVm {
        expected: pod_a.vm(),
        got: pager_b.vm(),
    };
    assert_eq!(
        pod_a.fault(pager_b, &mut a.hw, RAM),
        Err(PodError::WrongVm(want))
    );
    assert_eq!(
        pod_a.populate(pager_b, &mut a.hw, RAM, K4),
        Err(PodError::WrongVm(want))
    );
    assert_eq!(
        pod_a.reclaim(pager_b, &mut a.hw, 1),
        Err(PodError::WrongVm(want))
    );
    assert_eq!(
        pod_a.start(pager_b, &mut a.hw),
        Err(PodError::WrongVm(want))
    );
    assert_eq!(
        pod_a.check_invariants(pager_b),
        Err(InvariantError::WrongVm(want))
    );
    assert_eq!(pager_b.normal_bytes(), 0, "nothing mapped in B");
    b.check();
}

#[test]
fn invariant_check_can_fail() {
    // Map a RAM page behind the pod's back: the check must notice.
    let mut vm = Vm::on_demand(MB2);
    vm.pod().grant(0x8000_0000, K4).unwrap();
    let Vm { pager, hw, pod, .. } = &mut vm;
    pager
        .as_mut()
        .unwrap()
        .map(RAM, 0x9000_0000, Page4K, MemAttrs::Normal, hw)
        .unwrap();
    assert_eq!(
        pod.as_ref()
            .unwrap()
            .check_invariants(pager.as_ref().unwrap()),
        Err(InvariantError::Foreign {
            ipa: RAM,
            pa: 0x9000_0000
        })
    );
    pager
        .as_mut()
        .unwrap()
        .map(RAM, 0x8000_0000, Page4K, MemAttrs::Normal, hw)
        .unwrap();
    assert_eq!(
        pod.as_ref()
            .unwrap()
            .check_invariants(pager.as_ref().unwrap()),
        Err(InvariantError::MappedAndFree {
            ipa: RAM,
            pa: 0x8000_0000
        })
    );
    pager.as_mut().unwrap().unmap(RAM, Page4K, hw).unwrap();
}

#[test]
fn refused_config_returns_the_capability() {
    let mut caps = stage2_pager::testing::grant();
    for cfg in [
        PodConfig::new(RAM + 1, MB2, Mode::OnDemand),
        PodConfig::new(RAM, 0, Mode::OnDemand),
        PodConfig::new(RAM, K4 + 1, Mode::OnDemand),
        PodConfig::new(u64::MAX - 0xfff, MB2, Mode::OnDemand),
        PodConfig::new(1 << 48, K4, Mode::Eager),
    ] {
        let Err(r) = Pod::new(caps.pod, cfg) else {
            panic!("{cfg:?} accepted")
        };
        assert_eq!(r.config, cfg);
        caps.pod = r.cap;
    }
    stage2_pager::testing::revoke(caps);
}

#[test]
fn handle_answers_requests() {
    let mut vm = Vm::on_demand(2 * MB2);
    let Vm { pager, pod, hw, .. } = &mut vm;
    let (pager, pod) = (pager.as_mut().unwrap(), pod.as_mut().unwrap());
    assert_eq!(
        pod.handle(
            Request::Grant {
                pa: 0x8000_0000,
                len: MB2 + K4
            },
            pager,
            hw
        ),
        Reply::Granted
    );
    assert_eq!(
        pod.handle(
            Request::Grant {
                pa: 0x8000_0000,
                len: K4
            },
            pager,
            hw
        ),
        Reply::GrantRefused(GrantError::Overlap {
            pa: 0x8000_0000,
            len: K4
        })
    );
    assert_eq!(
        pod.handle(Request::Fault { ipa: RAM + 5 }, pager, hw),
        Reply::Fault(Outcome::Populated {
            size: Block2M,
            ipa: RAM,
            pa: 0x8000_0000
        })
    );
    assert_eq!(
        pod.handle(
            Request::Populate {
                ipa: RAM + MB2,
                len: 1
            },
            pager,
            hw
        ),
        Reply::Populated(Filled {
            blocks: 0,
            pages: 1
        })
    );
    assert_eq!(
        pod.handle(Request::Reclaim { pages: 1000 }, pager, hw),
        Reply::Reclaimed(513)
    );
    assert_eq!(
        pod.handle(Request::Fault { ipa: 0 }, pager, hw),
        Reply::Error(PodError::OutsideRam { ipa: 0 })
    );
    vm.check();
}

#[test]
fn errors_read_clearly() {
    assert_eq!(
        PodError::Exhausted { ipa: 0x4000_1000 }.to_string(),
        "guest memory exhausted: no frame for 0x40001000 and no zero page to reclaim"
    );
    assert_eq!(
        PodError::OutsideRam { ipa: 0x10 }.to_string(),
        "guest access at 0x10 is outside its RAM"
    );
    assert_eq!(
        GrantError::Misaligned {
            pa: 0x800,
            len: 0x1000
        }
        .to_string(),
        "grant 0x800+0x1000 is not 4 KiB aligned"
    );
    let _ = Stats::default();
}

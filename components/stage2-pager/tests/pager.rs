//! Behaviour of the stage-2 pager, one path at a time.

mod common;

use common::Vm;
use hwops::{CleanSource, MemRun, BLOCK_SIZE, GIB, PAGE_SIZE};
use stage2_pager::testing::{new_log, BbmChecker, Event};
use stage2_pager::{
    AccessFlag, LeafSize::*, MemAttrs::*, PagerError, Reply, Request, TableFormat, A64_VTCR_BITS,
    TRACK_SPAN,
};

const MB2: u64 = BLOCK_SIZE;
const RAM: u64 = 0x4000_0000;

#[test]
fn vttbr_and_vtcr() {
    let mut vm = Vm::new(RAM);
    let p = vm.p();
    let vmid = u64::from(p.vm().vmid());
    assert_eq!(p.vttbr(), p.root_pa() | vmid << 48);
    assert_eq!(p.root_pa() % PAGE_SIZE, 0);
    // T0SZ 25, SL0 1, IRGN0 1, ORGN0 1, SH0 3, TG0 4K, RES1 bit 31.
    assert_eq!(p.vtcr_bits(), 0x8000_3559);
    assert_eq!(A64_VTCR_BITS, 0x8000_3559);
    assert_eq!(p.ipa_limit(), 1 << 39);
    assert_eq!(p.tracked(), (RAM, RAM + TRACK_SPAN));
}

#[test]
fn new_refuses_bad_windows() {
    let mut caps = stage2_pager::testing::grant();
    for (base, want) in [
        (
            RAM + PAGE_SIZE,
            PagerError::Misaligned {
                ipa: RAM + PAGE_SIZE,
                pa: 0,
            },
        ),
        (1 << 39, PagerError::OutOfRange { ipa: 1 << 39 }),
    ] {
        let table = stage2_pager::testing::host_table();
        let Err(r) = stage2_pager::Pager::new(caps.stage2, table, base) else {
            panic!("bad window {base:#x} accepted")
        };
        assert_eq!(r.error, want);
        // The capability comes back with the refusal.
        caps.stage2 = r.cap;
    }
    stage2_pager::testing::revoke(caps);
}

#[test]
fn map_page_and_translate() {
    let mut vm = Vm::new(RAM);
    vm.map(RAM + 0x5000, 0x8000_5000, Page4K, Normal).unwrap();
    let p = vm.p();
    assert_eq!(p.translate(RAM + 0x5000), Some((0x8000_5000, PAGE_SIZE)));
    assert_eq!(p.translate(RAM + 0x5abc), Some((0x8000_5abc, PAGE_SIZE)));
    assert_eq!(p.translate(RAM + 0x4fff), None);
    assert_eq!(p.translate(RAM + 0x6000), None);
    assert_eq!(p.translate(1 << 40), None);
    assert_eq!(p.normal_bytes(), PAGE_SIZE);
    let l = p.leaf(RAM + 0x5000).unwrap();
    assert!(l.accessed, "mapped with AF set");
    assert!(p.is_touched(RAM + 0x5000));
}

#[test]
fn map_block_and_translate() {
    let mut vm = Vm::new(RAM);
    vm.map(RAM + MB2, 0x9000_0000, Block2M, Normal).unwrap();
    assert_eq!(
        vm.p().translate(RAM + MB2 + 0x1234),
        Some((0x9000_1234, MB2))
    );
    assert_eq!(vm.p().translate(RAM + 2 * MB2), None);
    assert_eq!(vm.p().normal_bytes(), MB2);
}

#[test]
fn bad_arguments_are_refused() {
    let mut vm = Vm::new(RAM);
    assert_eq!(
        vm.map(RAM + 1, 0, Page4K, Normal),
        Err(PagerError::Misaligned {
            ipa: RAM + 1,
            pa: 0
        })
    );
    assert_eq!(
        vm.map(RAM + PAGE_SIZE, 0x1000, Block2M, Normal),
        Err(PagerError::Misaligned {
            ipa: RAM + PAGE_SIZE,
            pa: 0x1000
        })
    );
    assert_eq!(
        vm.map(RAM, 0x1000, Block2M, Normal),
        Err(PagerError::Misaligned {
            ipa: RAM,
            pa: 0x1000
        })
    );
    assert_eq!(
        vm.map(1 << 39, 0, Page4K, Device),
        Err(PagerError::OutOfRange { ipa: 1 << 39 })
    );
    assert_eq!(
        vm.map(RAM, 1 << 48, Page4K, Normal),
        Err(PagerError::BadPa { pa: 1 << 48 })
    );
    // Normal memory must be inside the tracked window; Device may be anywhere.
    assert_eq!(
        vm.map(0x0900_0000, 0x0900_0000, Page4K, Normal),
        Err(PagerError::OutsideTracked { ipa: 0x0900_0000 })
    );
    vm.map(0x0900_0000, 0x0900_0000, Page4K, Device).unwrap();
    assert!(!vm.p().is_touched(0x0900_0000));
    assert_eq!(vm.p().normal_bytes(), 0);
    assert!(vm
        .events()
        .iter()
        .all(|e| !matches!(e, Event::Write { attrs: Normal, .. })));
}

#[test]
fn mixed_sizes_overlap() {
    let mut vm = Vm::new(RAM);
    vm.map(RAM, 0x8000_0000, Block2M, Normal).unwrap();
    assert_eq!(
        vm.map(RAM + PAGE_SIZE, 0x1000, Page4K, Normal),
        Err(PagerError::Overlap {
            ipa: RAM + PAGE_SIZE
        })
    );
    assert_eq!(
        vm.unmap(RAM + PAGE_SIZE, Page4K),
        Err(PagerError::Overlap {
            ipa: RAM + PAGE_SIZE
        })
    );
    vm.map(RAM + MB2 + 7 * PAGE_SIZE, 0x1000, Page4K, Normal)
        .unwrap();
    assert_eq!(
        vm.map(RAM + MB2, 0x8020_0000, Block2M, Normal),
        Err(PagerError::Overlap { ipa: RAM + MB2 })
    );
    // Nothing changed.
    assert_eq!(vm.p().translate(RAM + PAGE_SIZE), Some((0x8000_1000, MB2)));
    assert_eq!(
        vm.p().translate(RAM + MB2 + 7 * PAGE_SIZE),
        Some((0x1000, PAGE_SIZE))
    );
}

#[test]
fn remap_breaks_before_make() {
    let mut vm = Vm::new(RAM);
    vm.map(RAM, 0x8000_0000, Page4K, Normal).unwrap();
    let m = vm.mark();
    vm.map(RAM, 0x9000_0000, Page4K, Normal).unwrap();
    let vmid = vm.p().vm().vmid();
    assert_eq!(
        vm.since(m),
        [
            Event::Clear {
                ipa: RAM,
                size: Page4K
            },
            Event::TlbIpa { vmid, ipa: RAM },
            Event::Write {
                ipa: RAM,
                pa: 0x9000_0000,
                len: PAGE_SIZE,
                size: Page4K,
                attrs: Normal,
                accessed: true
            },
        ]
    );
    assert_eq!(vm.p().translate(RAM), Some((0x9000_0000, PAGE_SIZE)));
    assert_eq!(vm.p().normal_bytes(), PAGE_SIZE);
    // Block over block, Normal to Device.
    vm.map(RAM + MB2, 0x8000_0000, Block2M, Normal).unwrap();
    let m = vm.mark();
    vm.map(RAM + MB2, 0xa000_0000, Block2M, Device).unwrap();
    assert_eq!(
        vm.since(m)[..2],
        [
            Event::Clear {
                ipa: RAM + MB2,
                size: Block2M
            },
            Event::TlbIpa {
                vmid,
                ipa: RAM + MB2
            }
        ]
    );
    assert_eq!(vm.p().normal_bytes(), PAGE_SIZE);
}

#[test]
fn unmap_page_and_chunk() {
    let mut vm = Vm::new(RAM);
    let vmid = vm.p().vm().vmid();
    assert_eq!(
        vm.unmap(RAM, Page4K),
        Err(PagerError::NotMapped { ipa: RAM })
    );
    assert_eq!(
        vm.unmap(RAM, Block2M),
        Err(PagerError::NotMapped { ipa: RAM })
    );
    assert_eq!(
        vm.unmap(RAM + PAGE_SIZE, Block2M),
        Err(PagerError::Misaligned {
            ipa: RAM + PAGE_SIZE,
            pa: 0
        })
    );
    for i in 0..3 {
        vm.map(
            RAM + i * PAGE_SIZE,
            0x8000_0000 + i * PAGE_SIZE,
            Page4K,
            Normal,
        )
        .unwrap();
    }
    let m = vm.mark();
    vm.unmap(RAM + PAGE_SIZE, Page4K).unwrap();
    assert_eq!(
        vm.since(m),
        [
            Event::Clear {
                ipa: RAM + PAGE_SIZE,
                size: Page4K
            },
            Event::TlbIpa {
                vmid,
                ipa: RAM + PAGE_SIZE
            }
        ]
    );
    assert_eq!(vm.p().translate(RAM + PAGE_SIZE), None);
    // Whole chunk: the two pages left, each invalidated by IPA.
    let m = vm.mark();
    vm.unmap(RAM, Block2M).unwrap();
    let tlbis: Vec<_> = vm
        .since(m)
        .into_iter()
        .filter(|e| matches!(e, Event::TlbIpa { .. }))
        .collect();
    assert_eq!(tlbis.len(), 2);
    assert!(vm.p().chunk_is_empty(RAM));
    assert_eq!(vm.p().normal_bytes(), 0);
}

#[test]
fn unmapping_many_pages_uses_one_vmid_flush() {
    let mut vm = Vm::new(RAM);
    for i in 0..100 {
        vm.map(
            RAM + i * PAGE_SIZE,
            0x8000_0000 + i * PAGE_SIZE,
            Page4K,
            Normal,
        )
        .unwrap();
    }
    let m = vm.mark();
    vm.unmap(RAM, Block2M).unwrap();
    let ev = vm.since(m);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Clear { .. }))
            .count(),
        100
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::TlbVmid { .. } | Event::TlbIpa { .. }))
            .count(),
        1
    );
    assert!(matches!(ev.last(), Some(Event::TlbVmid { .. })));
}

#[test]
fn block_over_empty_page_table_frees_it_first() {
    let mut vm = Vm::new(RAM);
    let vmid = vm.p().vm().vmid();
    vm.map(RAM + 5 * PAGE_SIZE, 0x8000_0000, Page4K, Normal)
        .unwrap();
    vm.unmap(RAM + 5 * PAGE_SIZE, Page4K).unwrap();
    assert!(vm.p().table().has_page_table(RAM));
    let m = vm.mark();
    vm.map(RAM, 0x8020_0000, Block2M, Normal).unwrap();
    assert_eq!(
        vm.since(m),
        [
            Event::RemoveTable { ipa: RAM },
            Event::TlbIpa { vmid, ipa: RAM },
            Event::Write {
                ipa: RAM,
                pa: 0x8020_0000,
                len: MB2,
                size: Block2M,
                attrs: Normal,
                accessed: true
            },
        ]
    );
    assert_eq!(
        vm.p().translate(RAM + 5 * PAGE_SIZE),
        Some((0x8020_5000, MB2))
    );
}

#[test]
fn split_preserves_mapping_and_access_flag() {
    let mut vm = Vm::new(RAM);
    let vmid = vm.p().vm().vmid();
    vm.map(RAM + GIB - MB2, 0x1_0000_0000, Block2M, Normal)
        .unwrap();
    vm.clear_touched(RAM + GIB - MB2, MB2);
    assert!(!vm.p().leaf(RAM + GIB - MB2).unwrap().accessed);
    let m = vm.mark();
    vm.split(RAM + GIB - 1).unwrap();
    assert_eq!(
        vm.since(m),
        [
            Event::Clear {
                ipa: RAM + GIB - MB2,
                size: Block2M
            },
            Event::TlbIpa {
                vmid,
                ipa: RAM + GIB - MB2
            },
            Event::Write {
                ipa: RAM + GIB - MB2,
                pa: 0x1_0000_0000,
                len: MB2,
                size: Page4K,
                attrs: Normal,
                accessed: false
            },
        ]
    );
    for i in 0..512 {
        let ipa = RAM + GIB - MB2 + i * PAGE_SIZE;
        assert_eq!(
            vm.p().translate(ipa + 8),
            Some((0x1_0000_0000 + i * PAGE_SIZE + 8, PAGE_SIZE))
        );
        assert!(!vm.p().leaf(ipa).unwrap().accessed);
    }
    assert!(
        !vm.p().is_touched(RAM + GIB - MB2),
        "split is not a guest access"
    );
    assert_eq!(vm.split(RAM), Err(PagerError::NotABlock { ipa: RAM }));
    assert_eq!(
        vm.split(RAM + GIB - MB2),
        Err(PagerError::NotABlock {
            ipa: RAM + GIB - MB2
        })
    );
    assert_eq!(vm.p().normal_bytes(), MB2);
}

#[test]
fn access_flag_fault_rearms_touch() {
    let mut vm = Vm::new(RAM);
    vm.map(RAM, 0x8000_0000, Block2M, Normal).unwrap();
    vm.map(RAM + MB2, 0x8040_0000, Page4K, Normal).unwrap();
    assert_eq!(vm.p().touched_chunks(), 2);
    vm.clear_touched(RAM, 2 * MB2);
    assert_eq!(vm.p().touched_chunks(), 0);
    assert!(!vm.p().leaf(RAM).unwrap().accessed);
    assert!(!vm.p().leaf(RAM + MB2).unwrap().accessed);
    assert_eq!(vm.p().next_run(RAM, false), None);

    // The guest touches the page: the kernel reports an access-flag fault.
    assert_eq!(
        vm.p().handle_access_fault(RAM + MB2 + 0x10),
        Ok(AccessFlag::Set)
    );
    assert_eq!(
        vm.p().handle_access_fault(RAM + MB2 + 0x20),
        Ok(AccessFlag::AlreadySet)
    );
    assert!(vm.p().leaf(RAM + MB2).unwrap().accessed);
    assert!(vm.p().is_touched(RAM + MB2) && !vm.p().is_touched(RAM));
    assert_eq!(
        vm.p().next_run(0, false),
        Some(MemRun {
            ipa: RAM + MB2,
            pa: 0x8040_0000,
            len: PAGE_SIZE
        })
    );
    assert_eq!(
        vm.p().handle_access_fault(RAM + 4 * MB2),
        Err(PagerError::NotMapped { ipa: RAM + 4 * MB2 })
    );
    vm.settled();
}

#[test]
fn clear_touched_invalidates_what_it_clears() {
    let mut vm = Vm::new(RAM);
    let vmid = vm.p().vm().vmid();
    vm.map(RAM, 0x8000_0000, Block2M, Normal).unwrap();
    vm.map(RAM + MB2, 0x8040_0000, Page4K, Normal).unwrap();
    vm.map(RAM + MB2 + PAGE_SIZE, 0x8040_1000, Page4K, Normal)
        .unwrap();
    let m = vm.mark();
    // Granularity is 2 MiB: one byte names the whole chunk.
    vm.clear_touched(RAM + MB2 + 5, 1);
    let ev = vm.since(m);
    assert_eq!(
        ev,
        [
            // One walk clears the chunk's flags; then each page's TLB entry.
            Event::ChunkAccessed {
                chunk: RAM + MB2,
                on: false
            },
            Event::TlbIpa {
                vmid,
                ipa: RAM + MB2
            },
            Event::TlbIpa {
                vmid,
                ipa: RAM + MB2 + PAGE_SIZE
            },
        ]
    );
    assert!(vm.p().is_touched(RAM) && !vm.p().is_touched(RAM + MB2));
    // An untouched chunk costs nothing to clear again.
    let m = vm.mark();
    vm.clear_touched(RAM + MB2, MB2);
    assert!(vm.since(m).is_empty());
    // Many pages: one whole-VM invalidation.
    for i in 2..40 {
        vm.map(
            RAM + MB2 + i * PAGE_SIZE,
            0x8040_0000 + i * PAGE_SIZE,
            Page4K,
            Normal,
        )
        .unwrap();
    }
    let m = vm.mark();
    vm.clear_touched(RAM + MB2, MB2);
    let ev = vm.since(m);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::ChunkAccessed { on: false, .. }))
            .count(),
        1
    );
    assert!((2..40).all(|i| !vm.p().leaf(RAM + MB2 + i * PAGE_SIZE).unwrap().accessed));
    assert_eq!(ev.last(), Some(&Event::TlbVmid { vmid }));
}

#[test]
fn runs_stay_inside_2m_and_skip_device_and_untouched() {
    let mut vm = Vm::new(0);
    // Chunk 0: pages 0..4 contiguous in PA, page 4 elsewhere, page 6 after a gap.
    for i in 0..4 {
        vm.map(i * PAGE_SIZE, 0x10_0000 + i * PAGE_SIZE, Page4K, Normal)
            .unwrap();
    }
    vm.map(4 * PAGE_SIZE, 0x50_0000, Page4K, Normal).unwrap();
    vm.map(6 * PAGE_SIZE, 0x50_2000, Page4K, Normal).unwrap();
    // Chunk 1 ends with a page whose PA continues into chunk 2's block.
    vm.map(2 * MB2 - PAGE_SIZE, 0x60_0000 - PAGE_SIZE, Page4K, Normal)
        .unwrap();
    vm.map(2 * MB2, 0x60_0000, Block2M, Normal).unwrap();
    // Chunk 3: device only.
    vm.map(3 * MB2, 0x0900_0000, Page4K, Device).unwrap();
    let p = vm.p();
    let all: Vec<MemRun> = runs(p, true);
    assert_eq!(
        all,
        [
            MemRun {
                ipa: 0,
                pa: 0x10_0000,
                len: 4 * PAGE_SIZE
            },
            MemRun {
                ipa: 4 * PAGE_SIZE,
                pa: 0x50_0000,
                len: PAGE_SIZE
            },
            MemRun {
                ipa: 6 * PAGE_SIZE,
                pa: 0x50_2000,
                len: PAGE_SIZE
            },
            MemRun {
                ipa: 2 * MB2 - PAGE_SIZE,
                pa: 0x60_0000 - PAGE_SIZE,
                len: PAGE_SIZE
            },
            MemRun {
                ipa: 2 * MB2,
                pa: 0x60_0000,
                len: MB2
            },
        ]
    );
    // From the middle of a run and of a block; unaligned `from` rounds up.
    assert_eq!(
        p.next_run(PAGE_SIZE + 1, true),
        Some(MemRun {
            ipa: 2 * PAGE_SIZE,
            pa: 0x10_2000,
            len: 2 * PAGE_SIZE
        })
    );
    assert_eq!(
        p.next_run(2 * MB2 + 0x3000, true),
        Some(MemRun {
            ipa: 2 * MB2 + 0x3000,
            pa: 0x60_3000,
            len: MB2 - 0x3000
        })
    );
    assert_eq!(p.next_run(3 * MB2, true), None);
    assert_eq!(p.next_run(u64::MAX, true), None);
    vm.clear_touched(0, 2 * MB2);
    let p = vm.p();
    assert_eq!(
        runs(p, false),
        [MemRun {
            ipa: 2 * MB2,
            pa: 0x60_0000,
            len: MB2
        }]
    );
    assert_eq!(
        runs(p, true).len(),
        5,
        "all = true still sees untouched memory"
    );
}

fn runs(p: &common::TestPager, all: bool) -> Vec<MemRun> {
    let mut v = Vec::new();
    let mut from = 0;
    while let Some(r) = p.next_run(from, all) {
        assert!(r.len > 0 && r.len % PAGE_SIZE == 0);
        assert_eq!(
            r.ipa / MB2,
            (r.ipa + r.len - 1) / MB2,
            "run spans 2 MiB: {r:x?}"
        );
        v.push(r);
        from = r.ipa + r.len;
    }
    v
}

#[test]
fn clean_protocol_catches_a_write_during_the_clean() {
    // cache-maint: clear_touched(chunk) first, then clean the chunk's runs
    // found with all = true. A guest write during the clean traps on AF and
    // marks the chunk again, so the next clean pass sees it.
    let mut vm = Vm::new(RAM);
    vm.map(RAM, 0x8000_0000, Block2M, Normal).unwrap();
    vm.clear_touched(RAM, MB2);
    let run = vm.p().next_run(RAM, true).unwrap();
    assert_eq!(
        run,
        MemRun {
            ipa: RAM,
            pa: 0x8000_0000,
            len: MB2
        }
    );
    vm.p().handle_access_fault(RAM + 0x40).unwrap(); // write lands mid-clean
    assert_eq!(vm.p().next_run(RAM, false), Some(run));
}

#[test]
fn handle_answers_requests() {
    let mut vm = Vm::new(RAM);
    let common::Vm { pager, hw, .. } = &mut vm;
    let p = pager.as_mut().unwrap();
    assert_eq!(
        p.handle(
            Request::Map {
                ipa: RAM,
                pa: 0x8000_0000,
                size: Block2M,
                attrs: Normal
            },
            hw
        ),
        Reply::Done
    );
    assert_eq!(
        p.handle(Request::Translate { ipa: RAM + 8 }, hw),
        Reply::Translated(Some((0x8000_0008, MB2)))
    );
    assert_eq!(p.handle(Request::Split { ipa: RAM }, hw), Reply::Done);
    assert_eq!(
        p.handle(
            Request::Unmap {
                ipa: RAM,
                size: Page4K
            },
            hw
        ),
        Reply::Done
    );
    assert_eq!(
        p.handle(
            Request::AccessFault {
                ipa: RAM + PAGE_SIZE
            },
            hw
        ),
        Reply::AccessFlag(AccessFlag::AlreadySet)
    );
    assert_eq!(
        p.handle(Request::AccessFault { ipa: RAM }, hw),
        Reply::Error(PagerError::NotMapped { ipa: RAM })
    );
    assert_eq!(
        p.handle(
            Request::Unmap {
                ipa: RAM,
                size: Block2M
            },
            hw
        ),
        Reply::Done
    );
    assert_eq!(
        p.handle(
            Request::Translate {
                ipa: RAM + PAGE_SIZE
            },
            hw
        ),
        Reply::Translated(None)
    );
    vm.settled();
}

#[test]
fn bbm_checker_catches_violations() {
    // The checker must be able to fail, or the other tests prove nothing.
    let log = new_log();
    let w = |ipa| Event::Write {
        ipa,
        pa: 0,
        len: PAGE_SIZE,
        size: Page4K,
        attrs: Normal,
        accessed: true,
    };
    log.borrow_mut().extend([
        w(0),
        Event::Clear {
            ipa: 0,
            size: Page4K,
        },
        w(0),
    ]);
    assert!(
        BbmChecker::new(1).advance(&log).is_err(),
        "make before TLBI"
    );
    let log = new_log();
    log.borrow_mut().extend([w(0), w(0)]);
    assert!(
        BbmChecker::new(1).advance(&log).is_err(),
        "write over valid"
    );
    let log = new_log();
    log.borrow_mut().extend([
        w(0),
        Event::Clear {
            ipa: 0,
            size: Page4K,
        },
    ]);
    assert!(
        BbmChecker::new(1).settled(&log).is_err(),
        "unmap without TLBI"
    );
    let log = new_log();
    log.borrow_mut().extend([
        w(0),
        Event::Clear {
            ipa: 0,
            size: Page4K,
        },
        Event::TlbIpa { vmid: 2, ipa: 0 },
    ]);
    assert!(BbmChecker::new(1).advance(&log).is_err(), "wrong VMID");
    let log = new_log();
    log.borrow_mut().extend([
        w(0),
        Event::Clear {
            ipa: 0,
            size: Page4K,
        },
        Event::TlbIpa { vmid: 1, ipa: 0 },
        w(0),
    ]);
    assert!(BbmChecker::new(1).settled(&log).is_ok());
}

/// A firmware guest's flash: read-only Normal memory outside RAM, read back
/// as such, never counted or tracked as RAM.
#[test]
fn rom_is_read_only_and_untracked() {
    let mut vm = Vm::new(RAM);
    vm.map(0, 0x9000_0000, Block2M, Rom).unwrap();
    let p = vm.p();
    let l = p.leaf(0x1234).unwrap();
    assert_eq!((l.attrs, l.pa, l.accessed), (Rom, 0x9000_0000, true));
    assert_eq!(p.normal_bytes(), 0);
    assert_eq!(p.touched_chunks(), 0);
    // RAM next to it still reads back as RAM.
    vm.map(RAM, 0x8000_0000, Block2M, Normal).unwrap();
    assert_eq!(vm.p().leaf(RAM).unwrap().attrs, Normal);
    assert_eq!(vm.p().leaf(0).unwrap().attrs, Rom);
}

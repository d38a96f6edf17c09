//! Property test: random faults, guest writes, grants, sweeps and range
//! populations. After every step the accounting invariants hold, break-
//! before-make holds, new frames were zeroed then cleaned before mapping,
//! data the guest wrote is never lost, and each fault chose its size by the
//! rules.

mod common;

use common::*;
use hwops::{BLOCK_SIZE, PAGE_SIZE};
use pod::{GrantError, Mode, Outcome, PodConfig, PodError};
use proptest::prelude::*;
use stage2_pager::testing::Event;
use stage2_pager::LeafSize;
use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;

#[derive(Clone, Debug)]
enum Op {
    Fault(u64),
    Write(u64),
    HiddenWrite(u64),
    Grant { pages: u64, align_2m: bool, bad: u8 },
    Reclaim(u64),
    Populate(u64, u64),
    /// One step of the n-th pending fill (modulo how many there are).
    FillStep(usize),
}

fn op(ram: u64) -> impl Strategy<Value = Op> {
    let at = 0..ram + 4 * PAGE_SIZE;
    prop_oneof![
        6 => at.clone().prop_map(Op::Fault),
        3 => at.clone().prop_map(Op::Write),
        1 => at.clone().prop_map(Op::HiddenWrite),
        2 => (1..1200u64, any::<bool>(), prop::sample::select(vec![0u8, 0, 0, 0, 1, 2, 3]))
            .prop_map(|(pages, align_2m, bad)| Op::Grant { pages, align_2m, bad }),
        1 => (1..1500u64).prop_map(Op::Reclaim),
        1 => (at, 1..(3 * BLOCK_SIZE)).prop_map(|(a, l)| Op::Populate(a, l)),
        6 => any::<usize>().prop_map(Op::FillStep),
    ]
}

type Scenario = (u64, u64, u64, bool, u64, Vec<Op>);

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::sample::select(vec![0, 3 * PAGE_SIZE]),
        prop::sample::select(vec![
            3 * BLOCK_SIZE,
            6 * BLOCK_SIZE + 3 * PAGE_SIZE,
            4 * BLOCK_SIZE,
        ]),
        1..64u64,
        prop::bool::weighted(0.15),
        // Whole blocks in their fault, 64 KiB steps, and steps that do not
        // divide 2 MiB.
        prop::sample::select(vec![BLOCK_SIZE, 64 << 10, 12 << 10]),
    )
        .prop_flat_map(|(off, ram, sweep, eager, fill)| {
            (
                Just(off),
                Just(ram),
                Just(sweep),
                Just(eager),
                Just(fill),
                prop::collection::vec(op(ram), 1..60),
            )
        })
}

struct State {
    /// Blocks being filled: chunk -> log mark when their fill began.
    fills: BTreeMap<u64, usize>,
    fill_slice: u64,
    next_pa: u64,
    granted: Vec<(u64, u64)>,
    // Guest pages holding data: ipa -> pa.
    written: BTreeMap<u64, u64>,
}

fn mapped_pages(vm: &mut Vm) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    vm.pager().walk(0, 1 << 39, &mut |l| {
        for i in 0..l.size.pages() {
            v.push((l.ipa + i * PAGE_SIZE, l.pa + i * PAGE_SIZE));
        }
        ControlFlow::Continue(())
    });
    v
}

fn step(vm: &mut Vm, st: &mut State, base: u64, ram: u64, op: &Op) {
    let end = base + ram;
    let before = vm.pod().stats();
    let m = vm.mark();
    match *op {
        Op::Fault(off) => {
            let ipa = base + off;
            let chunk = ipa & !(BLOCK_SIZE - 1);
            let was_mapped = vm.pager().translate(ipa).is_some();
            let chunk_was_empty = vm.pager().chunk_is_empty(ipa);
            let r = vm.fault(ipa);
            let after = vm.pod().stats();
            match r {
                Err(PodError::OutsideRam { .. }) => assert!(ipa >= end),
                _ if ipa >= end => panic!("fault outside RAM at {ipa:#x} gave {r:?}"),
                Ok(Outcome::AlreadyMapped) => assert!(was_mapped),
                Ok(Outcome::Populated {
                    size: LeafSize::Block2M,
                    ipa: at,
                    ..
                }) => {
                    assert!(!was_mapped && chunk_was_empty && at == chunk);
                    assert!(chunk >= base && chunk + BLOCK_SIZE <= end);
                }
                Ok(Outcome::Populated {
                    size: LeafSize::Page4K,
                    ipa: at,
                    ..
                }) => {
                    assert!(!was_mapped && at == ipa & !(PAGE_SIZE - 1));
                    let fits = chunk >= base && chunk + BLOCK_SIZE <= end;
                    if fits && chunk_was_empty {
                        // A page for an empty chunk: only when no 2 MiB frame was free.
                        assert_eq!(
                            after.pool_2m_frames, 0,
                            "4 KiB chosen while a 2 MiB frame was free"
                        );
                    }
                }
                Ok(Outcome::Filling { chunk: c }) => {
                    assert!(!was_mapped && chunk_was_empty && c == chunk && st.fill_slice < BLOCK_SIZE);
                    assert!(chunk >= base && chunk + BLOCK_SIZE <= end);
                    match st.fills.get(&c) {
                        // A fault in a chunk being filled changes nothing.
                        Some(_) => assert_eq!(after, before),
                        None => {
                            assert_eq!(after.filling_pages, before.filling_pages + 512);
                            st.fills.insert(c, m);
                        }
                    }
                }
                Ok(Outcome::Retry) | Err(PodError::Exhausted { .. }) => {
                    assert!(!was_mapped);
                    assert_eq!(after.pool_pages, 0, "{r:?} with frames in the pool");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        Op::Write(off) | Op::HiddenWrite(off) => {
            let ipa = (base + off) & !(PAGE_SIZE - 1);
            if let Some((pa, _)) = vm.pager().translate(ipa) {
                if matches!(op, Op::Write(_)) {
                    vm.hw.write(pa);
                } else {
                    vm.hw.write_hidden(pa);
                }
                st.written.insert(ipa, pa);
            }
        }
        Op::Grant {
            pages,
            align_2m,
            bad,
        } => {
            let mut pa = if align_2m {
                (st.next_pa + BLOCK_SIZE - 1) & !(BLOCK_SIZE - 1)
            } else {
                st.next_pa
            };
            let mut len = pages * PAGE_SIZE;
            let want = match bad {
                1 => {
                    pa += 0x800;
                    Err(GrantError::Misaligned { pa, len })
                }
                2 if !st.granted.is_empty() => {
                    let (s, l) = st.granted[pages as usize % st.granted.len()];
                    pa = s + ((l / 2) & !(PAGE_SIZE - 1));
                    Err(GrantError::Overlap { pa, len })
                }
                3 => {
                    len = 0;
                    Err(GrantError::Empty)
                }
                _ => Ok(()),
            };
            let r = vm.pod().grant(pa, len);
            if want.is_ok() && r == Err(GrantError::TooFragmented) {
                assert_eq!(vm.pod().stats(), before);
            } else {
                assert_eq!(r, want);
            }
            if r.is_ok() {
                st.granted.push((pa, len));
                st.next_pa = pa + len + PAGE_SIZE * (pages % 3);
            } else {
                assert_eq!(vm.pod().stats(), before, "a refused grant changed the pool");
            }
        }
        Op::Reclaim(budget) => {
            let got = vm.reclaim(budget).unwrap();
            let after = vm.pod().stats();
            assert_eq!(after.reclaimed_pages - before.reclaimed_pages, got);
            assert_eq!(after.pool_pages, before.pool_pages + got);
        }
        Op::FillStep(n) => {
            if let Some(&chunk) = st.fills.keys().nth(n % st.fills.len().max(1)) {
                match vm.fill_step(chunk).unwrap() {
                    Outcome::Filling { chunk: c } => assert_eq!(c, chunk),
                    Outcome::Populated { size: LeafSize::Block2M, ipa, .. } => assert_eq!(ipa, chunk),
                    o => panic!("fill step of {chunk:#x}: {o:?}"),
                }
            } else {
                // No fill pending: a step anywhere does nothing.
                assert_eq!(vm.fill_step(base & !(BLOCK_SIZE - 1)).unwrap(), Outcome::AlreadyMapped);
            }
        }
        Op::Populate(off, len) => {
            let ipa = base + off;
            match vm.populate(ipa, len) {
                Ok(f) => {
                    let after = vm.pod().stats();
                    assert_eq!((f.blocks, f.pages), (after.pod_2m - before.pod_2m, after.pod_4k - before.pod_4k), "what populate says it mapped");
                    for a in (ipa & !(PAGE_SIZE - 1)..ipa + len).step_by(PAGE_SIZE as usize) {
                        assert!(vm.pager().translate(a).is_some(), "{a:#x} left unmapped");
                    }
                }
                Err(PodError::OutsideRam { .. }) => assert!(ipa + len > end),
                Err(PodError::Exhausted { .. }) => assert_eq!(vm.pod().stats().pool_pages, 0),
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    // New frames were zeroed then cleaned before mapping; frames a sweep put
    // back unchanged (written behind a stale line) are the only exception.
    let ev = vm.since(m);
    if std::env::var_os("POD_MODEL_TRACE").is_some() {
        eprintln!("TRACE {:?} {:?}", op, vm.pod().stats());
    }
    let mut restored: Vec<u64> = ev
        .iter()
        .filter_map(|e| match e {
            Event::CleanInvalidate { pa, .. } => Some(*pa),
            _ => None,
        })
        .collect();
    // Blocks whose fill ended in this op: zeroed and cleaned in pieces
    // since their fill began, none over the step size.
    let ended: Vec<(u64, usize)> = st.fills.iter().map(|(&c, &k)| (c, k)).filter(|&(c, _)| vm.pager().translate(c).is_some()).collect();
    for (chunk, mark) in ended {
        st.fills.remove(&chunk);
        let (pa, _) = vm.pager().translate(chunk).unwrap();
        let largest = zeroed_and_cleaned_in_pieces(&vm.since(mark), pa, BLOCK_SIZE);
        assert!(largest <= st.fill_slice, "{largest} bytes at once in a fill of {} byte steps", st.fill_slice);
        restored.push(pa);
    }
    zeroed_and_cleaned_before_map(&ev, &restored);
    // Data the guest wrote is never unmapped, moved or zeroed.
    for (&ipa, &pa) in &st.written {
        assert_eq!(
            vm.pager().translate(ipa),
            Some((pa, vm.pager().translate(ipa).unwrap().1)),
            "lost {ipa:#x}"
        );
        assert!(!vm.hw.is_zero_page(pa));
    }
    // No frame is mapped twice.
    let pages = mapped_pages(vm);
    let distinct: HashSet<u64> = pages.iter().map(|p| p.1).collect();
    assert_eq!(distinct.len(), pages.len(), "a frame is mapped twice");
}

proptest! {
    #![proptest_config(stage2_pager::testing::proptest_config())]

    #[test]
    fn pod_keeps_its_promises((off, ram, sweep, eager, fill_slice, ops) in scenario()) {
        let base = RAM + off;
        let mode = if eager { Mode::Eager } else { Mode::OnDemand };
        let mut vm = Vm::new(PodConfig { sweep_pages: sweep, fill_slice, ..PodConfig::new(base, ram, mode) });
        let mut st = State { fills: BTreeMap::new(), fill_slice, next_pa: 0x8000_0000, granted: Vec::new(), written: BTreeMap::new() };
        if eager {
            let op = Op::Grant { pages: ram / PAGE_SIZE + 512, align_2m: true, bad: 0 };
            step(&mut vm, &mut st, base, ram, &op);
            vm.start().unwrap();
            prop_assert_eq!(vm.pod().stats().pod_entries, 0);
        }
        for op in &ops {
            step(&mut vm, &mut st, base, ram, op);
        }
        // Every fill ends, in at most 2 MiB / step + 1 steps.
        let mut steps = 0;
        while !st.fills.is_empty() {
            step(&mut vm, &mut st, base, ram, &Op::FillStep(0));
            steps += 1;
            prop_assert!(steps <= 8 * (BLOCK_SIZE / fill_slice + 1), "fills never end");
        }
        prop_assert_eq!(vm.pod().stats().filling_pages, 0);
    }
}

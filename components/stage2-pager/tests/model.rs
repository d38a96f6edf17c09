//! Property test: random map / unmap / split / touch sequences against a
//! simple model, across 2 MiB and 1 GiB boundaries.

mod common;

use common::Vm;
use hwops::{CleanSource, MemRun, BLOCK_SIZE, PAGE_SIZE};
use proptest::prelude::*;
use stage2_pager::{LeafSize, MemAttrs, PagerError};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

// Chunks around the first two 1 GiB boundaries, so tables at every level are
// created, shared and emptied.
const CHUNKS: [u64; 6] = [0, 1, 511, 512, 513, 1023];

#[derive(Clone, Debug)]
enum Op {
    Map {
        chunk: usize,
        page: u64,
        block: bool,
        pa: u64,
        device: bool,
    },
    Unmap {
        chunk: usize,
        page: u64,
        block: bool,
    },
    Split {
        chunk: usize,
        page: u64,
    },
    Access {
        chunk: usize,
        page: u64,
    },
    ClearTouched {
        chunk: usize,
        chunks: u64,
    },
}

fn page_index() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(511), 0..512u64]
}

fn op() -> impl Strategy<Value = Op> {
    let chunk = 0..CHUNKS.len();
    prop_oneof![
        4 => (chunk.clone(), page_index(), any::<bool>(), 0..(1u64 << 15), prop::bool::weighted(0.1))
            .prop_map(|(chunk, page, block, pa, device)| Op::Map { chunk, page, block, pa, device }),
        2 => (chunk.clone(), page_index(), any::<bool>()).prop_map(|(chunk, page, block)| Op::Unmap { chunk, page, block }),
        1 => (chunk.clone(), page_index()).prop_map(|(chunk, page)| Op::Split { chunk, page }),
        1 => (chunk.clone(), page_index()).prop_map(|(chunk, page)| Op::Access { chunk, page }),
        1 => (chunk, 1..3u64).prop_map(|(chunk, chunks)| Op::ClearTouched { chunk, chunks }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct M {
    pa: u64,
    size: LeafSize,
    attrs: MemAttrs,
    accessed: bool,
}

/// The model: leaves by IPA, and the touched chunks.
#[derive(Default)]
struct Model {
    leaves: BTreeMap<u64, M>,
    touched: BTreeSet<u64>,
}

impl Model {
    fn covering(&self, ipa: u64) -> Option<(u64, M)> {
        self.leaves
            .range(..=ipa)
            .next_back()
            .filter(|(&a, m)| a + m.size.bytes() > ipa)
            .map(|(&a, &m)| (a, m))
    }
    fn pages_in(&self, c: u64) -> Vec<u64> {
        self.leaves
            .range(c..c + BLOCK_SIZE)
            .map(|(&a, _)| a)
            .collect()
    }
    fn translate(&self, ipa: u64) -> Option<(u64, u64)> {
        self.covering(ipa)
            .map(|(a, m)| (m.pa + ipa - a, m.size.bytes()))
    }
}

fn ipa_of(chunk: usize, page: u64) -> (u64, u64) {
    let c = CHUNKS[chunk] * BLOCK_SIZE;
    (c, c + page * PAGE_SIZE)
}

fn apply(vm: &mut Vm, m: &mut Model, op: &Op) -> Vec<u64> {
    let mut probe = Vec::new();
    match *op {
        Op::Map {
            chunk,
            page,
            block,
            pa,
            device,
        } => {
            let (c, p) = ipa_of(chunk, page);
            let attrs = if device {
                MemAttrs::Device
            } else {
                MemAttrs::Normal
            };
            let (ipa, size, pa) = if block {
                (c, LeafSize::Block2M, pa * BLOCK_SIZE)
            } else {
                (p, LeafSize::Page4K, pa * PAGE_SIZE)
            };
            let want = match m.covering(ipa) {
                Some((_, l)) if l.size != size => Err(PagerError::Overlap { ipa }),
                None if block && !m.pages_in(c).is_empty() => Err(PagerError::Overlap { ipa }),
                _ => Ok(()),
            };
            assert_eq!(vm.map(ipa, pa, size, attrs), want, "{op:?}");
            if want.is_ok() {
                m.leaves.insert(
                    ipa,
                    M {
                        pa,
                        size,
                        attrs,
                        accessed: true,
                    },
                );
                if !device {
                    m.touched.insert(c);
                }
            }
            probe.extend([ipa, ipa + size.bytes() - 1, ipa + size.bytes()]);
        }
        Op::Unmap { chunk, page, block } => {
            let (c, p) = ipa_of(chunk, page);
            if block {
                let pages = m.pages_in(c);
                let want = if pages.is_empty() {
                    Err(PagerError::NotMapped { ipa: c })
                } else {
                    Ok(())
                };
                assert_eq!(vm.unmap(c, LeafSize::Block2M), want, "{op:?}");
                for a in pages {
                    m.leaves.remove(&a);
                }
                probe.extend([c, p, c + BLOCK_SIZE - 1]);
            } else {
                let want = match m.covering(p) {
                    None => Err(PagerError::NotMapped { ipa: p }),
                    Some((_, l)) if l.size == LeafSize::Block2M => {
                        Err(PagerError::Overlap { ipa: p })
                    }
                    Some(_) => Ok(()),
                };
                assert_eq!(vm.unmap(p, LeafSize::Page4K), want, "{op:?}");
                if want.is_ok() {
                    m.leaves.remove(&p);
                }
                probe.push(p);
            }
        }
        Op::Split { chunk, page } => {
            let (c, p) = ipa_of(chunk, page);
            match m.covering(p) {
                Some((_, b)) if b.size == LeafSize::Block2M => {
                    vm.split(p).unwrap();
                    m.leaves.remove(&c);
                    for i in 0..512 {
                        m.leaves.insert(
                            c + i * PAGE_SIZE,
                            M {
                                pa: b.pa + i * PAGE_SIZE,
                                size: LeafSize::Page4K,
                                ..b
                            },
                        );
                    }
                }
                _ => assert_eq!(vm.split(p), Err(PagerError::NotABlock { ipa: p })),
            }
            probe.extend([c, p, c + BLOCK_SIZE - PAGE_SIZE]);
        }
        Op::Access { chunk, page } => {
            let (_, p) = ipa_of(chunk, page);
            let r = vm.p().handle_access_fault(p);
            match m.covering(p) {
                None => assert_eq!(r, Err(PagerError::NotMapped { ipa: p })),
                Some((a, l)) => {
                    assert!(r.is_ok());
                    m.leaves.get_mut(&a).unwrap().accessed = true;
                    if l.attrs == MemAttrs::Normal {
                        let c = a & !(BLOCK_SIZE - 1);
                        m.touched.insert(c);
                        // The first fault of a chunk sets AF on all its
                        // Normal leaves.
                        if !l.accessed {
                            for (_, o) in m.leaves.range_mut(c..c + BLOCK_SIZE) {
                                if o.attrs == MemAttrs::Normal {
                                    o.accessed = true;
                                }
                            }
                        }
                    }
                }
            }
            vm.settled();
            probe.push(p);
        }
        Op::ClearTouched { chunk, chunks } => {
            let (c, _) = ipa_of(chunk, 0);
            // An unaligned start still names whole chunks.
            vm.clear_touched(c + 0x123, chunks * BLOCK_SIZE - 0x123);
            let end = c + chunks * BLOCK_SIZE;
            for (_, l) in m.leaves.range_mut(c..end) {
                if l.attrs == MemAttrs::Normal {
                    l.accessed = false;
                }
            }
            let gone: Vec<u64> = m.touched.range(c..end).copied().collect();
            for g in gone {
                m.touched.remove(&g);
            }
        }
    }
    probe
}

/// Runs the model expects from `CleanSource::next_run`.
fn model_runs(m: &Model, all: bool) -> Vec<MemRun> {
    let mut runs: Vec<MemRun> = Vec::new();
    for (&ipa, l) in &m.leaves {
        let c = ipa & !(BLOCK_SIZE - 1);
        if l.attrs != MemAttrs::Normal || (!all && !m.touched.contains(&c)) {
            continue;
        }
        match runs.last_mut() {
            Some(r)
                if r.ipa + r.len == ipa
                    && r.pa + r.len == l.pa
                    && r.ipa & !(BLOCK_SIZE - 1) == c =>
            {
                r.len += l.size.bytes()
            }
            _ => runs.push(MemRun {
                ipa,
                pa: l.pa,
                len: l.size.bytes(),
            }),
        }
    }
    runs
}

fn check(vm: &mut Vm, m: &Model, probes: &[u64]) {
    let p = vm.p();
    for &ipa in probes {
        assert_eq!(p.translate(ipa), m.translate(ipa), "translate {ipa:#x}");
    }
    // The populated walk equals the model, leaf by leaf.
    let mut walked = BTreeMap::new();
    p.walk(0, 1 << 39, &mut |l| {
        walked.insert(
            l.ipa,
            M {
                pa: l.pa,
                size: l.size,
                attrs: l.attrs,
                accessed: l.accessed,
            },
        );
        ControlFlow::Continue(())
    });
    assert_eq!(walked, m.leaves);
    let normal: u64 = m
        .leaves
        .values()
        .filter(|l| l.attrs == MemAttrs::Normal)
        .map(|l| l.size.bytes())
        .sum();
    assert_eq!(p.normal_bytes(), normal);
    // The touched record is exact, and so is chunk emptiness.
    for &c in &CHUNKS {
        let c = c * BLOCK_SIZE;
        assert_eq!(p.is_touched(c), m.touched.contains(&c), "touched {c:#x}");
        let empty = m.leaves.range(c..c + BLOCK_SIZE).next().is_none();
        assert_eq!(p.chunk_is_empty(c), empty, "chunk_is_empty {c:#x}");
    }
    for all in [false, true] {
        let mut got = Vec::new();
        let mut from = 0;
        while let Some(r) = p.next_run(from, all) {
            got.push(r);
            from = r.ipa + r.len;
        }
        assert_eq!(got, model_runs(m, all), "runs, all = {all}");
    }
}

proptest! {
    #![proptest_config(stage2_pager::testing::proptest_config())]

    #[test]
    fn pager_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut vm = Vm::new(0);
        let mut m = Model::default();
        for op in &ops {
            let probes = apply(&mut vm, &mut m, op);
            check(&mut vm, &m, &probes);
        }
    }
}

//! The stage-2 pager against a model: any sequence of map, unmap, split,
//! access-flag fault and touched-record clear over 8 chunks of guest RAM.
//! Every translation must match the model after every step, and the
//! pager's answer (done or which error) must be the one the model expects.
#![no_main]
use std::collections::BTreeMap;

use capabilities::VmCaps;
use hwops::CleanSource;
use libfuzzer_sys::fuzz_target;
use stage2_pager::testing::{grant, host_table, revoke, RecordingHw};
use stage2_pager::{LeafSize, MemAttrs, Pager, PagerError};
use swhyp_fuzz::Input;

const BASE: u64 = 0x4000_0000;
const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const CHUNKS: u64 = 8;

/// Per 4 KiB page of the window: the PA it maps, and whether a block does.
type Model = BTreeMap<u64, (u64, bool)>;

fn chunk_of(p: u64) -> u64 {
    p / 512
}

fn pages_in(m: &Model, c: u64) -> impl Iterator<Item = (&u64, &(u64, bool))> {
    m.range(c * 512..(c + 1) * 512)
}

fuzz_target!(|data: &[u8]| {
    let mut i = Input::new(data);
    let VmCaps { stage2, pod, cache, sched, vgic } = grant();
    let Ok(mut pager) = Pager::new(stage2, host_table(), BASE) else { panic!("pager refused") };
    let mut tlb = RecordingHw::quiet();
    let mut m = Model::new();
    let mut steps = 0;
    while !i.is_empty() && steps < 256 {
        steps += 1;
        let op = i.u8() % 6;
        let p = u64::from(i.u16()) % (CHUNKS * 512);
        let c = chunk_of(p);
        let block_here = pages_in(&m, c).next().is_some_and(|(_, &(_, b))| b);
        let any_here = pages_in(&m, c).next().is_some();
        match op {
            0 => {
                let pa = (u64::from(i.u32()) & 0xf_ffff) * PAGE;
                let r = pager.map(BASE + p * PAGE, pa, LeafSize::Page4K, MemAttrs::Normal, &mut tlb);
                if block_here {
                    assert!(matches!(r, Err(PagerError::Overlap { .. })), "{r:?}");
                } else {
                    assert!(r.is_ok(), "{r:?}");
                    m.insert(p, (pa, false));
                }
            }
            1 => {
                let pa = (u64::from(i.u32()) & 0x3fff) * BLOCK;
                let r = pager.map(BASE + c * BLOCK, pa, LeafSize::Block2M, MemAttrs::Normal, &mut tlb);
                if any_here && !block_here {
                    assert!(matches!(r, Err(PagerError::Overlap { .. })), "{r:?}");
                } else {
                    assert!(r.is_ok(), "{r:?}");
                    for k in 0..512 {
                        m.insert(c * 512 + k, (pa + k * PAGE, true));
                    }
                }
            }
            2 => {
                let r = pager.unmap(BASE + p * PAGE, LeafSize::Page4K, &mut tlb);
                match m.get(&p) {
                    Some(&(_, true)) => assert!(matches!(r, Err(PagerError::Overlap { .. })), "{r:?}"),
                    Some(_) => {
                        assert!(r.is_ok(), "{r:?}");
                        m.remove(&p);
                    }
                    None => assert!(matches!(r, Err(PagerError::NotMapped { .. })), "{r:?}"),
                }
            }
            3 => {
                let r = pager.unmap(BASE + c * BLOCK, LeafSize::Block2M, &mut tlb);
                if any_here {
                    assert!(r.is_ok(), "{r:?}");
                    m.retain(|&q, _| chunk_of(q) != c);
                } else {
                    assert!(matches!(r, Err(PagerError::NotMapped { .. })), "{r:?}");
                }
            }
            4 => {
                let r = pager.split(BASE + p * PAGE, &mut tlb);
                if block_here {
                    assert!(r.is_ok(), "{r:?}");
                    for k in 0..512 {
                        if let Some(e) = m.get_mut(&(c * 512 + k)) {
                            e.1 = false;
                        }
                    }
                } else {
                    assert!(r.is_err());
                }
            }
            _ => {
                if i.u8() & 1 == 0 {
                    let r = pager.handle_access_fault(BASE + p * PAGE);
                    assert_eq!(r.is_ok(), m.contains_key(&p), "{r:?}");
                    if r.is_ok() {
                        assert!(pager.is_touched(BASE + p * PAGE));
                    }
                } else {
                    pager.clear_touched(BASE + c * BLOCK, BLOCK, &mut tlb);
                    assert!(!pager.is_touched(BASE + c * BLOCK));
                }
            }
        }
        // The pager translates exactly as the model says, around this step.
        for q in [p, c * 512, c * 512 + 511, (p + 1) % (CHUNKS * 512)] {
            let want = m.get(&q).map(|&(pa, block)| (pa, if block { LeafSize::Block2M } else { LeafSize::Page4K }));
            let got = pager.leaf(BASE + q * PAGE).map(|l| (l.pa + (BASE + q * PAGE - l.ipa), l.size));
            assert_eq!(got, want, "page {q:#x} after op {op}");
        }
        assert_eq!(pager.chunk_is_empty(BASE + c * BLOCK), pages_in(&m, c).next().is_none());
    }
    let (stage2, _) = pager.into_parts();
    revoke(VmCaps { stage2, pod, cache, sched, vgic });
});

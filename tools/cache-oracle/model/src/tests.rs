use super::*;

fn model() -> Model {
    Model::new(2, Geometry::QEMU_A72_L1, Geometry::QEMU_A72_L2, true, 8)
}

fn cpu(c: usize) -> Who {
    Who { cpu: c, el2: false, pc: 0x1000 }
}

/// Cacheable and non-cacheable reads and writes of 8 bytes.
fn rd(m: &mut Model, c: usize, pa: u64) {
    m.access(cpu(c), pa, 8, false, true);
}
fn wr(m: &mut Model, c: usize, pa: u64) {
    m.access(cpu(c), pa, 8, true, true);
}
fn nc_rd(m: &mut Model, c: usize, pa: u64) {
    m.access(cpu(c), pa, 8, false, false);
}
fn nc_wr(m: &mut Model, c: usize, pa: u64) {
    m.access(cpu(c), pa, 8, true, false);
}

const A: u64 = 0x4100_0000;

/// The set/way operands of a whole-cache loop at `level` (0 = L1).
fn loop_operands(geo: Geometry, level: u32) -> Vec<u64> {
    let way_bits = usize::BITS - (geo.ways - 1).leading_zeros();
    let mut v = Vec::new();
    for way in 0..geo.ways as u64 {
        for set in 0..geo.sets as u64 {
            let w = if way_bits == 0 { 0 } else { way << (32 - way_bits) };
            v.push(w | (set << LINE_SHIFT) | ((level as u64) << 1));
        }
    }
    v
}

fn sw_all(m: &mut Model, c: usize, op: Op) {
    for level in 0..2 {
        let geo = if level == 0 { Geometry::QEMU_A72_L1 } else { Geometry::QEMU_A72_L2 };
        for o in loop_operands(geo, level) {
            m.by_set_way(c, level, o, op);
        }
    }
}

#[test]
fn uncached_read_of_a_dirty_line_is_stale() {
    let mut m = model();
    wr(&mut m, 0, A);
    nc_rd(&mut m, 1, A);
    assert_eq!(m.counts.stale_reads, 1);
    assert_eq!(m.events[0].holder, Holder::L1(0));
    assert_eq!(m.events[0].pa, A);
}

#[test]
fn clean_to_poc_before_the_uncached_read_loses_nothing() {
    for op in [Op::Clean, Op::CleanInvalidate] {
        let mut m = model();
        wr(&mut m, 0, A);
        m.by_address(A, op);
        nc_rd(&mut m, 1, A);
        nc_wr(&mut m, 1, A);
        assert_eq!(m.counts.events(), 0, "{op:?}");
    }
}

#[test]
fn uncached_write_to_a_dirty_line_is_lost() {
    let mut m = model();
    m.access(cpu(1), A + 8, 8, true, true);
    nc_wr(&mut m, 0, A);
    assert_eq!(m.counts.lost_writes, 1);
    assert_eq!(m.events[0].kind, Kind::LostWrite);
    assert_eq!(m.events[0].holder, Holder::L1(1));
}

#[test]
fn a_line_written_uncached_under_a_clean_copy_is_stale_until_invalidated() {
    let mut m = model();
    nc_wr(&mut m, 0, A); // nothing cached: fine
    rd(&mut m, 0, A); // cached clean
    m.by_address(A, Op::Clean); // a clean leaves the copy
    nc_wr(&mut m, 1, A); // memory moves on under it
    rd(&mut m, 0, A);
    assert_eq!(m.counts.stale_lines, 1);
    // Invalidating first is what makes it safe.
    let mut m = model();
    rd(&mut m, 0, A);
    nc_wr(&mut m, 1, A);
    m.by_address(A, Op::Invalidate);
    rd(&mut m, 0, A);
    assert_eq!(m.counts.events(), 0);
}

#[test]
fn a_full_loop_on_the_writing_cpu_cleans_everything() {
    let mut m = model();
    for i in 0..4096u64 {
        m.access(cpu(0), A + i * LINE, 8, true, true);
    }
    sw_all(&mut m, 0, Op::CleanInvalidate);
    for i in 0..4096u64 {
        m.access(cpu(1), A + i * LINE, 8, false, false);
    }
    assert_eq!(m.counts.events(), 0);
}

#[test]
fn a_set_way_loop_on_another_cpu_leaves_the_l1_behind() {
    let mut m = model();
    for i in 0..64u64 {
        m.access(cpu(0), A + i * LINE, 8, true, true);
    }
    // The vCPU moved: its loop runs on CPU 1. The shared L2 is clean, but
    // CPU 0's L1 still holds the data.
    sw_all(&mut m, 1, Op::CleanInvalidate);
    for i in 0..64u64 {
        m.access(cpu(1), A + i * LINE, 8, false, false);
    }
    assert_eq!(m.counts.stale_reads, 64);
    assert!(m.events.iter().all(|e| e.holder == Holder::L1(0)));
}

#[test]
fn migrating_in_the_middle_of_the_l1_loop_loses_the_rest() {
    let mut m = model();
    for i in 0..512u64 {
        m.access(cpu(0), A + i * LINE, 8, true, true);
    }
    let l1 = loop_operands(Geometry::QEMU_A72_L1, 0);
    let (first, rest) = l1.split_at(l1.len() / 4);
    for &o in first {
        m.by_set_way(0, 0, o, Op::CleanInvalidate);
    }
    for &o in rest {
        m.by_set_way(1, 0, o, Op::CleanInvalidate);
    }
    for o in loop_operands(Geometry::QEMU_A72_L2, 1) {
        m.by_set_way(1, 1, o, Op::CleanInvalidate);
    }
    for i in 0..512u64 {
        m.access(cpu(1), A + i * LINE, 8, false, false);
    }
    // Three quarters of CPU 0's L1 was never cleaned.
    assert_eq!(m.counts.stale_reads, 384);
}

#[test]
fn l1_only_clean_leaves_the_line_dirty_in_the_l2() {
    let mut m = model();
    wr(&mut m, 0, A);
    for o in loop_operands(Geometry::QEMU_A72_L1, 0) {
        m.by_set_way(0, 0, o, Op::Clean);
    }
    nc_rd(&mut m, 0, A);
    assert_eq!(m.events[0].holder, Holder::L2(0));
}

#[test]
fn coherence_moves_dirty_data_between_cpus() {
    let mut m = model();
    wr(&mut m, 0, A);
    wr(&mut m, 1, A); // takes the line over
    assert!(!m.locate(A).contains("L1[0]"), "CPU 0 kept its copy: {}", m.locate(A));
    nc_rd(&mut m, 0, A);
    assert_eq!(m.events[0].holder, Holder::L1(1));
    // CPU 1's set/way clean alone now reaches the data.
    let mut m = model();
    wr(&mut m, 0, A);
    wr(&mut m, 1, A);
    sw_all(&mut m, 1, Op::CleanInvalidate);
    nc_rd(&mut m, 0, A);
    assert_eq!(m.counts.events(), 0);
}

#[test]
fn zeroing_a_line_that_hits_in_l1_refreshes_the_l2_copy() {
    let mut m = private();
    rd(&mut m, 0, A); // clean in L1 and L2
    nc_wr(&mut m, 1, A); // both copies stale
    m.zero_line(cpu(0), A, true); // L1 hit, whole line new
    m.by_address(A, Op::Clean);
    for i in 1..64u64 {
        // Evict A from CPU 0's L1 (same set, 4 ways), not from its L2.
        rd(&mut m, 0, A + i * 128 * LINE);
    }
    rd(&mut m, 0, A);
    assert_eq!(m.counts.events(), 0, "{:?}", m.events.first());
}

#[test]
fn zeroing_a_whole_line_over_a_stale_copy_is_fine() {
    let mut m = model();
    rd(&mut m, 0, A);
    nc_wr(&mut m, 1, A);
    m.zero_line(cpu(0), A, true);
    m.by_address(A, Op::CleanInvalidate);
    nc_rd(&mut m, 1, A);
    assert_eq!(m.counts.events(), 0);
}

#[test]
fn evicted_lines_are_written_back() {
    let mut m = model();
    // 4 MiB of writes through a 32 KiB L1 and a 1 MiB L2: the first lines
    // went to memory long ago.
    for i in 0..(4u64 << 20) / LINE {
        m.access(cpu(0), A + i * LINE, 8, true, true);
    }
    nc_rd(&mut m, 1, A);
    assert_eq!(m.counts.events(), 0);
    m.access(cpu(1), A + (4 << 20) - LINE, 8, false, false);
    assert_eq!(m.counts.stale_reads, 1);
}

#[test]
fn an_access_across_lines_touches_both() {
    let mut m = model();
    m.access(cpu(0), A + LINE, 8, true, true);
    m.access(cpu(1), A + LINE - 4, 8, false, false);
    assert_eq!(m.counts.stale_reads, 1);
}

#[test]
fn the_whole_cache_stand_in_cleans_everything() {
    let mut m = model();
    wr(&mut m, 0, A);
    m.access(cpu(1), A + LINE, 8, true, true);
    m.whole(Some(1), Op::Clean);
    m.access(cpu(1), A + LINE, 8, false, false);
    m.whole(None, Op::CleanInvalidate);
    nc_rd(&mut m, 1, A);
    assert_eq!(m.counts.events(), 0);
    assert_eq!(m.counts.approx_ops, 2);
}

#[test]
fn geometry_parses_and_decodes() {
    assert_eq!(Geometry::parse("128x4"), Some(Geometry::QEMU_A72_L1));
    assert_eq!(Geometry::parse("100x2"), None);
    assert_eq!(Geometry::parse("x"), None);
    let g = Geometry::QEMU_A72_L2;
    assert_eq!(g.decode_set_way((5 << 28) | (77 << 6) | 2), (77, 5));
    assert_eq!(Geometry::QEMU_A72_L1.decode_set_way((3 << 30) | (127 << 6)), (127, 3));
}

#[test]
fn only_the_first_events_are_kept() {
    let mut m = Model::new(2, Geometry::QEMU_A72_L1, Geometry::QEMU_A72_L2, true, 3);
    for i in 0..10u64 {
        m.access(cpu(0), A + i * LINE, 8, true, true);
        m.access(cpu(1), A + i * LINE, 8, false, false);
    }
    assert_eq!(m.counts.stale_reads, 10);
    assert_eq!(m.events.len(), 3);
}

#[test]
fn a_dirty_neighbour_in_the_line_is_not_a_stale_read() {
    let mut m = model();
    // CPU 1 reads bytes 32..40 with caches off; CPU 0 dirtied bytes 0..8.
    wr(&mut m, 0, A);
    nc_rd(&mut m, 1, A + 32);
    assert_eq!(m.counts.events(), 0);
    // But writing them is lost when the line is written back.
    nc_wr(&mut m, 1, A + 32);
    assert_eq!(m.counts.lost_writes, 1);
}

#[test]
fn whole_cache_operations_reach_every_line_however_many() {
    // Few lines (recorded slots) and many (the lists overflow: full scan).
    for n in [3u64, 40_000] {
        let mut m = model();
        for i in 0..n {
            wr(&mut m, (i % 2) as usize, A + i * LINE);
        }
        m.whole(None, Op::Clean);
        for i in 0..n {
            nc_rd(&mut m, 1, A + i * LINE);
        }
        assert_eq!(m.counts.events(), 0, "clean, n={n}");
        // Lines cleaned stay; an invalidate drops them, so a later
        // non-cacheable write leaves nothing stale.
        for i in 0..n {
            rd(&mut m, 0, A + i * LINE);
        }
        m.whole(None, Op::Invalidate);
        for i in 0..n {
            nc_wr(&mut m, 1, A + i * LINE);
            rd(&mut m, 0, A + i * LINE);
        }
        assert_eq!(m.counts.events(), 0, "invalidate, n={n}");
    }
}

#[test]
fn the_guest_rt_loop_cleans_512k() {
    let mut m = Model::new(1, Geometry::QEMU_A72_L1, Geometry::QEMU_A72_L2, true, 8);
    let base = 0x4180_0000u64;
    for i in 0..(512u64 << 10) / 8 {
        m.access(cpu(0), base + i * 8, 8, true, true);
    }
    sw_all(&mut m, 0, Op::CleanInvalidate);
    for i in 0..(512u64 << 10) / 8 {
        m.access(cpu(0), base + i * 8, 8, false, false);
    }
    assert_eq!(m.counts.events(), 0, "{:?}", m.events.first());
}

fn private() -> Model {
    Model::new(2, Geometry::QEMU_A72_L1, Geometry::QEMU_A72_L2, false, 8)
}

#[test]
fn with_private_l2s_a_loop_on_another_cpu_misses_both_levels() {
    let mut m = private();
    for i in 0..2048u64 {
        wr(&mut m, 0, A + i * LINE);
    }
    // The loop ran on CPU 1: CPU 0's L1 and L2 keep the data.
    sw_all(&mut m, 1, Op::CleanInvalidate);
    for i in 0..2048u64 {
        nc_rd(&mut m, 1, A + i * LINE);
    }
    assert_eq!(m.counts.stale_reads, 2048);
    // The same loop on the writing CPU loses nothing.
    let mut m = private();
    for i in 0..2048u64 {
        wr(&mut m, 0, A + i * LINE);
    }
    sw_all(&mut m, 0, Op::CleanInvalidate);
    for i in 0..2048u64 {
        nc_rd(&mut m, 1, A + i * LINE);
    }
    assert_eq!(m.counts.events(), 0);
}

#[test]
fn with_private_l2s_coherence_and_broadcast_cleans_still_hold() {
    let mut m = private();
    wr(&mut m, 0, A);
    for i in 1..40_000u64 {
        wr(&mut m, 0, A + i * LINE); // pushes A down to CPU 0's L2
    }
    wr(&mut m, 1, A + 8); // CPU 1 takes the line over, dirty bytes and all
    m.by_address(A, Op::CleanInvalidate);
    nc_rd(&mut m, 0, A);
    nc_rd(&mut m, 1, A + 8);
    assert_eq!(m.counts.events(), 0);
    // A read on the other CPU leaves the dirty copy owned where it was.
    wr(&mut m, 0, A + 4 * LINE);
    rd(&mut m, 1, A + 4 * LINE);
    nc_rd(&mut m, 1, A + 4 * LINE);
    assert_eq!(m.counts.stale_reads, 1);
}

/// A read on another CPU takes the writer's dirty L1 copy down to the
/// writer's L2 and leaves it clean there, not dirty twice.
#[test]
fn a_read_on_another_cpu_cleans_the_writers_l1_copy() {
    let mut m = model();
    wr(&mut m, 0, A);
    rd(&mut m, 1, A);
    let line = A >> LINE_SHIFT;
    let i = m.l1[0].find(line).expect("the writer keeps its copy");
    assert_eq!(m.l1[0].state[i] & DIRTY, 0, "the writer's L1 copy is still dirty");
    assert!(m.l1[1].find(line).is_some());
    // A write takes every other L1's copy away.
    wr(&mut m, 1, A);
    assert!(m.l1[0].find(line).is_none());
    assert_eq!(m.counts.stale_reads, 0);
}

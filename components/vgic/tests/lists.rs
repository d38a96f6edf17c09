//! The list registers: what flush writes and in which order, what sync reads
//! back (acknowledge, EOI), overflow, level lines, SGI sources, SPIs moving
//! between vCPUs, and a kernel that gets the protocol wrong.

mod common;
use common::*;

/// One vCPU, 64 SPIs, the distributor on.
fn one() -> TestVgic {
    let mut g = vgic(1, 64);
    wr(&mut g, 0, CTLR, 1);
    g
}

#[test]
fn lr_format() {
    let mut g = one();
    enable(&mut g, 0, 27, 0xa8, 0);
    set_edge(&mut g, 0, 27, true);
    g.inject(v(0), 27).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    // VirtualID 27, CPUID 0, EOI 0, priority 0xa8 >> 3 = 21, pending, Grp1 0, HW 0.
    assert_eq!(m.raw(0), 27 | (21 << 23) | (1 << 28));
    assert_eq!(m.hcr(), HCR_EN);
    assert_eq!((1..4).map(|i| m.raw(i)).collect::<Vec<_>>(), [0, 0, 0]);

    // An SGI carries its source in CPUID.
    let mut g = vgic(4, 0);
    wr(&mut g, 0, CTLR, 1);
    wrb(&mut g, 2, IPRIORITYR + 9, 0x10);
    wr(&mut g, 3, SGIR, sgir(0, 0b0100, 9));
    g.flush(v(2), &mut m).unwrap();
    assert_eq!(m.raw(0), 9 | (3 << 10) | (2 << 23) | (1 << 28));
}

#[test]
fn flush_takes_the_best_priorities_first() {
    let mut g = one();
    // (intid, priority): two pairs tie.
    let irqs = [(33, 0xa0), (34, 0x20), (35, 0xf0), (36, 0x20), (37, 0x00), (38, 0x80)];
    for (i, p) in irqs {
        enable(&mut g, 0, i, p, 1);
        set_edge(&mut g, 0, i, true);
        g.inject(v(0), i).unwrap();
    }
    enable(&mut g, 0, 27, 0x20, 0);
    g.inject(v(0), 27).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    // 37 (0x00), then 27, 34, 36 (0x20, lowest INTID first).
    assert_eq!(ids(&m), [37, 27, 34, 36]);
    assert_eq!(m.hcr(), HCR_EN | HCR_UIE, "38 and 33 and 35 wait");
    assert_eq!(g.counters().overflows, 1);
    // The guest takes them in priority order too.
    assert_eq!(m.ack().unwrap().intid, 37);
}

#[test]
fn overflow_is_flushed_after_underflow() {
    let mut g = one();
    for i in 40..46 {
        enable(&mut g, 0, i, 0x80 + (i as u8 - 40) * 8, 1);
        set_edge(&mut g, 0, i, true);
        g.inject(v(0), i).unwrap();
    }
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [40, 41, 42, 43]);
    assert!(!m.maintenance(), "four valid: no underflow yet");
    let mut seen = vec![];
    for _ in 0..3 {
        let l = m.ack().unwrap();
        seen.push(l.intid);
        m.eoi(l.intid, l.source);
    }
    assert!(m.maintenance(), "one valid left: underflow");
    // The kernel takes the maintenance interrupt: exit, sync, flush.
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!m.maintenance(), "sync turns GICH_HCR off");
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [43, 44, 45]);
    assert_eq!(m.hcr(), HCR_EN, "nothing left over");
    seen.extend(std::iter::from_fn(|| m.ack().inspect(|l| _ = m.eoi(l.intid, l.source)).map(|l| l.intid)));
    assert_eq!(seen, [40, 41, 42, 43, 44, 45]);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!g.pending_for(v(0)));
    assert_eq!(g.counters().eois, 6, "each EOI seen once");
    g.check().unwrap();
}

#[test]
fn with_one_list_register_the_eoi_bit_stands_in_for_underflow() {
    let mut g = one();
    for i in [40, 41] {
        enable(&mut g, 0, i, 0x80, 1);
        set_edge(&mut g, 0, i, true);
        g.inject(v(0), i).unwrap();
    }
    let mut m = GichModel::new(1);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(m.hcr(), HCR_EN, "UIE would fire at once");
    assert!(m.lr(0).eoi);
    assert!(!m.maintenance());
    assert_eq!(m.drain(), 1);
    assert!(m.maintenance(), "EOI maintenance");
    assert_eq!(m.elrsr(), 0, "an EOI maintenance interrupt keeps the LR busy");
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [41]);
    assert!(!m.lr(0).eoi);
}

#[test]
fn eoi_is_seen_as_an_invalid_list_register() {
    let mut g = one();
    enable(&mut g, 0, 27, 0xa0, 0);
    set_edge(&mut g, 0, 27, true);
    g.inject(v(0), 27).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    let l = m.ack().unwrap();
    assert_eq!((l.intid, l.active, l.pending), (27, true, false));
    assert!(m.eoi(27, 0));
    assert_eq!(m.elrsr() & 1, 1);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!bit(&mut g, 0, ISPENDR, 27));
    assert!(!bit(&mut g, 0, ISACTIVER, 27));
    assert_eq!(g.counters().eois, 1);
    g.flush(v(0), &mut m).unwrap();
    assert!(ids(&m).is_empty());
}

#[test]
fn not_yet_acknowledged_stays_pending_and_edges_coalesce() {
    let mut g = one();
    enable(&mut g, 0, 27, 0xa0, 0);
    set_edge(&mut g, 0, 27, true);
    g.inject(v(0), 27).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    // A second edge before the guest acknowledged the first.
    g.inject(v(0), 27).unwrap();
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(bit(&mut g, 0, ISPENDR, 27));
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(27, 0, true, false)]);
    assert_eq!(m.drain(), 1);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!g.pending_for(v(0)), "one delivery for two edges while pending");
}

#[test]
fn acknowledged_stays_active_and_comes_back_first() {
    let mut g = one();
    enable(&mut g, 0, 40, 0xf0, 1);
    set_edge(&mut g, 0, 40, true);
    g.inject(v(0), 40).unwrap();
    let mut m = GichModel::new(2);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(m.ack().unwrap().intid, 40);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(bit(&mut g, 0, ISACTIVER, 40));
    assert!(!bit(&mut g, 0, ISPENDR, 40));
    // Better-priority interrupts do not push the active one out.
    for i in 41..45 {
        enable(&mut g, 0, i, 0x10, 1);
        g.inject(v(0), i).unwrap();
    }
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(40, 0, false, true), (41, 0, true, false)]);
    assert!(m.eoi(40, 0));
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!bit(&mut g, 0, ISACTIVER, 40));
}

#[test]
fn an_edge_while_active_makes_it_pending_and_active() {
    let mut g = one();
    enable(&mut g, 0, 27, 0xa0, 0);
    set_edge(&mut g, 0, 27, true);
    g.inject(v(0), 27).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    m.ack().unwrap();
    // The guest is in its handler; the next edge arrives: kick it.
    assert_eq!(g.inject(v(0), 27).unwrap(), Some(v(0)));
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(27, 0, true, true)]);
    assert!(m.ack().is_none(), "it cannot preempt itself");
    assert!(m.eoi(27, 0));
    assert_eq!(lrs(&m), [(27, 0, true, false)]);
    assert_eq!(m.drain(), 1, "delivered again");
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!g.pending_for(v(0)));
}

#[test]
fn level_line_still_high_after_eoi_is_pending_again() {
    let mut g = one();
    enable(&mut g, 0, 33, 0xa0, 1); // level by default
    assert_eq!(g.set_level(33, true).unwrap(), Some(v(0)));
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(33, 0, true, false)]);
    assert!(m.lr(0).eoi, "level: exit at EOI to re-sample");
    let l = m.ack().unwrap();
    // While active and the line is high: never pending+active.
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(33, 0, false, true)]);
    m.eoi(l.intid, l.source);
    assert!(m.maintenance(), "EOI maintenance");
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(g.pending_for(v(0)), "line still high");
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(33, 0, true, false)]);
    // The device is served: the line drops before the guest EOIs.
    m.ack().unwrap();
    g.set_level(33, false).unwrap();
    m.eoi(33, 0);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!g.pending_for(v(0)));
    g.flush(v(0), &mut m).unwrap();
    assert!(ids(&m).is_empty());
    assert!(!m.maintenance());
}

#[test]
fn level_line_dropped_before_entry_is_not_delivered() {
    let mut g = one();
    enable(&mut g, 0, 33, 0xa0, 1);
    g.set_level(33, true).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    let _ = g.sync(v(0), &mut m).unwrap(); // exits before the guest took it
    g.set_level(33, false).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert!(ids(&m).is_empty(), "a stale LR must not survive");
}

#[test]
fn level_active_with_software_pending_is_not_pending_and_active() {
    let mut g = one();
    enable(&mut g, 0, 33, 0xa0, 1);
    wr(&mut g, 0, ISPENDR + 4, 1 << 1);
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    m.ack().unwrap();
    let _ = g.sync(v(0), &mut m).unwrap();
    wr(&mut g, 0, ISPENDR + 4, 1 << 1);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(33, 0, false, true)]);
    assert!(m.lr(0).eoi);
    m.eoi(33, 0);
    assert!(m.maintenance());
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(33, 0, true, false)], "the latch is delivered after the EOI");
}

#[test]
fn more_active_than_list_registers_is_counted() {
    let mut g = one();
    wr(&mut g, 0, ISACTIVER + 4, 0x3f);
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [32, 33, 34, 35]);
    assert_eq!(g.counters().active_overflows, 2);
    // The two left out come back once the guest EOIs.
    for i in 32..36 {
        assert!(m.eoi(i, 0));
    }
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [36, 37]);
    g.check().unwrap();
}

#[test]
fn software_pending_on_a_level_interrupt_is_delivered_once() {
    let mut g = one();
    enable(&mut g, 0, 33, 0xa0, 1);
    wr(&mut g, 0, ISPENDR + 4, 1 << 1);
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    let _ = g.sync(v(0), &mut m).unwrap(); // not taken: the latch comes back
    assert!(bit(&mut g, 0, ISPENDR, 33));
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(m.drain(), 1);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert!(!bit(&mut g, 0, ISPENDR, 33), "acknowledge cleared the latch");
}

#[test]
fn sgi_sources_one_at_a_time() {
    let mut g = vgic(3, 0);
    wr(&mut g, 0, CTLR, 1);
    wr(&mut g, 0, SGIR, sgir(0, 0b010, 1));
    wr(&mut g, 2, SGIR, sgir(0, 0b010, 1));
    wr(&mut g, 1, SGIR, sgir(2, 0, 2));
    let mut m = GichModel::new(4);
    g.flush(v(1), &mut m).unwrap();
    // SGI 1 once (source 0, EOI bit: source 2 waits), SGI 2 from itself.
    assert_eq!(lrs(&m), [(1, 0, true, false), (2, 1, true, false)]);
    assert!(m.lr(0).eoi);
    assert!(!m.lr(1).eoi);
    assert_eq!(m.hcr(), HCR_EN, "no overflow: the other source waits on the EOI");
    assert_eq!(rdb(&mut g, 1, SPENDSGIR + 1), 0b101, "both sources read pending");
    let a = m.ack().unwrap();
    assert_eq!((a.intid, a.source), (1, 0));
    assert!(m.eoi(1, 0));
    assert!(m.maintenance());
    let _ = g.sync(v(1), &mut m).unwrap();
    assert_eq!(rdb(&mut g, 1, SPENDSGIR + 1), 0b100);
    g.flush(v(1), &mut m).unwrap();
    assert_eq!(lrs(&m), [(1, 2, true, false), (2, 1, true, false)]);
    let order: Vec<_> =
        std::iter::from_fn(|| m.ack().inspect(|l| _ = m.eoi(l.intid, l.source))).map(|l| (l.intid, l.source)).collect();
    assert_eq!(order, [(1, 2), (2, 1)]);
    let _ = g.sync(v(1), &mut m).unwrap();
    assert!(!g.pending_for(v(1)));
}

#[test]
fn sgi_from_the_same_source_while_active_is_pending_and_active() {
    let mut g = vgic(2, 0);
    wr(&mut g, 0, CTLR, 1);
    wr(&mut g, 0, SGIR, sgir(0, 0b10, 0));
    let mut m = GichModel::new(4);
    g.flush(v(1), &mut m).unwrap();
    m.ack().unwrap();
    let _ = g.sync(v(1), &mut m).unwrap();
    wr(&mut g, 0, SGIR, sgir(0, 0b10, 0));
    g.flush(v(1), &mut m).unwrap();
    assert_eq!(lrs(&m), [(0, 0, true, true)]);
    assert!(!m.lr(0).eoi);
}

#[test]
fn sgis_are_banked() {
    let mut g = vgic(2, 0);
    wr(&mut g, 0, CTLR, 1);
    assert_eq!(wr(&mut g, 0, SGIR, sgir(0, 0b10, 4)), 0b10);
    let mut m0 = GichModel::new(4);
    let mut m1 = GichModel::new(4);
    g.flush(v(0), &mut m0).unwrap();
    g.flush(v(1), &mut m1).unwrap();
    assert!(ids(&m0).is_empty());
    assert_eq!(lrs(&m1), [(4, 0, true, false)]);
}

#[test]
fn spis_go_to_their_target() {
    let mut mc = Machine::new(3, 32, 4);
    let g = &mut mc.g;
    enable(g, 0, 40, 0x80, 0b110);
    set_edge(g, 0, 40, true);
    assert_eq!(g.inject(v(0), 40).unwrap(), Some(v(1)));
    for c in 0..3 {
        mc.enter(c);
    }
    assert!(ids(&mc.cpus[0]).is_empty());
    assert_eq!(ids(&mc.cpus[1]), [40]);
    assert!(ids(&mc.cpus[2]).is_empty(), "only one of the targets gets it");
}

#[test]
fn a_queued_spi_moves_only_after_sync() {
    let mut mc = Machine::new(3, 32, 4);
    enable(&mut mc.g, 0, 40, 0x80, 0b010);
    set_edge(&mut mc.g, 0, 40, true);
    mc.g.inject(v(0), 40).unwrap();
    mc.enter(1);
    assert_eq!(ids(&mc.cpus[1]), [40]);
    // vCPU 2 retargets it to itself while vCPU 1 still holds it.
    let r = mc.mmio(2, ITARGETSR + 40, Access::Write { width: Width::Byte, value: 0b100 });
    assert!(r.kick.is_empty(), "queued on vCPU 1: nothing for vCPU 2 yet");
    assert!(bit(&mut mc.g, 2, ISPENDR, 40), "reads pending while queued elsewhere");
    mc.enter(2);
    assert!(ids(&mc.cpus[2]).is_empty(), "never in two list registers");
    // vCPU 1 exits without taking it: it comes back pending, routed to 2.
    let k = mc.exit(1);
    assert_eq!(k, VcpuSet::from_bits(0b100));
    mc.kick(k);
    assert_eq!(ids(&mc.cpus[2]), [40]);
    mc.g.check().unwrap();
}

#[test]
fn an_active_spi_is_not_requeued_elsewhere() {
    let mut mc = Machine::new(2, 32, 4);
    enable(&mut mc.g, 0, 40, 0x80, 0b01);
    set_edge(&mut mc.g, 0, 40, true);
    mc.g.inject(v(0), 40).unwrap();
    mc.enter(0);
    mc.cpus[0].ack().unwrap();
    let _ = mc.exit(0);
    // Retargeted to vCPU 1 while active on vCPU 0, then a new edge.
    let _ = mc.mmio(1, ITARGETSR + 40, Access::Write { width: Width::Byte, value: 0b10 });
    assert_eq!(mc.g.inject(v(1), 40).unwrap(), Some(v(0)), "the vCPU it is active on");
    assert!(!mc.g.pending_for(v(1)));
    mc.enter(1);
    assert!(ids(&mc.cpus[1]).is_empty());
    mc.enter(0);
    assert_eq!(lrs(&mc.cpus[0]), [(40, 0, true, true)]);
    // EOI on vCPU 0; the pending part now belongs to vCPU 1.
    assert!(mc.cpus[0].eoi(40, 0));
    let k = mc.exit(0);
    assert_eq!(k, VcpuSet::from_bits(0b10));
    mc.kick(k);
    // vCPU 0 had not taken the pending part: it goes back to the
    // distributor and on to the new target.
    assert_eq!(ids(&mc.cpus[1]), [40]);
    mc.g.check().unwrap();
}

#[test]
fn clear_pending_while_queued_elsewhere() {
    let mut mc = Machine::new(2, 32, 4);
    enable(&mut mc.g, 0, 40, 0x80, 0b01);
    set_edge(&mut mc.g, 0, 40, true);
    mc.g.inject(v(0), 40).unwrap();
    mc.enter(0);
    let _ = mc.mmio(1, ICPENDR + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    assert!(!bit(&mut mc.g, 1, ISPENDR, 40));
    let _ = mc.exit(0);
    assert!(!bit(&mut mc.g, 1, ISPENDR, 40), "the clear wins over the LR's pending");
    // A set-pending after the clear is kept.
    mc.enter(0);
    let _ = mc.mmio(1, ISPENDR + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    let _ = mc.mmio(1, ICPENDR + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    let _ = mc.mmio(1, ISPENDR + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    let _ = mc.exit(0);
    assert!(bit(&mut mc.g, 1, ISPENDR, 40));
    mc.g.check().unwrap();
}

#[test]
fn clear_and_set_active_while_queued_elsewhere() {
    let mut mc = Machine::new(2, 32, 4);
    enable(&mut mc.g, 0, 40, 0x80, 0b01);
    set_edge(&mut mc.g, 0, 40, true);
    mc.g.inject(v(0), 40).unwrap();
    mc.enter(0);
    mc.cpus[0].ack().unwrap();
    // Another vCPU sees the state as flushed until vCPU 0 exits.
    assert!(bit(&mut mc.g, 1, ISPENDR, 40));
    assert!(!bit(&mut mc.g, 1, ISACTIVER, 40));
    let _ = mc.mmio(1, ICACTIVER + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    let _ = mc.exit(0);
    assert!(!bit(&mut mc.g, 1, ISACTIVER, 40), "the guest acknowledged, the clear wins");
    // Set-active of a queued interrupt survives the sync.
    mc.g.inject(v(0), 40).unwrap();
    mc.enter(0);
    let _ = mc.mmio(1, ISACTIVER + 4, Access::Write { width: Width::Word, value: 1 << 8 });
    let _ = mc.exit(0);
    assert!(bit(&mut mc.g, 1, ISACTIVER, 40));
    mc.enter(0);
    assert_eq!(lrs(&mc.cpus[0]), [(40, 0, true, true)]);
    mc.g.check().unwrap();
}

#[test]
fn disabled_or_distributor_off_stays_in_the_distributor() {
    let mut g = vgic(1, 32);
    enable(&mut g, 0, 40, 0x80, 1);
    set_edge(&mut g, 0, 40, true);
    wr(&mut g, 0, CTLR, 0);
    g.inject(v(0), 40).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    assert!(ids(&m).is_empty());
    let _ = g.sync(v(0), &mut m).unwrap();
    assert_eq!(wr(&mut g, 0, CTLR, 1), 1);
    wr(&mut g, 0, ICENABLER + 4, 1 << 8);
    g.flush(v(0), &mut m).unwrap();
    assert!(ids(&m).is_empty());
    let _ = g.sync(v(0), &mut m).unwrap();
    assert_eq!(set_bit(&mut g, 0, ISENABLER, 40), 1);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [40]);
}

#[test]
fn an_active_interrupt_returns_even_when_disabled() {
    let mut g = one();
    enable(&mut g, 0, 40, 0x80, 1);
    g.inject(v(0), 40).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    m.ack().unwrap();
    let _ = g.sync(v(0), &mut m).unwrap();
    wr(&mut g, 0, ICENABLER + 4, 1 << 8);
    wr(&mut g, 0, CTLR, 0);
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(lrs(&m), [(40, 0, false, true)], "the guest must still EOI it");
}

#[test]
fn stale_list_registers_are_cleared() {
    let mut g = one();
    let mut m = GichModel::new(4);
    // Another vCPU's leftovers on this pCPU, one with an EOI maintenance
    // interrupt outstanding.
    m.write(1, 99 | LR_PENDING);
    m.write(3, 98 | LR_EOI);
    enable(&mut g, 0, 40, 0x80, 1);
    g.inject(v(0), 40).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(ids(&m), [40]);
    assert_eq!((m.raw(1), m.raw(3)), (0, 0));
    assert!(!m.maintenance());
    assert_eq!(m.writes(), 2 + 1 + 2, "two leftovers, one new LR, two clears");
}

#[test]
fn a_clean_flush_writes_no_list_register() {
    let mut g = one();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    let _ = g.sync(v(0), &mut m).unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!((m.writes(), m.reads()), (0, 0));
    assert_eq!(m.hcr(), HCR_EN);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert_eq!(m.hcr(), 0);
}

#[test]
fn sync_reads_only_the_list_registers_still_valid() {
    let mut g = one();
    for i in [40, 41, 42] {
        enable(&mut g, 0, i, 0x80, 1);
        set_edge(&mut g, 0, i, true);
        g.inject(v(0), i).unwrap();
    }
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    let l = m.ack().unwrap();
    m.eoi(l.intid, l.source);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert_eq!(m.reads(), 2, "the EOIed one is known from GICH_ELRSR");
}

#[test]
fn flush_without_sync_syncs_first() {
    let mut g = one();
    enable(&mut g, 0, 40, 0x80, 1);
    set_edge(&mut g, 0, 40, true);
    g.inject(v(0), 40).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    m.ack().unwrap();
    g.flush(v(0), &mut m).unwrap();
    assert_eq!(g.counters().missed_syncs, 1);
    assert_eq!(lrs(&m), [(40, 0, false, true)]);
    assert_eq!(m.duplicate(), None);
    g.check().unwrap();
}

#[test]
fn a_list_register_overwritten_behind_our_back_is_taken_as_untouched() {
    let mut g = one();
    enable(&mut g, 0, 40, 0x80, 1);
    set_edge(&mut g, 0, 40, true);
    g.inject(v(0), 40).unwrap();
    let mut m = GichModel::new(4);
    g.flush(v(0), &mut m).unwrap();
    m.write(0, 77 | LR_ACTIVE);
    let _ = g.sync(v(0), &mut m).unwrap();
    assert_eq!(g.counters().lr_mismatches, 1);
    assert!(bit(&mut g, 0, ISPENDR, 40), "still pending, not lost");
    assert!(!bit(&mut g, 0, ISACTIVER, 40));
    g.check().unwrap();
}

#[test]
fn pending_for_tells_wfi_when_to_wake() {
    let mut g = vgic(2, 32);
    wr(&mut g, 0, CTLR, 1);
    assert!(!g.pending_for(v(0)));
    set_bit(&mut g, 1, ISENABLER, 27);
    assert_eq!(g.inject(v(1), 27).unwrap(), Some(v(1)));
    assert!(g.pending_for(v(1)));
    assert!(!g.pending_for(v(0)));
    // Taken into the list registers: not waiting any more.
    let mut m = GichModel::new(4);
    g.flush(v(1), &mut m).unwrap();
    assert!(!g.pending_for(v(1)));
    m.ack().unwrap();
    let _ = g.sync(v(1), &mut m).unwrap();
    assert!(!g.pending_for(v(1)), "active is not waiting");
}

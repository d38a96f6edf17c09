//! Distributor registers, one by one: reset values, read/write semantics,
//! banking, byte access, and the accesses GICv2 does not allow.

mod common;
use common::*;

#[test]
fn typer_iidr_and_id_registers() {
    for (vcpus, spis, typer) in [(1, 0, 0x00), (2, 64, 0x22), (4, 32, 0x61), (8, 224, 0xe7)] {
        let mut g = vgic(vcpus, spis);
        assert_eq!(rd(&mut g, 0, TYPER), typer, "{vcpus} vCPUs, {spis} SPIs");
        assert_eq!(rd(&mut g, 0, IIDR), 0x0200_143b);
    }
    let mut g = vgic(2, 64);
    let ids: Vec<u32> = (0..12).map(|k| rd(&mut g, 1, 0xfd0 + 4 * k)).collect();
    assert_eq!(ids, [0x04, 0, 0, 0, 0x90, 0xb4, 0x2b, 0, 0x0d, 0xf0, 0x05, 0xb1]);
    // PIDR2 names architecture version 2.
    assert_eq!(rd(&mut g, 0, 0xfe8) >> 4 & 0xf, 2);
    // Read-only: writes are refused and change nothing.
    for off in [TYPER, IIDR, 0xfe8, 0xffc] {
        let r = g.mmio(v(0), off, Access::Write { width: Width::Word, value: 0xffff_ffff }).unwrap();
        assert!(r.ignored);
    }
    assert_eq!(rd(&mut g, 0, TYPER), 0x22);
    assert_eq!(rd(&mut g, 0, 0xfe8), 0x2b);
    assert_eq!(g.counters().bad_accesses, 4);
}

#[test]
fn ctlr_keeps_only_enable() {
    let mut g = vgic(2, 32);
    assert_eq!(rd(&mut g, 0, CTLR), 0);
    wr(&mut g, 0, CTLR, 0xffff_ffff);
    assert_eq!(rd(&mut g, 1, CTLR), 1, "one distributor, not banked");
    wr(&mut g, 1, CTLR, 2);
    assert_eq!(rd(&mut g, 0, CTLR), 0);
}

#[test]
fn igroupr_is_raz_wi() {
    let mut g = vgic(2, 64);
    for n in 0..3 {
        wr(&mut g, 0, IGROUPR + 4 * n, 0xffff_ffff);
        assert_eq!(rd(&mut g, 0, IGROUPR + 4 * n), 0);
    }
    assert_eq!(g.counters().bad_accesses, 0);
}

#[test]
fn enable_set_and_clear() {
    let mut g = vgic(2, 64);
    // SGIs are always enabled (GIC-400), PPIs and SPIs start disabled.
    assert_eq!(rd(&mut g, 0, ISENABLER), 0x0000_ffff);
    assert_eq!(rd(&mut g, 0, ISENABLER + 4), 0);
    wr(&mut g, 0, ISENABLER + 4, 0x8000_0003);
    wr(&mut g, 0, ISENABLER + 4, 0x0000_0100);
    assert_eq!(rd(&mut g, 0, ISENABLER + 4), 0x8000_0103, "set is an OR");
    assert_eq!(rd(&mut g, 1, ICENABLER + 4), 0x8000_0103, "both views, and SPIs are shared");
    wr(&mut g, 1, ICENABLER + 4, 0x8000_0001);
    assert_eq!(rd(&mut g, 0, ISENABLER + 4), 0x0000_0102);
    // Writing 0 changes nothing.
    wr(&mut g, 0, ISENABLER + 4, 0);
    wr(&mut g, 0, ICENABLER + 4, 0);
    assert_eq!(rd(&mut g, 0, ISENABLER + 4), 0x0000_0102);

    // PPIs are banked; SGI bits are RAO/WI.
    wr(&mut g, 1, ISENABLER, 1 << 27);
    assert_eq!(rd(&mut g, 1, ISENABLER), 0x0800_ffff);
    assert_eq!(rd(&mut g, 0, ISENABLER), 0x0000_ffff);
    wr(&mut g, 1, ICENABLER, 0xffff_ffff);
    assert_eq!(rd(&mut g, 1, ICENABLER), 0x0000_ffff);
}

#[test]
fn pending_set_and_clear() {
    let mut g = vgic(2, 64);
    assert_eq!(rd(&mut g, 0, ISPENDR + 4), 0);
    wr(&mut g, 0, ISPENDR + 4, 0x0000_0005);
    assert_eq!(rd(&mut g, 1, ISPENDR + 4), 5);
    assert_eq!(rd(&mut g, 1, ICPENDR + 4), 5);
    wr(&mut g, 1, ICPENDR + 4, 1);
    assert_eq!(rd(&mut g, 0, ISPENDR + 4), 4);

    // PPIs banked.
    wr(&mut g, 0, ISPENDR, 1 << 27);
    assert!(bit(&mut g, 0, ISPENDR, 27));
    assert!(!bit(&mut g, 1, ISPENDR, 27));
    wr(&mut g, 0, ICPENDR, 1 << 27);
    assert!(!bit(&mut g, 0, ISPENDR, 27));

    // SGI bits of ISPENDR0/ICPENDR0 are WI (GICD_SPENDSGIR is the way).
    wr(&mut g, 0, ISPENDR, 0xffff);
    assert_eq!(rd(&mut g, 0, ISPENDR), 0);
    wr(&mut g, 0, SGIR, sgir(2, 0, 3));
    assert_eq!(rd(&mut g, 0, ISPENDR), 1 << 3, "SGI pending reads back");
    wr(&mut g, 0, ICPENDR, 0xffff);
    assert_eq!(rd(&mut g, 0, ISPENDR), 1 << 3);
}

#[test]
fn clear_pending_keeps_an_asserted_level_line() {
    let mut g = vgic(1, 32);
    g.set_level(40, true).unwrap();
    assert!(bit(&mut g, 0, ISPENDR, 40));
    wr(&mut g, 0, ICPENDR + 4, 1 << 8);
    assert!(bit(&mut g, 0, ISPENDR, 40), "the line still holds it pending");
    g.set_level(40, false).unwrap();
    assert!(!bit(&mut g, 0, ISPENDR, 40));
    // A software pending latch outlives the line.
    wr(&mut g, 0, ISPENDR + 4, 1 << 8);
    assert!(bit(&mut g, 0, ISPENDR, 40));
    wr(&mut g, 0, ICPENDR + 4, 1 << 8);
    assert!(!bit(&mut g, 0, ISPENDR, 40));
}

#[test]
fn active_set_and_clear() {
    let mut g = vgic(2, 32);
    wr(&mut g, 0, ISACTIVER + 4, 0x10);
    wr(&mut g, 1, ISACTIVER, 1 << 30);
    assert_eq!(rd(&mut g, 1, ISACTIVER + 4), 0x10);
    assert_eq!(rd(&mut g, 0, ICACTIVER + 4), 0x10);
    assert!(bit(&mut g, 1, ISACTIVER, 30));
    assert!(!bit(&mut g, 0, ISACTIVER, 30), "PPI active is banked");
    wr(&mut g, 0, ICACTIVER + 4, 0xffff_ffff);
    wr(&mut g, 1, ICACTIVER, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0, ISACTIVER + 4), 0);
    assert_eq!(rd(&mut g, 1, ISACTIVER), 0);
}

#[test]
fn priorities_by_byte_and_word() {
    let mut g = vgic(2, 64);
    wr(&mut g, 0, IPRIORITYR + 32, 0xa0a0_a0a0);
    wrb(&mut g, 0, IPRIORITYR + 33, 0x10);
    assert_eq!(rd(&mut g, 0, IPRIORITYR + 32), 0xa0a0_10a0);
    assert_eq!(rdb(&mut g, 1, IPRIORITYR + 33), 0x10);
    // Five bits are kept.
    wrb(&mut g, 0, IPRIORITYR + 34, 0xff);
    assert_eq!(rdb(&mut g, 0, IPRIORITYR + 34), 0xf8);
    wr(&mut g, 0, IPRIORITYR + 40, 0x0102_0304);
    assert_eq!(rd(&mut g, 0, IPRIORITYR + 40), 0);
    // Private priorities are banked, SGIs included.
    wrb(&mut g, 1, IPRIORITYR + 27, 0x80);
    wrb(&mut g, 1, IPRIORITYR + 1, 0x40);
    assert_eq!(rdb(&mut g, 1, IPRIORITYR + 27), 0x80);
    assert_eq!(rdb(&mut g, 0, IPRIORITYR + 27), 0);
    assert_eq!(rd(&mut g, 1, IPRIORITYR), 0x0000_4000);
    // Beyond the last interrupt: RAZ/WI, not an error.
    wr(&mut g, 0, IPRIORITYR + 96, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0, IPRIORITYR + 96), 0);
    assert_eq!(rd(&mut g, 0, IPRIORITYR + 0x3f8), 0);
    assert_eq!(g.counters().bad_accesses, 0);
}

#[test]
fn targets_banked_read_only_for_private() {
    let mut g = vgic(4, 32);
    for cpu in 0..4u8 {
        let own = 1u32 << cpu;
        let word = own | own << 8 | own << 16 | own << 24;
        for n in 0..8 {
            assert_eq!(rd(&mut g, cpu, ITARGETSR + 4 * n), word, "vCPU {cpu} ITARGETSR{n}");
        }
        // Linux finds its CPU mask this way.
        assert_eq!(rdb(&mut g, cpu, ITARGETSR + 27), own as u8);
    }
    wr(&mut g, 2, ITARGETSR + 24, 0x0f0f_0f0f);
    assert_eq!(rd(&mut g, 2, ITARGETSR + 24), 0x0404_0404, "WI");

    // SPIs: byte writes, masked to the vCPUs the VM has; reset 0.
    assert_eq!(rd(&mut g, 0, ITARGETSR + 32), 0);
    wrb(&mut g, 0, ITARGETSR + 33, 0x02);
    wrb(&mut g, 0, ITARGETSR + 34, 0xff);
    assert_eq!(rd(&mut g, 3, ITARGETSR + 32), 0x000f_0200);
    wr(&mut g, 1, ITARGETSR + 36, 0x0108_0402);
    assert_eq!(rdb(&mut g, 0, ITARGETSR + 38), 0x08);
    assert_eq!(rd(&mut g, 0, ITARGETSR + 64), 0, "beyond the last SPI");
}

#[test]
fn targets_of_a_uniprocessor_read_one() {
    let mut g = vgic(1, 32);
    assert_eq!(rd(&mut g, 0, ITARGETSR), 0x0101_0101);
    assert_eq!(rd(&mut g, 0, ITARGETSR + 32), 0x0101_0101);
    wr(&mut g, 0, ITARGETSR + 32, 0);
    assert_eq!(rd(&mut g, 0, ITARGETSR + 32), 0x0101_0101);
    // And SPIs reach the only vCPU without any target set.
    enable(&mut g, 0, 40, 0xa0, 0);
    assert_eq!(g.inject(v(0), 40).unwrap(), Some(v(0)));
}

#[test]
fn icfgr_edge_bits() {
    let mut g = vgic(2, 32);
    assert_eq!(rd(&mut g, 0, ICFGR), 0xaaaa_aaaa, "SGIs are edge");
    wr(&mut g, 0, ICFGR, 0);
    assert_eq!(rd(&mut g, 0, ICFGR), 0xaaaa_aaaa, "and stay edge");
    // PPIs: writable and banked; level by default.
    assert_eq!(rd(&mut g, 1, ICFGR + 4), 0);
    wr(&mut g, 1, ICFGR + 4, 0x0080_0000); // INTID 27 edge
    assert_eq!(rd(&mut g, 1, ICFGR + 4), 0x0080_0000);
    assert_eq!(rd(&mut g, 0, ICFGR + 4), 0);
    // SPIs: only the odd (edge) bits are kept.
    wr(&mut g, 0, ICFGR + 8, 0xffff_ffff);
    assert_eq!(rd(&mut g, 1, ICFGR + 8), 0xaaaa_aaaa);
    wr(&mut g, 0, ICFGR + 8, 0x0000_0008);
    assert_eq!(rd(&mut g, 0, ICFGR + 8), 0x0000_0008);
    assert_eq!(rd(&mut g, 0, ICFGR + 16), 0, "beyond the last SPI");
}

/// SGI `id` pending sources on `vcpu`, from GICD_SPENDSGIR.
fn sources(g: &mut Vgic, vcpu: u8, id: u64) -> u8 {
    rdb(g, vcpu, SPENDSGIR + id)
}

#[test]
fn sgir_target_list_filter() {
    let mut g = vgic(4, 0);
    let k = wr(&mut g, 1, SGIR, sgir(0, 0b1101, 5));
    assert_eq!(k, 0, "distributor off: nothing to kick yet");
    assert_eq!([0, 1, 2, 3].map(|c| sources(&mut g, c, 5)), [0b10, 0, 0b10, 0b10]);
    // A list naming vCPUs the VM lacks reaches only those it has.
    wr(&mut g, 3, SGIR, sgir(0, 0xf0, 6));
    assert_eq!([0, 1, 2, 3].map(|c| sources(&mut g, c, 6)), [0; 4]);
    assert_eq!(g.counters().sgis, 3);
}

#[test]
fn sgir_all_but_self_and_self() {
    let mut g = vgic(3, 0);
    wr(&mut g, 0, CTLR, 1);
    let k = wr(&mut g, 2, SGIR, sgir(1, 0, 1));
    assert_eq!(k, 0b011);
    assert_eq!([0, 1, 2].map(|c| sources(&mut g, c, 1)), [0b100, 0b100, 0]);
    let k = wr(&mut g, 1, SGIR, sgir(2, 0xff, 2));
    assert_eq!(k, 0b010, "the list is ignored");
    assert_eq!([0, 1, 2].map(|c| sources(&mut g, c, 2)), [0, 0b010, 0]);
    // Sources accumulate per SGI.
    wr(&mut g, 1, SGIR, sgir(0, 0b001, 1));
    assert_eq!(sources(&mut g, 0, 1), 0b110);
}

#[test]
fn sgir_reserved_filter_is_ignored() {
    let mut g = vgic(2, 0);
    let r = g.mmio(v(0), SGIR, Access::Write { width: Width::Word, value: sgir(3, 0xff, 1) as u64 }).unwrap();
    assert!(r.ignored);
    assert_eq!([0, 1].map(|c| sources(&mut g, c, 1)), [0, 0]);
    // SGIR is write-only.
    let r = g.mmio(v(0), SGIR, Access::Read { width: Width::Word }).unwrap();
    assert!(r.ignored);
    assert_eq!(r.value, 0);
    assert_eq!(g.counters().bad_accesses, 2);
}

#[test]
fn sgi_pending_registers_are_banked() {
    let mut g = vgic(3, 0);
    wrb(&mut g, 1, SPENDSGIR + 7, 0b101);
    assert_eq!(sources(&mut g, 1, 7), 0b101);
    assert_eq!(sources(&mut g, 0, 7), 0);
    assert!(bit(&mut g, 1, ISPENDR, 7));
    // Bits for vCPUs the VM lacks are dropped.
    wrb(&mut g, 1, SPENDSGIR + 8, 0xf0);
    assert_eq!(sources(&mut g, 1, 8), 0);
    // Word access covers SGIs 4n..4n+3.
    assert_eq!(rd(&mut g, 1, SPENDSGIR + 4), 0x0500_0000);
    assert_eq!(rd(&mut g, 1, CPENDSGIR + 4), 0x0500_0000);
    wr(&mut g, 1, CPENDSGIR + 4, 0x0100_0000);
    assert_eq!(sources(&mut g, 1, 7), 0b100);
    wrb(&mut g, 1, CPENDSGIR + 7, 0xff);
    assert_eq!(sources(&mut g, 1, 7), 0);
    assert!(!bit(&mut g, 1, ISPENDR, 7));
    wr(&mut g, 2, SPENDSGIR + 12, 0x0203_0000);
    assert_eq!(rd(&mut g, 2, SPENDSGIR + 12), 0x0203_0000);
    assert_eq!(rd(&mut g, 2, ISPENDR) & 0xffff, 0b1100 << 12);
}

/// Every banked and shared register as `vcpu` reads it.
fn snapshot(g: &mut Vgic, vcpu: u8) -> Vec<u32> {
    let mut out = vec![rd(g, vcpu, CTLR)];
    for base in [ISENABLER, ISPENDR, ISACTIVER] {
        for n in 0..3 {
            out.push(rd(g, vcpu, base + 4 * n));
        }
    }
    for n in 0..24 {
        out.push(rd(g, vcpu, IPRIORITYR + 4 * n));
        out.push(rd(g, vcpu, ITARGETSR + 4 * n));
    }
    for n in 0..6 {
        out.push(rd(g, vcpu, ICFGR + 4 * n));
    }
    for n in 0..4 {
        out.push(rd(g, vcpu, SPENDSGIR + 4 * n));
    }
    out
}

#[test]
fn bad_accesses_are_raz_wi_and_counted() {
    let mut g = vgic(2, 64);
    enable(&mut g, 0, 40, 0x80, 1);
    wr(&mut g, 0, ISPENDR + 4, 1 << 8);
    let before: Vec<Vec<u32>> = (0..2).map(|c| snapshot(&mut g, c)).collect();
    let bad0 = g.counters().bad_accesses;
    let cases: &[(u64, Width)] = &[
        (ISENABLER, Width::Half),     // no halfword accesses
        (ISENABLER, Width::Double),   // nor doubleword
        (ISENABLER + 1, Width::Word), // unaligned
        (ISENABLER + 1, Width::Byte), // byte access to a word-only register
        (ICFGR, Width::Byte),
        (CTLR, Width::Byte),
        (IPRIORITYR + 2, Width::Half),
        (IPRIORITYR + 1, Width::Word),
        (0x00c, Width::Word), // reserved
        (0x040, Width::Word),
        (0x7fc, Width::Word),
        (0xbfc, Width::Word),
        (0xe00, Width::Word),
        (0xf04, Width::Word),
        (0xf30, Width::Word),
        (0xfcc, Width::Word),
        (0x1000, Width::Word),  // outside the frame
        (1 << 32, Width::Word), // would be CTLR if truncated to 32 bits
        ((1 << 32) + ISPENDR + 4, Width::Word),
        (0xffff_ffff_ffff_fffc, Width::Word),
        (u64::MAX, Width::Byte),
    ];
    for &(off, width) in cases {
        for write in [false, true] {
            let access = if write { Access::Write { width, value: u64::MAX } } else { Access::Read { width } };
            let r = g.mmio(v(1), off, access).unwrap();
            assert!(r.ignored, "{off:#x} {width:?} write={write}");
            assert_eq!(r.value, 0);
            assert!(r.kick.is_empty());
        }
    }
    assert_eq!(g.counters().bad_accesses - bad0, 2 * cases.len() as u64);
    let after: Vec<Vec<u32>> = (0..2).map(|c| snapshot(&mut g, c)).collect();
    assert_eq!(before, after, "nothing changed");
    g.check().unwrap();
}

#[test]
fn implementation_defined_status_is_raz_wi() {
    let mut g = vgic(1, 32);
    wr(&mut g, 0, 0xd00, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0, 0xd00), 0);
    assert_eq!(rd(&mut g, 0, 0xd04), 0);
    assert_eq!(g.counters().bad_accesses, 0);
}

#[test]
fn interrupts_beyond_the_lines_are_raz_wi() {
    let mut g = vgic(1, 32);
    for base in [ISENABLER, ISPENDR, ISACTIVER] {
        wr(&mut g, 0, base + 8, 0xffff_ffff);
        assert_eq!(rd(&mut g, 0, base + 8), 0, "{base:#x}");
    }
    wr(&mut g, 0, ICFGR + 16, 0xffff_ffff);
    assert_eq!(rd(&mut g, 0, ICFGR + 16), 0);
    assert_eq!(g.counters().bad_accesses, 0);
    g.check().unwrap();
}

#[test]
fn calls_with_bad_arguments_are_errors() {
    assert_eq!(Vgic::new(capabilities::testing::vgic_cap(), Config::new(0, 32)).err(), Some(ConfigError::VcpuCount(0)));
    assert_eq!(Vgic::new(capabilities::testing::vgic_cap(), Config::new(9, 32)).err(), Some(ConfigError::VcpuCount(9)));
    assert_eq!(Vgic::new(capabilities::testing::vgic_cap(), Config::new(1, 33)).err(), Some(ConfigError::SpiCount(33)));
    assert_eq!(Vgic::new(capabilities::testing::vgic_cap(), Config::new(1, 256)).err(), Some(ConfigError::SpiCount(256)));
    assert!(ConfigError::SpiCount(33).to_string().contains("multiple of 32"));

    let mut g = vgic(2, 32);
    let mut m = GichModel::new(4);
    assert_eq!(g.mmio(v(2), 0, Access::Read { width: Width::Word }), Err(VgicError::NoSuchVcpu(v(2))));
    assert_eq!(g.inject(v(2), 27), Err(VgicError::NoSuchVcpu(v(2))));
    assert_eq!(g.inject(v(0), 3), Err(VgicError::WrongKind(3)));
    assert_eq!(g.inject(v(0), 64), Err(VgicError::NoSuchInterrupt(64)));
    assert_eq!(g.inject(v(0), u32::MAX), Err(VgicError::NoSuchInterrupt(u32::MAX)));
    assert_eq!(g.set_level(27, true), Err(VgicError::WrongKind(27)));
    assert_eq!(g.set_level(64, true), Err(VgicError::NoSuchInterrupt(64)));
    assert_eq!(g.set_ppi_level(v(0), 40, true), Err(VgicError::WrongKind(40)));
    assert_eq!(g.set_ppi_level(v(0), 15, true), Err(VgicError::WrongKind(15)));
    assert_eq!(g.flush(v(5), &mut m), Err(VgicError::NoSuchVcpu(v(5))));
    assert_eq!(g.sync(v(5), &mut m), Err(VgicError::NoSuchVcpu(v(5))));
    assert!(!g.pending_for(v(7)));
    assert_eq!(g.counters().injections, 0);
}

#[test]
fn kicks_name_the_vcpu_that_can_take_it() {
    let mut g = vgic(4, 32);
    // Disabled interrupt: nothing to kick, but it is pending.
    assert_eq!(g.inject(v(1), 27).unwrap(), None);
    assert!(bit(&mut g, 1, ISPENDR, 27));
    // Enabled, distributor off: still nothing.
    set_bit(&mut g, 1, ISENABLER, 27);
    assert_eq!(g.inject(v(1), 27).unwrap(), None);
    assert!(!g.pending_for(v(1)));
    // Distributor on: the enable kicks everyone, and the PPI names its vCPU.
    assert_eq!(wr(&mut g, 0, CTLR, 1), 0b1111);
    assert!(g.pending_for(v(1)));
    assert!(!g.pending_for(v(0)));
    assert_eq!(g.inject(v(1), 27).unwrap(), Some(v(1)));

    // SPI with no target: pending, nobody to kick.
    set_bit(&mut g, 0, ISENABLER, 40);
    assert_eq!(g.inject(v(0), 40).unwrap(), None);
    // Setting a target kicks it; the lowest of several targets takes it.
    assert_eq!(wrb(&mut g, 0, ITARGETSR + 40, 0b1100), 0b0100);
    assert!(g.pending_for(v(2)));
    assert!(!g.pending_for(v(3)));
    assert_eq!(g.inject(v(0), 40).unwrap(), Some(v(2)), "the vcpu argument does not route SPIs");

    // Enabling a pending SPI kicks its target.
    wrb(&mut g, 0, ITARGETSR + 41, 0b1000);
    wr(&mut g, 0, ISPENDR + 4, 1 << 9);
    assert_eq!(set_bit(&mut g, 0, ISENABLER, 41), 0b1000);
    // Level lines.
    set_bit(&mut g, 0, ISENABLER, 42);
    wrb(&mut g, 0, ITARGETSR + 42, 0b0001);
    assert_eq!(g.set_level(42, true).unwrap(), Some(v(0)));
    assert_eq!(g.set_level(42, false).unwrap(), None);
    set_bit(&mut g, 3, ISENABLER, 20);
    assert_eq!(g.set_ppi_level(v(3), 20, true).unwrap(), Some(v(3)));
    g.check().unwrap();
}

#[test]
fn level_to_edge_and_rising_edges() {
    let mut g = vgic(1, 32);
    enable(&mut g, 0, 33, 0x80, 1);
    set_edge(&mut g, 0, 33, true);
    // Edge: a rising line latches; the line going low does not clear it.
    g.set_level(33, true).unwrap();
    g.set_level(33, false).unwrap();
    assert!(bit(&mut g, 0, ISPENDR, 33));
    wr(&mut g, 0, ICPENDR + 4, 1 << 1);
    // Holding the line high latches once.
    g.set_level(33, true).unwrap();
    wr(&mut g, 0, ICPENDR + 4, 1 << 1);
    g.set_level(33, true).unwrap();
    assert!(!bit(&mut g, 0, ISPENDR, 33), "no new edge");
    // Back to level: the high line makes it pending.
    set_edge(&mut g, 0, 33, false);
    assert!(bit(&mut g, 0, ISPENDR, 33));
}

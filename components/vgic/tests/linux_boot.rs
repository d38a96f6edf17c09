//! A Linux-like guest on two vCPUs, in the order Linux's irq-gic.c programs
//! the distributor (gic_dist_init, gic_cpu_init), then the virtual timer, a
//! level-sensitive UART and an IPI, with the kernel's exit/entry protocol
//! around every trap.

mod common;
use common::*;

const TIMER: u32 = 27;
const UART: u32 = 33; // QEMU virt's PL011, SPI 1
const IPI_RESCHEDULE: u32 = 0;

fn word(value: u32) -> Access {
    Access::Write { width: Width::Word, value: value as u64 }
}

fn read(mc: &mut Machine, vcpu: u8, off: u64) -> u32 {
    let r = mc.mmio(vcpu, off, Access::Read { width: Width::Word });
    assert!(!r.ignored);
    r.value
}

fn write(mc: &mut Machine, vcpu: u8, off: u64, value: u32) {
    let r = mc.mmio(vcpu, off, word(value));
    assert!(!r.ignored, "{off:#x}");
}

/// gic_dist_init on the boot vCPU.
fn dist_init(mc: &mut Machine) -> u32 {
    write(mc, 0, CTLR, 0);
    let lines = 32 * ((read(mc, 0, TYPER) & 0x1f) + 1);
    // gic_get_cpumask: the first non-zero ITARGETSR among 0-31.
    let mut mask = 0;
    for n in 0..8 {
        let m = read(mc, 0, ITARGETSR + 4 * n);
        let m = m | m >> 16;
        mask = (m | m >> 8) & 0xff;
        if mask != 0 {
            break;
        }
    }
    assert_eq!(mask, 1, "GIC CPU mask not found - kernel will fail to boot");
    let all = mask * 0x0101_0101;
    for i in (32..lines).step_by(4) {
        write(mc, 0, ITARGETSR + i as u64, all);
    }
    // gic_dist_config: SPIs level, priority 0xa0, inactive, disabled.
    for i in (32..lines).step_by(16) {
        write(mc, 0, ICFGR + i as u64 / 4, 0);
    }
    for i in (32..lines).step_by(4) {
        write(mc, 0, IPRIORITYR + i as u64, 0xa0a0_a0a0);
    }
    for i in (32..lines).step_by(32) {
        write(mc, 0, ICACTIVER + i as u64 / 8, 0xffff_ffff);
        write(mc, 0, ICENABLER + i as u64 / 8, 0xffff_ffff);
    }
    write(mc, 0, CTLR, 1);
    lines
}

/// gic_cpu_init on each vCPU.
fn cpu_init(mc: &mut Machine, vcpu: u8) {
    let own = read(mc, vcpu, ITARGETSR) & 0xff;
    assert_eq!(own, 1 << vcpu);
    write(mc, vcpu, ICACTIVER, 0xffff_ffff);
    write(mc, vcpu, ICENABLER, 0xffff_0000);
    write(mc, vcpu, ISENABLER, 0x0000_ffff);
    for n in 0..8 {
        write(mc, vcpu, IPRIORITYR + 4 * n, 0xa0a0_a0a0);
    }
    // The guest's GICC_CTLR/PMR writes go to GICV: not ours.
}

/// The guest on `vcpu` takes every interrupt it can; returns (intid, source).
fn handle_all(mc: &mut Machine, vcpu: u8) -> Vec<(u16, u8)> {
    let mut out = vec![];
    while let Some(l) = mc.cpus[vcpu as usize].ack() {
        assert!(mc.cpus[vcpu as usize].eoi(l.intid, l.source));
        out.push((l.intid, l.source));
    }
    out
}

/// The kernel takes a maintenance interrupt if one is asserted.
fn maintenance(mc: &mut Machine, vcpu: u8) -> bool {
    if !mc.cpus[vcpu as usize].maintenance() {
        return false;
    }
    let k = mc.exit(vcpu);
    mc.kick(k);
    mc.enter(vcpu);
    true
}

#[test]
fn linux_boot_timer_uart_ipi() {
    let mut mc = Machine::new(2, 64, 4);
    let lines = dist_init(&mut mc);
    assert_eq!(lines, 96);
    cpu_init(&mut mc, 0);
    // The timer: PPI 27, level (Linux's DT says so), enabled on vCPU 0.
    let cfg = read(&mut mc, 0, ICFGR + 4);
    write(&mut mc, 0, ICFGR + 4, cfg & !(2 << 22));
    write(&mut mc, 0, ISENABLER, 1 << TIMER);
    mc.enter(0);

    // The timer fires (the kernel saw CNTV fire and injects it).
    assert_eq!(mc.g.inject(v(0), TIMER).unwrap(), Some(v(0)));
    mc.kick(VcpuSet::from_bits(1));
    let lr = mc.cpus[0].lr(0);
    assert_eq!((lr.intid, lr.priority, lr.pending, lr.active), (27, 0xa0, true, false));
    assert!(lr.eoi, "level: the EOI is reported");
    assert_eq!(handle_all(&mut mc, 0), [(27, 0)]);
    assert!(maintenance(&mut mc, 0), "EOI of a level interrupt exits");
    assert!(ids(&mc.cpus[0]).is_empty(), "EOIed, line low: nothing pending");

    // The next tick works the same.
    assert_eq!(mc.g.inject(v(0), TIMER).unwrap(), Some(v(0)));
    mc.kick(VcpuSet::from_bits(1));
    assert_eq!(handle_all(&mut mc, 0), [(27, 0)]);
    assert!(maintenance(&mut mc, 0));

    // Bring up vCPU 1 (PSCI CPU_ON elsewhere); it runs gic_cpu_init.
    cpu_init(&mut mc, 1);
    write(&mut mc, 1, ISENABLER, 1 << TIMER);
    mc.enter(1);
    assert!(ids(&mc.cpus[1]).is_empty(), "vCPU 0's timer is not vCPU 1's");

    // The UART: SPI 1, level, routed to vCPU 0 (irq_set_affinity by byte).
    let r = mc.mmio(0, ITARGETSR + UART as u64, Access::Write { width: Width::Byte, value: 1 });
    assert!(!r.ignored);
    write(&mut mc, 0, ISENABLER + 4, 1 << (UART - 32));
    mc.enter(0);
    assert_eq!(mc.g.set_level(UART, true).unwrap(), Some(v(0)));
    mc.kick(VcpuSet::from_bits(1));
    assert_eq!(handle_all(&mut mc, 0), [(33, 0)]);
    // The guest's handler did not drain the FIFO yet: still pending.
    assert!(maintenance(&mut mc, 0));
    assert_eq!(ids(&mc.cpus[0]), [33]);
    let l = mc.cpus[0].ack().unwrap();
    // It drains the FIFO (a trapped PL011 access: exit, the line drops).
    let k = mc.exit(0);
    mc.kick(k);
    assert_eq!(mc.g.set_level(UART, false).unwrap(), None);
    mc.enter(0);
    assert!(mc.cpus[0].eoi(l.intid, l.source));
    assert!(maintenance(&mut mc, 0));
    assert!(ids(&mc.cpus[0]).is_empty());

    // An IPI: vCPU 0 sends reschedule to vCPU 1 (arm64 smp_cross_call).
    let r = mc.mmio(0, SGIR, word(sgir(0, 0b10, IPI_RESCHEDULE)));
    assert_eq!(r.kick, VcpuSet::from_bits(0b10));
    mc.enter(0);
    assert_eq!(handle_all(&mut mc, 1), [(0, 0)], "SGI 0 from vCPU 0");
    assert!(!maintenance(&mut mc, 1), "edge: no exit at EOI");

    // Both vCPUs idle: WFI blocks them.
    for c in 0..2 {
        let k = mc.exit(c);
        mc.kick(k);
        assert!(!mc.g.pending_for(v(c)));
    }
    // A timer tick wakes vCPU 1 only.
    assert_eq!(mc.g.inject(v(1), TIMER).unwrap(), Some(v(1)));
    assert!(mc.g.pending_for(v(1)));
    assert!(!mc.g.pending_for(v(0)));
    mc.enter(1);
    assert_eq!(handle_all(&mut mc, 1), [(27, 0)]);

    let c = mc.g.counters();
    assert_eq!(c.bad_accesses, 0, "Linux's accesses are all allowed");
    assert_eq!(c.overflows + c.active_overflows + c.lr_mismatches + c.missed_syncs, 0);
    mc.g.check().unwrap();
}

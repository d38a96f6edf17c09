//! Hardware (passed-through) SPIs: `set_hw`, `hw_fire`, HW list registers,
//! the guest's EOI deactivating the physical interrupt, guest clears of
//! pending/active, and the teardown listing.
//!
//! `random_hw_sequences_deactivate_each_fire_once`: random fires, entries,
//! exits, acknowledges, EOIs, enables, disables, retargets and guest
//! GICD_ICPENDR/ICACTIVER writes on a model physical GIC. A physical
//! interrupt fires only while inactive; it is deactivated by the guest
//! (through a HW list register) or by the kernel (released, or at
//! teardown). After every step: `Vgic::check` holds, no physical interrupt
//! is deactivated while inactive (so each fire at most once), and with every
//! vCPU out of the guest the vGIC holds a hardware SPI exactly when the
//! physical one is active. At the end, once the guest enables and EOIs
//! everything, every fire was deactivated exactly once; a teardown instead
//! (`hw_outstanding`) gets there too.
//!
//! PROPTEST_CASES sets the number of cases (default 256).

mod common;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed};

const UART: u32 = 40;
const MMC: u32 = 41;

/// Two vCPUs, 64 SPIs, 4 list registers; `intids` are hardware SPIs,
/// enabled, edge, routed to vCPU 0.
fn hw_machine(intids: &[u32]) -> Machine {
    let mut m = Machine::new(2, 64, 4);
    for &i in intids {
        m.g.set_hw(i, true).unwrap();
        enable(&mut m.g, 0, i, 0xa0, 1);
        set_edge(&mut m.g, 0, i, false);
    }
    m
}

/// The one valid list register of `m.cpus[cpu]`.
fn only_lr(m: &Machine, cpu: usize) -> Lr {
    let v: Vec<_> = m.cpus[cpu].valid().collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].1
}

fn deacts(m: &Machine, intid: u32) -> u32 {
    m.cpus.iter().map(|c| c.deactivations(intid as u16)).sum()
}

#[test]
fn set_hw_refuses_sgis_ppis_and_missing_spis() {
    let mut g = vgic(2, 64);
    assert_eq!(g.set_hw(5, true), Err(VgicError::WrongKind(5)));
    assert_eq!(g.set_hw(27, true), Err(VgicError::WrongKind(27)));
    assert_eq!(g.set_hw(96, true), Err(VgicError::NoSuchInterrupt(96)));
    assert_eq!(g.set_hw(1023, true), Err(VgicError::NoSuchInterrupt(1023)));
    assert!(!g.is_hw_spi(96));
    g.set_hw(95, true).unwrap();
    assert!(g.is_hw_spi(95));
    // A hardware SPI comes only from hw_fire; hw_fire only takes those.
    assert_eq!(g.inject(v(0), 95), Err(VgicError::HwInterrupt(95)));
    assert_eq!(g.set_level(95, true), Err(VgicError::HwInterrupt(95)));
    assert_eq!(g.hw_fire(94), Err(VgicError::NotHw(94)));
    assert_eq!(g.hw_fire(96), Err(VgicError::NoSuchInterrupt(96)));
    assert_eq!(g.hw_fire(20), Err(VgicError::NotHw(20)));
    // Busy while pending: the physical one is active.
    g.hw_fire(95).unwrap();
    assert_eq!(g.set_hw(95, false), Err(VgicError::HwBusy(95)));
    assert!(g.is_hw_spi(95));
    g.set_hw(94, true).unwrap();
    g.set_hw(94, false).unwrap();
    assert!(!g.is_hw_spi(94));
    for e in [VgicError::HwInterrupt(1), VgicError::NotHw(1), VgicError::HwBusy(1)] {
        assert!(e.to_string().starts_with("vgic: interrupt 1 "), "{e}");
    }
    g.check().unwrap();
}

#[test]
fn fire_flush_gives_a_hw_list_register_and_the_guest_eoi_deactivates_once() {
    let mut m = hw_machine(&[UART]);
    assert_eq!(m.g.hw_fire(UART), Ok(Some(v(0))));
    assert_eq!(m.g.hw_outstanding().iter().collect::<Vec<_>>(), [UART]);
    m.enter(0);
    let l = only_lr(&m, 0);
    assert!(l.hw && l.pending && !l.active);
    assert_eq!((l.intid, l.pintid), (UART as u16, UART as u16));
    let raw = m.cpus[0].raw(0);
    assert_eq!(raw & LR_HW, LR_HW);
    assert_eq!((raw & LR_PINTID_MASK) >> LR_PINTID_SHIFT, UART);
    assert_eq!(raw & LR_EOI, 0, "level, but no EOI bit on a HW list register");
    m.g.check().unwrap();

    // The guest takes it; an exit meanwhile keeps it active (the physical
    // one too: nothing deactivates it).
    assert_eq!(m.cpus[0].ack().map(|l| l.intid), Some(UART as u16));
    let _ = m.exit(0);
    assert!(bit(&mut m.g, 0, ISACTIVER, UART));
    assert_eq!(m.g.hw_outstanding().iter().collect::<Vec<_>>(), [UART]);
    assert_eq!(deacts(&m, UART), 0);
    m.enter(0);
    let l = only_lr(&m, 0);
    assert!(l.hw && l.active && !l.pending);

    // EOI: the list register goes invalid and the physical one is
    // deactivated, once; sync then finds it inactive.
    assert!(m.cpus[0].eoi(UART as u16, 0));
    assert_eq!(deacts(&m, UART), 1);
    let _ = m.exit(0);
    assert!(!bit(&mut m.g, 0, ISACTIVER, UART));
    assert!(!bit(&mut m.g, 0, ISPENDR, UART));
    assert!(m.g.hw_outstanding().is_empty());
    assert!(m.g.take_hw_released().is_empty(), "the guest deactivated it: nothing for the kernel");
    m.enter(0);
    assert_eq!(m.cpus[0].valid().count(), 0, "not delivered again");
    assert_eq!(deacts(&m, UART), 1);
    assert_eq!(m.g.counters().hw_fires, 1);
    m.g.check().unwrap();
}

#[test]
fn a_fire_after_the_guest_eoi_but_before_sync_is_delivered_again() {
    let mut m = hw_machine(&[UART]);
    m.g.hw_fire(UART).unwrap();
    m.enter(0);
    m.cpus[0].drain();
    assert_eq!(deacts(&m, UART), 1);
    // The device fires again while the vCPU is still in the guest.
    assert_eq!(m.g.hw_fire(UART), Ok(Some(v(0))));
    let _ = m.exit(0);
    assert!(bit(&mut m.g, 0, ISPENDR, UART));
    m.enter(0);
    assert!(only_lr(&m, 0).hw);
    m.cpus[0].drain();
    let _ = m.exit(0);
    assert_eq!(deacts(&m, UART), 2);
    assert_eq!(m.g.counters().hw_refires, 0);
    assert!(m.g.hw_outstanding().is_empty());
}

#[test]
fn a_refire_while_held_is_merged_and_counted() {
    let mut m = hw_machine(&[UART]);
    m.g.hw_fire(UART).unwrap();
    assert_eq!(m.g.hw_fire(UART), Ok(None), "pending already");
    m.enter(0);
    m.cpus[0].ack();
    // Still in the list register, active: a second fire cannot be real.
    m.g.hw_fire(UART).unwrap();
    let _ = m.exit(0);
    m.g.check().unwrap();
    assert_eq!(m.g.counters().hw_refires, 2);
    m.enter(0);
    assert!(m.cpus[0].eoi(UART as u16, 0));
    m.cpus[0].drain();
    let _ = m.exit(0);
    m.enter(0);
    assert_eq!(m.cpus[0].valid().count(), 0, "merged: delivered once");
    assert_eq!(deacts(&m, UART), 1);
}

#[test]
fn fired_while_disabled_stays_pending_until_enabled() {
    let mut m = hw_machine(&[UART]);
    set_bit(&mut m.g, 0, ICENABLER, UART);
    assert_eq!(m.g.hw_fire(UART), Ok(None), "disabled: nobody to kick");
    m.enter(0);
    assert_eq!(m.cpus[0].valid().count(), 0);
    let _ = m.exit(0);
    assert!(bit(&mut m.g, 0, ISPENDR, UART));
    assert_eq!(m.g.hw_outstanding().iter().collect::<Vec<_>>(), [UART], "the physical one stays active");
    assert_eq!(set_bit(&mut m.g, 0, ISENABLER, UART), 0b01, "enabling kicks vCPU 0");
    m.enter(0);
    assert!(only_lr(&m, 0).hw);
    m.cpus[0].drain();
    let _ = m.exit(0);
    assert_eq!(deacts(&m, UART), 1);
}

#[test]
fn two_hw_spis_each_get_their_own_list_register_and_deactivation() {
    let mut m = hw_machine(&[UART, MMC]);
    wrb(&mut m.g, 0, ITARGETSR + MMC as u64, 2);
    assert_eq!(m.g.hw_fire(UART), Ok(Some(v(0))));
    assert_eq!(m.g.hw_fire(MMC), Ok(Some(v(1))), "routed by GICD_ITARGETSR");
    m.enter(0);
    m.enter(1);
    let (a, b) = (only_lr(&m, 0), only_lr(&m, 1));
    assert_eq!((a.intid, a.pintid, a.hw), (UART as u16, UART as u16, true));
    assert_eq!((b.intid, b.pintid, b.hw), (MMC as u16, MMC as u16, true));
    m.g.check().unwrap();
    m.cpus[1].drain();
    let _ = m.exit(1);
    assert_eq!((deacts(&m, UART), deacts(&m, MMC)), (0, 1));
    assert_eq!(m.g.hw_outstanding().iter().collect::<Vec<_>>(), [UART]);
    m.cpus[0].drain();
    let _ = m.exit(0);
    assert_eq!((deacts(&m, UART), deacts(&m, MMC)), (1, 1));
    // Both on one vCPU: two HW list registers, never the same one twice.
    wrb(&mut m.g, 0, ITARGETSR + MMC as u64, 1);
    m.g.hw_fire(UART).unwrap();
    m.g.hw_fire(MMC).unwrap();
    m.enter(0);
    let hw: Vec<_> = m.cpus[0].valid().map(|(_, l)| (l.intid, l.pintid, l.hw)).collect();
    assert_eq!(hw, [(UART as u16, UART as u16, true), (MMC as u16, MMC as u16, true)]);
    m.cpus[0].drain();
    let _ = m.exit(0);
    assert_eq!((deacts(&m, UART), deacts(&m, MMC)), (2, 2));
}

#[test]
fn ordinary_spis_keep_hw_clear() {
    let mut m = hw_machine(&[UART]);
    enable(&mut m.g, 0, 50, 0x80, 1);
    m.g.set_level(50, true).unwrap();
    m.enter(0);
    let l = only_lr(&m, 0);
    assert_eq!((l.intid, l.hw, l.eoi), (50, false, true));
}

#[test]
fn teardown_lists_every_hw_spi_still_owed_a_deactivation() {
    let mut m = hw_machine(&[UART, MMC, 42, 43]);
    for i in [UART, MMC, 42] {
        m.g.hw_fire(i).unwrap();
    }
    m.enter(0);
    // UART: EOIed (hardware deactivated it). MMC: acknowledged, active.
    // 42: still pending in its list register. 43: never fired.
    assert_eq!(m.cpus[0].ack().map(|l| l.intid), Some(UART as u16));
    assert!(m.cpus[0].eoi(UART as u16, 0));
    assert_eq!(m.cpus[0].ack().map(|l| l.intid), Some(MMC as u16));
    assert_eq!(m.g.hw_outstanding().iter().collect::<Vec<_>>(), [UART, MMC, 42], "before sync: still queued");
    let _ = m.exit(0);
    let out: Vec<u32> = m.g.hw_outstanding().iter().collect();
    assert_eq!(out, [MMC, 42]);
    assert_eq!(m.g.hw_outstanding().len(), 2);
    // The kernel deactivates those: with the guest's one, each fire once.
    assert_eq!(deacts(&m, UART) + out.len() as u32, 3);
}

#[test]
fn guest_icpendr_of_a_pending_hw_spi_releases_it_to_the_kernel() {
    let mut m = hw_machine(&[UART]);
    m.g.hw_fire(UART).unwrap();
    set_bit(&mut m.g, 0, ICPENDR, UART);
    assert!(!bit(&mut m.g, 0, ISPENDR, UART));
    assert!(m.g.hw_outstanding().contains(UART), "owed until taken");
    let r = m.g.take_hw_released();
    assert_eq!(r.iter().collect::<Vec<_>>(), [UART]);
    assert!(m.g.take_hw_released().is_empty(), "taken once");
    assert!(m.g.hw_outstanding().is_empty());
    assert_eq!(m.g.counters().hw_released, 1);
    m.enter(0);
    assert_eq!(m.cpus[0].valid().count(), 0);
    // Clearing an idle one releases nothing.
    let _ = m.exit(0);
    set_bit(&mut m.g, 0, ICPENDR, UART);
    set_bit(&mut m.g, 0, ICACTIVER, UART);
    assert!(m.g.take_hw_released().is_empty());
    m.g.check().unwrap();
}

#[test]
fn guest_icactiver_of_an_active_hw_spi_releases_it_to_the_kernel() {
    let mut m = hw_machine(&[UART]);
    m.g.hw_fire(UART).unwrap();
    m.enter(0);
    m.cpus[0].ack();
    let _ = m.exit(0);
    assert!(m.g.take_hw_released().is_empty());
    set_bit(&mut m.g, 0, ICACTIVER, UART);
    assert_eq!(m.g.take_hw_released().iter().collect::<Vec<_>>(), [UART]);
    m.enter(0);
    assert_eq!(m.cpus[0].valid().count(), 0, "no longer put back");
    m.g.check().unwrap();
}

#[test]
fn guest_clear_while_queued_on_a_running_vcpu_is_settled_at_its_sync() {
    // Pending in vCPU 0's list register; vCPU 1 clears it.
    let mut m = hw_machine(&[UART]);
    m.g.hw_fire(UART).unwrap();
    m.enter(0);
    m.enter(1);
    let _ = m.mmio(1, ICPENDR + 4, Access::Write { width: Width::Word, value: 1 << (UART % 32) });
    assert!(m.g.take_hw_released().is_empty(), "vCPU 0 still holds it");
    let _ = m.exit(0);
    assert_eq!(m.g.take_hw_released().iter().collect::<Vec<_>>(), [UART]);
    assert_eq!(deacts(&m, UART), 0);

    // Active in vCPU 0's list register, cleared, but the guest EOIs it
    // before the sync: the hardware deactivated it, nothing to release.
    m.g.hw_fire(UART).unwrap();
    m.enter(0);
    m.cpus[0].ack();
    let _ = m.mmio(1, ICACTIVER + 4, Access::Write { width: Width::Word, value: 1 << (UART % 32) });
    m.cpus[0].eoi(UART as u16, 0);
    let _ = m.exit(0);
    assert!(m.g.take_hw_released().is_empty());
    assert_eq!(deacts(&m, UART), 1);

    // EOIed, fired again (latched while queued), that latch cleared: the
    // second fire's physical interrupt is released at the sync.
    m.g.hw_fire(UART).unwrap();
    m.enter(0);
    m.cpus[0].drain();
    m.g.hw_fire(UART).unwrap();
    let _ = m.mmio(1, ICPENDR + 4, Access::Write { width: Width::Word, value: 1 << (UART % 32) });
    m.g.check().unwrap();
    let _ = m.exit(0);
    assert_eq!(deacts(&m, UART), 2);
    assert_eq!(m.g.take_hw_released().iter().collect::<Vec<_>>(), [UART]);
    assert!(m.g.hw_outstanding().is_empty());
    m.g.check().unwrap();
}

#[test]
fn guest_set_pending_or_active_of_a_hw_spi_is_ignored() {
    let mut m = hw_machine(&[UART]);
    set_bit(&mut m.g, 0, ISPENDR, UART);
    set_bit(&mut m.g, 0, ISACTIVER, UART);
    assert!(!bit(&mut m.g, 0, ISPENDR, UART));
    assert!(!bit(&mut m.g, 0, ISACTIVER, UART));
    assert!(m.g.hw_outstanding().is_empty());
    assert_eq!(m.g.counters().hw_ignored_writes, 2);
    // Ordinary SPIs in the same word are not affected.
    enable(&mut m.g, 0, 50, 0x80, 1);
    wr(&mut m.g, 0, ISPENDR + 4, (1 << (50 - 32)) | (1 << (UART - 32)));
    assert!(bit(&mut m.g, 0, ISPENDR, 50));
    assert!(!bit(&mut m.g, 0, ISPENDR, UART));
}

#[test]
fn one_list_register_never_gets_hw_and_eoi() {
    let mut m = Machine::new(1, 64, 1);
    for i in [UART, MMC] {
        m.g.set_hw(i, true).unwrap();
        enable(&mut m.g, 0, i, 0xa0, 1);
    }
    m.g.hw_fire(UART).unwrap();
    m.g.hw_fire(MMC).unwrap();
    m.enter(0);
    let raw = m.cpus[0].raw(0);
    assert_eq!(raw & (LR_HW | LR_EOI), LR_HW, "left-over work, but no EOI on a HW list register");
    m.g.check().unwrap();
    m.cpus[0].drain();
    let _ = m.exit(0);
    m.enter(0);
    m.cpus[0].drain();
    let _ = m.exit(0);
    assert_eq!((deacts(&m, UART), deacts(&m, MMC)), (1, 1));
}

#[test]
fn hw_list_register_encoding() {
    let l = Lr { intid: 40, pintid: 40, hw: true, pending: true, eoi: true, ..Lr::default() };
    assert_eq!(l.encode() & LR_EOI, 0, "encode never sets EOI with HW");
    assert_eq!(Lr::decode(l.encode()), Lr { eoi: false, ..l });
    let raw = LR_HW | LR_PENDING | (40 << LR_PINTID_SHIFT) | 40;
    let d = Lr::decode(raw);
    assert_eq!((d.hw, d.pintid, d.source, d.eoi), (true, 40, 0, false));
}

fn config() -> PtConfig {
    let mut c = PtConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x5eed_4a3d);
    }
    c
}

const HW: [u32; 3] = [40, 41, 70];

#[derive(Clone, Debug)]
enum Op {
    Fire(usize),
    Enter(u8),
    Exit(u8),
    Ack(u8),
    Eoi(u8),
    Enable(usize, bool),
    Target(usize, u8),
    Edge(usize, bool),
    Clear { by: u8, spi: usize, active: bool },
    Set { by: u8, spi: usize, active: bool },
    Dist(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let spi = || 0..HW.len();
    let cpu = || 0u8..2;
    prop_oneof![
        6 => spi().prop_map(Op::Fire),
        5 => cpu().prop_map(Op::Enter),
        5 => cpu().prop_map(Op::Exit),
        5 => cpu().prop_map(Op::Ack),
        5 => cpu().prop_map(Op::Eoi),
        2 => (spi(), any::<bool>()).prop_map(|(s, on)| Op::Enable(s, on)),
        1 => (spi(), 0u8..4).prop_map(|(s, t)| Op::Target(s, t)),
        1 => (spi(), any::<bool>()).prop_map(|(s, e)| Op::Edge(s, e)),
        1 => (cpu(), spi(), any::<bool>()).prop_map(|(by, spi, active)| Op::Clear { by, spi, active }),
        1 => (cpu(), spi(), any::<bool>()).prop_map(|(by, spi, active)| Op::Set { by, spi, active }),
        1 => any::<bool>().prop_map(Op::Dist),
    ]
}

/// The physical GIC's side of the hardware SPIs.
struct Phys {
    active: [bool; 3],
    fires: [u32; 3],
    /// Deactivations by the kernel (released, teardown).
    kernel: [u32; 3],
}

impl Phys {
    fn deacts(&self, m: &Machine, k: usize) -> u32 {
        deacts(m, HW[k]) + self.kernel[k]
    }

    /// Take what the vGIC released and deactivate it, as the kernel does.
    fn release(&mut self, m: &mut Machine) -> Result<(), TestCaseError> {
        for intid in m.g.take_hw_released().iter() {
            let k = HW.iter().position(|&h| h == intid).unwrap();
            prop_assert!(self.active[k], "released {intid}, which is not active physically");
            self.kernel[k] += 1;
            self.active[k] = false;
        }
        Ok(())
    }

    /// The model GICs' deactivations so far must match: a deactivation
    /// only of an active interrupt, so never more than one per fire.
    fn settle(&mut self, m: &Machine) -> Result<(), TestCaseError> {
        for (k, &i) in HW.iter().enumerate() {
            let d = self.deacts(m, k);
            let owed = self.fires[k] - d.min(self.fires[k]);
            prop_assert!(d <= self.fires[k], "{}: {} deactivations of {} fires", i, d, self.fires[k]);
            prop_assert!(owed <= 1);
            if owed == 0 {
                self.active[k] = false;
            }
            prop_assert_eq!(self.active[k], owed == 1, "{}: physical state", i);
        }
        Ok(())
    }
}

fn run(ops: &[Op], teardown: bool) -> Result<(), TestCaseError> {
    let mut m = Machine::new(2, 64, 2);
    for &i in &HW {
        m.g.set_hw(i, true).unwrap();
        enable(&mut m.g, 0, i, 0x80, 1);
    }
    let mut p = Phys { active: [false; 3], fires: [0; 3], kernel: [0; 3] };
    for o in ops {
        match *o {
            Op::Fire(k) => {
                // A physical interrupt fires only while inactive.
                if !p.active[k] {
                    p.active[k] = true;
                    p.fires[k] += 1;
                    let kick = m.g.hw_fire(HW[k]).unwrap();
                    if let Some(t) = kick {
                        m.kick(VcpuSet::from_bits(1 << t.0));
                    }
                }
            }
            Op::Enter(c) => m.enter(c),
            Op::Exit(c) => {
                let k = m.exit(c);
                m.kick(k);
            }
            Op::Ack(c) => {
                if m.running[c as usize] {
                    m.cpus[c as usize].ack();
                }
            }
            Op::Eoi(c) => {
                if m.running[c as usize] {
                    let l = m.cpus[c as usize].valid().find(|(_, l)| l.active).map(|(_, l)| l);
                    if let Some(l) = l {
                        m.cpus[c as usize].eoi(l.intid, l.source);
                    }
                }
            }
            Op::Enable(k, on) => {
                let base = if on { ISENABLER } else { ICENABLER };
                let _ = m.mmio(
                    0,
                    base + 4 * (HW[k] as u64 / 32),
                    Access::Write { width: Width::Word, value: 1 << (HW[k] % 32) },
                );
            }
            Op::Target(k, t) => {
                let _ = m.mmio(0, ITARGETSR + HW[k] as u64, Access::Write { width: Width::Byte, value: t as u64 });
            }
            Op::Edge(k, e) => {
                let _ = m.exit(0);
                set_edge(&mut m.g, 0, HW[k], e);
            }
            Op::Clear { by, spi, active } => {
                let base = if active { ICACTIVER } else { ICPENDR };
                let i = HW[spi];
                let _ =
                    m.mmio(by, base + 4 * (i as u64 / 32), Access::Write { width: Width::Word, value: 1 << (i % 32) });
            }
            Op::Set { by, spi, active } => {
                let base = if active { ISACTIVER } else { ISPENDR };
                let i = HW[spi];
                let _ =
                    m.mmio(by, base + 4 * (i as u64 / 32), Access::Write { width: Width::Word, value: 1 << (i % 32) });
            }
            Op::Dist(on) => {
                let _ = m.mmio(0, CTLR, Access::Write { width: Width::Word, value: on as u64 });
            }
        }
        p.release(&mut m)?;
        if let Err(e) = m.g.check() {
            return Err(TestCaseError::fail(format!("after {o:?}: {e}")));
        }
        p.settle(&m)?;
        for c in &m.cpus {
            prop_assert_eq!(c.duplicate(), None);
            for (i, l) in c.valid() {
                prop_assert!(!(l.hw && l.pending && l.active), "HW list register pending+active");
                prop_assert!(!l.hw || (l.pintid == l.intid && c.raw(i) & LR_EOI == 0), "HW list register fields");
                prop_assert_eq!(l.hw, HW.contains(&(l.intid as u32)));
            }
        }
        if m.running.iter().all(|r| !r) {
            let out = m.g.hw_outstanding();
            for (k, &i) in HW.iter().enumerate() {
                prop_assert_eq!(out.contains(i), p.active[k], "{}: vGIC holds it iff active physically", i);
            }
        }
    }

    if teardown {
        for c in 0..2 {
            let _ = m.exit(c);
        }
        p.release(&mut m)?;
        for i in m.g.hw_outstanding().iter() {
            let k = HW.iter().position(|&h| h == i).unwrap();
            prop_assert!(p.active[k]);
            p.kernel[k] += 1;
            p.active[k] = false;
        }
    } else {
        // The guest enables and routes everything and EOIs what it gets.
        let _ = m.mmio(0, CTLR, Access::Write { width: Width::Word, value: 1 });
        for &i in &HW {
            let _ = m.mmio(0, ITARGETSR + i as u64, Access::Write { width: Width::Byte, value: 1 + (i as u64 & 1) });
            let _ =
                m.mmio(0, ISENABLER + 4 * (i as u64 / 32), Access::Write { width: Width::Word, value: 1 << (i % 32) });
        }
        for _ in 0..8 {
            for c in 0..2u8 {
                let _ = m.exit(c);
                m.enter(c);
                // EOI what is active first (acknowledged earlier), then drain.
                loop {
                    let l = m.cpus[c as usize].valid().find(|(_, l)| l.active).map(|(_, l)| l);
                    let Some(l) = l else { break };
                    m.cpus[c as usize].eoi(l.intid, l.source);
                }
                m.cpus[c as usize].drain();
                let _ = m.exit(c);
                p.release(&mut m)?;
                m.g.check().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        prop_assert!(m.g.hw_outstanding().is_empty(), "left: {:?}", m.g.hw_outstanding());
    }
    p.settle(&m)?;
    for (k, &i) in HW.iter().enumerate() {
        prop_assert_eq!(p.deacts(&m, k), p.fires[k], "{}: every fire deactivated exactly once", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_hw_sequences_deactivate_each_fire_once(ops in prop::collection::vec(op(), 1..120), teardown in any::<bool>()) {
        run(&ops, teardown)?;
    }
}

//! Physical interrupts at EL2: the GIC (driven with arm-gic) and the EL2
//! physical timer (CNTHP), which drives the scheduler's tick.
//!
//! HCR_EL2.IMO routes physical IRQs to EL2 while a guest runs; at EL2 they
//! stay masked, and idle pCPUs poll for them after `wfi`.

use arm_gic::gicv2::{GicV2, SgiTarget, SgiTargetListFilter};
use arm_gic::{IntId, InterruptGroup, Trigger};

use crate::arch::{self, sysreg_read, sysreg_write};
use crate::frames::spin_cell::SpinCell;
use dispatch::MAX_PCPUS;

/// The hypervisor timer's PPI (INTID 26 on every GICv2 board we support).
pub const HYP_TIMER_INTID: u32 = 26;
/// The EL1 virtual timer's PPI, which guests use.
pub const VIRT_TIMER_INTID: u32 = 27;
/// The EL1 physical timer's PPI (non-secure), switched per vCPU too.
pub const PHYS_TIMER_INTID: u32 = 30;
/// The GICv2 virtual interface maintenance interrupt.
pub const MAINT_INTID: u32 = 25;
/// The physical SGI one pCPU sends another to make its guest exit, so a
/// virtual interrupt just raised for it is delivered now.
pub const KICK_SGI: u32 = 1;

/// `pmu=passthrough`: guests program the real PMU (a measuring aid).
pub static PMU_PASSTHROUGH: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// The console UART's interrupt (GIC INTID), 0 when the DTB gives none.
pub static UART_INTID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The hardware domain's SPIs (bit n = INTID n): taken here with only a
/// priority drop, and deactivated by the guest's EOI through a hardware
/// list register. Set at boot, before any pCPU takes interrupts.
static PASSED: [core::sync::atomic::AtomicU64; 16] = [const { core::sync::atomic::AtomicU64::new(0) }; 16];

/// The GIC CPU interface (banked: each pCPU reaches its own there).
static GICC: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// The EL1 timers' PPIs and their bits in `Devices::timer_masked`.
pub const TIMER_PPIS: [(u32, u8); 2] = [(VIRT_TIMER_INTID, 1), (PHYS_TIMER_INTID, 2)];

/// The distributor, for the banked PPI enables of [`timer_ppi`].
static GICD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Enable or disable an EL1 timer's PPI (27 or 30) on this pCPU. A timer
/// that fired stays disabled here until the guest has handled the
/// interrupt it was given for it (the devices' sync sees it done), so
/// the guest's own CNTx_CTL.IMASK stays the guest's.
pub fn timer_ppi(intid: u32, on: bool) {
    let gicd = GICD.load(core::sync::atomic::Ordering::Relaxed);
    if gicd == 0 || !(intid == VIRT_TIMER_INTID || intid == PHYS_TIMER_INTID) {
        return;
    }
    let reg = if on { 0x100 } else { 0x180 };
    // SAFETY: GICD_ISENABLER0 / GICD_ICENABLER0 of the distributor the DTB
    // names, mapped as Device at EL2; word 0 is banked per pCPU, and a 1
    // bit changes only that PPI.
    unsafe { core::ptr::write_volatile((gicd + reg) as *mut u32, 1 << intid) };
}

/// GICC_DIR on this pCPU: deactivate a hardware domain's SPI whose
/// priority was dropped and which the guest gave up without an EOI of its
/// list register (a write to GICD_ICPENDR / ICACTIVER), or left behind when
/// it stopped.
pub fn deactivate(intid: u32) {
    let gicc = GICC.load(core::sync::atomic::Ordering::Relaxed);
    if gicc != 0 && is_passed(intid) {
        write_dir(gicc, intid);
    }
}

/// GICC_DIR of the CPU interface at `gicc` (this pCPU's: it is banked).
fn write_dir(gicc: u64, intid: u32) {
    // SAFETY: GICC_DIR at offset 0x1000 of the CPU interface the DTB names
    // (its GICC region is 8 KiB and mapped at EL2); a write deactivates
    // only an interrupt whose priority was dropped.
    unsafe { core::ptr::write_volatile((gicc + 0x1000) as *mut u32, intid) };
}

/// Those of [`PASSED`] the device tree says are edge-triggered.
static EDGE: [core::sync::atomic::AtomicU64; 16] = [const { core::sync::atomic::AtomicU64::new(0) }; 16];

/// Hand SPI `intid` to the hardware domain, edge- or level-triggered. At
/// boot only.
pub fn pass_through(intid: u32, edge: bool) {
    if (32..1020).contains(&intid) {
        PASSED[intid as usize / 64].fetch_or(1 << (intid % 64), core::sync::atomic::Ordering::Relaxed);
        if edge {
            EDGE[intid as usize / 64].fetch_or(1 << (intid % 64), core::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn is_edge(intid: u32) -> bool {
    intid < 1024 && EDGE[intid as usize / 64].load(core::sync::atomic::Ordering::Relaxed) & (1 << (intid % 64)) != 0
}

pub fn is_passed(intid: u32) -> bool {
    intid < 1024 && PASSED[intid as usize / 64].load(core::sync::atomic::Ordering::Relaxed) & (1 << (intid % 64)) != 0
}

/// Most hardware-domain interrupts taken in one [`Irq::handle`]; the rest
/// stay pending in the GIC for the next.
pub const MAX_HW: usize = 8;

/// What the pending interrupts asked for.
#[derive(Default, Clone, Copy)]
pub struct Events {
    /// Hardware-domain SPIs taken (priority dropped, still active), to
    /// inject: `hw[..hw_n]`.
    pub hw: [u16; MAX_HW],
    pub hw_n: usize,
    /// The hypervisor timer fired: a tick, a WFI deadline, or both.
    pub timer: bool,
    /// The scheduler tick.
    pub tick: bool,
    /// The running guest's virtual timer fired (it is masked until the
    /// guest reprograms it).
    pub vtimer: bool,
    /// The running guest's EL1 physical timer fired (masked likewise).
    pub ptimer: bool,
    /// The virtual interface wants list-register maintenance.
    pub maint: bool,
    /// Another pCPU raised a virtual interrupt for the guest running here.
    pub kick: bool,
    /// Bytes were typed at the console (they wait in `console::INPUT`).
    pub input: bool,
}
/// Scheduler tick period.
pub const TICK_HZ: u64 = 100;

fn tick_period() -> u64 {
    arch::counter_freq() / TICK_HZ
}

pub struct Irq {
    gic: GicV2<'static>,
    gicc: u64,
    /// Physical counts of the next tick and of the earliest WFI deadline
    /// this pCPU serves; the hypervisor timer fires at the sooner.
    next_tick: u64,
    next_wake: u64,
}

impl Irq {
    /// Set up this pCPU's GIC CPU interface (and the distributor, which is
    /// idempotent) and start the tick.
    pub fn init(gicd: u64, gicc: u64) -> Irq {
        // SAFETY: gicd/gicc are this board's GIC distributor and CPU
        // interface, mapped as Device at EL2. Each pCPU drives its own banked
        // CPU interface; distributor writes here are idempotent and only
        // touch banked PPI state or global enables.
        let mut gic = unsafe { GicV2::new(gicd as *mut _, gicc as *mut _) };
        gic.setup();
        GICC.store(gicc, core::sync::atomic::Ordering::Relaxed);
        GICD.store(gicd, core::sync::atomic::Ordering::Relaxed);
        // GICC_CTLR.EOImode (bit 9, EOImodeNS in the non-secure view): EOIR
        // only drops priority, deactivation is a separate GICC_DIR (ours)
        // or the guest's EOI of a hardware list register (its devices').
        // SAFETY: GICC_CTLR at offset 0 of this pCPU's banked CPU interface.
        unsafe {
            let ctlr = core::ptr::read_volatile(gicc as *const u32);
            core::ptr::write_volatile(gicc as *mut u32, ctlr | 1 << 9);
        }
        for intid in [KICK_SGI, HYP_TIMER_INTID, VIRT_TIMER_INTID, PHYS_TIMER_INTID, MAINT_INTID] {
            let id = if intid < 16 { IntId::sgi(intid) } else { IntId::ppi(intid - 16) };
            gic.set_interrupt_priority(id, 0x80);
            if intid >= 16 {
                gic.set_trigger(id, Trigger::Level);
            }
            let _ = gic.enable_interrupt(id, true);
        }
        // This pCPU's own CPU interface bit: GICD_ITARGETSR0..7 (SGIs) read
        // back the reading CPU's mask.
        // SAFETY: GICD_ITARGETSR0, a banked read-only byte at 0x800.
        let me = unsafe { core::ptr::read_volatile((gicd + 0x800) as *const u8) };
        let me = if me == 0 { 1 } else { me };
        // Console input: the UART's SPI goes to pCPU 0 alone.
        let uart = UART_INTID.load(core::sync::atomic::Ordering::Relaxed);
        if uart >= 32 && crate::arch::cpu_id() == 0 {
            let id = IntId::spi(uart - 32);
            // SAFETY: GICD_ITARGETSR<n> is a byte per interrupt at 0x800;
            // `uart` is an SPI the DTB names, below the 1020 INTIDs GICv2
            // has; `me` is this pCPU's own interface.
            unsafe { core::ptr::write_volatile((gicd + 0x800 + u64::from(uart)) as *mut u8, me) };
            gic.set_interrupt_priority(id, 0x80);
            gic.set_trigger(id, Trigger::Level);
            let _ = gic.enable_interrupt(id, true);
            crate::uart::enable_rx_irq();
        }
        // The hardware domain's SPIs: to pCPU 0 (its vCPU 0 runs there when
        // pinned; else the injection kicks whichever pCPU runs it).
        if crate::arch::cpu_id() == 0 {
            for intid in 32..1020u32 {
                if !is_passed(intid) {
                    continue;
                }
                // SAFETY: GICD_ITARGETSR, a byte per interrupt at 0x800, for
                // an SPI the hardware domain's device tree names.
                unsafe { core::ptr::write_volatile((gicd + 0x800 + u64::from(intid)) as *mut u8, me) };
                let id = IntId::spi(intid - 32);
                // Its trigger may change only while it is off.
                let _ = gic.enable_interrupt(id, false);
                gic.set_interrupt_priority(id, 0x80);
                gic.set_trigger(id, if is_edge(intid) { Trigger::Edge } else { Trigger::Level });
                let _ = gic.enable_interrupt(id, true);
            }
        }
        // Guests read the physical counter and run both EL1 timers, which
        // are switched with the vCPU.
        sysreg_write!("cnthctl_el2", 0b11);
        sysreg_write!("cntp_ctl_el0", 0);
        // Debug and PMU registers trap to their per-vCPU shadows (TDA,
        // TDOSA, TDRA, TPM, TPMCR) and, with PMUv3p1, EL2 is never counted
        // (HPMD; before it, trapping every guest PMU access does it), unless
        // `pmu=passthrough` asked for the real PMU as a measuring aid.
        // ID_AA64DFR0_EL1.PMUVer: 0 no PMU, 0xf IMPLEMENTATION DEFINED,
        // 4 and up PMUv3p1 (which has HPMD).
        let pmuver = (sysreg_read!("id_aa64dfr0_el1") >> 8) & 0xf;
        let has_pmu = pmuver != 0 && pmuver != 0xf;
        let hpmn = if has_pmu { (sysreg_read!("pmcr_el0") >> 11) & 0x1f } else { 0 };
        let debug = (1 << 9) | (1 << 10) | (1 << 11);
        let hpmd = if pmuver >= 4 && has_pmu { 1 << 17 } else { 0 };
        let pmu = if PMU_PASSTHROUGH.load(core::sync::atomic::Ordering::Relaxed) { 0 } else { (1 << 5) | (1 << 6) | hpmd };
        sysreg_write!("mdcr_el2", hpmn | debug | pmu);
        sysreg_write!("cntvoff_el2", 0);
        let next_tick = arch::counter() + tick_period();
        let mut irq = Irq { gic, gicc, next_tick, next_wake: u64::MAX };
        irq.arm();
        irq
    }

    /// The hypervisor timer at the sooner of the tick and the WFI deadline.
    fn arm(&mut self) {
        sysreg_write!("cnthp_cval_el2", self.next_tick.min(self.next_wake));
        sysreg_write!("cnthp_ctl_el2", 1);
        crate::arch::isb();
    }

    /// Fire by physical count `at` too (a vCPU blocked in WFI wakes then).
    pub fn arm_wake(&mut self, at: u64) {
        if at < self.next_wake {
            self.next_wake = at;
            self.arm();
        }
    }

    /// The earliest WFI deadline left after `Hyp::wake_due` (`u64::MAX`: none).
    pub fn set_wake(&mut self, at: u64) {
        self.next_wake = at;
        self.arm();
    }

    /// Make the pCPUs in `mask` (bit n = pCPU n) exit their guests.
    pub fn kick(&mut self, mask: u16) {
        if mask != 0 {
            self.gic.send_sgi(
                IntId::sgi(KICK_SGI),
                SgiTarget::List { target_list_filter: SgiTargetListFilter::CPUTargetList, target_list: mask },
            );
        }
    }

    /// Acknowledge and handle pending interrupts.
    pub fn handle(&mut self) -> Events {
        let mut ev = Events::default();
        while ev.hw_n < MAX_HW {
            let Some(id) = self.gic.get_and_acknowledge_interrupt(InterruptGroup::Group0) else { break };
            // GICC_IAR: INTID in bits 9:0; an SGI's source CPU in 12:10
            // (EOI takes the whole value back).
            let intid = u32::from(id) & 0x3ff;
            if is_passed(intid) {
                // Priority drop only: it stays active until the guest's EOI
                // of the hardware list register deactivates it.
                self.gic.end_interrupt(id, InterruptGroup::Group0);
                ev.hw[ev.hw_n] = intid as u16;
                ev.hw_n += 1;
                continue;
            }
            match intid {
                HYP_TIMER_INTID => {
                    let now = arch::counter();
                    if now >= self.next_tick {
                        self.next_tick = now + tick_period();
                        ev.tick = true;
                    }
                    if now >= self.next_wake {
                        self.next_wake = u64::MAX;
                    }
                    self.arm();
                    ev.timer = true;
                }
                VIRT_TIMER_INTID | PHYS_TIMER_INTID => {
                    // Level-triggered: disabled here until the guest has
                    // handled the virtual one (the guest's CNTx_CTL is left
                    // alone: EDK2 never unmasks a timer it did not mask).
                    timer_ppi(intid, false);
                    if intid == VIRT_TIMER_INTID {
                        ev.vtimer = true;
                    } else {
                        ev.ptimer = true;
                    }
                }
                KICK_SGI => ev.kick = true,
                id if id >= 32 && id == UART_INTID.load(core::sync::atomic::Ordering::Relaxed) => {
                    crate::console::take_rx();
                    ev.input = true;
                }
                MAINT_INTID => {
                    // Level: it stays asserted while GICH_HCR asks for it.
                    // Turn the interface off now; the next sync and flush
                    // decide again.
                    crate::gich::disable();
                    ev.maint = true;
                }
                other => defmt::warn!("unexpected interrupt {=u32}", other),
            }
            self.gic.end_interrupt(id, InterruptGroup::Group0);
            self.deactivate(u32::from(id));
        }
        ev
    }

    /// A hardware domain's SPI just taken that nobody will take any more:
    /// disabled, and deactivated.
    pub fn drop_hw(&mut self, intid: u32) {
        if (32..1020).contains(&intid) {
            self.disable(intid);
            self.deactivate(intid);
        }
    }

    /// Switch an SPI off at the distributor.
    pub fn disable(&mut self, intid: u32) {
        if (32..1020).contains(&intid) {
            let _ = self.gic.enable_interrupt(IntId::spi(intid - 32), false);
        }
    }

    /// GICC_DIR: deactivate an interrupt whose priority was dropped (ours
    /// at once; a hardware domain's one when it is torn down).
    pub fn deactivate(&mut self, iar: u32) {
        write_dir(self.gicc, iar);
    }
}

/// Each pCPU's interrupt state, used only by that pCPU.
pub static IRQS: [SpinCell<Option<Irq>>; MAX_PCPUS] =
    [SpinCell::new(None), SpinCell::new(None), SpinCell::new(None), SpinCell::new(None)];

/// A hardware domain's SPI taken on `pcpu` that nobody will take: off and
/// deactivated.
pub fn drop_hw(pcpu: usize, intid: u32) {
    if let Some(irq) = IRQS[pcpu].lock().as_mut() {
        irq.drop_hw(intid);
    }
}

/// Make the pCPUs in `mask` (bit n = pCPU n) exit their guests, through
/// this pCPU's GIC.
pub fn kick_pcpus(mask: u16) {
    if let Some(irq) = IRQS[arch::cpu_id()].lock().as_mut() {
        irq.kick(mask);
    }
}

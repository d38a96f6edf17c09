//! Physical interrupts at EL2: the GIC (driven with arm-gic) and the EL2
//! physical timer (CNTHP), which drives the scheduler's tick.
//!
//! HCR_EL2.IMO routes physical IRQs to EL2 while a guest runs; at EL2 they
//! stay masked, and idle pCPUs poll for them after `wfi`.

use arm_gic::gicv2::GicV2;
use arm_gic::{IntId, InterruptGroup, Trigger};

use crate::arch::{sysreg_read, sysreg_write};

/// The hypervisor timer's PPI (INTID 26 on every GICv2 board we support).
pub const HYP_TIMER_INTID: u32 = 26;
/// Scheduler tick period.
pub const TICK_HZ: u64 = 100;

pub struct Irq {
    gic: GicV2<'static>,
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
        let id = IntId::ppi(HYP_TIMER_INTID - 16);
        gic.set_interrupt_priority(id, 0x80);
        gic.set_trigger(id, Trigger::Level);
        let _ = gic.enable_interrupt(id, true);
        let mut irq = Irq { gic };
        irq.arm_tick();
        irq
    }

    fn arm_tick(&mut self) {
        let ticks = sysreg_read!("cntfrq_el0") / TICK_HZ;
        sysreg_write!("cnthp_tval_el2", ticks);
        sysreg_write!("cnthp_ctl_el2", 1);
        crate::arch::isb();
    }

    /// Acknowledge and handle pending interrupts. Returns true when the
    /// scheduler tick fired.
    pub fn handle(&mut self) -> bool {
        let mut tick = false;
        while let Some(id) = self.gic.get_and_acknowledge_interrupt(InterruptGroup::Group0) {
            if id == IntId::ppi(HYP_TIMER_INTID - 16) {
                self.arm_tick();
                tick = true;
            } else {
                defmt::warn!("unexpected interrupt {=u32}", u32::from(id));
            }
            self.gic.end_interrupt(id, InterruptGroup::Group0);
        }
        tick
    }
}

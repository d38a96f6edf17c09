//! The kernel's side of `dispatch::Platform` for [`Kernel`]: the real
//! registers, GIC, console and memory of the pCPU running the dispatch.

use crate::arch::el1::El1Regs;
use crate::arch::{self, el1, sysreg_read, sysreg_write, FpRegs, TrapFrame};
use crate::hw::KernelHw;
use crate::irq::IRQS;
use crate::pcpu::{Ctx, Kernel};
use crate::vm::{self, Vm};
use dispatch::{AbortKind, GuestEvent, Platform, TimerWake};
use hwops::Scoped;

/// SCTLR reset values: AArch64 SCTLR_EL1 and AArch32 SCTLR RES1 bits,
/// MMU and caches off.
const SCTLR_RESET_A64: u64 = 0x30d0_0800;
const SCTLR_RESET_A32: u64 = 0x00c5_0838;

impl Platform for Kernel {
    type Table = vm::GuestTable;
    type Hw<'a> = KernelHw;
    type Ctx = Ctx;
    type Devices = crate::devices::Devices;
    type Out = crate::console::LineBuf;
    type Boot = vm::Boot;

    fn cpu_id(&self) -> usize {
        arch::cpu_id()
    }

    fn hw(&mut self, vttbr: u64, mem: core::ops::Range<u64>, skip_frame_clean: bool) -> Scoped<KernelHw> {
        // SAFETY: every VM's `memory` is the host RAM it was given at
        // creation (`vm::Boot::memory`), mapped at EL2 and used by no one else.
        unsafe { crate::hw::scoped(vttbr, skip_frame_clean, mem) }
    }

    fn sctlr(&self) -> u64 {
        el1::sctlr_el1()
    }

    fn write_vmreg(&mut self, reg: trap::VmReg, value: u64) {
        el1::write_vmreg(reg, value)
    }

    fn inject_abort(&mut self, frame: &mut TrapFrame, far: u64, kind: AbortKind, aarch32: bool) {
        el1::inject_abort(frame, far, kind, aarch32)
    }

    fn timer_wake(&self) -> TimerWake {
        // CNTx_CTL: ENABLE (bit 0), IMASK (bit 1), ISTATUS (bit 2).
        let v = (sysreg_read!("cntv_ctl_el0"), sysreg_read!("cntv_cval_el0").saturating_add(sysreg_read!("cntvoff_el2")));
        let p = (sysreg_read!("cntp_ctl_el0"), sysreg_read!("cntp_cval_el0"));
        let mut wake = TimerWake::Never;
        for (ctl, at) in [v, p] {
            if ctl & 0b11 != 0b01 {
                continue;
            }
            if ctl & 0b100 != 0 {
                return TimerWake::Now;
            }
            wake = match wake {
                TimerWake::At(t) if t <= at => wake,
                _ => TimerWake::At(at),
            };
        }
        wake
    }

    fn reset_ctx(&self, index: usize, aarch32: bool) -> Ctx {
        let mut el1 = El1Regs::reset(dispatch::vm::HCR_BASE, (1 << 31) | index as u64);
        el1.sctlr = if aarch32 { SCTLR_RESET_A32 } else { SCTLR_RESET_A64 };
        Ctx { el1, fp: FpRegs::default(), vmcr: 0, apr: 0 }
    }

    fn save(&mut self, ctx: &mut Ctx, devices: bool, aarch32: bool, spsr: u64) -> bool {
        if devices {
            (ctx.vmcr, ctx.apr) = crate::gich::save_cpu_if();
        }
        // AArch32: the live SPSR of the mode it trapped from into its bank
        // first, or QEMU would hand it to the next vCPU here.
        let banked = !aarch32 || arch::spsr32::bank_live(spsr);
        ctx.el1 = El1Regs::save();
        ctx.fp.save();
        sysreg_write!("cntv_ctl_el0", 0);
        sysreg_write!("cntp_ctl_el0", 0);
        banked
    }

    fn load(&mut self, ctx: &mut Ctx, hcr: u64, cntvoff: u64, devices: bool, aarch32: bool, spsr: u64) -> bool {
        ctx.el1.hcr = hcr;
        // The virtual counter offset first, then the timer compared with it.
        sysreg_write!("cntvoff_el2", cntvoff);
        ctx.el1.restore();
        // AArch32: the banked SPSR of the mode it resumes in becomes live.
        let loaded = !aarch32 || arch::spsr32::load_live(spsr);
        ctx.fp.restore();
        if devices {
            crate::gich::restore_cpu_if(ctx.vmcr, ctx.apr);
        }
        loaded
    }

    fn set_vttbr(&mut self, vttbr: u64) {
        sysreg_write!("vttbr_el2", vttbr);
        arch::isb();
    }

    fn set_hcr(&mut self, hcr: u64) {
        sysreg_write!("hcr_el2", hcr);
        arch::isb();
    }

    fn local_guest_flush(&mut self) {
        arch::local_guest_flush();
    }

    fn kick(&mut self, mask: u16) {
        crate::irq::kick_pcpus(mask);
    }

    fn counter(&self) -> u64 {
        arch::counter()
    }

    fn arm_wake(&mut self, at: u64) {
        if let Some(irq) = IRQS[arch::cpu_id()].lock().as_mut() {
            irq.arm_wake(at);
        }
    }

    fn now_s(&self) -> u64 {
        arch::counter() / arch::counter_freq().max(1)
    }

    fn log(&mut self, args: core::fmt::Arguments) {
        crate::kprintln!("{}", args);
    }

    fn guest_event(&mut self, e: GuestEvent) {
        match e {
            GuestEvent::NoDevice { ipa, pc } => {
                defmt::info!("guest access to IPA {=u64:#x} (PC {=u64:#x}) with no device: abort injected", ipa, pc)
            }
            GuestEvent::OutsideRam { ipa } => defmt::info!("guest access outside RAM at IPA {=u64:#x}: abort injected", ipa),
            GuestEvent::Stage2Fault { fsc, ipa } => {
                defmt::info!("guest stage-2 fault {=u8:#x} at IPA {=u64:#x}: abort injected", fsc, ipa)
            }
        }
    }

    fn summary(&mut self, vm: &Vm) {
        vm::print_summary(vm);
    }

    fn power_off(&mut self, ok: bool) {
        crate::power::power_off(ok);
    }

    fn rebuild(&mut self, vm: Vm) -> Result<Vm, &'static str> {
        vm::restart(vm)
    }

    fn release_hw(&mut self, vm: &Vm) {
        let pcpu = arch::cpu_id();
        if vm.hw_spis.is_empty() {
            return;
        }
        let Some(d) = vm.devices.as_ref() else { return };
        if vm.finished() {
            // Stopped for good: its lines are switched off first, so none
            // fires again while the outstanding ones are deactivated.
            if let Some(irq) = IRQS[pcpu].lock().as_mut() {
                for &intid in vm.hw_spis.iter() {
                    irq.disable(intid);
                }
            }
        }
        for intid in d.vgic.hw_outstanding().iter() {
            crate::irq::deactivate(intid);
        }
    }

    fn pmu(&self) -> u64 {
        crate::hw::pmu0()
    }

    fn profile(&mut self, p: dispatch::Prof) {
        match p {
            dispatch::Prof::Kind(k) => crate::prof::kind(k as usize),
            dispatch::Prof::Locked => crate::prof::point(1),
            dispatch::Prof::Handled => crate::prof::point(2),
            dispatch::Prof::Resumed => crate::prof::point(3),
        }
    }

    fn pod_fault_cost(&mut self, n: u64) {
        crate::hw::POD_FAULT_INSNS.fetch_add(n, core::sync::atomic::Ordering::Relaxed);
    }
}

//! The guest's EL1 system registers: emulating TVM-trapped writes, saving
//! and restoring them on a vCPU switch, and injecting aborts.

use super::{sysreg_read, sysreg_write, TrapFrame};
use trap::VmReg;

/// Write a trapped VM register on behalf of the guest. AArch32 registers
/// land in the AArch64 registers they are architecturally mapped to.
pub fn write_vmreg(reg: VmReg, v: u64) {
    let lo = |cur: u64| (cur & !0xffff_ffff) | (v & 0xffff_ffff);
    let hi = |cur: u64| (cur & 0xffff_ffff) | (v << 32);
    match reg {
        VmReg::SctlrEl1 => sysreg_write!("sctlr_el1", v),
        VmReg::Sctlr => sysreg_write!("sctlr_el1", lo(sysreg_read!("sctlr_el1"))),
        VmReg::Ttbr0El1 | VmReg::Ttbr0 => sysreg_write!("ttbr0_el1", v),
        VmReg::Ttbr1El1 | VmReg::Ttbr1 => sysreg_write!("ttbr1_el1", v),
        VmReg::TcrEl1 => sysreg_write!("tcr_el1", v),
        VmReg::Ttbcr => sysreg_write!("tcr_el1", lo(sysreg_read!("tcr_el1"))),
        VmReg::Ttbcr2 => sysreg_write!("tcr_el1", hi(sysreg_read!("tcr_el1"))),
        VmReg::EsrEl1 | VmReg::Dfsr => sysreg_write!("esr_el1", v),
        VmReg::FarEl1 => sysreg_write!("far_el1", v),
        VmReg::Dfar => sysreg_write!("far_el1", lo(sysreg_read!("far_el1"))),
        VmReg::Ifar => sysreg_write!("far_el1", hi(sysreg_read!("far_el1"))),
        VmReg::Afsr0El1 | VmReg::Adfsr => sysreg_write!("afsr0_el1", v),
        VmReg::Afsr1El1 | VmReg::Aifsr => sysreg_write!("afsr1_el1", v),
        VmReg::MairEl1 => sysreg_write!("mair_el1", v),
        VmReg::Prrr => sysreg_write!("mair_el1", lo(sysreg_read!("mair_el1"))),
        VmReg::Nmrr => sysreg_write!("mair_el1", hi(sysreg_read!("mair_el1"))),
        VmReg::AmairEl1 => sysreg_write!("amair_el1", v),
        VmReg::Amair0 => sysreg_write!("amair_el1", lo(sysreg_read!("amair_el1"))),
        VmReg::Amair1 => sysreg_write!("amair_el1", hi(sysreg_read!("amair_el1"))),
        VmReg::ContextidrEl1 | VmReg::Contextidr => sysreg_write!("contextidr_el1", v),
        VmReg::Dacr => sysreg_write!("dacr32_el2", v),
        VmReg::Ifsr => sysreg_write!("ifsr32_el2", v),
    }
    super::isb();
}

pub fn sctlr_el1() -> u64 {
    sysreg_read!("sctlr_el1")
}

/// The EL1 state a vCPU switch saves and restores.
#[derive(Clone, Copy, Default, Debug)]
pub struct El1Regs {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub elr: u64,
    pub spsr: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub cpacr: u64,
    pub par: u64,
    pub cntkctl: u64,
    pub csselr: u64,
    pub dacr32: u64,
    pub ifsr32: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    pub cntp_ctl: u64,
    pub cntp_cval: u64,
    pub hcr: u64,
    pub vmpidr: u64,
    /// AArch32 guests: FPEXC and the banked SPSRs of the exception modes.
    pub fpexc32: u64,
    pub spsr_abt: u64,
    pub spsr_und: u64,
    pub spsr_irq: u64,
    pub spsr_fiq: u64,
}

impl El1Regs {
    /// The state of a fresh vCPU: MMU and caches off.
    pub fn reset(hcr: u64, vmpidr: u64) -> Self {
        El1Regs { sctlr: 0x30d0_0800, hcr, vmpidr, ..Default::default() }
    }

    pub fn save() -> Self {
        El1Regs {
            sctlr: sysreg_read!("sctlr_el1"),
            ttbr0: sysreg_read!("ttbr0_el1"),
            ttbr1: sysreg_read!("ttbr1_el1"),
            tcr: sysreg_read!("tcr_el1"),
            mair: sysreg_read!("mair_el1"),
            amair: sysreg_read!("amair_el1"),
            vbar: sysreg_read!("vbar_el1"),
            contextidr: sysreg_read!("contextidr_el1"),
            esr: sysreg_read!("esr_el1"),
            far: sysreg_read!("far_el1"),
            afsr0: sysreg_read!("afsr0_el1"),
            afsr1: sysreg_read!("afsr1_el1"),
            elr: sysreg_read!("elr_el1"),
            spsr: sysreg_read!("spsr_el1"),
            sp_el0: sysreg_read!("sp_el0"),
            sp_el1: sysreg_read!("sp_el1"),
            tpidr_el0: sysreg_read!("tpidr_el0"),
            tpidrro_el0: sysreg_read!("tpidrro_el0"),
            tpidr_el1: sysreg_read!("tpidr_el1"),
            cpacr: sysreg_read!("cpacr_el1"),
            par: sysreg_read!("par_el1"),
            cntkctl: sysreg_read!("cntkctl_el1"),
            csselr: sysreg_read!("csselr_el1"),
            dacr32: sysreg_read!("dacr32_el2"),
            ifsr32: sysreg_read!("ifsr32_el2"),
            cntv_ctl: sysreg_read!("cntv_ctl_el0"),
            cntv_cval: sysreg_read!("cntv_cval_el0"),
            cntp_ctl: sysreg_read!("cntp_ctl_el0"),
            cntp_cval: sysreg_read!("cntp_cval_el0"),
            hcr: sysreg_read!("hcr_el2"),
            vmpidr: sysreg_read!("vmpidr_el2"),
            fpexc32: sysreg_read!("fpexc32_el2"),
            spsr_abt: sysreg_read!("spsr_abt"),
            spsr_und: sysreg_read!("spsr_und"),
            spsr_irq: sysreg_read!("spsr_irq"),
            spsr_fiq: sysreg_read!("spsr_fiq"),
        }
    }

    pub fn restore(&self) {
        sysreg_write!("sctlr_el1", self.sctlr);
        sysreg_write!("ttbr0_el1", self.ttbr0);
        sysreg_write!("ttbr1_el1", self.ttbr1);
        sysreg_write!("tcr_el1", self.tcr);
        sysreg_write!("mair_el1", self.mair);
        sysreg_write!("amair_el1", self.amair);
        sysreg_write!("vbar_el1", self.vbar);
        sysreg_write!("contextidr_el1", self.contextidr);
        sysreg_write!("esr_el1", self.esr);
        sysreg_write!("far_el1", self.far);
        sysreg_write!("afsr0_el1", self.afsr0);
        sysreg_write!("afsr1_el1", self.afsr1);
        sysreg_write!("elr_el1", self.elr);
        sysreg_write!("spsr_el1", self.spsr);
        sysreg_write!("sp_el0", self.sp_el0);
        sysreg_write!("sp_el1", self.sp_el1);
        sysreg_write!("tpidr_el0", self.tpidr_el0);
        sysreg_write!("tpidrro_el0", self.tpidrro_el0);
        sysreg_write!("tpidr_el1", self.tpidr_el1);
        sysreg_write!("cpacr_el1", self.cpacr);
        sysreg_write!("par_el1", self.par);
        sysreg_write!("cntkctl_el1", self.cntkctl);
        sysreg_write!("csselr_el1", self.csselr);
        sysreg_write!("dacr32_el2", self.dacr32);
        sysreg_write!("ifsr32_el2", self.ifsr32);
        sysreg_write!("cntv_cval_el0", self.cntv_cval);
        sysreg_write!("cntv_ctl_el0", self.cntv_ctl);
        sysreg_write!("cntp_cval_el0", self.cntp_cval);
        sysreg_write!("cntp_ctl_el0", self.cntp_ctl);
        sysreg_write!("hcr_el2", self.hcr);
        sysreg_write!("vmpidr_el2", self.vmpidr);
        sysreg_write!("fpexc32_el2", self.fpexc32);
        sysreg_write!("spsr_abt", self.spsr_abt);
        sysreg_write!("spsr_und", self.spsr_und);
        sysreg_write!("spsr_irq", self.spsr_irq);
        sysreg_write!("spsr_fiq", self.spsr_fiq);
        super::isb();
    }
}

pub use dispatch::AbortKind;

/// Make the guest take a synchronous external abort at `far`, as if its
/// own memory system had reported it. `aarch32` is the VM's EL1 state (an
/// AArch64 guest's AArch32 EL0 task still takes it at AArch64 EL1).
pub fn inject_abort(frame: &mut TrapFrame, far: u64, kind: AbortKind, aarch32: bool) {
    let spsr = frame.spsr;
    if aarch32 {
        inject_abort_aarch32(frame, far, kind);
        return;
    }
    let from_el1 = spsr & (1 << 4) == 0 && spsr & 0b1100 == 0b0100;
    // EC: data abort 0x24 (lower EL) / 0x25 (same EL); instruction abort
    // 0x20 / 0x21. FSC 0x10: synchronous external abort.
    let (ec, wnr): (u64, u64) = match kind {
        AbortKind::Data { write } => (if from_el1 { 0x25 } else { 0x24 }, (write as u64) << 6),
        AbortKind::Instruction => (if from_el1 { 0x21 } else { 0x20 }, 0),
    };
    let esr = (ec << 26) | (1 << 25) | wnr | 0x10;
    sysreg_write!("esr_el1", esr);
    sysreg_write!("far_el1", far);
    sysreg_write!("elr_el1", frame.elr);
    sysreg_write!("spsr_el1", spsr);
    let vbar = sysreg_read!("vbar_el1");
    let offset = if spsr & (1 << 4) != 0 {
        0x600 // from AArch32 EL0
    } else {
        match spsr & 0xf {
            0b0101 => 0x200, // EL1h
            0b0100 => 0x000, // EL1t
            _ => 0x400,      // from AArch64 EL0
        }
    };
    frame.elr = vbar + offset;
    frame.spsr = 0x3c5; // EL1h, DAIF masked
}

/// AArch32: a data abort (DFSR/DFAR, vector 0x10, LR = PC + 8) or a
/// prefetch abort (IFSR/IFAR, vector 0x0C, LR = PC + 4), taken in ABT mode.
fn inject_abort_aarch32(frame: &mut TrapFrame, far: u64, kind: AbortKind) {
    let cpsr = frame.spsr;
    let sctlr = sysreg_read!("sctlr_el1");
    let lpae = sysreg_read!("tcr_el1") & (1 << 31) != 0;
    // Synchronous external abort: long-descriptor FS 0x10, short FS 0x8.
    let fs = if lpae { (1 << 9) | 0x10 } else { 0x8 };
    let cur = sysreg_read!("far_el1");
    let (vector, lr_off) = match kind {
        AbortKind::Data { write } => {
            sysreg_write!("esr_el1", fs | ((write as u64) << 11)); // DFSR
            sysreg_write!("far_el1", (cur & !0xffff_ffff) | (far & 0xffff_ffff)); // DFAR
            (0x10, 8)
        }
        AbortKind::Instruction => {
            sysreg_write!("ifsr32_el2", fs);
            sysreg_write!("far_el1", (cur & 0xffff_ffff) | (far << 32)); // IFAR
            (0x0c, 4)
        }
    };
    // SPSR_abt and LR_abt (the AArch32 r14_abt view is X20). The live SPSR
    // of the mode it leaves goes to its bank first, and the new SPSR_abt
    // becomes the live one (exact on QEMU too; see spsr32).
    let _ = super::spsr32::bank_live(cpsr);
    sysreg_write!("spsr_abt", cpsr);
    let _ = super::spsr32::load_live(0x17);
    frame.x[20] = frame.elr + lr_off;
    let vbar = if sctlr & (1 << 13) != 0 { 0xffff_0000 } else { sysreg_read!("vbar_el1") & 0xffff_ffe0 };
    let thumb = sctlr & (1 << 30) != 0; // SCTLR.TE
    let big_endian = sctlr & (1 << 25) != 0; // SCTLR.EE
    frame.elr = vbar + vector;
    // ABT mode; A and I masked, F kept; E from SCTLR.EE; T from SCTLR.TE.
    frame.spsr = 0x17 | (1 << 8) | (1 << 7) | (cpsr & (1 << 6)) | ((big_endian as u64) << 9) | ((thumb as u64) << 5);
}

//! The inverse of [`decode`](crate::decode), for tests (feature `encode`).

use crate::decode::*;

/// Which guest state the syndrome should look as if it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Aarch64,
    Aarch32,
}

const IL: u64 = 1 << 25;
/// CV = 1, COND = AL.
const COND_AL: u64 = (1 << 24) | (0xe << 20);

fn esr(ec: u8, iss: u64) -> u64 {
    (u64::from(ec) << 26) | IL | (iss & 0x1ff_ffff)
}

fn sys(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, rt: u8, read: bool) -> u64 {
    let iss = (u64::from(op0 & 3) << 20)
        | (u64::from(op2 & 7) << 17)
        | (u64::from(op1 & 7) << 14)
        | (u64::from(crn & 0xf) << 10)
        | (u64::from(rt & 0x1f) << 5)
        | (u64::from(crm & 0xf) << 1)
        | u64::from(read);
    esr(ec::SYS64, iss)
}

fn cp15(opc1: u8, crn: u8, crm: u8, opc2: u8, rt: u8, read: bool) -> u64 {
    coproc(ec::CP15_32, opc1, crn, crm, opc2, rt, read)
}

fn coproc(class: u8, opc1: u8, crn: u8, crm: u8, opc2: u8, rt: u8, read: bool) -> u64 {
    let iss = COND_AL
        | (u64::from(opc2 & 7) << 17)
        | (u64::from(opc1 & 7) << 14)
        | (u64::from(crn & 0xf) << 10)
        | (u64::from(rt & 0x1f) << 5)
        | (u64::from(crm & 0xf) << 1)
        | u64::from(read);
    esr(class, iss)
}

fn cp15_wide(opc1: u8, crm: u8, rt: u8, rt2: u8, read: bool) -> u64 {
    coproc_wide(ec::CP15_64, opc1, crm, rt, rt2, read)
}

fn coproc_wide(class: u8, opc1: u8, crm: u8, rt: u8, rt2: u8, read: bool) -> u64 {
    let iss = COND_AL
        | (u64::from(opc1 & 0xf) << 16)
        | (u64::from(rt2 & 0x1f) << 10)
        | (u64::from(rt & 0x1f) << 5)
        | (u64::from(crm & 0xf) << 1)
        | u64::from(read);
    esr(class, iss)
}

/// `(esr, far, hpfar)` that [`decode`] turns back into `trap`, with IL set
/// and, for AArch32 classes, CV = 1 and COND = AL. `width` picks the class
/// where both exist (HVC, SMC, set/way); an AArch32 SMC cannot carry an
/// immediate, so a nonzero `imm` uses the AArch64 class.
pub fn encode(trap: &Trap, width: Width) -> (u64, u64, u64) {
    let a32 = width == Width::Aarch32;
    let e = match *trap {
        Trap::Hvc { imm } => esr(if a32 { ec::HVC32 } else { ec::HVC64 }, imm.into()),
        Trap::Smc { imm } => {
            if a32 && imm == 0 {
                esr(ec::SMC32, COND_AL)
            } else {
                esr(ec::SMC64, imm.into())
            }
        }
        Trap::Wfx { wfe, timed } => esr(ec::WFX, COND_AL | u64::from(wfe) | u64::from(timed) << 1),
        Trap::SetWay { op, rt } => {
            let crm = match op {
                SwOp::Isw => 6,
                SwOp::Csw => 10,
                SwOp::Cisw => 14,
            };
            if a32 {
                cp15(0, 7, crm, 2, rt, false)
            } else {
                sys(1, 0, 7, crm, 2, rt, false)
            }
        }
        Trap::VmReg {
            reg,
            rt,
            rt2,
            write,
        } => {
            if let Some((op0, op1, crn, crm, op2)) = reg.sys_encoding() {
                sys(op0, op1, crn, crm, op2, rt, !write)
            } else if let (Some(rt2), Some((opc1, crm))) = (rt2, reg.cp15_wide_encoding()) {
                cp15_wide(opc1, crm, rt, rt2, !write)
            } else {
                let (opc1, crn, crm, opc2) = reg.cp15_encoding().unwrap_or((0, 0, 0, 0));
                cp15(opc1, crn, crm, opc2, rt, !write)
            }
        }
        Trap::SysReg {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt,
            read,
        } => sys(op0, op1, crn, crm, op2, rt, read),
        Trap::Cp15 {
            opc1,
            crn,
            crm,
            opc2,
            rt,
            read,
        } => cp15(opc1, crn, crm, opc2, rt, read),
        Trap::Cp15Wide {
            opc1,
            crm,
            rt,
            rt2,
            read,
        } => cp15_wide(opc1, crm, rt, rt2, read),
        Trap::Cp14 {
            opc1,
            crn,
            crm,
            opc2,
            rt,
            read,
        } => coproc(ec::CP14_32, opc1, crn, crm, opc2, rt, read),
        Trap::Cp14Wide {
            opc1,
            crm,
            rt,
            rt2,
            read,
        } => coproc_wide(ec::CP14_64, opc1, crm, rt, rt2, read),
        Trap::Cp14Transfer => esr(ec::CP14_LS, COND_AL),
        Trap::DataAbort(d) => {
            let mut iss = u64::from(d.fault.fsc())
                | (u64::from(d.write) << 6)
                | (u64::from(d.s1ptw) << 7)
                | (u64::from(d.cache_maint) << 8)
                | (u64::from(d.ext_abort) << 9)
                | (u64::from(!d.far_valid) << 10);
            if let Some(a) = d.access {
                iss |= (1 << 24)
                    | (u64::from(a.size_bytes.trailing_zeros() & 3) << 22)
                    | (u64::from(a.sign_extend) << 21)
                    | (u64::from(a.rt & 0x1f) << 16)
                    | (u64::from(a.sixty_four) << 15)
                    | (u64::from(a.acq_rel) << 14);
            }
            return (esr(ec::DABT_LOW, iss), d.far, hpfar_for(d.ipa));
        }
        Trap::InstrAbort(i) => {
            let iss = u64::from(i.fault.fsc())
                | (u64::from(i.s1ptw) << 7)
                | (u64::from(!i.far_valid) << 10);
            return (esr(ec::IABT_LOW, iss), i.far, hpfar_for(i.ipa));
        }
        Trap::Unknown { ec, iss } => (u64::from(ec & 0x3f) << 26) | u64::from(iss & 0x1ff_ffff),
    };
    (e, 0, 0)
}

fn hpfar_for(ipa: u64) -> u64 {
    ((ipa >> 12) << 4) & 0x0000_ffff_ffff_fff0
}

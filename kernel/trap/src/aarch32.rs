//! AArch32 guest state as an AArch64 hypervisor sees it: which X register
//! holds a banked AArch32 register, and the Thumb IT state to advance when
//! the hypervisor completes a trapped instruction.

/// AArch32 processor modes (CPSR.M[4:0]).
pub mod mode {
    pub const USR: u8 = 0x10;
    pub const FIQ: u8 = 0x11;
    pub const IRQ: u8 = 0x12;
    pub const SVC: u8 = 0x13;
    pub const ABT: u8 = 0x17;
    pub const HYP: u8 = 0x1a;
    pub const UND: u8 = 0x1b;
    pub const SYS: u8 = 0x1f;
}

/// The X register that holds AArch32 register `rt` (0-15) in the mode of
/// `cpsr`, per the Arm ARM's mapping of AArch32 registers to AArch64 ones:
/// r8-r12 are banked for FIQ (X24-X28), SP and LR for each exception mode.
/// r15 (the PC) has no X register: `None`.
pub const fn xreg(rt: u8, cpsr: u64) -> Option<u8> {
    let m = (cpsr & 0x1f) as u8;
    Some(match rt {
        0..=7 => rt,
        8..=12 => {
            if m == mode::FIQ {
                rt + 16
            } else {
                rt
            }
        }
        13 => match m {
            mode::FIQ => 29,
            mode::IRQ => 17,
            mode::SVC => 19,
            mode::ABT => 21,
            mode::UND => 23,
            mode::HYP => 15,
            _ => 13,
        },
        14 => match m {
            mode::FIQ => 30,
            mode::IRQ => 16,
            mode::SVC => 18,
            mode::ABT => 20,
            mode::UND => 22,
            _ => 14,
        },
        _ => return None,
    })
}

/// `cpsr` with the Thumb IT state advanced past one instruction, as the
/// hardware does when an instruction in an IT block completes. IT[1:0] are
/// CPSR bits 26:25, IT[7:2] bits 15:10.
pub const fn advance_it(cpsr: u64) -> u64 {
    let it = ((cpsr >> 25) & 0b11) | (((cpsr >> 10) & 0x3f) << 2);
    if it == 0 {
        return cpsr;
    }
    let next = if it & 0b111 == 0 { 0 } else { (it & 0xe0) | ((it << 1) & 0x1f) };
    (cpsr & !((0b11 << 25) | (0x3f << 10))) | ((next & 0b11) << 25) | (((next >> 2) & 0x3f) << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpsr_with_it(it: u64) -> u64 {
        mode::SVC as u64 | (1 << 5) | ((it & 0b11) << 25) | (((it >> 2) & 0x3f) << 10)
    }

    fn it_of(cpsr: u64) -> u64 {
        ((cpsr >> 25) & 0b11) | (((cpsr >> 10) & 0x3f) << 2)
    }

    #[test]
    fn banked_registers() {
        let svc = mode::SVC as u64;
        assert_eq!(xreg(0, svc), Some(0));
        assert_eq!(xreg(12, svc), Some(12));
        assert_eq!(xreg(13, svc), Some(19));
        assert_eq!(xreg(14, svc), Some(18));
        assert_eq!(xreg(14, mode::ABT as u64), Some(20), "LR_abt is X20");
        assert_eq!(xreg(13, mode::UND as u64), Some(23));
        assert_eq!(xreg(8, mode::FIQ as u64), Some(24));
        assert_eq!(xreg(14, mode::FIQ as u64), Some(30));
        assert_eq!(xreg(13, mode::USR as u64), Some(13));
        assert_eq!(xreg(14, mode::SYS as u64), Some(14));
        assert_eq!(xreg(15, svc), None);
    }

    #[test]
    fn it_state_advances_and_ends() {
        // IT[7:0] = 0x06: condition EQ, three instructions left.
        let c = cpsr_with_it(0x06);
        let c1 = advance_it(c);
        assert_eq!(it_of(c1), 0x0c, "shifted left within IT[4:0]");
        let c2 = advance_it(c1);
        assert_eq!(it_of(c2), 0x18);
        let c3 = advance_it(c2);
        assert_eq!(it_of(c3), 0, "the block ends when IT[2:0] was 000");
        assert_eq!(c3 & 0x3f, c & 0x3f, "mode and T kept");
        assert_eq!(advance_it(mode::SVC as u64), mode::SVC as u64, "outside an IT block nothing changes");
    }
}

//! The instructions the oracle must see: cache maintenance and the system
//! register writes that change cacheability or translation, in the A64,
//! A32 and T32 encodings. A 32-bit word can decode in more than one
//! instruction set; the plugin asks QEMU's disassembler which one it is
//! (`Set::matches`).

use crate::Op;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    A64,
    A32,
    T32,
}

impl Set {
    /// Does QEMU's disassembly of the word say it is what we decoded?
    pub fn matches(self, insn: Insn, disas: &str) -> bool {
        let d = disas.trim_start().to_ascii_lowercase();
        match self {
            Set::A64 => match insn {
                Insn::DcVa { .. } | Insn::Zva { .. } | Insn::DcSw { .. } => d.starts_with("dc "),
                Insn::Write { .. } => d.starts_with("msr "),
                Insn::Tlbi => d.starts_with("tlbi") || d.starts_with("sys "),
                Insn::Context => d.starts_with("msr "),
            },
            Set::A32 | Set::T32 => d.starts_with("mcr"),
        }
    }
}

/// A system register whose value the oracle keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    SctlrEl1,
    SctlrEl2,
    HcrEl2,
    VbarEl2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// Data cache maintenance by address to the point of coherency.
    DcVa { op: Op, rt: u8 },
    /// `DC ZVA`.
    Zva { rt: u8 },
    /// Data cache maintenance by set/way.
    DcSw { op: Op, rt: u8 },
    /// A write of a register the oracle keeps.
    Write { reg: Reg, rt: u8 },
    /// A TLB invalidate.
    Tlbi,
    /// Another write that changes translation (TTBRs, TCR, VTTBR,
    /// CONTEXTIDR).
    Context,
}

/// Decode an A64 word.
pub fn a64(w: u32) -> Option<Insn> {
    if w >> 22 != 0b11_0101_0100 {
        return None;
    }
    let l = (w >> 21) & 1;
    let op0 = (w >> 19) & 3;
    let op1 = (w >> 16) & 7;
    let crn = (w >> 12) & 15;
    let crm = (w >> 8) & 15;
    let op2 = (w >> 5) & 7;
    let rt = (w & 31) as u8;
    if l != 0 {
        return None;
    }
    match (op0, crn) {
        (1, 7) => Some(match (op1, crm, op2) {
            (0, 6, 1) => Insn::DcVa { op: Op::Invalidate, rt },
            (0, 6, 2) => Insn::DcSw { op: Op::Invalidate, rt },
            (0, 10, 2) => Insn::DcSw { op: Op::Clean, rt },
            (0, 14, 2) => Insn::DcSw { op: Op::CleanInvalidate, rt },
            (3, 4, 1) => Insn::Zva { rt },
            (3, 10 | 12 | 13, 1) => Insn::DcVa { op: Op::Clean, rt },
            (3, 14, 1) => Insn::DcVa { op: Op::CleanInvalidate, rt },
            _ => return None,
        }),
        (1, 8) => Some(Insn::Tlbi),
        (3, 1) => match (op1, crm, op2) {
            (0, 0, 0) => Some(Insn::Write { reg: Reg::SctlrEl1, rt }),
            (4, 0, 0) => Some(Insn::Write { reg: Reg::SctlrEl2, rt }),
            (4, 1, 0) => Some(Insn::Write { reg: Reg::HcrEl2, rt }),
            _ => None,
        },
        (3, 12) if (op1, crm, op2) == (4, 0, 0) => Some(Insn::Write { reg: Reg::VbarEl2, rt }),
        // TTBR0/1, TCR, VTTBR, VTCR (not the TPIDRs, nor CONTEXTIDR, which
        // does not change an AArch64 translation).
        (3, 2) => Some(Insn::Context),
        _ => None,
    }
}

/// The coprocessor fields of an MCR: (opc1, CRn, Rt, opc2, CRm).
fn mcr_fields(opc1: u32, crn: u32, rt: u32, opc2: u32, crm: u32) -> Option<Insn> {
    let rt = rt as u8;
    match (crn, opc1, crm, opc2) {
        (7, 0, 6, 1) => Some(Insn::DcVa { op: Op::Invalidate, rt }),
        (7, 0, 6, 2) => Some(Insn::DcSw { op: Op::Invalidate, rt }),
        (7, 0, 10, 1) => Some(Insn::DcVa { op: Op::Clean, rt }),
        (7, 0, 10, 2) => Some(Insn::DcSw { op: Op::Clean, rt }),
        (7, 0, 14, 1) => Some(Insn::DcVa { op: Op::CleanInvalidate, rt }),
        (7, 0, 14, 2) => Some(Insn::DcSw { op: Op::CleanInvalidate, rt }),
        (8, ..) => Some(Insn::Tlbi),
        (1, 0, 0, 0) => Some(Insn::Write { reg: Reg::SctlrEl1, rt }),
        (1 | 2 | 13, ..) => Some(Insn::Context),
        _ => None,
    }
}

/// Decode an A32 word (MCR and MCRR to CP15 only).
pub fn a32(w: u32) -> Option<Insn> {
    if w >> 28 == 0xf {
        return None;
    }
    if w & 0x0f10_0f10 == 0x0e00_0f10 {
        return mcr_fields((w >> 21) & 7, (w >> 16) & 15, (w >> 12) & 15, (w >> 5) & 7, w & 15);
    }
    if w & 0x0ff0_0f00 == 0x0c40_0f00 {
        return Some(Insn::Context);
    }
    None
}

/// Decode a 32-bit T32 instruction, given as its first halfword in the
/// low 16 bits and its second in the high 16 (little-endian bytes).
pub fn t32(w: u32) -> Option<Insn> {
    let (hw1, hw2) = (w & 0xffff, w >> 16);
    if hw2 & 0x0f00 != 0x0f00 {
        return None;
    }
    if hw1 & 0xff10 == 0xee00 && hw2 & 0x0010 == 0x0010 {
        return mcr_fields((hw1 >> 5) & 7, hw1 & 15, hw2 >> 12, (hw2 >> 5) & 7, hw2 & 15);
    }
    if hw1 & 0xfff0 == 0xec40 {
        return Some(Insn::Context);
    }
    None
}

/// Every instruction set in which `w` decodes to something of interest.
pub fn candidates(w: u32) -> impl Iterator<Item = (Set, Insn)> {
    [(Set::A64, a64(w)), (Set::A32, a32(w)), (Set::T32, t32(w))]
        .into_iter()
        .filter_map(|(s, i)| i.map(|i| (s, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a64_cache_ops() {
        assert_eq!(a64(0xd50b_7e20), Some(Insn::DcVa { op: Op::CleanInvalidate, rt: 0 })); // dc civac, x0
        assert_eq!(a64(0xd50b_7a23), Some(Insn::DcVa { op: Op::Clean, rt: 3 })); // dc cvac, x3
        assert_eq!(a64(0xd508_7621), Some(Insn::DcVa { op: Op::Invalidate, rt: 1 })); // dc ivac, x1
        assert_eq!(a64(0xd50b_7428), Some(Insn::Zva { rt: 8 })); // dc zva, x8
        assert_eq!(a64(0xd508_7e42), Some(Insn::DcSw { op: Op::CleanInvalidate, rt: 2 })); // dc cisw, x2
        assert_eq!(a64(0xd508_7a42), Some(Insn::DcSw { op: Op::Clean, rt: 2 })); // dc csw, x2
        assert_eq!(a64(0xd508_7642), Some(Insn::DcSw { op: Op::Invalidate, rt: 2 })); // dc isw, x2
        assert_eq!(a64(0xd50b_7b20), None); // dc cvau: point of unification
        assert_eq!(a64(0xd508_871f), Some(Insn::Tlbi)); // tlbi vmalle1
    }

    #[test]
    fn a64_register_writes() {
        assert_eq!(a64(0xd518_1000), Some(Insn::Write { reg: Reg::SctlrEl1, rt: 0 })); // msr sctlr_el1, x0
        assert_eq!(a64(0xd51c_1001), Some(Insn::Write { reg: Reg::SctlrEl2, rt: 1 })); // msr sctlr_el2, x1
        assert_eq!(a64(0xd51c_1102), Some(Insn::Write { reg: Reg::HcrEl2, rt: 2 })); // msr hcr_el2, x2
        assert_eq!(a64(0xd51c_2100), Some(Insn::Context)); // msr vttbr_el2, x0
        assert_eq!(a64(0xd51c_c000), Some(Insn::Write { reg: Reg::VbarEl2, rt: 0 })); // msr vbar_el2, x0
        assert_eq!(a64(0xd538_1000), None); // mrs x0, sctlr_el1
        assert_eq!(a64(0xd51c_d040), None); // msr tpidr_el2, x0
        assert_eq!(a64(0xd503_201f), None); // nop
    }

    #[test]
    fn a32_and_t32_cp15() {
        assert_eq!(a32(0xee07_1f3a), Some(Insn::DcVa { op: Op::Clean, rt: 1 })); // mcr p15, 0, r1, c7, c10, 1
        assert_eq!(a32(0xee07_af5e), Some(Insn::DcSw { op: Op::CleanInvalidate, rt: 10 })); // mcr p15, 0, sl, c7, c14, 2
        assert_eq!(a32(0xee01_0f10), Some(Insn::Write { reg: Reg::SctlrEl1, rt: 0 })); // mcr p15, 0, r0, c1, c0, 0 (SCTLR)
        assert_eq!(a32(0xee02_0f10), Some(Insn::Context)); // mcr p15, 0, r0, c2, c0, 0 (TTBR0)
        assert_eq!(a32(0xec41_0f02), Some(Insn::Context)); // mcrr p15, 0, r0, r1, c2 (TTBR0)
        assert_eq!(a32(0xee11_0f10), None); // mrc
        assert_eq!(a32(0xfe07_1f3a), None); // mcr2
        // mcr p15, 0, r1, c7, c10, 1 in T32: ee07 1f3a as two halfwords.
        assert_eq!(t32(0x1f3a_ee07), Some(Insn::DcVa { op: Op::Clean, rt: 1 }));
    }

    #[test]
    fn disassembly_settles_the_instruction_set() {
        let w = 0xd50b_7a20; // dc cvac, x0 -- or ldrle r7, [fp, #-2592] in A32
        let c: Vec<_> = candidates(w).collect();
        assert_eq!(c.len(), 1);
        let (set, insn) = c[0];
        assert!(set.matches(insn, "dc cvac, x0"));
        assert!(!set.matches(insn, "ldrle r7, [fp, #-2592]"));
        assert!(Set::A32.matches(Insn::Context, "mcr 15, 0, r0, cr1, cr0, {0}"));
    }
}

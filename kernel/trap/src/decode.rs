//! ESR_EL2 / HSR decoding.

/// Exception class values (ESR bits `[31:26]`) that [`decode`] names.
pub mod ec {
    /// Unknown reason.
    pub const UNKNOWN: u8 = 0x00;
    /// WFI or WFE (HCR.TWI/TWE).
    pub const WFX: u8 = 0x01;
    /// AArch32 MCR/MRC to coprocessor 15.
    pub const CP15_32: u8 = 0x03;
    /// AArch32 MCRR/MRRC to coprocessor 15.
    pub const CP15_64: u8 = 0x04;
    /// AArch32 MCR/MRC to coprocessor 14 (debug, MDCR_EL2.TDA/TDOSA).
    pub const CP14_32: u8 = 0x05;
    /// AArch32 LDC/STC to coprocessor 14 (DBGDTRRXint/TXint transfers).
    pub const CP14_LS: u8 = 0x06;
    /// AArch32 MRRC to coprocessor 14 (DBGDRAR, DBGDSAR).
    pub const CP14_64: u8 = 0x0c;
    /// AArch32 HVC.
    pub const HVC32: u8 = 0x12;
    /// AArch32 SMC (HCR.TSC).
    pub const SMC32: u8 = 0x13;
    /// AArch64 HVC.
    pub const HVC64: u8 = 0x16;
    /// AArch64 SMC (HCR_EL2.TSC).
    pub const SMC64: u8 = 0x17;
    /// AArch64 MSR, MRS or system instruction.
    pub const SYS64: u8 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOW: u8 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOW: u8 = 0x24;
}

/// What a guest did to reach EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// HVC (EC 0x16, or 0x12 from AArch32). The PC already points past it.
    Hvc { imm: u16 },
    /// SMC trapped by TSC (EC 0x17, or 0x13 from AArch32). The PC points AT
    /// the SMC. AArch32 does not report the immediate, so `imm` is 0 there.
    Smc { imm: u16 },
    /// WFI (`wfe == false`) or WFE. WFIT/WFET decode as their base forms.
    Wfx { wfe: bool, timed: bool },
    /// Data cache maintenance by set/way (HCR.TSW). `rt` holds the set/way
    /// value; see [`sw_level`].
    SetWay { op: SwOp, rt: u8 },
    /// A virtual-memory control register access trapped by TVM (writes) or
    /// TRVM (reads). `rt2` is `Some` only for a 64-bit AArch32 MCRR/MRRC,
    /// where `rt` holds bits `[31:0]` and `rt2` bits `[63:32]`.
    VmReg {
        reg: VmReg,
        rt: u8,
        rt2: Option<u8>,
        write: bool,
    },
    /// Any other AArch64 MSR/MRS/system instruction (EC 0x18).
    SysReg {
        op0: u8,
        op1: u8,
        crn: u8,
        crm: u8,
        op2: u8,
        rt: u8,
        read: bool,
    },
    /// Any other AArch32 MCR/MRC p15 (EC 0x03).
    Cp15 {
        opc1: u8,
        crn: u8,
        crm: u8,
        opc2: u8,
        rt: u8,
        read: bool,
    },
    /// An AArch32 MCR/MRC p14 (EC 0x05): debug registers.
    Cp14 {
        opc1: u8,
        crn: u8,
        crm: u8,
        opc2: u8,
        rt: u8,
        read: bool,
    },
    /// An AArch32 MRRC/MCRR p14 (EC 0x0C).
    Cp14Wide {
        opc1: u8,
        crm: u8,
        rt: u8,
        rt2: u8,
        read: bool,
    },
    /// An AArch32 LDC/STC p14 (EC 0x06): a debug data transfer.
    Cp14Transfer,
    /// Any other AArch32 MCRR/MRRC p15 (EC 0x04).
    Cp15Wide {
        opc1: u8,
        crm: u8,
        rt: u8,
        rt2: u8,
        read: bool,
    },
    /// Data abort from the guest (EC 0x24).
    DataAbort(DataAbort),
    /// Instruction abort from the guest (EC 0x20).
    InstrAbort(InstrAbort),
    /// A class this crate does not decode.
    Unknown { ec: u8, iss: u32 },
}

/// Set/way data cache operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwOp {
    /// Invalidate (DC ISW, DCISW).
    Isw,
    /// Clean (DC CSW, DCCSW).
    Csw,
    /// Clean and invalidate (DC CISW, DCCISW).
    Cisw,
}

/// Registers trapped by HCR.TVM/TRVM. `*El1` names come from AArch64
/// guests (EC 0x18); the others from AArch32 guests (EC 0x03/0x04).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmReg {
    SctlrEl1,
    Ttbr0El1,
    Ttbr1El1,
    TcrEl1,
    EsrEl1,
    FarEl1,
    Afsr0El1,
    Afsr1El1,
    MairEl1,
    AmairEl1,
    ContextidrEl1,
    /// AArch32 SCTLR: c1, c0, 0.
    Sctlr,
    /// AArch32 TTBR0: c2, c0, 0 (32-bit) or MCRR opc1 0, c2 (64-bit).
    Ttbr0,
    /// AArch32 TTBR1: c2, c0, 1 (32-bit) or MCRR opc1 1, c2 (64-bit).
    Ttbr1,
    /// AArch32 TTBCR: c2, c0, 2.
    Ttbcr,
    /// AArch32 TTBCR2: c2, c0, 3 (ARMv8 only).
    Ttbcr2,
    /// AArch32 DACR: c3, c0, 0.
    Dacr,
    /// AArch32 DFSR: c5, c0, 0.
    Dfsr,
    /// AArch32 IFSR: c5, c0, 1.
    Ifsr,
    /// AArch32 ADFSR: c5, c1, 0.
    Adfsr,
    /// AArch32 AIFSR: c5, c1, 1.
    Aifsr,
    /// AArch32 DFAR: c6, c0, 0.
    Dfar,
    /// AArch32 IFAR: c6, c0, 2.
    Ifar,
    /// AArch32 PRRR / MAIR0: c10, c2, 0.
    Prrr,
    /// AArch32 NMRR / MAIR1: c10, c2, 1.
    Nmrr,
    /// AArch32 AMAIR0: c10, c3, 0.
    Amair0,
    /// AArch32 AMAIR1: c10, c3, 1.
    Amair1,
    /// AArch32 CONTEXTIDR: c13, c0, 1.
    Contextidr,
}

impl VmReg {
    /// Every register, AArch64 first.
    pub const ALL: [VmReg; 28] = [
        VmReg::SctlrEl1,
        VmReg::Ttbr0El1,
        VmReg::Ttbr1El1,
        VmReg::TcrEl1,
        VmReg::EsrEl1,
        VmReg::FarEl1,
        VmReg::Afsr0El1,
        VmReg::Afsr1El1,
        VmReg::MairEl1,
        VmReg::AmairEl1,
        VmReg::ContextidrEl1,
        VmReg::Sctlr,
        VmReg::Ttbr0,
        VmReg::Ttbr1,
        VmReg::Ttbcr,
        VmReg::Ttbcr2,
        VmReg::Dacr,
        VmReg::Dfsr,
        VmReg::Ifsr,
        VmReg::Adfsr,
        VmReg::Aifsr,
        VmReg::Dfar,
        VmReg::Ifar,
        VmReg::Prrr,
        VmReg::Nmrr,
        VmReg::Amair0,
        VmReg::Amair1,
        VmReg::Contextidr,
    ];

    /// True for the system control register of either width (where the
    /// guest turns its MMU and caches on and off).
    pub const fn is_sctlr(self) -> bool {
        matches!(self, VmReg::SctlrEl1 | VmReg::Sctlr)
    }

    /// True for the AArch64 (`*El1`) registers.
    pub const fn is_aarch64(self) -> bool {
        self.sys_encoding().is_some()
    }

    /// The register's architectural name.
    pub const fn name(self) -> &'static str {
        match self {
            VmReg::SctlrEl1 => "SCTLR_EL1",
            VmReg::Ttbr0El1 => "TTBR0_EL1",
            VmReg::Ttbr1El1 => "TTBR1_EL1",
            VmReg::TcrEl1 => "TCR_EL1",
            VmReg::EsrEl1 => "ESR_EL1",
            VmReg::FarEl1 => "FAR_EL1",
            VmReg::Afsr0El1 => "AFSR0_EL1",
            VmReg::Afsr1El1 => "AFSR1_EL1",
            VmReg::MairEl1 => "MAIR_EL1",
            VmReg::AmairEl1 => "AMAIR_EL1",
            VmReg::ContextidrEl1 => "CONTEXTIDR_EL1",
            VmReg::Sctlr => "SCTLR",
            VmReg::Ttbr0 => "TTBR0",
            VmReg::Ttbr1 => "TTBR1",
            VmReg::Ttbcr => "TTBCR",
            VmReg::Ttbcr2 => "TTBCR2",
            VmReg::Dacr => "DACR",
            VmReg::Dfsr => "DFSR",
            VmReg::Ifsr => "IFSR",
            VmReg::Adfsr => "ADFSR",
            VmReg::Aifsr => "AIFSR",
            VmReg::Dfar => "DFAR",
            VmReg::Ifar => "IFAR",
            VmReg::Prrr => "PRRR",
            VmReg::Nmrr => "NMRR",
            VmReg::Amair0 => "AMAIR0",
            VmReg::Amair1 => "AMAIR1",
            VmReg::Contextidr => "CONTEXTIDR",
        }
    }

    /// AArch64 encoding `(op0, op1, CRn, CRm, op2)`, or `None` for AArch32
    /// registers.
    pub const fn sys_encoding(self) -> Option<(u8, u8, u8, u8, u8)> {
        Some(match self {
            VmReg::SctlrEl1 => (3, 0, 1, 0, 0),
            VmReg::Ttbr0El1 => (3, 0, 2, 0, 0),
            VmReg::Ttbr1El1 => (3, 0, 2, 0, 1),
            VmReg::TcrEl1 => (3, 0, 2, 0, 2),
            VmReg::Afsr0El1 => (3, 0, 5, 1, 0),
            VmReg::Afsr1El1 => (3, 0, 5, 1, 1),
            VmReg::EsrEl1 => (3, 0, 5, 2, 0),
            VmReg::FarEl1 => (3, 0, 6, 0, 0),
            VmReg::MairEl1 => (3, 0, 10, 2, 0),
            VmReg::AmairEl1 => (3, 0, 10, 3, 0),
            VmReg::ContextidrEl1 => (3, 0, 13, 0, 1),
            _ => return None,
        })
    }

    /// AArch32 MCR/MRC encoding `(opc1, CRn, CRm, opc2)`, or `None` for
    /// AArch64 registers.
    pub const fn cp15_encoding(self) -> Option<(u8, u8, u8, u8)> {
        Some(match self {
            VmReg::Sctlr => (0, 1, 0, 0),
            VmReg::Ttbr0 => (0, 2, 0, 0),
            VmReg::Ttbr1 => (0, 2, 0, 1),
            VmReg::Ttbcr => (0, 2, 0, 2),
            VmReg::Ttbcr2 => (0, 2, 0, 3),
            VmReg::Dacr => (0, 3, 0, 0),
            VmReg::Dfsr => (0, 5, 0, 0),
            VmReg::Ifsr => (0, 5, 0, 1),
            VmReg::Adfsr => (0, 5, 1, 0),
            VmReg::Aifsr => (0, 5, 1, 1),
            VmReg::Dfar => (0, 6, 0, 0),
            VmReg::Ifar => (0, 6, 0, 2),
            VmReg::Prrr => (0, 10, 2, 0),
            VmReg::Nmrr => (0, 10, 2, 1),
            VmReg::Amair0 => (0, 10, 3, 0),
            VmReg::Amair1 => (0, 10, 3, 1),
            VmReg::Contextidr => (0, 13, 0, 1),
            _ => return None,
        })
    }

    /// AArch32 MCRR/MRRC encoding `(opc1, CRm)` for the 64-bit TTBRs.
    pub const fn cp15_wide_encoding(self) -> Option<(u8, u8)> {
        match self {
            VmReg::Ttbr0 => Some((0, 2)),
            VmReg::Ttbr1 => Some((1, 2)),
            _ => None,
        }
    }
}

/// A data abort (EC 0x24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// Faulting IPA: `HPFAR.FIPA << 12 | far[11:0]`. Only meaningful for a
    /// stage-2 fault (translation, access flag, permission or address size
    /// with `s1ptw` or not); otherwise HPFAR may be stale.
    pub ipa: u64,
    /// The guest virtual address (FAR/HDFAR). Not valid if `far_valid` is
    /// false.
    pub far: u64,
    /// FnV was clear: `far` holds the faulting address.
    pub far_valid: bool,
    /// WnR: the access was a write. Cache maintenance reports as a write.
    pub write: bool,
    /// The instruction syndrome, when ISV is set (single load or store to a
    /// general-purpose register): enough to emulate the access.
    pub access: Option<Access>,
    pub fault: FaultKind,
    /// The fault happened on the guest's stage-1 table walk.
    pub s1ptw: bool,
    /// CM: the access was a cache maintenance or address translation
    /// instruction, not a load or store. Never emulate it as MMIO.
    pub cache_maint: bool,
    /// EA: IMPLEMENTATION DEFINED external abort type.
    pub ext_abort: bool,
}

/// Instruction syndrome of a data abort with ISV set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// 1, 2, 4 or 8.
    pub size_bytes: u8,
    /// The transfer register (SRT).
    pub rt: u8,
    /// SSE: a load sign-extends.
    pub sign_extend: bool,
    /// SF: the register is 64-bit (X, not W). Always false from AArch32.
    pub sixty_four: bool,
    /// AR: acquire/release semantics.
    pub acq_rel: bool,
}

/// An instruction abort (EC 0x20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrAbort {
    /// Faulting IPA, meaningful under the same rule as [`DataAbort::ipa`].
    pub ipa: u64,
    pub far: u64,
    pub far_valid: bool,
    pub fault: FaultKind,
    pub s1ptw: bool,
}

/// The fault status code (DFSC/IFSC, long-descriptor format) in kinds.
/// Levels are 0..=3; the FEAT_LPA2 level -1 codes come out as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    AddressSize(u8),
    Translation(u8),
    AccessFlag(u8),
    Permission(u8),
    /// Synchronous external abort, not on a table walk (0x10).
    SyncExternal,
    /// Synchronous external abort on a table walk at a level (0x14..=0x17).
    SyncExternalWalk(u8),
    /// Alignment fault (0x21).
    Alignment,
    /// Any other code, as reported.
    Other(u8),
}

impl FaultKind {
    /// Classify a 6-bit status code.
    pub const fn from_fsc(fsc: u8) -> FaultKind {
        let fsc = fsc & 0x3f;
        let level = fsc & 3;
        match fsc >> 2 {
            0 => FaultKind::AddressSize(level),
            1 => FaultKind::Translation(level),
            2 => FaultKind::AccessFlag(level),
            3 => FaultKind::Permission(level),
            5 => FaultKind::SyncExternalWalk(level),
            _ if fsc == 0x10 => FaultKind::SyncExternal,
            _ if fsc == 0x21 => FaultKind::Alignment,
            _ => FaultKind::Other(fsc),
        }
    }

    /// The status code this kind came from.
    pub const fn fsc(self) -> u8 {
        match self {
            FaultKind::AddressSize(l) => l & 3,
            FaultKind::Translation(l) => 0x04 | (l & 3),
            FaultKind::AccessFlag(l) => 0x08 | (l & 3),
            FaultKind::Permission(l) => 0x0c | (l & 3),
            FaultKind::SyncExternalWalk(l) => 0x14 | (l & 3),
            FaultKind::SyncExternal => 0x10,
            FaultKind::Alignment => 0x21,
            FaultKind::Other(c) => c & 0x3f,
        }
    }

    /// A fault for which HPFAR holds the faulting IPA (stage-2 translation,
    /// access flag, permission or address size). Whether it really was a
    /// stage-2 fault is known only to the hypervisor, which owns stage 2.
    pub const fn ipa_valid(self) -> bool {
        matches!(
            self,
            FaultKind::AddressSize(_)
                | FaultKind::Translation(_)
                | FaultKind::AccessFlag(_)
                | FaultKind::Permission(_)
        )
    }
}

/// Exception class, ESR bits `[31:26]`.
pub const fn ec_of(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// Instruction-specific syndrome, ESR bits `[24:0]`.
pub const fn iss_of(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// IL, bit 25: the trapped instruction was 32 bits long. False means a
/// 16-bit Thumb instruction: advance the PC by 2 instead of 4.
pub const fn il_32bit(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

/// The level a set/way value names, 0-based (level 1 is 0): bits `[3:1]`.
pub const fn sw_level(value: u64) -> u8 {
    ((value >> 1) & 7) as u8
}

/// The IPA of a stage-2 fault: HPFAR.FIPA (bits `[47:4]`, IPA`[55:12]`) with
/// the page offset from FAR.
pub const fn fault_ipa(far: u64, hpfar: u64) -> u64 {
    ((hpfar & 0x0000_ffff_ffff_fff0) << 8) | (far & 0xfff)
}

/// Decode a syndrome taken from a guest at EL2.
///
/// `esr` is ESR_EL2, or an ARMv7 HSR zero-extended. `far` is FAR_EL2 (or
/// HDFAR/HIFAR), `hpfar` is HPFAR_EL2 (or HPFAR); both are used only for
/// aborts. Classes taken from EL2 itself (0x21, 0x25, ...) are `Unknown`.
pub fn decode(esr: u64, far: u64, hpfar: u64) -> Trap {
    let ec = ec_of(esr);
    let iss = iss_of(esr);
    match ec {
        // ISS.TI: 0b00 WFI, 0b01 WFE, 0b10 WFIT, 0b11 WFET.
        ec::WFX => Trap::Wfx { wfe: iss & 1 != 0, timed: iss & 2 != 0 },
        ec::CP15_32 => decode_cp15(iss),
        ec::CP15_64 => decode_cp15_wide(iss),
        ec::CP14_32 => Trap::Cp14 {
            opc1: bits(iss, 14, 3),
            crn: bits(iss, 10, 4),
            crm: bits(iss, 1, 4),
            opc2: bits(iss, 17, 3),
            rt: bits(iss, 5, 5),
            read: iss & 1 != 0,
        },
        ec::CP14_64 => Trap::Cp14Wide {
            opc1: bits(iss, 16, 4),
            crm: bits(iss, 1, 4),
            rt: bits(iss, 5, 5),
            rt2: bits(iss, 10, 5),
            read: iss & 1 != 0,
        },
        ec::CP14_LS => Trap::Cp14Transfer,
        ec::HVC32 | ec::HVC64 => Trap::Hvc { imm: iss as u16 },
        ec::SMC32 => Trap::Smc { imm: 0 },
        ec::SMC64 => Trap::Smc { imm: iss as u16 },
        ec::SYS64 => decode_sys64(iss),
        ec::IABT_LOW => Trap::InstrAbort(InstrAbort {
            ipa: fault_ipa(far, hpfar),
            far,
            far_valid: iss & (1 << 10) == 0,
            fault: FaultKind::from_fsc(iss as u8),
            s1ptw: iss & (1 << 7) != 0,
        }),
        ec::DABT_LOW => Trap::DataAbort(decode_dabt(iss, far, hpfar)),
        _ => Trap::Unknown { ec, iss },
    }
}

/// [`decode`] for ARMv7 HYP: HSR, HDFAR or HIFAR, HPFAR.
pub fn decode_hsr(hsr: u32, far: u32, hpfar: u32) -> Trap {
    decode(u64::from(hsr), u64::from(far), u64::from(hpfar))
}

fn bits(iss: u32, lo: u32, width: u32) -> u8 {
    ((iss >> lo) & ((1 << width) - 1)) as u8
}

fn decode_sys64(iss: u32) -> Trap {
    let op0 = bits(iss, 20, 2);
    let op2 = bits(iss, 17, 3);
    let op1 = bits(iss, 14, 3);
    let crn = bits(iss, 10, 4);
    let rt = bits(iss, 5, 5);
    let crm = bits(iss, 1, 4);
    let read = iss & 1 != 0;

    if op0 == 1 && op1 == 0 && crn == 7 && op2 == 2 && !read {
        if let Some(op) = sw_op(crm) {
            return Trap::SetWay { op, rt };
        }
    }
    // A direct match (the inverse of `VmReg::sys_encoding`, which a test
    // checks): this is on every TVM trap's path.
    let reg = match (op0, op1, crn, crm, op2) {
        (3, 0, 1, 0, 0) => Some(VmReg::SctlrEl1),
        (3, 0, 2, 0, 0) => Some(VmReg::Ttbr0El1),
        (3, 0, 2, 0, 1) => Some(VmReg::Ttbr1El1),
        (3, 0, 2, 0, 2) => Some(VmReg::TcrEl1),
        (3, 0, 5, 1, 0) => Some(VmReg::Afsr0El1),
        (3, 0, 5, 1, 1) => Some(VmReg::Afsr1El1),
        (3, 0, 5, 2, 0) => Some(VmReg::EsrEl1),
        (3, 0, 6, 0, 0) => Some(VmReg::FarEl1),
        (3, 0, 10, 2, 0) => Some(VmReg::MairEl1),
        (3, 0, 10, 3, 0) => Some(VmReg::AmairEl1),
        (3, 0, 13, 0, 1) => Some(VmReg::ContextidrEl1),
        _ => None,
    };
    if let Some(reg) = reg {
        return Trap::VmReg {
            reg,
            rt,
            rt2: None,
            write: !read,
        };
    }
    Trap::SysReg {
        op0,
        op1,
        crn,
        crm,
        op2,
        rt,
        read,
    }
}

fn sw_op(crm: u8) -> Option<SwOp> {
    match crm {
        6 => Some(SwOp::Isw),
        10 => Some(SwOp::Csw),
        14 => Some(SwOp::Cisw),
        _ => None,
    }
}

fn decode_cp15(iss: u32) -> Trap {
    let opc2 = bits(iss, 17, 3);
    let opc1 = bits(iss, 14, 3);
    let crn = bits(iss, 10, 4);
    let rt = bits(iss, 5, 5);
    let crm = bits(iss, 1, 4);
    let read = iss & 1 != 0;

    if opc1 == 0 && crn == 7 && opc2 == 2 && !read {
        if let Some(op) = sw_op(crm) {
            return Trap::SetWay { op, rt };
        }
    }
    let enc = (opc1, crn, crm, opc2);
    for reg in VmReg::ALL {
        if reg.cp15_encoding() == Some(enc) {
            return Trap::VmReg {
                reg,
                rt,
                rt2: None,
                write: !read,
            };
        }
    }
    Trap::Cp15 {
        opc1,
        crn,
        crm,
        opc2,
        rt,
        read,
    }
}

fn decode_cp15_wide(iss: u32) -> Trap {
    let opc1 = bits(iss, 16, 4);
    let rt2 = bits(iss, 10, 5);
    let rt = bits(iss, 5, 5);
    let crm = bits(iss, 1, 4);
    let read = iss & 1 != 0;
    for reg in [VmReg::Ttbr0, VmReg::Ttbr1] {
        if reg.cp15_wide_encoding() == Some((opc1, crm)) {
            return Trap::VmReg {
                reg,
                rt,
                rt2: Some(rt2),
                write: !read,
            };
        }
    }
    Trap::Cp15Wide {
        opc1,
        crm,
        rt,
        rt2,
        read,
    }
}

fn decode_dabt(iss: u32, far: u64, hpfar: u64) -> DataAbort {
    let access = if iss & (1 << 24) != 0 {
        Some(Access {
            size_bytes: 1 << bits(iss, 22, 2),
            sign_extend: iss & (1 << 21) != 0,
            rt: bits(iss, 16, 5),
            sixty_four: iss & (1 << 15) != 0,
            acq_rel: iss & (1 << 14) != 0,
        })
    } else {
        None
    };
    DataAbort {
        ipa: fault_ipa(far, hpfar),
        far,
        far_valid: iss & (1 << 10) == 0,
        write: iss & (1 << 6) != 0,
        access,
        fault: FaultKind::from_fsc(iss as u8),
        s1ptw: iss & (1 << 7) != 0,
        cache_maint: iss & (1 << 8) != 0,
        ext_abort: iss & (1 << 9) != 0,
    }
}

/// The classes whose ISS carries CV/COND when taken from AArch32.
const fn has_cond(ec: u8) -> bool {
    // WFx, cp15/cp14/cp10 and FP accesses; SMC adds CCKNOWNPASS. HVC is
    // unconditional.
    matches!(ec, 0x01 | 0x03..=0x08 | 0x0c | 0x13)
}

/// The condition code of a trapped AArch32 instruction, if the syndrome
/// gives a valid one (CV set). `None` also for classes without CV/COND.
pub const fn cond(esr: u64) -> Option<u8> {
    let iss = iss_of(esr);
    if has_cond(ec_of(esr)) && iss & (1 << 24) != 0 {
        Some(((iss >> 20) & 0xf) as u8)
    } else {
        None
    }
}

/// Whether a trapped instruction passed its condition check, given the
/// guest's CPSR/SPSR at the trap. If it failed, the kernel must skip it
/// (advance the PC, do nothing else). Always true for AArch64 traps (the
/// syndrome reports COND = AL, and `cpsr.M[4]` = 0 marks an AArch64 SPSR).
///
/// An AArch32 conditional instruction may trap even if its condition fails.
/// When CV is clear (Thumb), the condition comes from the IT state in
/// `cpsr`; with no IT block, the instruction is unconditional.
pub const fn cond_passed(esr: u64, cpsr: u64) -> bool {
    let ec = ec_of(esr);
    let iss = iss_of(esr);
    if !has_cond(ec) || cpsr & (1 << 4) == 0 {
        return true;
    }
    // SMC: CCKNOWNPASS clear means it passed (or was unconditional).
    if ec == ec::SMC32 && iss & (1 << 19) == 0 {
        return true;
    }
    let c = if iss & (1 << 24) != 0 {
        ((iss >> 20) & 0xf) as u8
    } else {
        // ITSTATE[7:2] = CPSR[15:10], ITSTATE[1:0] = CPSR[26:25].
        let it = ((cpsr >> 8) & 0xfc) | ((cpsr >> 25) & 3);
        if it == 0 {
            return true;
        }
        (it >> 4) as u8
    };
    cond_holds(c, cpsr)
}

/// Evaluate a 4-bit Arm condition against the NZCV flags in `cpsr`.
pub const fn cond_holds(cond: u8, cpsr: u64) -> bool {
    let n = cpsr & (1 << 31) != 0;
    let z = cpsr & (1 << 30) != 0;
    let c = cpsr & (1 << 29) != 0;
    let v = cpsr & (1 << 28) != 0;
    match cond & 0xf {
        0x0 => z,
        0x1 => !z,
        0x2 => c,
        0x3 => !c,
        0x4 => n,
        0x5 => !n,
        0x6 => v,
        0x7 => !v,
        0x8 => c && !z,
        0x9 => !c || z,
        0xa => n == v,
        0xb => n != v,
        0xc => !z && n == v,
        0xd => z || n != v,
        _ => true,
    }
}

//! # vsysreg: the guest's debug, PMU and auxiliary control registers
//!
//! A guest can name more EL1/EL0 registers than the hypervisor switches on
//! a vCPU switch. Those it does not switch are trapped (MDCR_EL2.TDA,
//! TDOSA, TDRA for debug; TPM, TPMCR for the PMU; HCR_EL2.TACR for ACTLR)
//! and land here: each vCPU gets a [`Shadow`] that stores what it writes
//! and reads it back, so a guest sees its own values and never another
//! guest's, and nothing it writes reaches the hardware.
//!
//! **Responsible for:** telling which trapped accesses are such registers
//! ([`classify`]), and their per-vCPU values with the reads a guest must
//! see: a PMU with no event counters (`PMCR.N = 0`), no debug events armed.
//!
//! **Not responsible for:** decoding the trap (the `trap` crate), reading
//! or writing the vCPU's general registers and advancing its PC (the
//! kernel), or real breakpoints and counters: a guest's hardware debugger
//! and `perf` see a machine without them.
//!
//! **Invariants:**
//! - a shadow holds at most [`CAPACITY`] registers; writes past that are
//!   ignored (a hostile guest cannot grow it);
//! - a read of a register never written returns its reset view (0, or the
//!   fixed bits below); no value ever comes from another shadow.
#![no_std]
#![forbid(unsafe_code)]

/// A trapped system register, as the instruction named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegId {
    /// AArch64 MSR/MRS: op0, op1, CRn, CRm, op2.
    Sys(u8, u8, u8, u8, u8),
    /// AArch32 MCR/MRC p15: opc1, CRn, CRm, opc2.
    Cp15(u8, u8, u8, u8),
    /// AArch32 MCRR/MRRC p15: opc1, CRm.
    Cp15Wide(u8, u8),
    /// AArch32 MCR/MRC p14: opc1, CRn, CRm, opc2.
    Cp14(u8, u8, u8, u8),
    /// AArch32 MCRR/MRRC p14: opc1, CRm.
    Cp14Wide(u8, u8),
}

/// Which group a shadowed register belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Debug,
    Pmu,
    AuxControl,
}

/// Registers one vCPU's shadow holds at most.
pub const CAPACITY: usize = 64;

/// The group of a trapped register, or `None` when it is none of ours
/// (the kernel then treats the access as unknown).
pub fn classify(id: RegId) -> Option<Class> {
    use Class::*;
    match id {
        // op0 = 2: debug (and trace) registers, EL0 and EL1 views.
        RegId::Sys(2, op1, ..) if op1 == 0 || op1 == 3 => Some(Debug),
        // PMU: PMCR_EL0 .. PMOVSSET_EL0, PMUSERENR_EL0.
        RegId::Sys(3, 3, 9, 12..=14, _) => Some(Pmu),
        // PMINTENSET_EL1, PMINTENCLR_EL1, PMMIR_EL1.
        RegId::Sys(3, 0, 9, 14, 1 | 2 | 6) => Some(Pmu),
        // PMEVCNTR<n>_EL0, PMEVTYPER<n>_EL0, PMCCFILTR_EL0.
        RegId::Sys(3, 3, 14, 8..=15, _) => Some(Pmu),
        // ACTLR_EL1.
        RegId::Sys(3, 0, 1, 0, 1) => Some(AuxControl),
        RegId::Cp15(0, 9, 12..=14, _) => Some(Pmu),
        RegId::Cp15(0, 14, 8..=15, _) => Some(Pmu),
        RegId::Cp15Wide(0, 9) => Some(Pmu), // PMCCNTR, 64 bits
        RegId::Cp15(0, 1, 0, 1 | 3) => Some(AuxControl), // ACTLR, ACTLR2
        RegId::Cp14(0, ..) | RegId::Cp14Wide(0, _) => Some(Debug),
        _ => None,
    }
}

fn key(id: RegId) -> u32 {
    let f = |t: u32, a: u8, b: u8, c: u8, d: u8, e: u8| {
        (t << 28) | (u32::from(a) << 20) | (u32::from(b) << 16) | (u32::from(c) << 8) | (u32::from(d) << 4) | u32::from(e)
    };
    match id {
        RegId::Sys(a, b, c, d, e) => f(0, a, b, c, d, e),
        RegId::Cp15(b, c, d, e) => f(1, 0, b, c, d, e),
        RegId::Cp15Wide(b, d) => f(2, 0, b, 0, d, 0),
        RegId::Cp14(b, c, d, e) => f(3, 0, b, c, d, e),
        RegId::Cp14Wide(b, d) => f(4, 0, b, 0, d, 0),
    }
}

/// PMCR_EL0 / PMCR: N (bits 15:11) reads as 0, so no event counters exist.
fn is_pmcr(id: RegId) -> bool {
    matches!(id, RegId::Sys(3, 3, 9, 12, 0) | RegId::Cp15(0, 9, 12, 0))
}
const PMCR_N: u64 = 0x1f << 11;

/// One vCPU's shadow registers.
#[derive(Clone, Debug, Default)]
pub struct Shadow {
    regs: heapless::LinearMap<u32, u64, CAPACITY>,
}

impl Shadow {
    pub const fn new() -> Self {
        Shadow { regs: heapless::LinearMap::new() }
    }

    /// What the guest reads: its last write, or the reset view.
    pub fn read(&self, id: RegId) -> u64 {
        let v = self.regs.get(&key(id)).copied().unwrap_or(0);
        if is_pmcr(id) {
            v & !PMCR_N
        } else {
            v
        }
    }

    /// Store a write. Returns false when the shadow is full and the write
    /// was dropped.
    pub fn write(&mut self, id: RegId, value: u64) -> bool {
        let v = if is_pmcr(id) { value & !PMCR_N } else { value };
        self.regs.insert(key(id), v).is_ok()
    }

    /// Back to the reset view (a vCPU reset).
    pub fn clear(&mut self) {
        self.regs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DBGBVR0_EL1: RegId = RegId::Sys(2, 0, 0, 0, 4);
    const PMEVTYPER0_EL0: RegId = RegId::Sys(3, 3, 14, 12, 0);
    const PMCR_EL0: RegId = RegId::Sys(3, 3, 9, 12, 0);

    #[test]
    fn classes() {
        assert_eq!(classify(DBGBVR0_EL1), Some(Class::Debug));
        assert_eq!(classify(RegId::Sys(2, 0, 0, 2, 2)), Some(Class::Debug)); // MDSCR_EL1
        assert_eq!(classify(RegId::Sys(2, 0, 1, 0, 4)), Some(Class::Debug)); // OSLAR_EL1
        assert_eq!(classify(PMEVTYPER0_EL0), Some(Class::Pmu));
        assert_eq!(classify(PMCR_EL0), Some(Class::Pmu));
        assert_eq!(classify(RegId::Sys(3, 3, 14, 15, 7)), Some(Class::Pmu)); // PMCCFILTR_EL0
        assert_eq!(classify(RegId::Sys(3, 0, 1, 0, 1)), Some(Class::AuxControl));
        assert_eq!(classify(RegId::Cp15(0, 9, 12, 0)), Some(Class::Pmu));
        assert_eq!(classify(RegId::Cp14(0, 0, 0, 4)), Some(Class::Debug)); // DBGBVR0
        // Not ours: SCTLR_EL1, a cache op, an ID register.
        assert_eq!(classify(RegId::Sys(3, 0, 1, 0, 0)), None);
        assert_eq!(classify(RegId::Sys(1, 0, 7, 14, 2)), None);
        assert_eq!(classify(RegId::Sys(3, 0, 0, 1, 0)), None);
    }

    #[test]
    fn each_shadow_reads_its_own_writes() {
        let (mut a, mut b) = (Shadow::new(), Shadow::new());
        assert_eq!(a.read(DBGBVR0_EL1), 0);
        assert!(a.write(DBGBVR0_EL1, 0xaaaa));
        assert!(b.write(DBGBVR0_EL1, 0xbbbb));
        assert!(a.write(PMEVTYPER0_EL0, 0x8000_0008));
        assert_eq!(a.read(DBGBVR0_EL1), 0xaaaa);
        assert_eq!(b.read(DBGBVR0_EL1), 0xbbbb);
        assert_eq!(b.read(PMEVTYPER0_EL0), 0);
        a.clear();
        assert_eq!(a.read(DBGBVR0_EL1), 0);
    }

    #[test]
    fn the_pmu_has_no_counters() {
        let mut s = Shadow::new();
        assert!(s.write(PMCR_EL0, 0x4100_f841));
        assert_eq!(s.read(PMCR_EL0) & PMCR_N, 0);
        assert_eq!(s.read(PMCR_EL0), 0x4100_0041);
    }

    #[test]
    fn a_full_shadow_drops_writes_and_keeps_what_it_has() {
        let mut s = Shadow::new();
        let id = |i: usize| RegId::Cp14(0, (i / 16) as u8, (i % 16) as u8, 4);
        for i in 0..CAPACITY {
            assert!(s.write(id(i), i as u64));
        }
        assert!(!s.write(RegId::Cp14(0, 7, 0, 4), 7));
        assert_eq!(s.read(RegId::Cp14(0, 7, 0, 4)), 0);
        assert_eq!(s.read(RegId::Cp14(0, 0, 5, 4)), 5);
        // Overwriting a held register still works.
        assert!(s.write(RegId::Cp14(0, 0, 5, 4), 9));
        assert_eq!(s.read(RegId::Cp14(0, 0, 5, 4)), 9);
    }
}

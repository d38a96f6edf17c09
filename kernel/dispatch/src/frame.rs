//! The trapped vCPU's general registers, as the entry code saves them.

/// The lower EL's general registers and return state. The layout is the
/// one the AArch64 vectors save (`repr(C)`, 272 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub pad: u64,
}
const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

impl TrapFrame {
    /// Register `n` (31 reads as zero, as XZR).
    pub fn reg(&self, n: u8) -> u64 {
        if n < 31 { self.x[n as usize] } else { 0 }
    }

    /// Write register `n` (writes to 31, XZR, are dropped).
    pub fn set_reg(&mut self, n: u8, v: u64) {
        if n < 31 {
            self.x[n as usize] = v;
        }
    }

    /// Whether the guest trapped from AArch32.
    pub fn aarch32(&self) -> bool {
        self.spsr & (1 << 4) != 0
    }

    /// The X register a trapped instruction's Rt names: itself for an
    /// AArch64 guest; for an AArch32 one, the X register holding that
    /// (possibly banked) AArch32 register in the current mode. r15 reads as
    /// the zero register.
    fn guest_x(&self, rt: u8) -> u8 {
        if self.aarch32() {
            trap::aarch32::xreg(rt, self.spsr).unwrap_or(31)
        } else {
            rt
        }
    }

    /// A trapped instruction's register operand `rt`.
    pub fn guest_reg(&self, rt: u8) -> u64 {
        self.reg(self.guest_x(rt))
    }

    /// Write a trapped load's result to its register `rt`.
    pub fn set_guest_reg(&mut self, rt: u8, v: u64) {
        let x = self.guest_x(rt);
        self.set_reg(x, v)
    }

    /// Advance the guest PC past the trapped instruction whose syndrome is
    /// `esr` (and, for AArch32 Thumb code in an IT block, its IT state).
    pub fn skip(&mut self, esr: u64) {
        self.elr += if trap::il_32bit(esr) { 4 } else { 2 };
        if self.aarch32() {
            self.spsr = trap::aarch32::advance_it(self.spsr);
        }
    }
}

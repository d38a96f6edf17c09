//! The pCPU the dispatch runs on, as `dispatch` names it: [`Kernel`] (its
//! `Platform` implementation is in `glue.rs`) and a vCPU's register
//! context while it does not run ([`Ctx`]).

use crate::arch::el1::El1Regs;
use crate::arch::FpRegs;

/// The pCPU running the dispatch (all of its state is in registers).
pub struct Kernel;

/// A vCPU's registers outside the trap frame.
pub struct Ctx {
    pub el1: El1Regs,
    pub fp: FpRegs,
    /// GICH_VMCR and GICH_APR: the guest's virtual CPU interface state.
    pub vmcr: u32,
    pub apr: u32,
}

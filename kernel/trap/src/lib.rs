//! # trap: what a guest exception means, and the guest hypercall ABI
//!
//! **Responsible for:**
//! - decoding the syndrome of an exception taken from a guest to EL2 (ESR_EL2
//!   on AArch64, HSR on ARMv7 HYP) into a typed [`Trap`], for AArch64 and
//!   AArch32 guests ([`decode`]);
//! - the condition-code and instruction-length rules the kernel needs to skip
//!   or retire a trapped instruction ([`cond_passed`], [`il_32bit`]);
//! - defining THE guest hypercall ABI and classifying calls ([`hypercall`]).
//!
//! **Not responsible for:** reading system registers, saving guest context,
//! advancing the PC, emulating anything, or deciding what a trap should do
//! (that is `dispatch` and the components). It never touches hardware.
//!
//! **Invariants:**
//! - [`decode`] is total: every `(esr, far, hpfar)` gives a `Trap` without
//!   panicking. A class or encoding this crate does not name becomes
//!   [`Trap::Unknown`], [`Trap::SysReg`], [`Trap::Cp15`] or
//!   [`Trap::Cp15Wide`], never a wrong specific variant.
//! - A register number (`rt`, `rt2`, `Access::rt`) is exactly the number the
//!   syndrome reports. From an AArch32 guest to an AArch64 EL2, that is the
//!   AArch64 view of the register (R0-R12 are X0-X12; banked SP/LR map to
//!   other X registers by mode). On AArch64, 31 means XZR.
//!
//! ## ARMv7 HSR
//! ARMv7's HSR has the same EC/IL/ISS layout as ESR_EL2 for the classes a
//! guest can cause here (0x00, 0x01, 0x03, 0x04, 0x12, 0x13, 0x20, 0x24), and
//! HPFAR has the same FIPA field at bits `[31:4]`. So [`decode`] takes an HSR
//! zero-extended to `u64`, with HDFAR/HIFAR as `far`. [`decode_hsr`] is the
//! same call with 32-bit arguments. Classes that exist only on AArch64 (0x16,
//! 0x17, 0x18) cannot appear in an HSR.
//!
//! ## The guest ABI
//! See [`hypercall`]: `HVC #0`, function id in x0/r0, SMCCC fast calls in the
//! "standard hypervisor service" range, plus PSCI 0.2+.
#![no_std]
#![forbid(unsafe_code)]

pub mod aarch32;
mod decode;
pub mod hypercall;

#[cfg(any(test, feature = "encode"))]
mod encode;

pub use decode::*;
#[cfg(any(test, feature = "encode"))]
pub use encode::{encode, Width};

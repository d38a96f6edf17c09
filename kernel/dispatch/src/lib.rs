//! # dispatch: the trap path and the run loop, over an arch trait
//!
//! **Responsible for:**
//! - routing a guest's synchronous trap ([`Hyp::trap`]): decode the
//!   syndrome (`trap`), hand it to the component that owns it (stage-2
//!   pager, PoD, cache-maintenance service, scheduler, vCPU shadow
//!   registers, the guest's emulated devices, PSCI), and apply the reply
//!   to the guest's registers and the scheduler;
//! - the run-loop decision on each pCPU ([`Hyp::step`]): which vCPU runs,
//!   saving and loading vCPUs, one bounded slice of a pending clean at a
//!   time, restarts and stops of whole VMs;
//! - the per-VM state those need ([`Vm`], [`Vcpu`]).
//!
//! **Not responsible for:** anything that touches hardware. The
//! [`Platform`] trait is that boundary: system registers, the GIC, the
//! console, memory, power. The kernel implements it over the real machine
//! (`kernel/src/glue.rs`); host tests over the cache and TLB models
//! (`tests/`). Building a VM (images, device trees, memory) is the
//! platform's too. Interrupt routing and console input stay in the kernel.
//!
//! **Invariants:**
//! - A vCPU's registers live in exactly one place: a pCPU's registers
//!   (`Hyp::loaded`) or its [`Vcpu`] record. A vCPU whose registers are
//!   still loaded on another pCPU is never loaded ([`Step::Wait`]).
//! - A vCPU never enters while its VM has a clean pending that it must
//!   wait for (`cache_maint::CacheMaint::may_run`); the clean runs in
//!   slices between which the platform takes interrupts.
//! - A vCPU enters with the HCR its VM's cache-maintenance state asks for.
//! - A vCPU blocked in WFI is woken by every virtual interrupt raised for
//!   it ([`Hyp::kick_vcpus`]) and by its timer's deadline
//!   ([`Hyp::wake_due`]); only a WFI block is ever woken that way (a vCPU
//!   that is off stays off).
//! - A vCPU of a stopped VM, or of one waiting for its restart, never
//!   enters again; a restart happens only once no pCPU holds its vCPUs.
//! - Locks are per VM, plus one short global lock for the scheduler (see
//!   [`hyp`]): work on one VM never waits for work on another.
//! - The components touch only the VM's own memory: every hardware value
//!   they get is `hwops::Scoped` to [`Vm::memory`], and a refusal stops the
//!   VM with a line.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod frame;
pub mod hyp;
pub mod platform;
pub mod traps;
pub mod vm;

pub use frame::TrapFrame;
pub use hyp::{Core, Hyp, Step, VmGuard, MAX_PCPUS};
pub use platform::{AbortKind, Devices, GuestEvent, NoDevices, NullOut, Out, Platform, Prof, Remap, TimerWake};
pub use traps::Syndrome;
pub use vm::{Counters, Power, Vcpu, Vm};

//! AArch64 pieces: entry and vectors, hypercall instructions, system
//! registers, the stage-1 MMU, set/way maintenance and the PMU.

use core::arch::{asm, global_asm};

use crate::abi;

global_asm!(include_str!("start.s"));

pub const PSCI_CPU_ON: u32 = abi::psci::CPU_ON_64;
pub const PSCI_AFFINITY_INFO: u32 = abi::psci::AFFINITY_INFO_64;

/// HVC with up to three arguments; returns x0.
pub fn hvc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: a hypercall to our hypervisor; it preserves memory and
    // registers other than x0-x3.
    unsafe {
        asm!("hvc #0", inlateout("x0") fid => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, options(nostack))
    }
    r
}

/// SMC with up to three arguments (PSCI's SMC conduit); returns x0.
pub fn smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: as `hvc`; the hypervisor traps SMC (HCR_EL2.TSC).
    unsafe {
        asm!("smc #0", inlateout("x0") fid => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, options(nostack))
    }
    r
}

#[unsafe(no_mangle)]
extern "C" fn guest_exception64(kind: u64, esr: u64, far: u64, elr: u64) -> u64 {
    crate::guest_exception(kind, esr, far, elr)
}

// ---- system registers ----

#[macro_export]
macro_rules! mrs {
    ($r:literal) => {{
        let v: u64;
        // SAFETY: reading a system register.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $r), out(reg) v) };
        v
    }};
}
#[macro_export]
macro_rules! msr {
    ($r:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the guest owns its EL1 state.
        unsafe { core::arch::asm!(concat!("msr ", $r, ", {}"), "isb", in(reg) v) };
    }};
}

// ---- stage-1 MMU ----

#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut L1: Table = Table([0; 512]);

const SCTLR_RES1: u64 = 0x30d0_0800;
pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;
pub const SCTLR_I: u64 = 1 << 12;

/// Identity-map the first 4 GiB with 1 GiB blocks (0-1 GiB device, the
/// rest normal write-back) and turn the MMU and caches on.
pub fn mmu_on() {
    let l1 = core::ptr::addr_of_mut!(L1) as *mut u64;
    for i in 0..4u64 {
        let attr = if i == 0 { 0 << 2 } else { (1 << 2) | (3 << 8) };
        // SAFETY: L1 is ours, 512 entries; only the first four are written.
        unsafe { l1.add(i as usize).write_volatile((i << 30) | attr | (1 << 10) | 1) };
    }
    msr!("mair_el1", 0x04 | (0xff << 8));
    // T0SZ=25, WBWA, inner shareable, 4K, EPD1, IPS=40 bits.
    msr!("tcr_el1", 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32));
    msr!("ttbr0_el1", l1 as u64);
    // SAFETY: TLB invalidation for this guest.
    unsafe { asm!("dsb ish", "tlbi vmalle1", "dsb ish", "isb") };
    set_sctlr(SCTLR_M | SCTLR_C | SCTLR_I);
}

pub fn set_sctlr(bits: u64) {
    msr!("sctlr_el1", SCTLR_RES1 | bits);
}

pub fn sctlr() -> u64 {
    mrs!("sctlr_el1")
}

// ---- set/way primitives (the loop is in lib.rs) ----

pub(crate) fn clidr() -> u32 {
    mrs!("clidr_el1") as u32
}

/// CCSIDR of data/unified cache `level` (0-based).
pub(crate) fn ccsidr(level: u32) -> u32 {
    msr!("csselr_el1", (level as u64) << 1);
    mrs!("ccsidr_el1") as u32
}

pub(crate) fn set_way(op: crate::SwOp, v: u32) {
    let v = v as u64;
    // SAFETY: set/way maintenance only changes cache state.
    unsafe {
        match op {
            crate::SwOp::Isw => asm!("dc isw, {}", in(reg) v),
            crate::SwOp::Csw => asm!("dc csw, {}", in(reg) v),
            crate::SwOp::Cisw => asm!("dc cisw, {}", in(reg) v),
        }
    }
}

pub(crate) fn barrier() {
    // SAFETY: barriers.
    unsafe { asm!("dsb sy", "isb") };
}

// ---- PMU: instructions retired, counting EL2 too (benchmarks) ----

/// Start counting INST_RETIRED (event 0x08) on counter 0, at EL1 and EL2.
pub fn pmu_start() {
    msr!("pmselr_el0", 0);
    // NSH (bit 27) = count at EL2.
    msr!("pmxevtyper_el0", 0x08 | (1 << 27));
    msr!("pmcntenset_el0", 1);
    msr!("pmcr_el0", 1 | (1 << 1)); // enable, reset event counters
}

pub fn pmu_read() -> u64 {
    msr!("pmselr_el0", 0);
    mrs!("pmxevcntr_el0")
}

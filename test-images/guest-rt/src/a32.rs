//! AArch32 (ARMv7-A with LPAE) pieces: entry and vectors, hypercall
//! instructions, CP15 registers, a long-descriptor stage-1 map, and the
//! DCISW/DCCSW/DCCISW set/way primitives.

use core::arch::{asm, global_asm};

use crate::abi;

global_asm!(include_str!("start32.s"));

pub const PSCI_CPU_ON: u32 = abi::psci::CPU_ON_32;
pub const PSCI_AFFINITY_INFO: u32 = abi::psci::AFFINITY_INFO_32;

/// HVC with up to three arguments; returns r0.
pub fn hvc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u32;
    // SAFETY: a hypercall to our hypervisor; it preserves memory and
    // registers other than r0-r3.
    unsafe {
        asm!(".arch_extension virt", "hvc #0", inlateout("r0") fid as u32 => r, inlateout("r1") a1 as u32 => _,
             inlateout("r2") a2 as u32 => _, inlateout("r3") a3 as u32 => _, options(nostack))
    }
    r as i32 as i64 as u64
}

/// SMC with up to three arguments (PSCI's SMC conduit); returns r0.
pub fn smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u32;
    // SAFETY: as `hvc`; the hypervisor traps SMC (HCR_EL2.TSC).
    unsafe {
        asm!(".arch_extension sec", "smc #0", inlateout("r0") fid as u32 => r, inlateout("r1") a1 as u32 => _,
             inlateout("r2") a2 as u32 => _, inlateout("r3") a3 as u32 => _, options(nostack))
    }
    r as i32 as i64 as u64
}

#[unsafe(no_mangle)]
extern "C" fn guest_exception32(kind: u32, dfsr: u32, dfar: u32, pc: u32) -> u32 {
    crate::guest_exception(kind as u64, (0x25 << 26) | dfsr as u64, dfar as u64, pc as u64) as u32
}

#[unsafe(no_mangle)]
extern "C" fn guest_bad_exception32(kind: u32, lr: u32) -> ! {
    crate::println!("guest: unexpected exception vector {} lr={:#x}", kind, lr);
    crate::exit(9)
}

macro_rules! cp15_read {
    ($op1:literal, $crn:literal, $crm:literal, $op2:literal) => {{
        let v: u32;
        // SAFETY: reading a CP15 register.
        unsafe { asm!(concat!("mrc p15, ", $op1, ", {}, c", $crn, ", c", $crm, ", ", $op2), out(reg) v) };
        v
    }};
}
macro_rules! cp15_write {
    ($op1:literal, $crn:literal, $crm:literal, $op2:literal, $v:expr) => {{
        let v: u32 = $v;
        // SAFETY: the guest owns its EL1 state.
        unsafe { asm!(concat!("mcr p15, ", $op1, ", {}, c", $crn, ", c", $crm, ", ", $op2), "isb", in(reg) v) };
    }};
}

pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;
pub const SCTLR_I: u64 = 1 << 12;
const SCTLR_KEEP: u32 = !((SCTLR_M | SCTLR_C | SCTLR_I) as u32);

#[repr(C, align(4096))]
struct Table([u64; 4]);
static mut L1: Table = Table([0; 4]);

/// LPAE: identity-map 4 GiB with 1 GiB blocks (0-1 GiB device, the rest
/// normal write-back), then MMU and caches on. Every register written here
/// traps to the hypervisor while TVM is on.
pub fn mmu_on() {
    let l1 = core::ptr::addr_of_mut!(L1) as *mut u64;
    for i in 0..4u64 {
        let attr = if i == 0 { 0 << 2 } else { (1 << 2) | (3 << 8) };
        // SAFETY: L1 is ours; four entries.
        unsafe { l1.add(i as usize).write_volatile((i << 30) | attr | (1 << 10) | 1) };
    }
    cp15_write!(0, 10, 2, 0, 0xff04); // MAIR0: attr0 device, attr1 normal WB
    cp15_write!(0, 10, 2, 1, 0); // MAIR1
    // TTBCR: EAE, T0SZ=0, inner shareable, WBWA.
    cp15_write!(0, 2, 0, 2, (1 << 31) | (3 << 12) | (1 << 10) | (1 << 8));
    // TTBR0, 64-bit.
    // SAFETY: the table is ours and identity-mapped.
    unsafe { asm!("mcrr p15, 0, {}, {}, c2", "isb", in(reg) l1 as u32, in(reg) 0u32) };
    // SAFETY: TLB invalidate all (TLBIALL).
    unsafe { asm!("dsb", "mcr p15, 0, {}, c8, c7, 0", "dsb", "isb", in(reg) 0u32) };
    set_sctlr(SCTLR_M | SCTLR_C | SCTLR_I);
}

pub fn sctlr() -> u64 {
    cp15_read!(0, 1, 0, 0) as u64
}

/// Set M, C and I as given, keeping SCTLR's other bits.
pub fn set_sctlr(bits: u64) {
    cp15_write!(0, 1, 0, 0, (sctlr() as u32 & SCTLR_KEEP) | bits as u32);
}

pub(crate) fn clidr() -> u32 {
    cp15_read!(1, 0, 0, 1)
}

/// CCSIDR of data/unified cache `level` (0-based), through CSSELR.
pub(crate) fn ccsidr(level: u32) -> u32 {
    cp15_write!(2, 0, 0, 0, level << 1);
    cp15_read!(1, 0, 0, 0)
}

/// DCISW, DCCSW or DCCISW.
pub(crate) fn set_way(op: crate::SwOp, v: u32) {
    // SAFETY: set/way maintenance only changes cache state.
    unsafe {
        match op {
            crate::SwOp::Isw => asm!("mcr p15, 0, {}, c7, c6, 2", in(reg) v),
            crate::SwOp::Csw => asm!("mcr p15, 0, {}, c7, c10, 2", in(reg) v),
            crate::SwOp::Cisw => asm!("mcr p15, 0, {}, c7, c14, 2", in(reg) v),
        }
    }
}

pub(crate) fn barrier() {
    // SAFETY: barriers.
    unsafe { asm!("dsb", "isb") };
}

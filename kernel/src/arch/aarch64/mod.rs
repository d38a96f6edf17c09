//! AArch64 EL2: entry, vectors, system registers, barriers, cache and TLB
//! maintenance, the EL2 MMU, and PSCI calls to the firmware.

use core::arch::{asm, global_asm};

pub mod el1;
pub mod mmu;
pub mod spsr32;

global_asm!(include_str!("boot.s"));

/// Read a system register.
macro_rules! sysreg_read {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register has no memory side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}
/// Write a system register (followed by no barrier: callers add `isb`).
macro_rules! sysreg_write {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: callers only write registers that control the guest context
        // or EL2 state they own; effects are documented at each call site.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
    }};
}
pub(crate) use sysreg_read;
pub(crate) use sysreg_write;

pub use dispatch::TrapFrame;

/// A vCPU's FP/SIMD registers (the kernel itself never uses them).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpRegs {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

impl Default for FpRegs {
    fn default() -> Self {
        FpRegs { q: [0; 32], fpcr: 0, fpsr: 0 }
    }
}

impl FpRegs {
    pub fn save(&mut self) {
        // SAFETY: writes exactly size_of::<FpRegs>() bytes into `self`.
        unsafe { fp_save(self) }
    }
    pub fn restore(&self) {
        // SAFETY: reads exactly size_of::<FpRegs>() bytes from `self`.
        unsafe { fp_restore(self) }
    }
}

unsafe extern "C" {
    fn fp_save(regs: *mut FpRegs);
    fn fp_restore(regs: *const FpRegs);
    fn enter_frame(frame: *mut TrapFrame) -> !;
    static el2_vectors: u8;
    static __stacks_start: u8;
    static __image_start: u8;
    static __image_end: u8;
    fn _secondary_start();
    fn _spin_start();
    fn _spin_park();
}

pub const STACK_SIZE: u64 = 0x40000;

/// The trap frame slot at the top of pCPU `cpu`'s EL2 stack.
pub fn frame_slot(cpu: usize) -> *mut TrapFrame {
    let base = core::ptr::addr_of!(__stacks_start) as u64;
    (base + (cpu as u64 + 1) * STACK_SIZE - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame
}

/// Run the guest whose state is in `frame`; never returns (traps come back
/// through the vectors).
pub fn enter_guest(cpu: usize, frame: &TrapFrame) -> ! {
    let slot = frame_slot(cpu);
    // SAFETY: `slot` is this pCPU's own frame slot at the top of its stack;
    // after the copy the Rust stack below it is abandoned by `enter_frame`.
    unsafe {
        slot.write(*frame);
        enter_frame(slot)
    }
}

/// The hypervisor image's physical range.
pub fn image_range() -> (u64, u64) {
    (core::ptr::addr_of!(__image_start) as u64, core::ptr::addr_of!(__image_end) as u64)
}

pub fn secondary_entry() -> u64 {
    _secondary_start as *const () as usize as u64
}

/// The MPIDR affinity (Aff2..Aff0) of each pCPU index, for `_spin_start`,
/// which reads it with its MMU off. Unused slots hold an impossible value.
#[unsafe(no_mangle)]
static mut CPU_MPIDRS: [u64; 8] = [u64::MAX; 8];

/// Record pCPU `cpu`'s MPIDR for `_spin_start`. Called by pCPU 0 with its
/// MMU off, before any release, so the store is in memory.
pub fn set_cpu_mpidr(cpu: usize, mpidr: u64) {
    let slot = core::ptr::addr_of_mut!(CPU_MPIDRS);
    if cpu < 8 {
        // SAFETY: only pCPU 0 writes it, before any secondary starts.
        unsafe { (*slot)[cpu] = mpidr & 0xff_ffff };
    }
}

/// MAIR, TCR, TTBR0 and SCTLR of EL2 for `_secondary_start`, which reads
/// them with its MMU off.
#[unsafe(no_mangle)]
static mut SECONDARY_MMU: [u64; 4] = [0; 4];

/// Leave the EL2 MMU registers for the secondaries, cleaned to the PoC.
/// Called by pCPU 0 once, before it starts any.
pub fn set_secondary_mmu(regs: [u64; 4]) {
    let slot = core::ptr::addr_of_mut!(SECONDARY_MMU);
    // SAFETY: only pCPU 0 writes it, before any secondary starts.
    unsafe { slot.write_volatile(regs) };
    // SAFETY: the slot is this image's own static, mapped at EL2, and just
    // written (cleaned to memory, not discarded).
    unsafe { dc_civac_range(slot as u64, core::mem::size_of::<[u64; 4]>() as u64) };
}

/// Release a secondary pCPU waiting on a spin table at `release` to
/// `_spin_start`, which finds its index by its MPIDR (see [`set_cpu_mpidr`]).
/// Done with the MMU off: the store goes to memory, where the waiting CPU
/// (MMU off too) reads it, and no cache ever holds a newer copy.
///
/// # Safety
/// `release` must be the `cpu-release-addr` the firmware's spin loop polls
/// for that CPU (8 bytes of RAM, reserved from the frame pool).
pub unsafe fn spin_release(release: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { spin_release_to(release, _spin_start as *const () as usize as u64) }
}

/// Release a spin-table CPU the hypervisor does not use into a `wfi` loop
/// with interrupts masked (not left polling the firmware's table).
///
/// # Safety
/// As for [`spin_release`].
pub unsafe fn spin_park(release: u64) {
    // SAFETY: forwarded from the caller.
    unsafe { spin_release_to(release, _spin_park as *const () as usize as u64) }
}

/// # Safety
/// As for [`spin_release`]; `entry` is code in this image.
unsafe fn spin_release_to(release: u64, entry: u64) {
    // SAFETY: the caller vouches for `release`; the waiting CPU reads it
    // with its MMU off, so it is cleaned to the PoC before the event.
    unsafe { (release as *mut u64).write_volatile(entry) };
    // SAFETY: as above: the release word is reserved RAM, just written.
    unsafe { dc_civac_range(release, 8) };
    sev();
}

/// Install the EL2 vectors.
/// Install the EL2 vectors, and trap nothing at EL2 that guests use
/// (CPTR_EL2: FP/SIMD untrapped, only its RES1 bits set).
pub fn install_vectors() {
    let v = core::ptr::addr_of!(el2_vectors) as u64;
    sysreg_write!("vbar_el2", v);
    sysreg_write!("cptr_el2", 0x33ff);
    isb();
}

pub fn isb() {
    // SAFETY: a barrier has no memory effects the compiler must know about.
    unsafe { asm!("isb", options(nostack, preserves_flags)) }
}
pub fn dsb_sy() {
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) }
}
pub fn wfi() {
    // SAFETY: waits for an interrupt; no memory effects.
    unsafe { asm!("wfi", options(nostack, preserves_flags)) }
}
pub fn sev() {
    // SAFETY: wakes CPUs waiting in `wfe`; no memory effects.
    unsafe { asm!("sev", options(nostack, preserves_flags)) }
}

pub fn wfe() {
    // SAFETY: waits for an event; no memory effects.
    unsafe { asm!("wfe", options(nostack, preserves_flags)) }
}

/// This pCPU's index (MPIDR Aff0; QEMU virt and the RPi4 number cores 0..3).
pub fn cpu_id() -> usize {
    (sysreg_read!("mpidr_el1") & 0xff) as usize
}

/// The smallest data cache line of the system (CTR_EL0.DminLine).
pub fn dcache_line() -> u64 {
    4 << ((sysreg_read!("ctr_el0") >> 16) & 0xf)
}

/// Clean and invalidate `[start, start+len)` by VA to the PoC, inner
/// shareable (broadcast to every pCPU's caches).
///
/// # Safety
/// The range must be mapped at EL2 (else the hypervisor takes a data abort),
/// and no other agent (a device's DMA, a CPU with its caches off) may have
/// written newer data to memory there that a dirty line would overwrite.
pub unsafe fn dc_civac_range(start: u64, len: u64) {
    let line = dcache_line();
    let mut a = start & !(line - 1);
    let end = start + len;
    while a < end {
        // SAFETY: `a` lies in memory mapped at EL2 (the linear map); data
        // cache maintenance by VA does not change memory contents.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    dsb_sy();
}

/// Zero `[pa, pa+len)` with `DC ZVA` (one cache-line-sized block per
/// instruction) where the range allows, else with stores.
///
/// # Safety
/// The caller owns `[pa, pa+len)`: host RAM mapped Normal cacheable at EL2
/// that nothing else (the hypervisor's own data included) still uses.
pub unsafe fn zero_range(pa: u64, len: u64) {
    let dczid = sysreg_read!("dczid_el0");
    let block = 4u64 << (dczid & 0xf);
    if dczid & (1 << 4) == 0 && pa % block == 0 && len % block == 0 {
        let mut a = pa;
        while a < pa + len {
            // SAFETY: the caller owns [pa, pa+len), mapped Normal cacheable
            // at EL2 (DC ZVA needs Normal memory).
            unsafe { asm!("dc zva, {}", in(reg) a, options(nostack, preserves_flags)) };
            a += block;
        }
    } else {
        // SAFETY: as above.
        unsafe { core::ptr::write_bytes(pa as *mut u8, 0, len as usize) };
    }
}


pub fn ic_iallu_is() {
    // SAFETY: instruction cache invalidation has no data side effects.
    unsafe { asm!("ic ialluis", "dsb ish", "isb", options(nostack, preserves_flags)) }
}

/// Stage-2 TLB invalidation of one IPA for the VMID currently in VTTBR_EL2.
/// The caller has loaded the right VMID.
pub fn tlbi_ipa(ipa: u64) {
    // SAFETY: TLB maintenance only.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi ipas2e1is, {0}",
            "dsb ish",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            in(reg) ipa >> 12,
            options(nostack, preserves_flags)
        )
    }
}

/// This pCPU only: drop the stage-1 TLB entries of the VMID in VTTBR_EL2
/// and the instruction cache.
pub fn local_guest_flush() {
    // SAFETY: TLB and I-cache maintenance only.
    unsafe { asm!("tlbi vmalle1", "ic iallu", "dsb nsh", "isb", options(nostack, preserves_flags)) }
}

/// The loaded guest's stage-1 translation of `va` (AT S1E1R): the IPA, or
/// None when its own tables do not map it now. PAR_EL1 is the guest's and
/// is given back as it was.
pub fn guest_ipa(va: u64) -> Option<u64> {
    let saved = sysreg_read!("par_el1");
    // SAFETY: address translation only; it writes PAR_EL1, restored below.
    unsafe { asm!("at s1e1r, {0}", "isb", in(reg) va, options(nostack, preserves_flags)) };
    let par = sysreg_read!("par_el1");
    sysreg_write!("par_el1", saved);
    // PAR_EL1.F (bit 0): the walk failed. Else PA[51:12] is the IPA.
    (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (va & 0xfff))
}

/// Invalidate all stage-1 and stage-2 entries of the VMID in VTTBR_EL2.
pub fn tlbi_vmid() {
    // SAFETY: TLB maintenance only.
    unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb", options(nostack, preserves_flags)) }
}

/// An SMC to the firmware (PSCI), SMCCC: function id in x0, result in x0.
pub fn smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: a firmware call following the SMC calling convention; the
    // firmware preserves x4-x17 and our memory.
    unsafe {
        asm!("smc #0", inlateout("x0") fid => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, options(nostack))
    }
    r
}

/// Semihosting SYS_EXIT (AArch64: `HLT #0xF000`, x0 = 0x18, x1 = a block
/// {ADP_Stopped_ApplicationExit, code}). Only with `exit=semihosting`:
/// without a semihosting host, HLT is undefined.
pub fn semihosting_exit(code: u64) {
    let block: [u64; 2] = [0x2_0026, code];
    // SAFETY: the debugger/emulator reads the two-word block we own and
    // stops the machine; if it returns, nothing changed.
    unsafe {
        asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack, readonly));
    }
}

/// Read the physical counter and its frequency.
pub fn counter() -> u64 {
    sysreg_read!("cntpct_el0")
}
pub fn counter_freq() -> u64 {
    sysreg_read!("cntfrq_el0")
}

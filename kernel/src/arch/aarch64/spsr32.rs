//! AArch32 guests' banked SPSRs, made exact on QEMU.
//!
//! Architecturally SPSR_svc *is* SPSR_EL1 (and SPSR_abt/und/irq/fiq are the
//! EL2-visible `spsr_abt` ...), so EL2 reads and writes them directly. QEMU
//! (10.0, TCG) keeps the SPSR of the guest's *current* AArch32 mode in a
//! separate live copy that only an AArch32 mode switch moves in and out of
//! its bank; exception entry to AArch64 EL2 and the ERET back skip that. So
//! at EL2 the current mode's SPSR reads stale, and a value written for the
//! mode an ERET enters is not used. A vCPU switch on one pCPU then hands
//! one vCPU the other's SPSR: the Debian 6.12 armhf crashes with a Thumb
//! bit in an ARM kernel's PSR.
//!
//! The fix runs two AArch32 instructions at EL1, `msr cpsr_c, r0; hvc #0`,
//! from a trampoline page mapped by a stage-2 table of its own, with the
//! guest's MMU off and interrupts routed away from EL2 for those two
//! instructions. The MSR is a mode switch, so it moves the live SPSR into
//! its bank ([`bank_live`]) or loads the live copy from a bank ([`load_live`]).
//! On hardware both are exact no-ops in effect, at the cost of one EL1 round
//! trip; they run only when an AArch32 vCPU is saved, loaded, or sent into
//! ABT mode by an injected abort.

use super::{dsb_sy, isb, sysreg_read, sysreg_write};

/// The VMID of the trampoline's stage-2 table (guests use small VMIDs).
const TRAMPOLINE_VMID: u64 = 255;
const HCR_ROUTING: u64 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8); // FMO IMO AMO VF VI VSE
const PSR_AIF: u64 = 0x1c0;
const MODE_SYS: u64 = 0x1f;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The trampoline's stage-2: level 1, 2 and 3 tables mapping its one page
/// at IPA = PA, read-only and executable.
static mut TABLES: [Table; 3] = [Table([0; 512]), Table([0; 512]), Table([0; 512])];
static mut VTTBR: u64 = 0;

unsafe extern "C" {
    static aarch32_trampoline: u8;
    fn aarch32_trip(pc: u64, spsr: u64, r0: u64) -> u64;
}

fn trampoline_pa() -> u64 {
    core::ptr::addr_of!(aarch32_trampoline) as u64
}

/// Build the trampoline's stage-2 table. Boot, pCPU 0, before any guest.
pub fn init() {
    let pa = trampoline_pa();
    // With its MMU off an AArch32 EL1 fetches from a 32-bit PC.
    assert!(pa < 1 << 32, "the AArch32 trampoline must lie below 4 GiB");
    // SAFETY: boot runs on pCPU 0 alone; nothing reads TABLES or VTTBR yet.
    unsafe {
        let t = &mut *core::ptr::addr_of_mut!(TABLES);
        let (l2, l3) = (t[1].0.as_ptr() as u64, t[2].0.as_ptr() as u64);
        t[0].0[((pa >> 30) & 0x1ff) as usize] = l2 | 0b11;
        t[1].0[((pa >> 21) & 0x1ff) as usize] = l3 | 0b11;
        // Page | AF | inner shareable | S2AP read-only | Normal write-back.
        t[2].0[((pa >> 12) & 0x1ff) as usize] = pa | 0b11 | (1 << 10) | (3 << 8) | (1 << 6) | (0xf << 2);
        *core::ptr::addr_of_mut!(VTTBR) = (TRAMPOLINE_VMID << 48) | t[0].0.as_ptr() as u64;
    }
    dsb_sy();
}

/// Whether an AArch32 mode has an SPSR (FIQ, IRQ, SVC, ABT, UND).
pub fn has_spsr(mode: u64) -> bool {
    matches!(mode & 0x1f, 0x11 | 0x12 | 0x13 | 0x17 | 0x1b)
}

/// Run the trampoline entered in mode `from`, switching to mode `to`.
/// Returns false when it did not come back with its HVC.
fn switch(from: u64, to: u64) -> bool {
    let (sctlr, hcr, vttbr) = (sysreg_read!("sctlr_el1"), sysreg_read!("hcr_el2"), sysreg_read!("vttbr_el2"));
    // MMU, alignment checks, Thumb exceptions and big-endian off.
    sysreg_write!("sctlr_el1", sctlr & !((1 << 0) | (1 << 1) | (1 << 25) | (1 << 30)));
    // Physical interrupts stay masked at EL1 for the two instructions.
    sysreg_write!("hcr_el2", hcr & !HCR_ROUTING);
    // SAFETY: VTTBR was written by `init` before any guest ran.
    sysreg_write!("vttbr_el2", unsafe { *core::ptr::addr_of!(VTTBR) });
    isb();
    // SAFETY: the trip enters our own two-instruction trampoline through
    // its own stage-2 table; the guest's registers are in trap frames.
    let esr = unsafe { aarch32_trip(trampoline_pa(), (from & 0x1f) | PSR_AIF, (to & 0x1f) | PSR_AIF) };
    sysreg_write!("sctlr_el1", sctlr);
    sysreg_write!("hcr_el2", hcr);
    sysreg_write!("vttbr_el2", vttbr);
    isb();
    esr >> 26 == 0x12 // HVC from AArch32
}

/// Move the live SPSR of `mode` (the guest's mode when it trapped) into
/// its bank, so EL2 reads every banked SPSR exactly.
pub fn bank_live(mode: u64) -> bool {
    !has_spsr(mode) || switch(mode, MODE_SYS)
}

/// Make the banked SPSR of `mode` (the mode an ERET is about to enter) the
/// live one, after EL2 wrote the banks.
pub fn load_live(mode: u64) -> bool {
    !has_spsr(mode) || switch(MODE_SYS, mode)
}

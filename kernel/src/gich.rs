//! The GICv2 virtual interface control block (GICH): list registers and
//! their per-vCPU save/restore. arm-gic drives the physical GIC; this part
//! is ours.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

const HCR: u64 = 0x00;
const VTR: u64 = 0x04;
const VMCR: u64 = 0x08;
const ELRSR0: u64 = 0x30;
const ELRSR1: u64 = 0x34;
const APR: u64 = 0xf0;
const LR0: u64 = 0x100;

/// Most list registers we save (GIC-400 and QEMU have 4).
pub const MAX_LRS: usize = 4;

static BASE: AtomicU64 = AtomicU64::new(0);

pub fn set_base(base: u64) {
    BASE.store(base, Relaxed);
}

pub fn present() -> bool {
    BASE.load(Relaxed) != 0
}

fn read(off: u64) -> u32 {
    // SAFETY: GICH is this board's virtual interface control block, mapped
    // as Device at EL2; each pCPU sees its own banked copy.
    unsafe { core::ptr::read_volatile((BASE.load(Relaxed) + off) as *const u32) }
}

fn write(off: u64, v: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE.load(Relaxed) + off) as *mut u32, v) }
}

/// This pCPU's list registers, as the vGIC component sees them.
pub struct Gich;

impl Gich {
    pub fn count(&self) -> usize {
        ((read(VTR) & 0x3f) as usize + 1).min(MAX_LRS)
    }
    pub fn lr(&self, i: usize) -> u32 {
        read(LR0 + 4 * i as u64)
    }
    pub fn set_lr(&mut self, i: usize, v: u32) {
        write(LR0 + 4 * i as u64, v)
    }
    pub fn set_hcr(&mut self, v: u32) {
        write(HCR, v)
    }
    pub fn elrsr(&self) -> u64 {
        read(ELRSR0) as u64 | (read(ELRSR1) as u64) << 32
    }
}

/// Save the guest's virtual CPU interface state (GICH_VMCR, GICH_APR) and
/// turn the interface off while no vCPU of a Linux guest is loaded.
pub fn save_cpu_if() -> (u32, u32) {
    let state = (read(VMCR), read(APR));
    write(HCR, 0);
    state
}

/// Turn the virtual interface (and its maintenance interrupt) off.
pub fn disable() {
    if present() {
        write(HCR, 0);
    }
}

pub fn restore_cpu_if(vmcr: u32, apr: u32) {
    write(VMCR, vmcr);
    write(APR, apr);
}

//! # vrtc: an emulated PL031 real-time clock
//!
//! UEFI firmware for QEMU `virt` (EDK2's ArmVirtQemu) takes its clock from
//! the PL031 the device tree names, and without one reads a null pointer.
//! This is that PL031: the guest's stage 2 leaves its 4 KiB window
//! unmapped, each load or store there traps, and the kernel hands it to
//! [`Pl031::mmio`] with the time now.
//!
//! **Responsible for:** the PL031 register file (offsets `0x000..0x1000`):
//! data (seconds), match, load, control, interrupt mask, raw and masked
//! status, clear, and the peripheral and PrimeCell IDs (which EDK2 checks
//! byte by byte before it trusts the device).
//!
//! **Not responsible for:** knowing the date. The kernel gives seconds of
//! its own counter ([`Access`]'s `now`); the clock reads that plus what the
//! guest loaded, so a guest that never sets it starts at the epoch (1970).
//! No interrupt: the match register is stored and read back, and the raw
//! status never rises (no guest the project runs waits for an alarm).
//!
//! **Invariants:**
//! - The data register never goes backwards while `now` does not: it is
//!   `now + offset`, and only a load changes `offset`.
//! - A load of `v` at `now` makes the data register read `v` at that `now`
//!   (wrapping at 32 bits, as the device's counter does).
//! - Every access completes: unknown offsets read as zero and ignore
//!   writes; any width reads the bytes of the 32-bit register at its offset.
#![no_std]
#![forbid(unsafe_code)]

/// QEMU `virt`'s PL031: its base and SPI (INTID 34).
pub const QEMU_VIRT_BASE: u64 = 0x0901_0000;
pub const QEMU_VIRT_SPI: u32 = 2;
/// The register window.
pub const WINDOW: u64 = 0x1000;

const DR: u64 = 0x000;
const MR: u64 = 0x004;
const LR: u64 = 0x008;
const CR: u64 = 0x00c;
const IMSC: u64 = 0x010;
const RIS: u64 = 0x014;
const MIS: u64 = 0x018;
const ICR: u64 = 0x01c;
/// Peripheral ID 0..3, then PrimeCell ID 0..3 (0xfe0..0x1000), a byte each.
const IDS: [u8; 8] = [0x31, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// One access: a read, or a write of `value`, `width` bytes at `offset`,
/// with the kernel's time in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub offset: u64,
    pub width: u8,
    /// `Some(value)` for a write.
    pub write: Option<u32>,
    pub now: u64,
}

/// The clock's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pl031 {
    offset: u32,
    matched: u32,
    enabled: bool,
    mask: bool,
}

impl Pl031 {
    pub const fn new() -> Self {
        Pl031 { offset: 0, matched: 0, enabled: false, mask: false }
    }

    /// Seconds the guest reads at `now`.
    fn seconds(&self, now: u64) -> u32 {
        (now as u32).wrapping_add(self.offset)
    }

    /// Apply one access; returns what a read reads (0 for a write).
    pub fn mmio(&mut self, a: Access) -> u32 {
        let reg = a.offset & !3;
        let shift = 8 * (a.offset & 3) as u32;
        if let Some(v) = a.write {
            // Only whole-register writes change anything (the PL031 is a
            // 32-bit device; a narrower store is taken as it is).
            let v = v << shift;
            match reg {
                MR => self.matched = v,
                LR => self.offset = v.wrapping_sub(a.now as u32),
                // The enable bit cannot be cleared once set (as the device).
                CR => self.enabled |= v & 1 != 0,
                IMSC => self.mask = v & 1 != 0,
                _ => {}
            }
            return 0;
        }
        let word = match reg {
            DR => self.seconds(a.now),
            MR => self.matched,
            LR => self.seconds(a.now),
            CR => self.enabled as u32,
            IMSC => self.mask as u32,
            RIS | MIS | ICR => 0,
            0xfe0..=0xffc => IDS[((reg - 0xfe0) / 4) as usize] as u32,
            _ => 0,
        };
        let bits = match a.width {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        (word >> shift) & bits
    }
}

//! # vuart: an emulated PL011 UART for a guest console
//!
//! The guest's console is an Arm PrimeCell UART (PL011) r1p5 that does not
//! exist: the guest's stage 2 leaves its 4 KiB window unmapped, each load or
//! store there traps, and the kernel hands it to [`Pl011::mmio`]. The reply
//! says what the load reads, whether the UART's interrupt line is now high,
//! and which byte (if any) the guest sent to the console.
//!
//! Linux's `amba-pl011` driver and its `earlycon=pl011,<addr>` run against it
//! unchanged: the AMBA bus finds it by its PrimeCell IDs, the driver sets the
//! baud rate, line control and interrupt masks, and prints through the data
//! register with `FR.TXFF` polling (8-, 16- and 32-bit accesses).
//!
//! **Responsible for:**
//! - the PL011 register file (offsets `0x000..0x1000`): data, receive status,
//!   flags, IrDA, baud rate, line control, control, FIFO levels, interrupt
//!   mask/raw/masked/clear, DMA control, peripheral and PrimeCell IDs;
//! - a receive FIFO that the kernel fills with [`Pl011::push_input`];
//! - the interrupt line's level ([`Pl011::irq_level`]), from the raw status
//!   and the mask.
//!
//! **Not responsible for:** decoding the trap or touching vCPU registers (the
//! kernel passes an [`Access`] and writes [`MmioReply::value`] back), the
//! physical console (the kernel prints [`MmioReply::output`]), or raising the
//! SPI in the vGIC (the kernel forwards [`MmioReply::irq_level`]; on QEMU
//! `virt` the UART is SPI 1, INTID 33: [`QEMU_VIRT_SPI`]). There is no
//! timing, no baud rate, no DMA and no modem: those registers are stored and
//! read back, nothing more.
//!
//! **Invariants:**
//! - Output is never lost: a data-register write always produces its byte
//!   (unless loopback is on, where it goes to the receive FIFO as on the real
//!   device), whatever `CR.UARTEN`/`CR.TXE` say, so an early console that
//!   writes before enabling the UART is still seen.
//! - The transmitter is always empty: `FR.TXFE` set, `FR.TXFF` and `FR.BUSY`
//!   clear. The TX interrupt is "ready to send": raw status set whenever the
//!   UART and its transmitter are enabled.
//! - Receive interrupts are levels of the FIFO: `RXRIS` while the FIFO holds
//!   at least the `IFLS` trigger level (one byte with FIFOs off), `RTRIS`
//!   (receive timeout) while it holds anything. Reading the data register is
//!   what lowers them; `ICR` clears only the latched overrun bit, as the
//!   driver expects (it never clears TX/RX/RT through `ICR`).
//! - [`Pl011::irq_level`] is always `RIS & IMSC != 0`, and every reply
//!   carries it.
//! - No access can panic: an offset outside the window, a width other than
//!   1, 2 or 4, or a misaligned access is an [`Error`]; reserved offsets read
//!   as zero and ignore writes.
//! - [`Pl011::push_input`] never drops a byte: when the FIFO is full it
//!   refuses, and the caller keeps the byte for later.
//!
//! ## Sub-word accesses
//!
//! An access of width `w` at `offset` (aligned to `w`) targets the 32-bit
//! register at `offset & !3`, byte lanes `offset & 3 ..`. A read returns those
//! lanes; a write replaces only those lanes of the register and keeps the
//! rest. A data-register read pops the FIFO, and a write transmits, only when
//! the access covers lane 0 (bits 7:0).
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// The size of the register window.
pub const WINDOW_SIZE: u64 = 0x1000;
/// The receive FIFO depth of a PL011 r1p5.
pub const FIFO_DEPTH: usize = 32;
/// The UART's SPI on QEMU `virt` (`interrupts = <0 1 4>`).
pub const QEMU_VIRT_SPI: u32 = 1;
/// Its GIC interrupt ID (SPIs start at 32).
pub const QEMU_VIRT_INTID: u32 = 32 + QEMU_VIRT_SPI;

/// Register offsets.
pub mod reg {
    pub const DR: u64 = 0x000;
    /// RSR on read, ECR on write.
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// PeriphID0..3 at `PERIPH_ID + 4 * i`.
    pub const PERIPH_ID: u64 = 0xfe0;
    /// CellID0..3 at `CELL_ID + 4 * i`.
    pub const CELL_ID: u64 = 0xff0;
}

/// Flag register bits.
pub mod fr {
    pub const CTS: u32 = 1 << 0;
    pub const DSR: u32 = 1 << 1;
    pub const DCD: u32 = 1 << 2;
    pub const BUSY: u32 = 1 << 3;
    pub const RXFE: u32 = 1 << 4;
    pub const TXFF: u32 = 1 << 5;
    pub const RXFF: u32 = 1 << 6;
    pub const TXFE: u32 = 1 << 7;
    pub const RI: u32 = 1 << 8;
}

/// Control register bits.
pub mod cr {
    pub const UARTEN: u32 = 1 << 0;
    pub const LBE: u32 = 1 << 7;
    pub const TXE: u32 = 1 << 8;
    pub const RXE: u32 = 1 << 9;
}

/// Line control: FIFO enable.
pub const LCR_H_FEN: u32 = 1 << 4;

/// Interrupt bits, shared by IMSC, RIS, MIS and ICR.
pub mod int {
    pub const RI: u32 = 1 << 0;
    pub const CTS: u32 = 1 << 1;
    pub const DCD: u32 = 1 << 2;
    pub const DSR: u32 = 1 << 3;
    pub const RX: u32 = 1 << 4;
    pub const TX: u32 = 1 << 5;
    pub const RT: u32 = 1 << 6;
    pub const FE: u32 = 1 << 7;
    pub const PE: u32 = 1 << 8;
    pub const BE: u32 = 1 << 9;
    pub const OE: u32 = 1 << 10;
    pub const ALL: u32 = 0x7ff;
}

/// Receive status: overrun.
pub const RSR_OE: u32 = 1 << 3;

/// PeriphID0..3 of a PL011 r1p5 (part 0x011, designer ARM, revision 3).
pub const PERIPH_ID: [u8; 4] = [0x11, 0x10, 0x34, 0x00];
/// The PrimeCell ID, 0xB105F00D.
pub const CELL_ID: [u8; 4] = [0x0d, 0xf0, 0x05, 0xb1];

// Reset values, as the PL011 TRM gives them.
const CR_RESET: u32 = cr::TXE | cr::RXE;
const IFLS_RESET: u32 = 0x12;

/// One trapped access. `width` is in bytes, as the data abort reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read { width: u8 },
    Write { width: u8, value: u32 },
}

/// What the kernel does after an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioReply {
    /// For a read, the value loaded (zero-extended); 0 for a write.
    pub value: u32,
    /// The interrupt line after the access.
    pub irq_level: bool,
    /// A byte the guest sent to the console.
    pub output: Option<u8>,
}

/// An access the device cannot take. The kernel decides what the guest sees
/// (an abort, or RAZ/WI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The offset is outside the 4 KiB window.
    OutOfRange { offset: u64 },
    /// Not 1, 2 or 4 bytes.
    BadWidth { width: u8 },
    /// The offset is not a multiple of the width.
    Misaligned { offset: u64, width: u8 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::OutOfRange { offset } => {
                write!(
                    f,
                    "vuart: offset {offset:#x} is outside the {WINDOW_SIZE:#x}-byte window"
                )
            }
            Error::BadWidth { width } => {
                write!(f, "vuart: {width}-byte access (allowed: 1, 2 or 4)")
            }
            Error::Misaligned { offset, width } => {
                write!(f, "vuart: {width}-byte access at {offset:#x} is misaligned")
            }
        }
    }
}

/// The receive FIFO: a ring of [`FIFO_DEPTH`] bytes.
#[derive(Clone, Debug)]
struct Fifo {
    buf: [u8; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl Fifo {
    const fn new() -> Fifo {
        Fifo {
            buf: [0; FIFO_DEPTH],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if self.len < FIFO_DEPTH {
            self.buf[(self.head + self.len) % FIFO_DEPTH] = b;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % FIFO_DEPTH;
        self.len -= 1;
        Some(b)
    }
}

/// One emulated PL011.
#[derive(Clone, Debug)]
pub struct Pl011 {
    rx: Fifo,
    /// Receive status (only OE can be set).
    rsr: u32,
    /// Latched interrupt bits (only OE), cleared by ICR.
    latched: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Pl011::new()
    }
}

impl Pl011 {
    /// A UART in its reset state: disabled (`CR = 0x300`), FIFOs off,
    /// all interrupts masked, nothing received.
    pub const fn new() -> Pl011 {
        Pl011 {
            rx: Fifo::new(),
            rsr: 0,
            latched: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Back to the reset state; the receive FIFO is emptied.
    pub fn reset(&mut self) {
        *self = Pl011::new();
    }

    /// Handle one trapped access at `offset` from the window's base.
    pub fn mmio(&mut self, offset: u64, access: Access) -> Result<MmioReply, Error> {
        let width = match access {
            Access::Read { width } | Access::Write { width, .. } => width,
        };
        if !matches!(width, 1 | 2 | 4) {
            return Err(Error::BadWidth { width });
        }
        if offset >= WINDOW_SIZE {
            return Err(Error::OutOfRange { offset });
        }
        if !offset.is_multiple_of(u64::from(width)) {
            return Err(Error::Misaligned { offset, width });
        }
        let word = offset & !3;
        let shift = 8 * (offset & 3) as u32;
        let mask = if width == 4 {
            u32::MAX
        } else {
            (1u32 << (8 * u32::from(width))) - 1
        };
        let lane0 = shift == 0;

        let mut reply = MmioReply {
            value: 0,
            irq_level: false,
            output: None,
        };
        match access {
            Access::Read { .. } => reply.value = (self.read(word, lane0) >> shift) & mask,
            Access::Write { value, .. } => {
                let old = self.current(word);
                let new = (old & !(mask << shift)) | ((value & mask) << shift);
                reply.output = self.write(word, new, lane0);
            }
        }
        reply.irq_level = self.irq_level();
        Ok(reply)
    }

    /// Give the guest one received byte. Returns false, and keeps nothing,
    /// when the FIFO is full (32 bytes, or 1 with FIFOs off): try again
    /// after the guest has read.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.rx.len >= self.capacity() {
            return false;
        }
        self.rx.push(byte);
        true
    }

    /// How many more bytes [`Pl011::push_input`] takes now.
    pub fn input_room(&self) -> usize {
        self.capacity().saturating_sub(self.rx.len)
    }

    /// The interrupt line: some raw interrupt is unmasked.
    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    /// The raw interrupt status.
    pub fn ris(&self) -> u32 {
        let mut ris = self.latched;
        let n = self.rx.len;
        if n > 0 {
            ris |= int::RT;
            if n >= self.rx_trigger() {
                ris |= int::RX;
            }
        }
        if self.cr & (cr::UARTEN | cr::TXE) == cr::UARTEN | cr::TXE {
            ris |= int::TX;
        }
        ris
    }

    fn fifo_on(&self) -> bool {
        self.lcr_h & LCR_H_FEN != 0
    }

    fn capacity(&self) -> usize {
        if self.fifo_on() {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Bytes in the FIFO that raise RXRIS (IFLS.RXIFLSEL, bits 5:3).
    fn rx_trigger(&self) -> usize {
        if !self.fifo_on() {
            return 1;
        }
        match (self.ifls >> 3) & 7 {
            0 => FIFO_DEPTH / 8,
            1 => FIFO_DEPTH / 4,
            3 => FIFO_DEPTH * 3 / 4,
            4 => FIFO_DEPTH * 7 / 8,
            // 2 is 1/2; 5..7 are reserved, taken as 1/2.
            _ => FIFO_DEPTH / 2,
        }
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE;
        if self.rx.len == 0 {
            f |= fr::RXFE;
        }
        if self.rx.len >= self.capacity() {
            f |= fr::RXFF;
        }
        f
    }

    /// A register's value without side effects (the base for a partial
    /// write). Write-only and read-only registers count as 0.
    fn current(&self, word: u64) -> u32 {
        match word {
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::DMACR => self.dmacr,
            _ => 0,
        }
    }

    fn read(&mut self, word: u64, lane0: bool) -> u32 {
        match word {
            reg::DR => {
                if lane0 {
                    // Error bits (11:8) are always clear: nothing arrives
                    // with a framing, parity or break error.
                    self.rx.pop().map_or(0, u32::from)
                } else {
                    0
                }
            }
            reg::RSR_ECR => self.rsr,
            reg::FR => self.flags(),
            reg::RIS => self.ris(),
            reg::MIS => self.ris() & self.imsc,
            reg::ICR => 0,
            w if (reg::PERIPH_ID..reg::PERIPH_ID + 16).contains(&w) => {
                u32::from(PERIPH_ID[((w - reg::PERIPH_ID) / 4) as usize])
            }
            w if (reg::CELL_ID..reg::CELL_ID + 16).contains(&w) => {
                u32::from(CELL_ID[((w - reg::CELL_ID) / 4) as usize])
            }
            w => self.current(w),
        }
    }

    /// Write `v`, already merged into the register's other lanes. Returns a
    /// byte to transmit.
    fn write(&mut self, word: u64, v: u32, lane0: bool) -> Option<u8> {
        match word {
            reg::DR => {
                if !lane0 {
                    return None;
                }
                let byte = v as u8;
                if self.cr & cr::LBE != 0 {
                    // Loopback: the byte arrives at the receiver.
                    if self.rx.len >= self.capacity() {
                        self.rsr |= RSR_OE;
                        self.latched |= int::OE;
                    } else {
                        self.rx.push(byte);
                    }
                    return None;
                }
                return Some(byte);
            }
            // Any write to ECR clears the receive errors.
            reg::RSR_ECR => self.rsr = 0,
            reg::ILPR => self.ilpr = v & 0xff,
            reg::IBRD => self.ibrd = v & 0xffff,
            reg::FBRD => self.fbrd = v & 0x3f,
            reg::LCR_H => self.lcr_h = v & 0xff,
            reg::CR => self.cr = v & 0xff87,
            reg::IFLS => self.ifls = v & 0x3f,
            reg::IMSC => self.imsc = v & int::ALL,
            reg::ICR => self.latched &= !v,
            reg::DMACR => self.dmacr = v & 0x7,
            // FR, RIS, MIS, the IDs and reserved offsets ignore writes.
            _ => {}
        }
        None
    }
}

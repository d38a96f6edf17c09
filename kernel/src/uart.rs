//! The hypervisor's own UART: a PL011, a 16550 (any register shift and
//! access width) or the BCM2835 mini-UART, whichever the DTB's console is.
//! It programs the UART itself (8N1, FIFOs, 115200 baud when the reference
//! clock is known) instead of trusting the firmware to have done it.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The console line speed.
pub const BAUD: u32 = 115_200;

const NONE: u8 = 0;
const PL011: u8 = 1;
const NS16550: u8 = 2;
const MINI: u8 = 3;

static KIND: AtomicU8 = AtomicU8::new(NONE);
static BASE: AtomicU64 = AtomicU64::new(0);
/// 16550: register shift (low byte) and access width in bytes (next byte).
static SHAPE: AtomicU64 = AtomicU64::new(0);

// PL011 registers and bits.
const DR: u64 = 0x00;
const FR: u64 = 0x18;
const IBRD: u64 = 0x24;
const FBRD: u64 = 0x28;
const LCRH: u64 = 0x2c;
const CR: u64 = 0x30;
const IMSC: u64 = 0x38;
const FR_BUSY: u32 = 1 << 3;
const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const CR_UARTEN: u32 = 1;
const CR_TXE_RXE: u32 = (1 << 8) | (1 << 9);
/// LCRH: 8 bits, FIFOs on.
const LCRH_8N1_FIFO: u32 = (3 << 5) | (1 << 4);
/// IMSC: receive and receive-timeout interrupts.
const IMSC_RX: u32 = (1 << 4) | (1 << 6);

// 16550 register numbers (the mini-UART has the same first six).
const RBR_THR: u64 = 0;
const IER: u64 = 1;
const FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const LSR_DR: u32 = 1;
const LSR_THRE: u32 = 1 << 5;
const LCR_DLAB: u32 = 1 << 7;
// Mini-UART only: control and baud registers, and the AUX enable bits.
const MINI_CNTL: u64 = 8;
const MINI_BAUD: u64 = 10;
const AUX_ENABLES: u64 = 0x04;

/// The console's programming model.
#[derive(Clone, Copy)]
pub enum Kind {
    Pl011,
    Ns16550 { reg_shift: u8, io_width: u8 },
    Bcm2835Aux,
}

fn read(off: u64) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the console UART the DTB names, mapped as Device
    // at EL2 (or the MMU is off); `off` is one of its registers.
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}

fn write(off: u64, v: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((base + off) as *mut u32, v) }
}

/// The address and access width of 16550-style register `n`.
fn reg_at(n: u64) -> (u64, u64) {
    let shape = SHAPE.load(Ordering::Relaxed);
    (BASE.load(Ordering::Relaxed) + (n << (shape & 0xff)), (shape >> 8) & 0xff)
}

fn reg_read(n: u64) -> u32 {
    let (at, width) = reg_at(n);
    // SAFETY: as in `read`, at the access width the DTB gives.
    unsafe {
        match width {
            4 => core::ptr::read_volatile(at as *const u32),
            2 => core::ptr::read_volatile(at as *const u16) as u32,
            _ => core::ptr::read_volatile(at as *const u8) as u32,
        }
    }
}

fn reg_write(n: u64, v: u32) {
    let (at, width) = reg_at(n);
    // SAFETY: as in `reg_read`.
    unsafe {
        match width {
            4 => core::ptr::write_volatile(at as *mut u32, v),
            2 => core::ptr::write_volatile(at as *mut u16, v as u16),
            _ => core::ptr::write_volatile(at as *mut u8, v as u8),
        }
    }
}

/// Use the UART at `base` and program it. `clock_hz` is its reference
/// clock, if known: without it the baud divisor the firmware set stays.
/// Plain stores only: this runs before the MMU is on.
pub fn setup(kind: Kind, base: u64, clock_hz: Option<u32>) {
    BASE.store(base, Ordering::Relaxed);
    match kind {
        Kind::Pl011 => {
            KIND.store(PL011, Ordering::Relaxed);
            let cr = read(CR);
            if cr & CR_UARTEN != 0 && clock_hz.is_none() {
                // Enabled by the firmware at a speed we cannot compute.
                write(CR, cr | CR_TXE_RXE);
                return;
            }
            // Let what the firmware queued go out (bounded: BUSY can stay
            // set on a UART whose clock is off), then disable and flush.
            let mut n = 0;
            while read(FR) & FR_BUSY != 0 && n < 1_000_000 {
                n += 1;
            }
            write(CR, 0);
            write(LCRH, 0);
            if let Some(clk) = clock_hz {
                // Divisor in 1/64ths, rounded: clk / (16 * baud) * 64.
                let div = ((u64::from(clk) * 4 + u64::from(BAUD) / 2) / u64::from(BAUD)) as u32;
                write(IBRD, div >> 6);
                write(FBRD, div & 0x3f);
            }
            write(LCRH, LCRH_8N1_FIFO);
            write(IMSC, 0);
            write(CR, CR_UARTEN | CR_TXE_RXE);
        }
        Kind::Ns16550 { reg_shift, io_width } => {
            KIND.store(NS16550, Ordering::Relaxed);
            SHAPE.store(u64::from(reg_shift) | (u64::from(io_width) << 8), Ordering::Relaxed);
            reg_write(IER, 0);
            if let Some(clk) = clock_hz {
                let div = ((u64::from(clk) + 8 * u64::from(BAUD)) / (16 * u64::from(BAUD))) as u32;
                reg_write(LCR, LCR_DLAB);
                reg_write(RBR_THR, div & 0xff);
                reg_write(IER, (div >> 8) & 0xff);
            }
            reg_write(LCR, 3); // 8N1, DLAB off
            reg_write(FCR, 7); // FIFOs on and cleared
            reg_write(MCR, 3); // DTR, RTS
        }
        Kind::Bcm2835Aux => {
            KIND.store(MINI, Ordering::Relaxed);
            SHAPE.store(2 | (4 << 8), Ordering::Relaxed);
            let aux = (base & !0xfff) + AUX_ENABLES;
            // SAFETY: AUX_ENABLES is in the same 4 KiB page as the
            // mini-UART's registers (the BCM2835 AUX block).
            let enabled = unsafe { core::ptr::read_volatile(aux as *const u32) };
            let already = enabled & 1 != 0;
            // SAFETY: as above; bit 0 turns the mini-UART on.
            unsafe { core::ptr::write_volatile(aux as *mut u32, enabled | 1) };
            reg_write(MINI_CNTL, 0);
            reg_write(IER, 0);
            reg_write(LCR, 3); // 8 bits
            reg_write(MCR, 0);
            reg_write(FCR, 0xc6); // clear both FIFOs
            // The firmware's divisor follows the real VPU clock: keep it.
            if let (Some(clk), false) = (clock_hz, already) {
                reg_write(MINI_BAUD, (clk / (8 * BAUD)).saturating_sub(1));
            }
            reg_write(MINI_CNTL, 3); // receiver and transmitter on
        }
    }
}

/// Whether the transmitter cannot take another byte now.
pub fn tx_full() -> bool {
    match KIND.load(Ordering::Relaxed) {
        PL011 => read(FR) & FR_TXFF != 0,
        NS16550 | MINI => reg_read(LSR) & LSR_THRE == 0,
        _ => false,
    }
}

/// Send one byte (the caller checked `tx_full`). Nothing without a UART.
pub fn put(b: u8) {
    match KIND.load(Ordering::Relaxed) {
        PL011 => write(DR, u32::from(b)),
        NS16550 | MINI => reg_write(RBR_THR, u32::from(b)),
        _ => {}
    }
}

/// One received byte, if any.
pub fn get() -> Option<u8> {
    match KIND.load(Ordering::Relaxed) {
        PL011 if read(FR) & FR_RXFE == 0 => Some(read(DR) as u8),
        NS16550 | MINI if reg_read(LSR) & LSR_DR != 0 => Some(reg_read(RBR_THR) as u8),
        _ => None,
    }
}

/// Let the UART interrupt on received bytes.
pub fn enable_rx_irq() {
    match KIND.load(Ordering::Relaxed) {
        PL011 => write(IMSC, read(IMSC) | IMSC_RX),
        // 16550 ERBFI. The mini-UART's receive enable is bit 0 too, and
        // its bits 3:2 must be set for any interrupt (BCM2835 errata).
        NS16550 => reg_write(IER, 1),
        MINI => reg_write(IER, 0x0d),
        _ => {}
    }
}


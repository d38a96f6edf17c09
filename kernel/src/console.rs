//! The hypervisor console: a PL011 UART shared by plain text (banner,
//! panics, guest output, exit summaries) and defmt log frames.
//!
//! Framing on the wire: a defmt frame is sent as `0xFF`, then its rzcobs
//! bytes, ending with `0x00`. Text never contains `0xFF` (it is not valid
//! UTF-8, and guest bytes of 0xFF are replaced), so the host side
//! (`cargo xtask run`) can split the stream and decode the frames.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static BASE: AtomicU64 = AtomicU64::new(0x0900_0000);
static LOCK: AtomicBool = AtomicBool::new(false);
/// Atomics need the MMU and caches on (exclusives on the boards).
static LOCKS_OK: AtomicBool = AtomicBool::new(false);

const DR: u64 = 0x00;
const FR: u64 = 0x18;
const FR_TXFF: u32 = 1 << 5;

pub fn set_base(base: u64) {
    BASE.store(base, Ordering::Relaxed);
}

pub fn locks_ok() -> bool {
    LOCKS_OK.load(Ordering::Acquire)
}

pub fn enable_locking() {
    LOCKS_OK.store(true, Ordering::Release);
}

fn put_raw(b: u8) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the PL011 of this board (from the platform
    // description or the DTB), mapped as Device at EL2; DR and FR are its
    // data and flag registers.
    unsafe {
        while core::ptr::read_volatile((base + FR) as *const u32) & FR_TXFF != 0 {}
        core::ptr::write_volatile((base + DR) as *mut u32, b as u32);
    }
}

/// Exclusive use of the UART until dropped.
pub struct Guard {
    locked: bool,
}

pub fn lock() -> Guard {
    if locks_ok() {
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Guard { locked: true }
    } else {
        Guard { locked: false }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.locked {
            LOCK.store(false, Ordering::Release);
        }
    }
}

impl Guard {
    pub fn byte(&mut self, b: u8) {
        put_raw(b);
    }
    /// A byte of guest output: never a frame marker.
    pub fn guest_byte(&mut self, b: u8) {
        put_raw(if b == 0xff { b'?' } else { b });
    }
}

impl Write for Guard {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put_raw(b'\r');
            }
            put_raw(b);
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let mut g = lock();
    let _ = g.write_fmt(args);
}

/// Break a lock held by a pCPU that panicked, so the panic can be printed.
pub fn force_unlock() {
    LOCK.store(false, Ordering::Release);
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

// ---- defmt transport ----

static mut ENCODER: defmt::Encoder = defmt::Encoder::new();
static mut FRAME_GUARD: Option<Guard> = None;

#[defmt::global_logger]
struct Logger;

// SAFETY: acquire/release bracket every frame under the console lock, and
// EL2 runs with interrupts masked, so a frame is never re-entered on one pCPU.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let mut g = lock();
        g.byte(0xff);
        // SAFETY: we hold the console lock, which guards ENCODER and FRAME_GUARD.
        unsafe {
            let enc = &mut *core::ptr::addr_of_mut!(ENCODER);
            enc.start_frame(put_raw_slice);
            *core::ptr::addr_of_mut!(FRAME_GUARD) = Some(g);
        }
    }
    unsafe fn flush() {}
    unsafe fn release() {
        // SAFETY: called after acquire, with the console lock held.
        unsafe {
            let enc = &mut *core::ptr::addr_of_mut!(ENCODER);
            enc.end_frame(put_raw_slice);
            *core::ptr::addr_of_mut!(FRAME_GUARD) = None;
        }
    }
    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between acquire and release, with the lock held.
        unsafe {
            let enc = &mut *core::ptr::addr_of_mut!(ENCODER);
            enc.write(bytes, put_raw_slice);
        }
    }
}

fn put_raw_slice(bytes: &[u8]) {
    for &b in bytes {
        put_raw(b);
    }
}

defmt::timestamp!("{=u64:us}", crate::arch::counter() * 1_000_000 / crate::arch::counter_freq().max(1));

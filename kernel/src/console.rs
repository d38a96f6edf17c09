//! The hypervisor console: the UART ([`crate::uart`]) shared by plain text (banner,
//! panics, guest output, exit summaries) and defmt log frames.
//!
//! Once locks work, output goes into a ring buffer under the console lock
//! and [`drain`] moves it to the UART only as far as its FIFO has room, so
//! no pCPU ever waits on a slow UART (115200 baud on a board) while it holds
//! a lock others need. `drain` runs on every way back to a guest and in
//! idle loops. A full ring falls back to waiting for the UART (counted as
//! overruns), so nothing is lost. Power-off [`flush`]es everything; a panic
//! prints directly.
//!
//! Framing on the wire: a defmt frame is sent as `0xFF`, then its rzcobs
//! bytes, ending with `0x00`. Text never contains `0xFF` (it is not valid
//! UTF-8, and guest bytes of 0xFF are replaced), so the host side
//! (`cargo xtask run`) can split the stream and decode the frames.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static LOCK: AtomicBool = AtomicBool::new(false);
/// Atomics need the MMU and caches on (exclusives on the boards).
static LOCKS_OK: AtomicBool = AtomicBool::new(false);

/// Bytes typed at the console, read by the UART interrupt on pCPU 0 and
/// handed to the guest with the input focus by `Hyp::route_input`.
pub static INPUT: crate::frames::spin_cell::SpinCell<heapless::Deque<u8, 256>> =
    crate::frames::spin_cell::SpinCell::new(heapless::Deque::new());

/// Read every received byte into [`INPUT`] (dropping what does not fit).
pub fn take_rx() {
    let mut q = INPUT.lock();
    while let Some(b) = crate::uart::get() {
        let _ = q.push_back(b);
    }
}

pub fn locks_ok() -> bool {
    LOCKS_OK.load(Ordering::Acquire)
}

pub fn enable_locking() {
    LOCKS_OK.store(true, Ordering::Release);
}

fn put_blocking(b: u8) {
    while crate::uart::tx_full() {}
    crate::uart::put(b);
}

const RING_BYTES: usize = 32 * 1024;

/// Bytes not yet sent, guarded by the console lock.
struct Ring {
    buf: [u8; RING_BYTES],
    head: usize,
    len: usize,
}

static mut RING: Ring = Ring { buf: [0; RING_BYTES], head: 0, len: 0 };
/// Whether the ring holds anything (read without the lock).
static PENDING: AtomicBool = AtomicBool::new(false);
/// Bytes that found the ring full and had to wait for the UART.
pub static OVERRUNS: AtomicU64 = AtomicU64::new(0);
/// Unbuffered from now on (a panic).
static DIRECT: AtomicBool = AtomicBool::new(false);

/// The ring. Callers hold the console lock.
fn ring() -> &'static mut Ring {
    // SAFETY: every caller holds the console lock (a `Guard` with
    // `locked`), which serialises all access to RING.
    unsafe { &mut *core::ptr::addr_of_mut!(RING) }
}

/// Send the oldest byte, waiting for the UART. Console lock held, `len > 0`.
fn send_one(r: &mut Ring) {
    put_blocking(r.buf[r.head]);
    r.head = (r.head + 1) % RING_BYTES;
    r.len -= 1;
}

/// Send everything, waiting for the UART. Console lock held.
fn send_all(r: &mut Ring) {
    while r.len > 0 {
        send_one(r);
    }
    PENDING.store(false, Ordering::Relaxed);
}

/// Send what the UART takes now without waiting. Console lock held.
fn send_ready(r: &mut Ring) {
    while r.len > 0 && !crate::uart::tx_full() {
        crate::uart::put(r.buf[r.head]);
        r.head = (r.head + 1) % RING_BYTES;
        r.len -= 1;
    }
    PENDING.store(r.len > 0, Ordering::Relaxed);
}

/// One byte out. With locks on it goes to the ring (the lock is held);
/// before that, or after a panic, straight to the UART.
fn put_raw(b: u8) {
    if !locks_ok() || DIRECT.load(Ordering::Relaxed) {
        put_blocking(b);
        return;
    }
    let r = ring();
    if r.len == RING_BYTES {
        send_ready(r);
    }
    if r.len == RING_BYTES {
        // Output outpaces the UART by a whole ring: fall back to waiting
        // for room rather than losing bytes (or cutting a defmt frame).
        send_one(r);
        OVERRUNS.fetch_add(1, Ordering::Relaxed);
    }
    r.buf[(r.head + r.len) % RING_BYTES] = b;
    r.len += 1;
    PENDING.store(true, Ordering::Relaxed);
}

/// Move buffered output to the UART as far as it has room, if no other
/// pCPU holds the console. Never waits for the UART.
pub fn drain() {
    if !PENDING.load(Ordering::Relaxed) || !locks_ok() {
        return;
    }
    if LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        send_ready(ring());
        LOCK.store(false, Ordering::Release);
    }
}

/// Send everything buffered, waiting for the UART (power-off).
pub fn flush() {
    // Before locks, and after a panic, nothing is buffered.
    if !locks_ok() || DIRECT.load(Ordering::Relaxed) {
        return;
    }
    let _g = lock();
    send_all(ring());
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
}

/// A guest's output, held until a line is complete (or the buffer is
/// full), then printed whole: guests' lines are never split by another
/// guest's, another vCPU's or the hypervisor's.
pub struct LineBuf {
    buf: heapless::Vec<u8, 256>,
    /// `[name] ` before each line, when several guests share the console.
    prefix: heapless::String<20>,
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf { buf: heapless::Vec::new(), prefix: heapless::String::new() }
    }

    /// Print `[name] ` before each line from now on.
    pub fn set_prefix(&mut self, name: &str) {
        self.prefix.clear();
        let _ = write!(self.prefix, "[{}] ", name);
    }

    pub fn push(&mut self, b: u8) {
        let _ = self.buf.push(if b == 0xff { b'?' } else { b });
        if b == b'\n' || self.buf.is_full() {
            self.flush();
        }
    }

    /// Print what is held (a stopped guest's last, unfinished line).
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            let mut g = lock();
            for b in self.prefix.bytes() {
                g.byte(b);
            }
            for &b in self.buf.iter() {
                g.byte(b);
            }
            self.buf.clear();
        }
    }
}

impl dispatch::Out for LineBuf {
    fn push(&mut self, b: u8) {
        LineBuf::push(self, b)
    }
    fn flush(&mut self) {
        LineBuf::flush(self)
    }
    fn set_prefix(&mut self, name: &str) {
        LineBuf::set_prefix(self, name)
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
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

/// A panic: print directly from now on (the lock may be held by a pCPU that
/// will never let go), so the panic itself gets out. Whatever was still
/// buffered is sent first if the console can be had within a bounded wait.
pub fn force_unlock() {
    for _ in 0..1_000_000 {
        if LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            let r = ring();
            // At most one ring's worth, whatever state it is in.
            r.head %= RING_BYTES;
            r.len = r.len.min(RING_BYTES);
            send_all(r);
            break;
        }
        core::hint::spin_loop();
    }
    DIRECT.store(true, Ordering::Relaxed);
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

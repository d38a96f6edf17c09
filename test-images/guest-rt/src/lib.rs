//! A tiny EL1 runtime for the bare-metal test guests: entry, exception
//! vectors, the hypercall console, PSCI, a stage-1 identity map, set/way
//! cache maintenance as Linux does it, and PMU counting for benchmarks.
//!
//! A guest crate provides `fn guest_main() -> bool` (and optionally
//! `guest_secondary(cpu)`) with `guest_rt::entry!`.
#![no_std]
// Bare-metal only: on the host (`cargo test --workspace`) this crate is empty.
#![cfg(target_os = "none")]

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

pub use trap::hypercall as abi;

#[cfg(target_arch = "aarch64")]
mod a64;
#[cfg(target_arch = "aarch64")]
pub use a64::*;
#[cfg(target_arch = "arm")]
mod a32;
#[cfg(target_arch = "arm")]
pub use a32::*;

/// Declare the guest's main function (and optionally a secondary-vCPU one).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry() -> ! {
            $crate::run_main($main)
        }
        #[unsafe(no_mangle)]
        extern "C" fn guest_secondary_entry(ctx: usize) -> ! {
            $crate::park_secondary(ctx as u64)
        }
    };
    ($main:path, $secondary:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry() -> ! {
            $crate::run_main($main)
        }
        #[unsafe(no_mangle)]
        extern "C" fn guest_secondary_entry(ctx: usize) -> ! {
            $secondary(ctx as u64);
            $crate::cpu_off()
        }
    };
}

pub fn run_main(main: fn() -> bool) -> ! {
    let ok = main();
    if ok {
        system_off()
    } else {
        exit(1)
    }
}

pub fn park_secondary(_ctx: u64) -> ! {
    cpu_off()
}

pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // A register's worth of bytes per call (4 on AArch32).
        const N: usize = core::mem::size_of::<usize>();
        for chunk in s.as_bytes().chunks(N) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            hvc(abi::HC_PUTS8 as u64, u64::from_le_bytes(w), chunk.len() as u64, 0);
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let _ = Console.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Report a counter to the hypervisor.
pub fn report(key: u64, value: u64) {
    hvc(abi::HC_REPORT as u64, key, value, 0);
}

/// Stop this guest with a status (0 = ok).
pub fn exit(status: u64) -> ! {
    hvc(abi::HC_EXIT as u64, status, 0, 0);
    loop {
        // SAFETY: waiting; the hypervisor does not resume a stopped guest.
        unsafe { core::arch::asm!("wfe") }
    }
}

pub fn system_off() -> ! {
    smc(abi::psci::SYSTEM_OFF as u64, 0, 0, 0);
    exit(2)
}

/// PSCI CPU_ON (SMC64) for the vCPU with affinity `mpidr`.
pub fn cpu_on(mpidr: u64, context: u64) -> i64 {
    smc(PSCI_CPU_ON as u64, mpidr, _start as *const () as u64, context) as i64
}

/// PSCI CPU_ON with an entry point of the caller's choosing.
pub fn cpu_on_at(mpidr: u64, entry: u64, context: u64) -> i64 {
    smc(PSCI_CPU_ON as u64, mpidr, entry, context) as i64
}

/// PSCI AFFINITY_INFO: 0 on, 1 off, 2 on-pending, negative when absent.
pub fn affinity_info(mpidr: u64) -> i64 {
    smc(PSCI_AFFINITY_INFO as u64, mpidr, 0, 0) as i64
}

unsafe extern "C" {
    fn _start();
}

pub fn cpu_off() -> ! {
    smc(abi::psci::CPU_OFF as u64, 0, 0, 0);
    exit(3)
}

// ---- exceptions ----

/// The last synchronous exception taken at EL1: (ESR, FAR), 0 when none.
static LAST_ESR: AtomicU64 = AtomicU64::new(0);
static LAST_FAR: AtomicU64 = AtomicU64::new(0);

/// Take and clear the last recorded exception.
pub fn take_exception() -> Option<(u64, u64)> {
    let esr = LAST_ESR.swap(0, Ordering::SeqCst);
    (esr != 0).then(|| (esr, LAST_FAR.load(Ordering::SeqCst)))
}

/// Called by the vectors; returns the address to resume at. AArch32
/// guests pass DFSR with EC 0x25 put on top, so both read alike.
pub fn guest_exception(kind: u64, esr: u64, far: u64, elr: u64) -> u64 {
    let ec = esr >> 26;
    // A synchronous data abort at EL1 (EC 0x25): record it and skip the load.
    if kind == 4 && ec == 0x25 {
        LAST_FAR.store(far, Ordering::SeqCst);
        LAST_ESR.store(esr, Ordering::SeqCst);
        return elr + 4;
    }
    println!("guest: unexpected exception kind={} esr={:#x} far={:#x} elr={:#x}", kind, esr, far, elr);
    exit(9)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("guest panic: {}", info);
    exit(8)
}


// ---- set/way maintenance, as Linux's v7_flush_dcache_all does ----

#[derive(Clone, Copy)]
pub enum SwOp {
    Isw,
    Csw,
    Cisw,
}

/// Apply `op` by set/way to every data or unified cache level up to the
/// level of coherency. Returns how many set/way operations ran.
pub fn dcache_all_by_set_way(op: SwOp) -> u64 {
    let clidr = clidr();
    let loc = (clidr >> 24) & 7;
    let mut ops = 0;
    for level in 0..loc {
        if (clidr >> (level * 3)) & 7 < 2 {
            continue; // no cache, or instructions only
        }
        let ccsidr = ccsidr(level);
        let line_shift = (ccsidr & 7) + 4;
        let ways = ((ccsidr >> 3) & 0x3ff) + 1;
        let sets = ((ccsidr >> 13) & 0x7fff) + 1;
        let way_shift = (ways - 1).leading_zeros();
        for way in 0..ways {
            for set in 0..sets {
                set_way(op, way.checked_shl(way_shift).unwrap_or(0) | (set << line_shift) | (level << 1));
                ops += 1;
            }
        }
    }
    barrier();
    ops
}

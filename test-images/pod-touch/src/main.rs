//! pod-touch: touches a known set of guest pages (sparse 4 KiB pages in a
//! chunk that already holds the image, one word in each of several fresh
//! 2 MiB chunks, and a dense 4 MiB range), checks every first touch reads
//! zero, then touches an address beyond its RAM and expects an abort.
//!
//! It reports (key 2) 0 before and 1 after the touches, so a test can read
//! the hypervisor's populated-bytes figure around exactly these touches.
//! Run it with 256 MiB of RAM.
#![no_std]
#![no_main]

use guest_rt::{abi, println};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// In chunk 0 (which the image already partly fills): 4 KiB populations.
const SPARSE_4K_BASE: usize = 0x4018_0000;
const SPARSE_4K_PAGES: usize = 8;
/// One word in each of these fresh chunks: 2 MiB populations.
const SPARSE_2M_BASE: usize = 0x4100_0000;
const SPARSE_2M_CHUNKS: usize = 8;
/// Every page of this range: 2 MiB populations.
const DENSE_BASE: usize = 0x4400_0000;
const DENSE_BYTES: usize = 4 * MIB;
/// Guest RAM is 256 MiB from 0x4000_0000.
const BEYOND_RAM: usize = 0x5000_0000;

/// Read (must be zero), then write a marker. Returns false on non-zero.
fn touch(addr: usize) -> bool {
    let p = addr as *mut u64;
    // SAFETY: `addr` is in guest RAM, identity-mapped.
    let old = unsafe { p.read_volatile() };
    // SAFETY: as above.
    unsafe { p.write_volatile(addr as u64 | 1) };
    old == 0
}

fn main() -> bool {
    println!("pod-touch: start");
    guest_rt::mmu_on();
    guest_rt::report(abi::ReportKey::Pattern as u64, 0);
    let mut nonzero = 0;
    for k in 0..SPARSE_4K_PAGES {
        nonzero += !touch(SPARSE_4K_BASE + k * 4 * KIB) as usize;
    }
    for k in 0..SPARSE_2M_CHUNKS {
        nonzero += !touch(SPARSE_2M_BASE + k * 4 * MIB + 12345 * 8) as usize;
    }
    for a in (DENSE_BASE..DENSE_BASE + DENSE_BYTES).step_by(4 * KIB) {
        nonzero += !touch(a) as usize;
    }
    guest_rt::report(abi::ReportKey::Pattern as u64, 1);
    println!(
        "pod-touch: expect_4k={} expect_2m={} nonzero_first_reads={}",
        SPARSE_4K_PAGES,
        SPARSE_2M_CHUNKS + DENSE_BYTES / (2 * MIB),
        nonzero
    );
    // SAFETY: the hypervisor turns this load into an abort we handle.
    let _ = unsafe { (BEYOND_RAM as *const u64).read_volatile() };
    let abort_ok = matches!(guest_rt::take_exception(), Some((esr, far)) if esr >> 26 == 0x25 && far == BEYOND_RAM as u64);
    println!("pod-touch: beyond-RAM abort {}", if abort_ok { "ok" } else { "MISSING" });
    let ok = nonzero == 0 && abort_ok;
    println!("pod-touch: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

guest_rt::entry!(main);

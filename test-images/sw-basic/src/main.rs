//! sw-basic: a bare-metal EL1 guest that uses set/way maintenance the way
//! Linux's `v7_flush_dcache_all` does, toggles its data cache, checks a
//! pattern, and touches memory outside its RAM to see an abort.
#![no_std]
#![no_main]

use guest_rt::{abi, println, SwOp};

/// Guest RAM starts at 0x4000_0000; the pattern sits 16 MiB in.
const PATTERN_BASE: usize = 0x4100_0000;
const PATTERN_WORDS: usize = 64 * 1024; // 512 KiB
/// An address outside any guest RAM size the tests use (below 2 GiB).
const OUTSIDE_RAM: usize = 0x7ff0_0000;

fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a_0000_0000_a5a5
}

fn write_pattern() {
    let p = PATTERN_BASE as *mut u64;
    for i in 0..PATTERN_WORDS {
        // SAFETY: the pattern area lies in guest RAM, identity-mapped.
        unsafe { p.add(i).write_volatile(pattern(i)) };
    }
}

fn check_pattern() -> usize {
    let p = PATTERN_BASE as *const u64;
    (0..PATTERN_WORDS)
        // SAFETY: as in write_pattern.
        .filter(|&i| unsafe { p.add(i).read_volatile() } != pattern(i))
        .count()
}

fn main() -> bool {
    println!("sw-basic: start");
    guest_rt::mmu_on();
    write_pattern();

    // Clean+invalidate everything by set/way, then run with caches off:
    // what we read must come from the point of coherency.
    // As Linux does: clean, turn the data cache off, clean again (lines
    // dirtied in between, the stack's, would otherwise be written back
    // later over what we write with caches off).
    let mut sw_ops = guest_rt::dcache_all_by_set_way(SwOp::Cisw);
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_I);
    sw_ops += guest_rt::dcache_all_by_set_way(SwOp::Cisw);
    let bad_off = check_pattern();
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_C | guest_rt::SCTLR_I);
    // A clean-only pass, as Linux does before turning caches off again.
    sw_ops += guest_rt::dcache_all_by_set_way(SwOp::Csw);
    let bad_on = check_pattern();
    println!("sw-basic: sw_ops={} bad_caches_off={} bad_caches_on={}", sw_ops, bad_off, bad_on);
    guest_rt::report(abi::ReportKey::SwOps as u64, sw_ops);

    // An access outside guest RAM must come back to us as a data abort
    // (on AArch32 in ABT mode, whose handler returns through SPSR_abt).
    // SAFETY: the hypervisor turns this load into an abort we handle.
    let _ = unsafe { (OUTSIDE_RAM as *const u64).read_volatile() };
    let abort = guest_rt::take_exception();
    let abort_ok = match abort {
        Some((esr, far)) => {
            println!("sw-basic: abort esr={:#x} far={:#x}", esr, far);
            esr >> 26 == 0x25 && far == OUTSIDE_RAM as u64
        }
        None => false,
    };
    let ok = bad_off == 0 && bad_on == 0 && abort_ok && sw_ops > 0;
    guest_rt::report(abi::ReportKey::Pattern as u64, ok as u64);
    if ok {
        println!("sw-basic: PASS");
    } else {
        println!("sw-basic: FAIL (abort_ok={})", abort_ok);
    }
    ok
}

guest_rt::entry!(main);

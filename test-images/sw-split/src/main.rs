//! sw-split: the set/way heisenbug in its plainest form. vCPU 0 writes a
//! buffer with caches on, runs a while (so that, with more vCPUs than
//! pCPUs and nothing pinning it, the scheduler may move it), cleans its
//! data cache by set/way, turns it off and reads the buffer back. It does
//! this for 24 rounds. The other vCPUs only keep the pCPUs busy, with
//! caches off, so nothing else cleans or evicts what vCPU 0 left behind.
//! Under sched=rr's shared queue an odd number of busy vCPUs on two pCPUs
//! moves a vCPU at every tick; an even number can settle into a fixed
//! pairing. With set/way trapped (the hypervisor's clean) or the vCPUs
//! pinned, real hardware loses nothing; unpinned and untrapped, a round
//! whose clean ran on another pCPU than the writes reads stale memory.
//! QEMU has no caches: the words always match; the cache oracle sees it.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_rt::{abi, println, SwOp};

const BUF: usize = 0x4100_0000;
const WORDS: usize = 8 * 1024; // 64 KiB: fits the L2 of one pCPU
const ROUNDS: u64 = 24;
const MAX_CPUS: u64 = 8;

fn counter() -> (u64, u64) {
    let (v, f): (u64, u64);
    // SAFETY: reading the generic timer's counter and frequency registers.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0", out(reg) v, out(reg) f, options(nostack)) };
    (v, f)
}

/// Run for `ms` of guest time, touching no memory.
fn busy(ms: u64) {
    let (start, freq) = counter();
    while counter().0 - start < freq * ms / 1000 {
        core::hint::spin_loop();
    }
}

fn word(round: u64, i: usize) -> u64 {
    (round << 48) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn main() -> bool {
    println!("sw-split: start");
    guest_rt::mmu_on();
    // Every other vCPU spins (PSCI AFFINITY_INFO: NOT_PRESENT ends the list).
    let spinners = (1..MAX_CPUS).take_while(|&c| guest_rt::affinity_info(c) >= 0).count() as u64;
    for c in 1..=spinners {
        if guest_rt::cpu_on(c, c) != 0 {
            println!("sw-split: CPU_ON({}) failed", c);
            return false;
        }
    }
    let p = BUF as *mut u64;
    let mut bad = 0u64;
    let mut ops = 0u64;
    for round in 0..ROUNDS {
        for i in 0..WORDS {
            // SAFETY: the buffer lies in guest RAM, identity-mapped.
            unsafe { p.add(i).write_volatile(word(round, i)) };
        }
        busy(25);
        ops += guest_rt::dcache_all_by_set_way(SwOp::Cisw);
        guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_I);
        ops += guest_rt::dcache_all_by_set_way(SwOp::Cisw);
        // SAFETY: as above.
        bad += (0..WORDS).filter(|&i| unsafe { p.add(i).read_volatile() } != word(round, i)).count() as u64;
        guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_C | guest_rt::SCTLR_I);
    }
    for c in 1..=spinners {
        while guest_rt::affinity_info(c) != 1 {
            core::hint::spin_loop();
        }
    }
    println!("sw-split: rounds={} sw_ops={} bad_words={}", ROUNDS, ops, bad);
    guest_rt::report(abi::ReportKey::SwOps as u64, ops);
    let ok = bad == 0;
    println!("sw-split: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

/// Keep a pCPU busy for about as long as vCPU 0's rounds take, caches off
/// and touching no shared memory (a shared flag read with caches off would
/// itself be a coherence bug).
fn secondary(_ctx: u64) {
    busy(ROUNDS * 60);
}

guest_rt::entry!(main, secondary);

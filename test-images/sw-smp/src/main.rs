//! sw-smp: an SMP guest that brings its secondary vCPUs up with PSCI CPU_ON
//! the way Linux arm32 does, with set/way cleans around bring-up and caches
//! toggled, and checks that a pattern written before the cleans survives.
//! Under `sched=rr` with more vCPUs than pCPUs, vCPUs migrate mid-loop.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_rt::{abi, println, SwOp};

const PATTERN_BASE: usize = 0x4100_0000;
const WORDS_PER_CPU: usize = 32 * 1024; // 256 KiB per vCPU
const MAX_CPUS: usize = 8;
/// Set/way passes each secondary makes.
const PASSES: u32 = 2;

static ONLINE: AtomicU32 = AtomicU32::new(0);
static FINISHED: AtomicU32 = AtomicU32::new(0);
static SW_OPS: AtomicU64 = AtomicU64::new(0);
/// Words a secondary read back wrong with its caches off.
static OWN_BAD: AtomicU64 = AtomicU64::new(0);

fn pattern(cpu: usize, i: usize) -> u64 {
    ((cpu as u64) << 56) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn area(cpu: usize) -> *mut u64 {
    (PATTERN_BASE + cpu * WORDS_PER_CPU * 8) as *mut u64
}

fn write_pattern(cpu: usize) {
    for i in 0..WORDS_PER_CPU {
        // SAFETY: each vCPU's area lies in guest RAM, identity-mapped.
        unsafe { area(cpu).add(i).write_volatile(pattern(cpu, i)) };
    }
}

fn bad_words(cpu: usize) -> usize {
    // SAFETY: as in write_pattern.
    (0..WORDS_PER_CPU).filter(|&i| unsafe { area(cpu).add(i).read_volatile() } != pattern(cpu, i)).count()
}

fn flush(op: SwOp) {
    SW_OPS.fetch_add(guest_rt::dcache_all_by_set_way(op), Ordering::SeqCst);
}

fn vcpus() -> usize {
    // The hypervisor reports the vCPU count in x0 is not part of the ABI;
    // probe with PSCI AFFINITY_INFO instead: NOT_PRESENT ends the list.
    (1..MAX_CPUS).take_while(|&c| guest_rt::affinity_info(c as u64) >= 0).count() + 1
}

fn main() -> bool {
    println!("sw-smp: start");
    guest_rt::mmu_on();
    write_pattern(0);
    let n = vcpus();
    println!("sw-smp: {} vCPUs", n);
    for cpu in 1..n {
        // Linux arm32 cleans the caches by set/way before starting a CPU.
        flush(SwOp::Cisw);
        let r = guest_rt::cpu_on(cpu as u64, cpu as u64);
        if r != 0 {
            println!("sw-smp: CPU_ON({}) failed: {}", cpu, r as i64);
            return false;
        }
    }
    while ONLINE.load(Ordering::SeqCst) as usize != n - 1 {
        core::hint::spin_loop();
    }
    println!("sw-smp: all {} secondaries online", n - 1);
    while FINISHED.load(Ordering::SeqCst) as usize != n - 1 {
        core::hint::spin_loop();
    }
    // Caches off: what we read now comes from the point of coherency.
    flush(SwOp::Cisw);
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_I);
    let bad: usize = (0..n).map(bad_words).sum();
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_C | guest_rt::SCTLR_I);
    // Shared counters only with caches on (see the secondaries).
    let bad = bad + OWN_BAD.load(Ordering::SeqCst) as usize;
    let ops = SW_OPS.load(Ordering::SeqCst);
    println!("sw-smp: sw_ops={} bad_words={}", ops, bad);
    guest_rt::report(abi::ReportKey::SwOps as u64, ops);
    guest_rt::report(abi::ReportKey::Pattern as u64, bad as u64);
    for cpu in 1..n {
        while guest_rt::affinity_info(cpu as u64) != 1 {
            core::hint::spin_loop();
        }
    }
    let ok = bad == 0;
    println!("sw-smp: {}", if ok { "PASS" } else { "FAIL" });
    ok
}

fn secondary(ctx: u64) {
    let cpu = ctx as usize;
    // A secondary comes up with caches off: invalidate, then turn them on
    // (no atomics before the MMU is on).
    let isw = guest_rt::dcache_all_by_set_way(SwOp::Isw);
    guest_rt::mmu_on();
    SW_OPS.fetch_add(isw, Ordering::SeqCst);
    write_pattern(cpu);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    for _ in 0..PASSES {
        flush(SwOp::Cisw);
    }
    // Toggle caches as a CPU going down does. No shared atomics while they
    // are off: an exclusive on non-cacheable memory racing with cacheable
    // ones elsewhere can lose updates on real hardware (the cache oracle
    // reported exactly that here).
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_I);
    let ops = guest_rt::dcache_all_by_set_way(SwOp::Cisw);
    // What a CPU going down does next: read its data from memory. If the
    // flush above ran partly on another pCPU, real hardware returns stale
    // words here (QEMU does not; the cache oracle sees it).
    let own_bad = bad_words(cpu);
    guest_rt::set_sctlr(guest_rt::SCTLR_M | guest_rt::SCTLR_C | guest_rt::SCTLR_I);
    SW_OPS.fetch_add(ops, Ordering::SeqCst);
    OWN_BAD.fetch_add(own_bad as u64, Ordering::SeqCst);
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

guest_rt::entry!(main, secondary);

//! bench: measures the cost of each trap path in instructions retired
//! (PMU event 0x08, counting EL1 and EL2), for `cargo xtask bench` under
//! QEMU `-icount`. Each figure is (N operations - N no-op iterations) / N.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_rt::{println, SwOp};

const N: u64 = 64;
const PAGE: usize = 4096;
/// 4 KiB faults: pages in chunk 0, which the image already partly fills.
const PAGES_4K: usize = 0x4018_0000;
/// 2 MiB faults: fresh chunks.
const CHUNKS_2M: usize = 0x4200_0000;
const CHUNK: usize = 2 << 20;
/// Memory touched before the set/way flush, to give the clean work.
const TOUCH_BASE: usize = 0x4400_0000;
const TOUCH_BYTES: usize = 8 << 20;

/// 2 MiB faults measured (each zeroes and cleans a whole block).
const N_2M: u64 = 16;

fn count(n: u64, f: impl Fn(u64)) -> u64 {
    let start = guest_rt::pmu_read();
    for i in 0..n {
        f(i);
    }
    guest_rt::pmu_read() - start
}

fn per_op(op: impl Fn(u64), nop: impl Fn(u64)) -> u64 {
    let base = count(N, nop);
    count(N, op).saturating_sub(base) / N
}

fn fault_cost(base: usize, stride: usize, n: u64) -> u64 {
    // SAFETY: guest RAM, identity-mapped.
    let touch = |i: u64| unsafe { ((base + i as usize * stride) as *mut u64).write_volatile(i) };
    let faulting = count(n, touch);
    let mapped = count(n, touch);
    faulting.saturating_sub(mapped) / n
}

fn nop(_: u64) {
    // SAFETY: a no-op.
    unsafe { asm!("nop") }
}

fn main() -> bool {
    println!("bench: start");
    guest_rt::mmu_on();
    guest_rt::pmu_start();

    let hvc = per_op(|_| { guest_rt::hvc(0x8600_00ff, 0, 0, 0); }, nop);

    // Touch memory, then one set/way op: TVM goes on and a clean runs.
    for a in (TOUCH_BASE..TOUCH_BASE + TOUCH_BYTES).step_by(PAGE) {
        // SAFETY: guest RAM, identity-mapped.
        unsafe { (a as *mut u64).write_volatile(1) };
    }
    let ops = guest_rt::dcache_all_by_set_way(SwOp::Cisw);
    // Now each DC CSW traps with TVM already on: no further clean.
    let sw = per_op(|_| unsafe { asm!("dc csw, {}", in(reg) 0u64) }, nop);
    // And each CONTEXTIDR write traps while the caches are off (with them
    // on, the first VM-register write would turn TVM off, as in KVM). The
    // data cache off (a trapped SCTLR write and a clean), the loop, then on
    // again; -icount counts instructions, so uncached accesses cost the same.
    let sctlr = guest_rt::sctlr();
    guest_rt::set_sctlr(sctlr & !guest_rt::SCTLR_C);
    let tvm = per_op(|i| unsafe { asm!("msr contextidr_el1, {}", "isb", in(reg) i) }, |_| unsafe { asm!("nop", "isb") });
    guest_rt::set_sctlr(sctlr);
    // One more set/way op, so the caches-off/on below trap and clean.
    guest_rt::dcache_all_by_set_way(SwOp::Csw);
    // Caches off and on again: two cleans, TVM off afterwards.
    guest_rt::set_sctlr(sctlr & !guest_rt::SCTLR_C);
    guest_rt::set_sctlr(sctlr);

    // Faults: touch fresh pages (each faults), then the same pages again
    // (now mapped); the difference is the fault.
    let fault_4k = fault_cost(PAGES_4K, PAGE, N);
    let fault_2m = fault_cost(CHUNKS_2M, CHUNK, N_2M);

    println!("bench: sw_ops={}", ops);
    println!("bench: hvc_insns={} sw_trap_insns={} tvm_trap_insns={} pod_4k_fault_insns={} pod_2m_fault_insns={}", hvc, sw, tvm, fault_4k, fault_2m);
    true
}

guest_rt::entry!(main);

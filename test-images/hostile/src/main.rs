//! hostile: a guest that misuses the hypervisor's interfaces on purpose.
//! It calls `hvc #1` (not the SMCCC conduit), asks PSCI to start a vCPU at
//! an address outside its RAM and at a misaligned one, provokes thousands
//! of aborts outside its RAM, and finally turns its last vCPU off with
//! PSCI CPU_OFF. The hypervisor must answer each with an error, keep its
//! log short, and count the guest as stopped.
#![no_std]
#![no_main]

use core::arch::asm;

use guest_rt::{abi, println};

const OUTSIDE_RAM: usize = 0x7ff0_0000;
const ABORTS: usize = 5000;

fn hvc1(fid: u64, a1: u64) -> u64 {
    let r: u64;
    // SAFETY: a hypercall with a non-zero immediate; it returns in x0.
    unsafe { asm!("hvc #1", inlateout("x0") fid => r, in("x1") a1, options(nostack)) };
    r
}

fn main() -> bool {
    let hvc = hvc1(abi::HC_PUTC as u64, b'!' as u64) as i64;
    let outside = guest_rt::cpu_on_at(1, OUTSIDE_RAM as u64, 0);
    let misaligned = guest_rt::cpu_on_at(1, 0x4008_0002, 0);
    println!("hostile: hvc1={} cpu_on_outside={} cpu_on_misaligned={}", hvc, outside, misaligned);
    let mut aborts = 0;
    for _ in 0..ABORTS {
        // SAFETY: the hypervisor turns this load into an abort we handle.
        let _ = unsafe { (OUTSIDE_RAM as *const u64).read_volatile() };
        aborts += guest_rt::take_exception().is_some() as usize;
    }
    println!("hostile: aborts={}", aborts);
    println!("hostile: turning the last vCPU off");
    guest_rt::cpu_off()
}

guest_rt::entry!(main);

//! isolation: writes a marker of its own into every EL1/EL0 register group
//! a guest can reach (timers, debug, PMU, thread IDs), then checks them
//! again and again while another guest on the same pCPU does the same with
//! its own markers. Any value that is not its own means the hypervisor
//! leaked state between guests. Run two of it with `--cpus 1`.
#![no_std]
#![no_main]

use core::arch::asm;

use guest_rt::println;

macro_rules! rd {
    ($r:literal) => {{
        let v: u64;
        // SAFETY: reading one of this vCPU's registers.
        unsafe { asm!(concat!("mrs {}, ", $r), out(reg) v) };
        v
    }};
}
macro_rules! wr {
    ($r:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: these registers are this guest's; none of the values
        // written arms a timer, breakpoint or counter.
        unsafe { asm!(concat!("msr ", $r, ", {}"), "isb", in(reg) v) };
    }};
}

/// Each register: its name, and how to write and read it.
struct Reg {
    name: &'static str,
    write: fn(u64),
    read: fn() -> u64,
    /// The bits the register keeps (RES0 bits read back as 0).
    mask: u64,
}

macro_rules! reg {
    ($name:literal, $mask:expr) => {
        Reg { name: $name, write: |v| wr!($name, v), read: || rd!($name), mask: $mask }
    };
}

const VA: u64 = 0x0000_7fff_ffff_fffc; // a breakpoint/watchpoint address
const REGS: &[Reg] = &[
    reg!("cntp_cval_el0", u64::MAX),
    reg!("cntv_cval_el0", u64::MAX),
    reg!("dbgbvr0_el1", VA),
    reg!("dbgbvr1_el1", VA),
    reg!("dbgwvr0_el1", VA),
    reg!("pmevtyper0_el0", 0x3ff),
    reg!("pmccfiltr_el0", 0xf800_0000),
    reg!("pmselr_el0", 0x1f),
    reg!("tpidr_el0", u64::MAX),
    reg!("tpidrro_el0", u64::MAX),
    reg!("tpidr_el1", u64::MAX),
    reg!("contextidr_el1", 0xffff_ffff),
];

fn marker(seed: u64, i: usize) -> u64 {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

fn spin_ms(ms: u64) {
    let end = rd!("cntpct_el0") + rd!("cntfrq_el0") / 1000 * ms;
    while rd!("cntpct_el0") < end {}
}

fn main() -> bool {
    // Two instances start at different counter values: their seeds differ.
    let seed = rd!("cntpct_el0") | 1;
    // Timers stay disabled and masked: only their compare values are marked.
    wr!("cntp_ctl_el0", 0b10);
    wr!("cntv_ctl_el0", 0b10);
    for (i, r) in REGS.iter().enumerate() {
        (r.write)(marker(seed, i) & r.mask);
    }
    let mut checks = 0u64;
    for round in 0..60 {
        spin_ms(5);
        for (i, r) in REGS.iter().enumerate() {
            let want = marker(seed, i) & r.mask;
            let got = (r.read)() & r.mask;
            checks += 1;
            if got != want {
                println!("isolation: FAIL {} reads {:#x}, wrote {:#x} (round {})", r.name, got, want, round);
                return false;
            }
        }
    }
    println!("isolation: PASS checks={}", checks);
    true
}

guest_rt::entry!(main);

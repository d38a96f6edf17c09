//! A tiny EL1 runtime for the bare-metal test guests: entry, exception
//! vectors, the hypercall console, PSCI, a stage-1 identity map, set/way
//! cache maintenance as Linux does it, and PMU counting for benchmarks.
//!
//! A guest crate provides `fn guest_main() -> bool` (and optionally
//! `guest_secondary(cpu)`) with `guest_rt::entry!`.
#![no_std]

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

pub use trap::hypercall as abi;

global_asm!(include_str!("start.s"));

/// Declare the guest's main function (and optionally a secondary-vCPU one).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry() -> ! {
            $crate::run_main($main)
        }
        #[unsafe(no_mangle)]
        extern "C" fn guest_secondary_entry(ctx: u64) -> ! {
            $crate::park_secondary(ctx)
        }
    };
    ($main:path, $secondary:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn guest_entry() -> ! {
            $crate::run_main($main)
        }
        #[unsafe(no_mangle)]
        extern "C" fn guest_secondary_entry(ctx: u64) -> ! {
            $secondary(ctx);
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

/// HVC with up to three arguments; returns x0.
pub fn hvc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: a hypercall to our hypervisor; it preserves memory and
    // registers other than x0-x3.
    unsafe {
        asm!("hvc #0", inlateout("x0") fid => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, options(nostack))
    }
    r
}

/// SMC with up to three arguments (PSCI's SMC conduit); returns x0.
pub fn smc(fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let r: u64;
    // SAFETY: as `hvc`; the hypervisor traps SMC (HCR_EL2.TSC).
    unsafe {
        asm!("smc #0", inlateout("x0") fid => r, inlateout("x1") a1 => _, inlateout("x2") a2 => _,
             inlateout("x3") a3 => _, options(nostack))
    }
    r
}

pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(8) {
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
        unsafe { asm!("wfe") }
    }
}

pub fn system_off() -> ! {
    smc(abi::psci::SYSTEM_OFF as u64, 0, 0, 0);
    exit(2)
}

/// PSCI CPU_ON (SMC64) for the vCPU with affinity `mpidr`.
pub fn cpu_on(mpidr: u64, context: u64) -> i64 {
    smc(abi::psci::CPU_ON_64 as u64, mpidr, _start as *const () as u64, context) as i64
}

/// PSCI AFFINITY_INFO: 0 on, 1 off, 2 on-pending, negative when absent.
pub fn affinity_info(mpidr: u64) -> i64 {
    smc(abi::psci::AFFINITY_INFO_64 as u64, mpidr, 0, 0) as i64
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

/// Called by the vectors; returns the address to resume at.
#[unsafe(no_mangle)]
extern "C" fn guest_exception(kind: u64, esr: u64, far: u64, elr: u64) -> u64 {
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

// ---- system registers ----

#[macro_export]
macro_rules! mrs {
    ($r:literal) => {{
        let v: u64;
        // SAFETY: reading a system register.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $r), out(reg) v) };
        v
    }};
}
#[macro_export]
macro_rules! msr {
    ($r:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the guest owns its EL1 state.
        unsafe { core::arch::asm!(concat!("msr ", $r, ", {}"), "isb", in(reg) v) };
    }};
}

// ---- stage-1 MMU ----

#[repr(C, align(4096))]
struct Table([u64; 512]);
static mut L1: Table = Table([0; 512]);

const SCTLR_RES1: u64 = 0x30d0_0800;
pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;
pub const SCTLR_I: u64 = 1 << 12;

/// Identity-map the first 4 GiB with 1 GiB blocks (0-1 GiB device, the
/// rest normal write-back) and turn the MMU and caches on.
pub fn mmu_on() {
    let l1 = core::ptr::addr_of_mut!(L1) as *mut u64;
    for i in 0..4u64 {
        let attr = if i == 0 { 0 << 2 } else { (1 << 2) | (3 << 8) };
        // SAFETY: L1 is ours, 512 entries; only the first four are written.
        unsafe { l1.add(i as usize).write_volatile((i << 30) | attr | (1 << 10) | 1) };
    }
    msr!("mair_el1", 0x04 | (0xff << 8));
    // T0SZ=25, WBWA, inner shareable, 4K, EPD1, IPS=40 bits.
    msr!("tcr_el1", 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32));
    msr!("ttbr0_el1", l1 as u64);
    // SAFETY: TLB invalidation for this guest.
    unsafe { asm!("dsb ish", "tlbi vmalle1", "dsb ish", "isb") };
    set_sctlr(SCTLR_M | SCTLR_C | SCTLR_I);
}

pub fn set_sctlr(bits: u64) {
    msr!("sctlr_el1", SCTLR_RES1 | bits);
}

pub fn sctlr() -> u64 {
    mrs!("sctlr_el1")
}

// ---- set/way maintenance, as Linux's v7_flush_dcache_all does ----

#[derive(Clone, Copy)]
pub enum SwOp {
    Isw,
    Csw,
    Cisw,
}

/// Apply `op` to every line of every data/unified cache level up to the
/// level of coherency, by set/way. Returns how many set/way operations ran.
pub fn dcache_all_by_set_way(op: SwOp) -> u64 {
    let clidr = mrs!("clidr_el1");
    let loc = (clidr >> 24) & 7;
    let mut ops = 0;
    for level in 0..loc {
        let ctype = (clidr >> (level * 3)) & 7;
        if ctype < 2 {
            continue; // no cache or instruction only
        }
        msr!("csselr_el1", level << 1);
        let ccsidr = mrs!("ccsidr_el1");
        let line_shift = (ccsidr & 7) + 4;
        let ways = ((ccsidr >> 3) & 0x3ff) + 1;
        let sets = ((ccsidr >> 13) & 0x7fff) + 1;
        let way_shift = ((ways - 1) as u32).leading_zeros() as u64;
        for way in 0..ways {
            for set in 0..sets {
                let v = (way << way_shift) | (set << line_shift) | (level << 1);
                // SAFETY: set/way maintenance only changes cache state.
                unsafe {
                    match op {
                        SwOp::Isw => asm!("dc isw, {}", in(reg) v),
                        SwOp::Csw => asm!("dc csw, {}", in(reg) v),
                        SwOp::Cisw => asm!("dc cisw, {}", in(reg) v),
                    }
                }
                ops += 1;
            }
        }
    }
    // SAFETY: barriers.
    unsafe { asm!("dsb sy", "isb") };
    ops
}

// ---- PMU: instructions retired, counting EL2 too (benchmarks) ----

/// Start counting INST_RETIRED (event 0x08) on counter 0, at EL1 and EL2.
pub fn pmu_start() {
    msr!("pmselr_el0", 0);
    // NSH (bit 27) = count at EL2.
    msr!("pmxevtyper_el0", 0x08 | (1 << 27));
    msr!("pmcntenset_el0", 1);
    msr!("pmcr_el0", 1 | (1 << 1)); // enable, reset event counters
}

pub fn pmu_read() -> u64 {
    msr!("pmselr_el0", 0);
    mrs!("pmxevcntr_el0")
}

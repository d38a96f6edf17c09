//! Powering the machine off: through semihosting (QEMU exits with the
//! guests' status), the firmware's PSCI, or a halt with a line saying so.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch;

/// The firmware has PSCI (CPU_ON, SYSTEM_OFF); the RPi4's armstub has not.
pub static HAS_PSCI: AtomicBool = AtomicBool::new(false);
/// `exit=semihosting`: power off through semihosting SYS_EXIT, so QEMU
/// exits with the guests' status.
pub static EXIT_SEMIHOSTING: AtomicBool = AtomicBool::new(false);

pub fn halt() -> ! {
    loop {
        arch::wfe();
    }
}

/// Power the machine off after a boot error or a panic (a failure).
pub fn system_off() -> ! {
    power_off(false)
}

/// Power the machine off; `ok` is whether every guest exited ok.
pub fn power_off(ok: bool) -> ! {
    crate::console::flush();
    let overruns = crate::console::OVERRUNS.load(Ordering::Relaxed);
    if overruns > 0 {
        kprintln!("hyp: the console ring overran {} times (output waited for the UART)", overruns);
        crate::console::flush();
    }
    if EXIT_SEMIHOSTING.load(Ordering::Relaxed) {
        arch::semihosting_exit(if ok { 0 } else { 1 });
    }
    if HAS_PSCI.load(Ordering::Relaxed) {
        arch::smc(trap::hypercall::psci::SYSTEM_OFF as u64, 0, 0, 0);
    }
    kprintln!("hyp: halted (the firmware has no PSCI to power off; the board may be switched off now)");
    crate::console::flush();
    halt()
}

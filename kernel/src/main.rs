//! The EL2 hypervisor kernel: boot, the EL2 MMU, vectors, trap dispatch,
//! vCPU context switching, and wiring components together.
#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod console;
#[path = "arch/aarch64/mod.rs"]
mod arch;
mod exits;
mod frames;
mod heap;
mod vm;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use arch::mmu::El2Map;
use frames::spin_cell::SpinCell;
use frames::FRAMES;
use vm::Vm;

/// Where QEMU places the DTB for a non-Linux image: the base of RAM.
const DTB_FALLBACK: u64 = 0x4000_0000;
const FDT_MAGIC: u32 = 0xd00d_feed;

/// Everything the trap handlers share. One lock: the hypervisor runs on one
/// pCPU at a time inside it (see the README's status table for SMP).
pub struct Hyp {
    pub vms: Vec<Vm>,
    /// Index of the VM and vCPU running on pCPU 0.
    pub current: (usize, usize),
}

pub static HYP: SpinCell<Option<Hyp>> = SpinCell::new(None);
static PANICKING: AtomicBool = AtomicBool::new(false);

fn halt() -> ! {
    loop {
        arch::wfe();
    }
}

/// Power the machine off through the firmware (QEMU exits).
pub fn system_off() -> ! {
    arch::smc(trap::hypercall::psci::SYSTEM_OFF as u64, 0, 0, 0);
    halt()
}

fn read_dtb(x0: u64) -> Option<&'static [u8]> {
    for addr in [x0, DTB_FALLBACK] {
        if addr == 0 || addr % 8 != 0 {
            continue;
        }
        // SAFETY: reading the 8-byte FDT header at a RAM address the boot
        // protocol names; RAM is readable at EL2 with the MMU on or off.
        let (magic, size) = unsafe {
            (
                u32::from_be(core::ptr::read_volatile(addr as *const u32)),
                u32::from_be(core::ptr::read_volatile((addr + 4) as *const u32)),
            )
        };
        if magic == FDT_MAGIC && (64..(16 << 20)).contains(&size) {
            // SAFETY: the header says the blob is `size` bytes long; it is
            // never written while the hypervisor runs.
            return Some(unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) });
        }
    }
    None
}

#[unsafe(no_mangle)]
extern "C" fn kmain(x0: u64, el: u64) -> ! {
    let board = &platform::qemu_virt::BOARD;
    console::set_base(board.uart.regs.base);
    kprintln!("\nhyp: {} {} starting on {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"), board.name);
    if el != 2 {
        kprintln!("hyp: entered at EL{}, but the hypervisor must start at EL2.", el);
        kprintln!("hyp: on QEMU use -M virt,virtualization=on; on a board, firmware that enters the kernel at EL2/HYP.");
        halt();
    }
    let Some(dtb) = read_dtb(x0) else {
        kprintln!("hyp: no device tree found (x0={:#x}, nor at {:#x}); cannot boot", x0, DTB_FALLBACK);
        halt();
    };
    let cfg = match bootcfg::parse(dtb) {
        Ok(c) => c,
        Err(e) => {
            kprintln!("hyp: boot stopped: {}", e);
            system_off();
        }
    };
    if let Some(uart) = &cfg.uart {
        console::set_base(uart.regs.0);
    }

    // The EL2 MMU and caches go on before any lock or atomic is used.
    let ram: heapless::Vec<(u64, u64), 8> = cfg.ram.iter().copied().collect();
    let map = alloc::boxed::Box::leak(alloc::boxed::Box::new(El2Map::new(&ram)));
    map.enable();
    console::enable_locking();
    arch::install_vectors();
    defmt::info!("EL2 MMU on, {=usize} KiB heap used", heap::used() / 1024);

    let (img_start, img_end) = arch::image_range();
    let mut reserved: heapless::Vec<(u64, u64), 16> = heapless::Vec::new();
    let _ = reserved.push((img_start, img_end - img_start));
    let _ = reserved.push((dtb.as_ptr() as u64, dtb.len() as u64));
    for g in cfg.guests.iter() {
        let _ = reserved.push((g.image.0, g.image.1));
    }
    FRAMES.lock().init(&ram, &reserved);

    arch::sysreg_write!("vtcr_el2", vm::VTCR);
    let mut vms = Vec::new();
    for (i, g) in cfg.guests.iter().enumerate() {
        let id = i as u16 + 1;
        let Some(pa) = FRAMES.lock().alloc(g.mem_bytes, 2 << 20) else {
            kprintln!("hyp: not enough RAM for guest {} ({} MiB)", g.name.as_str(), g.mem_bytes >> 20);
            system_off();
        };
        match vm::create(id, g.name.as_str(), pa, g.mem_bytes, g.image, g.vcpus) {
            Ok(v) => {
                defmt::info!("guest {=str}: {=u64} MiB RAM at PA {=u64:#x}, {=u32} vCPUs", g.name.as_str(), g.mem_bytes >> 20, pa, g.vcpus);
                vms.push(v)
            }
            Err(e) => {
                kprintln!("hyp: guest {}: {}", g.name.as_str(), e);
                system_off();
            }
        }
    }
    if vms.is_empty() {
        kprintln!("hyp: no guests in /chosen (add multiboot,kernel module nodes); nothing to run");
        system_off();
    }
    *HYP.lock() = Some(Hyp { vms, current: (0, 0) });
    exits::start_first()
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main(_cpu: u64) -> ! {
    halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if !PANICKING.swap(true, Ordering::SeqCst) {
        console::force_unlock();
    }
    kprintln!("hyp: PANIC on pCPU {}: {}", arch::cpu_id(), info);
    system_off()
}

//! Raspberry Pi 4 Model B (BCM2711, 4x Cortex-A72, GIC-400), "low
//! peripheral" mode, addresses as the ARM sees them.
//!
//! The GPU firmware (`config.txt`: `arm_64bit=1`, `enable_gic=1`) loads a
//! raw image at 0x80000 and enters it at EL2 with the DTB in x0. Its default
//! armstub has no PSCI: secondary CPUs wait on a spin table.

use crate::*;

/// The RAM every model (1 to 8 GiB) has below the VideoCore carve-out with
/// the default `gpu_mem`. The firmware's DTB lists the rest (from 0x4000_0000,
/// and above 4 GiB on larger models).
const RAM: &[Region] = &[Region::new(0, 0x3b40_0000)];

pub const BOARD: Board = Board {
    name: "rpi4",
    arch: Arch::Aarch64,
    compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
    // UART0 (PL011) at the firmware's 48 MHz UART clock; the mini-UART runs
    // off the VPU core clock, which `enable_uart=1` fixes at 500 MHz.
    uart_clocks: &[(0xfe20_1000, 48_000_000), (0xfe21_5040, 500_000_000)],
    cpus: 4,
    ram: RAM,
    // UART0 (PL011); the 0x200 bytes of registers are in one 4 KiB page.
    uart: Uart {
        kind: UartKind::Pl011,
        regs: Region::new(0xfe20_1000, 0x1000),
    },
    gicd: Region::new(0xff84_1000, 0x1000),
    gicc: Region::new(0xff84_2000, 0x2000),
    gich: Region::new(0xff84_4000, 0x2000),
    gicv: Region::new(0xff84_6000, 0x2000),
    // Interrupt 25 in the firmware's notes.
    gic_maint: Ppi(9),
    timers: STD_TIMERS,
    psci: None,
    cpu_boot: CpuBoot::SpinTable {
        release: &[0xd8, 0xe0, 0xe8, 0xf0],
    },
    entry: BootProtocol::RawAt(0x8_0000),
    // UART0 (PL011, SPI 121), free while the hypervisor keeps the mini-UART.
    hwdom_console: Some((0xfe20_1000, 121)),
    hwdom_keep: &[
        // The ARM-local block (local_intc): core timer prescaler and
        // routing for every core, the hypervisor's included.
        Region::new(0xff80_0000, 0x1000),
    ],
};

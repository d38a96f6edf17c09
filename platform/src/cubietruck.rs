//! Cubietruck (Allwinner A20, 2x Cortex-A7, GIC-400, 2 GiB).
//!
//! U-Boot (`u-boot-sunxi`, ARMV7_NONSEC/ARMV7_VIRT) enters the image in HYP
//! mode with the DTB in r2, and provides PSCI through SMC.

use crate::*;

pub const BOARD: Board = Board {
    name: "cubietruck",
    arch: Arch::Armv7,
    compatible: &["cubietech,cubietruck", "allwinner,sun7i-a20"],
    // UART0 runs off the 24 MHz oscillator (APB1).
    uart_clocks: &[(0x01c2_8000, 24_000_000)],
    cpus: 2,
    ram: &[Region::new(0x4000_0000, 0x8000_0000)],
    // UART0, a 16550 (Synopsys DesignWare) with 32-bit registers.
    uart: Uart {
        kind: UartKind::Ns16550 { reg_shift: 2 },
        regs: Region::new(0x01c2_8000, 0x400),
    },
    gicd: Region::new(0x01c8_1000, 0x1000),
    gicc: Region::new(0x01c8_2000, 0x2000),
    gich: Region::new(0x01c8_4000, 0x2000),
    gicv: Region::new(0x01c8_6000, 0x2000),
    gic_maint: Ppi(9),
    timers: STD_TIMERS,
    psci: Some(Conduit::Smc),
    cpu_boot: CpuBoot::Psci(Conduit::Smc),
    // U-Boot's sunxi `kernel_addr_r`.
    entry: BootProtocol::UBootHyp { load: 0x4200_0000 },
    hwdom_console: None,
    hwdom_keep: &[],
};

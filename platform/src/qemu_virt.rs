//! QEMU `virt` with `virtualization=on,gic-version=2`.
//!
//! Addresses from `-M virt,virtualization=on,gic-version=2,dumpdtb=`. RAM
//! starts at 1 GiB; its size is `-m` (the DTB's `/memory` says how much).

use crate::*;

const RAM: &[Region] = &[Region::new(0x4000_0000, 0x4000_0000)];

/// AArch64: `qemu-system-aarch64 -M virt,virtualization=on,gic-version=2`.
/// The ELF starts at EL2; PSCI is QEMU's, through SMC.
pub const BOARD: Board = Board {
    name: "qemu-virt",
    arch: Arch::Aarch64,
    compatible: &["linux,dummy-virt"],
    // QEMU's PL011 `apb_pclk` fixed clock.
    uart_clocks: &[(0x0900_0000, 24_000_000)],
    cpus: 4,
    // The 1 GiB the xtask passes with `-m 1G`; the DTB gives the real size.
    ram: RAM,
    uart: Uart {
        kind: UartKind::Pl011,
        regs: Region::new(0x0900_0000, 0x1000),
    },
    gicd: Region::new(0x0800_0000, 0x1_0000),
    gicc: Region::new(0x0801_0000, 0x1_0000),
    gich: Region::new(0x0803_0000, 0x1_0000),
    gicv: Region::new(0x0804_0000, 0x1_0000),
    gic_maint: Ppi(9),
    timers: STD_TIMERS,
    psci: Some(Conduit::Smc),
    cpu_boot: CpuBoot::Psci(Conduit::Smc),
    entry: BootProtocol::QemuElf,
    hwdom_console: None,
    hwdom_keep: &[
        // fw-cfg: its DMA interface writes any guest-physical address.
        Region::new(0x0902_0000, 0x1000),
    ],
};

/// ARMv7: `qemu-system-arm -M virt,virtualization=on -cpu cortex-a15`, the
/// ELF starts in HYP mode. Same memory map. (QEMU's ARMv7 CPUs ignore
/// HCR.TSW; the set/way path needs AArch32 HYP on a v8 core behind an EL3
/// shim, where QEMU offers no PSCI and the exit is by semihosting.)
pub const BOARD_ARMV7: Board = Board {
    name: "qemu-virt-armv7",
    arch: Arch::Armv7,
    ..BOARD
};

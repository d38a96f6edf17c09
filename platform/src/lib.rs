//! # platform: one plain-data description per board
//!
//! **Responsible for:** the fixed facts of each supported board as `const`
//! data: RAM ranges, UART, GICv2 blocks (distributor, CPU interface,
//! virtual interface control and virtual CPU interface), the PPIs of the
//! GIC maintenance interrupt and the generic timers, how the firmware
//! provides PSCI, how the hypervisor image is entered, and the
//! architecture it is built for, the root `compatible` strings that name
//! it in a device tree, and the reference clocks of the UARTs that may be
//! the console. [`by_name`] selects one for `--board`; [`by_compatible`]
//! selects one from the DTB the firmware passes.
//!
//! **Not responsible for:** anything that varies between boots or models of
//! a board (RAM size beyond the guaranteed part, command line, guest
//! images): that comes from the DTB through `bootcfg`, which is
//! authoritative when both exist. No code touches hardware here.
//!
//! **Invariants** (checked by the unit tests):
//! - Every MMIO block is 4 KiB aligned, non-empty, outside every RAM range
//!   and disjoint from every other block.
//! - RAM ranges are non-empty, 2 MiB aligned and disjoint.
//! - PPIs are 0..=15 (INTID 16..=31); board names are unique.
//! - No two boards of one architecture list the same `compatible` string.
//! - Every `uart_clocks` entry has a 4-byte aligned base and a non-zero
//!   clock, and the console UART (`uart`) has one.
#![no_std]
#![forbid(unsafe_code)]

pub mod cubietruck;
pub mod qemu_virt;
pub mod rpi4;

/// The hypervisor's architecture (EL2 AArch64, or ARMv7 HYP with LPAE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Aarch64,
    Armv7,
}

/// A physical MMIO or RAM range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn new(base: u64, size: u64) -> Region {
        Region { base, size }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    pub const fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// The UART programming model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PL011.
    Pl011,
    /// 16550-compatible; register `n` is at `base + (n << reg_shift)`.
    Ns16550 { reg_shift: u8 },
}

/// The hypervisor console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    pub kind: UartKind,
    pub regs: Region,
}

/// A private peripheral interrupt number, 0..=15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ppi(pub u8);

impl Ppi {
    /// The GIC interrupt id: 16 + the PPI number.
    pub const fn intid(self) -> u32 {
        16 + self.0 as u32
    }
}

/// Generic timer PPIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// EL2 physical timer (CNTHP).
    pub hyp: Ppi,
    /// EL1 physical timer (CNTP), non-secure.
    pub phys: Ppi,
    /// Virtual timer (CNTV).
    pub virt: Ppi,
    /// Secure EL1 physical timer (CNTPS).
    pub sec_phys: Ppi,
}

/// The instruction that reaches the firmware's PSCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// How secondary CPUs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuBoot {
    /// PSCI CPU_ON through this conduit.
    Psci(Conduit),
    /// Spin table: write the entry point to `release[cpu]`, then `sev`.
    SpinTable { release: &'static [u64] },
}

/// How the hypervisor image is loaded and entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// QEMU `-kernel` with an ELF: entered at the ELF entry point at EL2
    /// (or HYP), with the DTB address in x0/r2.
    QemuElf,
    /// A raw binary loaded and entered at this address at EL2, DTB in x0
    /// (Raspberry Pi firmware with its default armstub).
    RawAt(u64),
    /// U-Boot `bootm`/`bootz` loads it at `load` and enters it in HYP mode
    /// (ARMV7_NONSEC/ARMV7_VIRT), DTB in r2.
    UBootHyp { load: u64 },
}

/// One board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The `--board` name.
    pub name: &'static str,
    pub arch: Arch,
    /// Root `compatible` strings of the board's device trees.
    pub compatible: &'static [&'static str],
    /// `(register base, reference clock in Hz)` of each UART the
    /// hypervisor may use as its console.
    pub uart_clocks: &'static [(u64, u32)],
    /// Physical CPUs.
    pub cpus: u32,
    /// RAM every instance of the board has; the DTB may add more.
    pub ram: &'static [Region],
    pub uart: Uart,
    /// GIC distributor.
    pub gicd: Region,
    /// GIC CPU interface.
    pub gicc: Region,
    /// GIC virtual interface control (GICH).
    pub gich: Region,
    /// GIC virtual CPU interface (GICV), mapped to guests at their GICC.
    pub gicv: Region,
    /// GIC maintenance interrupt.
    pub gic_maint: Ppi,
    pub timers: Timers,
    /// The firmware's PSCI, if it has one (also used for SYSTEM_OFF).
    pub psci: Option<Conduit>,
    pub cpu_boot: CpuBoot,
    pub entry: BootProtocol,
    /// Where the hardware domain's console (an emulated PL011) sits when
    /// the hypervisor's console is not a PL011: `(address, SPI number)`.
    pub hwdom_console: Option<(u64, u32)>,
    /// Devices the hardware domain must not own by default although the
    /// hypervisor does not drive them: they reach past its own share of
    /// the machine (every core's timer, DMA to any address).
    pub hwdom_keep: &'static [Region],
}

impl Board {
    /// Every MMIO block with a short name.
    pub const fn mmio(&self) -> [(&'static str, Region); 5] {
        [
            ("uart", self.uart.regs),
            ("gicd", self.gicd),
            ("gicc", self.gicc),
            ("gich", self.gich),
            ("gicv", self.gicv),
        ]
    }

    /// Whether `addr` is in one of the board's RAM ranges.
    pub fn in_ram(&self, addr: u64) -> bool {
        self.ram.iter().any(|r| r.contains(addr))
    }

    /// The reference clock of the UART whose registers start at `base`.
    pub fn uart_clock(&self, base: u64) -> Option<u32> {
        self.uart_clocks
            .iter()
            .find(|&&(b, _)| b == base)
            .map(|&(_, hz)| hz)
    }
}

/// Every board, in `--board` listing order.
pub static BOARDS: &[&Board] = &[
    &qemu_virt::BOARD,
    &qemu_virt::BOARD_ARMV7,
    &rpi4::BOARD,
    &cubietruck::BOARD,
];

/// The board called `name`.
pub fn by_name(name: &str) -> Option<&'static Board> {
    BOARDS.iter().copied().find(|b| b.name == name)
}

/// The board of architecture `arch` named by a DTB's root `compatible`
/// strings (most specific first): the first string any board lists wins.
pub fn by_compatible<'a>(
    mut compat: impl Iterator<Item = &'a str>,
    arch: Arch,
) -> Option<&'static Board> {
    compat.find_map(|c| {
        BOARDS
            .iter()
            .copied()
            .find(|b| b.arch == arch && b.compatible.contains(&c))
    })
}

/// The standard generic timer PPIs (CNTPS 13, CNTP 14, CNTV 11, CNTHP 10),
/// as on all three boards.
pub const STD_TIMERS: Timers = Timers {
    hyp: Ppi(10),
    phys: Ppi(14),
    virt: Ppi(11),
    sec_phys: Ppi(13),
};

#[cfg(test)]
mod tests {
    use super::*;

    const KIB4: u64 = 0x1000;
    const MIB2: u64 = 0x20_0000;

    #[test]
    fn names_round_trip() {
        for b in BOARDS {
            assert_eq!(by_name(b.name), Some(*b));
        }
        for (i, a) in BOARDS.iter().enumerate() {
            for b in &BOARDS[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
        assert_eq!(by_name("nope"), None);
        assert_eq!(by_name(""), None);
        assert_eq!(by_name("RPI4"), None);
    }

    #[test]
    fn mmio_aligned_disjoint_and_outside_ram() {
        for b in BOARDS {
            let mmio = b.mmio();
            for (i, (name, r)) in mmio.iter().enumerate() {
                assert!(r.size > 0, "{}: {name} empty", b.name);
                assert_eq!(r.base % KIB4, 0, "{}: {name} not 4 KiB aligned", b.name);
                for ram in b.ram {
                    assert!(!r.overlaps(ram), "{}: {name} overlaps RAM", b.name);
                }
                for (other, o) in &mmio[i + 1..] {
                    assert!(!r.overlaps(o), "{}: {name} overlaps {other}", b.name);
                }
            }
            // GICv2 blocks: whole pages; GICC/GICV have the 8 KiB layout.
            for r in [b.gicd, b.gicc, b.gich, b.gicv] {
                assert_eq!(r.size % KIB4, 0, "{}", b.name);
            }
            assert!(b.gicc.size >= 0x2000 && b.gicv.size >= 0x2000, "{}", b.name);
            assert_eq!(
                b.gicc.size, b.gicv.size,
                "{}: guests see GICV as GICC",
                b.name
            );
        }
    }

    #[test]
    fn ram_sane() {
        for b in BOARDS {
            assert!(!b.ram.is_empty(), "{}", b.name);
            for (i, r) in b.ram.iter().enumerate() {
                assert!(r.size >= MIB2, "{}", b.name);
                assert_eq!(r.base % MIB2, 0, "{}", b.name);
                assert_eq!(r.size % MIB2, 0, "{}", b.name);
                assert!(r.base.checked_add(r.size).is_some());
                for o in &b.ram[i + 1..] {
                    assert!(!r.overlaps(o), "{}", b.name);
                }
            }
            if let BootProtocol::RawAt(a) | BootProtocol::UBootHyp { load: a } = b.entry {
                assert!(b.in_ram(a), "{}: entry outside RAM", b.name);
            }
            if b.arch == Arch::Armv7 {
                // An ARMv7 hypervisor runs from RAM below 4 GiB.
                assert!(b.ram[0].end() <= 1 << 32, "{}", b.name);
            }
        }
    }

    #[test]
    fn interrupts() {
        for b in BOARDS {
            let t = b.timers;
            let ppis = [b.gic_maint, t.hyp, t.phys, t.virt, t.sec_phys];
            for (i, p) in ppis.iter().enumerate() {
                assert!(p.0 <= 15, "{}", b.name);
                assert!((16..32).contains(&p.intid()));
                for q in &ppis[i + 1..] {
                    assert_ne!(p, q, "{}: PPI used twice", b.name);
                }
            }
            assert!(b.cpus >= 1 && b.cpus <= 8);
        }
        // QEMU virt: CNTHP=26, CNTV=27, CNTP=30, maintenance=25.
        let q = by_name("qemu-virt").unwrap();
        assert_eq!(q.timers.hyp.intid(), 26);
        assert_eq!(q.timers.virt.intid(), 27);
        assert_eq!(q.timers.phys.intid(), 30);
        assert_eq!(q.gic_maint.intid(), 25);
    }

    #[test]
    fn known_facts() {
        let q = by_name("qemu-virt").unwrap();
        assert_eq!(
            (q.gicd.base, q.gicc.base, q.gich.base, q.gicv.base),
            (0x0800_0000, 0x0801_0000, 0x0803_0000, 0x0804_0000)
        );
        assert_eq!(q.uart.regs.base, 0x0900_0000);
        assert_eq!(q.ram[0].base, 0x4000_0000);
        assert_eq!(q.arch, Arch::Aarch64);
        assert_eq!(by_name("qemu-virt-armv7").unwrap().arch, Arch::Armv7);

        let r = by_name("rpi4").unwrap();
        assert_eq!(
            (r.gicd.base, r.gicc.base, r.gich.base, r.gicv.base),
            (0xff84_1000, 0xff84_2000, 0xff84_4000, 0xff84_6000)
        );
        assert_eq!(
            r.uart,
            Uart {
                kind: UartKind::Pl011,
                regs: Region::new(0xfe20_1000, 0x1000)
            }
        );
        assert_eq!(r.entry, BootProtocol::RawAt(0x8_0000));
        assert_eq!(r.gic_maint.intid(), 25);

        let c = by_name("cubietruck").unwrap();
        assert_eq!(
            (c.gicd.base, c.gicc.base, c.gich.base, c.gicv.base),
            (0x01c8_1000, 0x01c8_2000, 0x01c8_4000, 0x01c8_6000)
        );
        assert_eq!(c.uart.kind, UartKind::Ns16550 { reg_shift: 2 });
        assert_eq!(c.uart.regs.base, 0x01c2_8000);
        assert_eq!(c.ram, &[Region::new(0x4000_0000, 0x8000_0000)]);
        assert_eq!(c.arch, Arch::Armv7);
        assert!(matches!(c.entry, BootProtocol::UBootHyp { .. }));
    }

    /// A DTB `compatible` value: NUL-separated strings.
    fn strs(v: &str) -> impl Iterator<Item = &str> + Clone {
        v.split('\0')
    }

    #[test]
    fn boards_by_compatible() {
        let rpi4 = by_name("rpi4");
        let a64 = Arch::Aarch64;
        assert_eq!(
            by_compatible(strs("raspberrypi,4-model-b\0brcm,bcm2711"), a64),
            rpi4
        );
        assert_eq!(by_compatible(strs("brcm,bcm2711"), a64), rpi4);
        // An unknown, more specific string first does not hide a known one.
        assert_eq!(
            by_compatible(strs("raspberrypi,4-compute-module\0brcm,bcm2711"), a64),
            rpi4
        );
        assert_eq!(
            by_compatible(strs("linux,dummy-virt"), a64),
            by_name("qemu-virt")
        );
        assert_eq!(
            by_compatible(strs("linux,dummy-virt"), Arch::Armv7),
            by_name("qemu-virt-armv7")
        );
        assert_eq!(
            by_compatible(
                strs("cubietech,cubietruck\0allwinner,sun7i-a20"),
                Arch::Armv7
            ),
            by_name("cubietruck")
        );
        assert_eq!(
            by_compatible(strs("allwinner,sun7i-a20"), Arch::Armv7),
            by_name("cubietruck")
        );
        // Known boards of the other architecture.
        assert_eq!(by_compatible(strs("allwinner,sun7i-a20"), a64), None);
        assert_eq!(by_compatible(strs("brcm,bcm2711"), Arch::Armv7), None);
        assert_eq!(by_compatible(strs("acme,board\0acme,soc"), a64), None);
        assert_eq!(by_compatible(strs(""), a64), None);
        assert_eq!(by_compatible(core::iter::empty(), a64), None);
        // Exact strings only.
        assert_eq!(
            by_compatible(strs("brcm,bcm2711x\0BRCM,BCM2711"), a64),
            None
        );
    }

    #[test]
    fn compatible_strings_unique_per_arch() {
        for b in BOARDS {
            assert!(!b.compatible.is_empty(), "{}", b.name);
            for c in b.compatible {
                assert!(!c.is_empty() && !c.contains('\0'), "{}", b.name);
                // Each string finds this very board.
                assert_eq!(by_compatible(strs(c), b.arch), Some(*b), "{c}");
            }
            for o in BOARDS
                .iter()
                .filter(|o| o.name != b.name && o.arch == b.arch)
            {
                for c in b.compatible {
                    assert!(
                        !o.compatible.contains(c),
                        "{} and {} list {c}",
                        b.name,
                        o.name
                    );
                }
            }
        }
    }

    #[test]
    fn uart_clocks() {
        for b in BOARDS {
            assert!(!b.uart_clocks.is_empty(), "{}", b.name);
            for (i, &(base, hz)) in b.uart_clocks.iter().enumerate() {
                assert!(hz > 0, "{}: {base:#x}", b.name);
                assert_eq!(base % 4, 0, "{}: {base:#x}", b.name);
                assert!(!b.in_ram(base), "{}: {base:#x} in RAM", b.name);
                for &(o, _) in &b.uart_clocks[i + 1..] {
                    assert_ne!(base, o, "{}", b.name);
                }
            }
            assert!(b.uart_clock(b.uart.regs.base).is_some(), "{}", b.name);
        }
        let r = by_name("rpi4").unwrap();
        assert_eq!(r.uart_clock(0xfe20_1000), Some(48_000_000));
        assert_eq!(r.uart_clock(0xfe21_5040), Some(500_000_000));
        assert_eq!(r.uart_clock(0xfe21_5000), None);
        assert_eq!(
            by_name("qemu-virt").unwrap().uart_clock(0x0900_0000),
            Some(24_000_000)
        );
        assert_eq!(
            by_name("qemu-virt-armv7").unwrap().uart_clock(0x0900_0000),
            Some(24_000_000)
        );
        assert_eq!(
            by_name("cubietruck").unwrap().uart_clock(0x01c2_8000),
            Some(24_000_000)
        );
        assert_eq!(by_name("cubietruck").unwrap().uart_clock(0xfe20_1000), None);
    }

    #[test]
    fn region_math() {
        let r = Region::new(0x1000, 0x1000);
        assert!(
            r.contains(0x1000) && r.contains(0x1fff) && !r.contains(0x2000) && !r.contains(0xfff)
        );
        assert!(r.overlaps(&Region::new(0x1fff, 1)));
        assert!(!r.overlaps(&Region::new(0x2000, 1)));
        assert!(!r.overlaps(&Region::new(0, 0x1000)));
        assert_eq!(r.end(), 0x2000);
    }
}

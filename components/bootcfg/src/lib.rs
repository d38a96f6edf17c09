//! # bootcfg: the validated boot configuration, from the DTB and boot args
//!
//! **Responsible for:**
//! - reading the device tree blob the firmware passes (U-Boot, QEMU, the
//!   Raspberry Pi firmware) with a small strict reader ([`fdt`]);
//! - extracting what the kernel needs to boot: RAM, reserved memory, CPUs
//!   (and spin-table release addresses), GIC, console UART, timer PPIs,
//!   PSCI method, the hypervisor's command line and the guest modules in
//!   `/chosen`;
//! - naming the board: the root `compatible` chooses a
//!   [`platform::Board`] of the architecture this crate is built for
//!   ([`BootConfig::board`]; an unknown board is `None`, not an error);
//! - reading a guest bundle ([`parse_with_bundle`]) and where the firmware
//!   put it ([`bundle_range`]);
//! - parsing the command line ([`parse_bootargs`]) and applying its
//!   per-guest overrides;
//! - validating everything into one [`BootConfig`], or one [`Error`] whose
//!   `Display` is a single line naming the field and the allowed values;
//! - for a boot that fails, what is needed to report it: [`console`] and
//!   [`exit_method`] read their part even when the rest is invalid;
//! - with feature `alloc`, writing DTBs (module `fdt_writer`) for tests and the
//!   xtask.
//!
//! **Not responsible for:** mapping policy to component types (the kernel
//! maps [`SchedKind`], [`HwdomPin`], [`SwMode`]), loading or checking guest
//! images, finding or mapping the bundle's bytes (the kernel passes them),
//! the UART's clock when the DTB gives none (see
//! [`platform::Board::uart_clock`]), building guests' device trees, or
//! touching hardware.
//!
//! **Invariants** of a returned [`BootConfig`]:
//! - at least one RAM range, none empty;
//! - every guest has 1..=8 vCPUs, memory >= 2 MiB and a multiple of 4 KiB,
//!   a valid name, an image (and ramdisk, if any) inside one RAM range;
//!   a bundle's modules also lie inside the bundle;
//! - no two modules overlap;
//! - a CPU has a release address exactly when its `enable-method` is
//!   `"spin-table"`; `max_cpus` is 1..=8 when given; a UART's `clock_hz`
//!   is never 0;
//! - nothing parsing a blob can panic, whatever its bytes.
//!
//! ## Device tree input
//! Guests are `/chosen` children in the style of Xen's dom0less modules:
//!
//! ```text
//! chosen {
//!     #address-cells = <2>; #size-cells = <2>;   // for the modules' reg
//!     hyp,bootargs = "sched=pinned guest0.vcpus=2";
//!     module@50000000 {
//!         compatible = "multiboot,kernel", "multiboot,module";
//!         reg = <0x0 0x50000000 0x0 0x1000000>;
//!         bootargs = "console=hvc0 rdinit=/init";
//!         hyp,name = "linux"; hyp,mem = "256M"; hyp,vcpus = <2>; hyp,sw = "auto";
//!     };
//!     module@54000000 {       // belongs to the kernel module before it
//!         compatible = "multiboot,ramdisk", "multiboot,module";
//!         reg = <0x0 0x54000000 0x0 0x400000>;
//!     };
//! };
//! ```
//!
//! `hyp,mem` is a u32 or u64 byte count or a size string; `/chosen`'s
//! `#address-cells` and `#size-cells` default to 2 and 1 as the spec says.
//! The console is the UART `stdout-path` names (directly or through
//! `/aliases`), else the first enabled PL011, 16550 or BCM2835 mini-UART;
//! only that node is read. Its `clock-frequency` is read when present.
//!
//! ## Guest bundle
//! On a board with no U-Boot (Raspberry Pi: `initramfs guests.bin
//! followkernel` in `config.txt`) the guests come in one file the firmware
//! loads and names in `/chosen/linux,initrd-start` and `linux,initrd-end`.
//! The file starts with an FDT whose root has `compatible =
//! "hyp,guest-bundle"` and a `chosen` node with the schema above, except
//! that each module's `reg` is an offset from the file's first byte; the
//! payloads follow the FDT. Its guests come after the DTB's (at most
//! [`MAX_GUESTS`] in all). Bytes that are not such an FDT are ignored.
//!
//! The command line is the DTB's `/chosen/hyp,bootargs`, else the bundle's
//! `chosen/hyp,bootargs` (even if empty), else the DTB's
//! `xen,xen-bootargs`, else its `bootargs` (where QEMU's `-append` goes,
//! and where the Raspberry Pi firmware puts its own Linux options).
//!
//! ## Command line
//! `sched=rr|pinned|null` (rr), `hwdom_pin=auto|on|off` (auto),
//! `slice=<size>` (64K), `loglevel=error|warn|info|debug|trace|0-4` (info),
//! `exit=psci|semihosting` (psci), `pmu=hidden|passthrough` (hidden), `reboots=0..1000` (10),
//! `trace=10..60000` (off: every guest's counters printed every that many ms),
//! `maxcpus=1..8` (all: start at most this many physical CPUs),
//! `guestN.mem=<size>`, `guestN.pool=<size>` (PoD pool, default = mem),
//! `guestN.populate=demand|eager`, `guestN.vcpus=1..8`, `guestN.sw=yes|no|auto`,
//! `guestN.name=<name>`; `console=` is ignored. Unknown keys and repeated
//! keys are errors. Sizes take a K, M or G suffix (binary).
#![cfg_attr(
    feature = "faults",
    doc = "\n\nThis is a TEST-ONLY `faults` build: it also takes \
           `fault=sw-unpinned|no-pod-clean|clean-skips-walk[,...]`, which breaks \
           cache-coherence safety on purpose (see [`Faults`])."
)]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

mod args;
mod config;
mod error;
pub mod fdt;
#[cfg(any(test, feature = "alloc"))]
pub mod fdt_writer;

pub use args::{
    name_ok, parse_bootargs, parse_size, Args, ExitMethod, Faults, GuestArgs, HwdomPin, LogLevel, PmuMode,
    Populate, SchedKind, SwMode, MAX_VCPUS, MIN_GUEST_MEM, NAME_ALLOWED,
};
pub use config::*;
pub use error::{Error, Shown};

/// Most guests.
pub const MAX_GUESTS: usize = 4;
/// Most RAM ranges.
pub const MAX_RAM: usize = 8;
/// Most reserved ranges (reservation map and `/reserved-memory`).
pub const MAX_RESERVED: usize = 16;
/// Most physical CPUs.
pub const MAX_CPUS: usize = 8;
/// Guest command line capacity, bytes.
pub const BOOTARGS_LEN: usize = 512;
/// Guest name capacity, bytes.
pub const NAME_LEN: usize = 16;
/// Longest hardware-domain passthrough list (`guestN.passthrough=`).
pub const PASSTHROUGH_LEN: usize = 256;
/// Guest memory when neither the DTB nor the command line says.
pub const DEFAULT_GUEST_MEM: u64 = 64 << 20;
/// Clean slice budget when the command line does not say.
pub const DEFAULT_SLICE: u64 = 64 << 10;

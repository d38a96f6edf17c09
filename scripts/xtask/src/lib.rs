//! The host side of the project: building, QEMU runs, the console demuxer
//! (text + defmt frames), exit-summary parsing and the integration tests.

pub mod bench;
pub mod boot_bench;
pub mod build;
pub mod bundle;
pub mod demux;
pub mod disk;
pub mod dtb;
pub mod edk2;
pub mod fat;
pub mod fuzz;
pub mod image;
pub mod itest;
pub mod layers;
pub mod linux;
pub mod manifest;
pub mod oracle;
pub mod run;
pub mod serial;
pub mod summary;
pub mod trace;

use std::path::PathBuf;

/// Log lines one guest may cause per second (the kernel's `LOG_LINES_PER_S`).
pub const LOG_LINES_PER_S: usize = 20;

/// The bare-metal test guests in test-images/.
pub const GUESTS: &[&str] = &[
    "sw-basic",
    "sw-basic32",
    "sw-smp",
    "sw-split",
    "pod-touch",
    "bench",
    "isolation",
    "hostile",
    "linux-arm64",
    "linux-armhf",
    "linux-arm64-6.12",
    "linux-armhf-6.12",
    "edk2-arm64",
    "edk2-armhf",
];

/// "aarch64" or "aarch32": the guest's EL1 execution state.
pub fn guest_arch(name: &str) -> &'static str {
    match name {
        "linux-armhf" | "linux-armhf-6.12" => "aarch32",
        _ if edk2::arch(name).is_some() => edk2::arch(name).unwrap_or("aarch64"),
        _ => guest_build(name).map(|b| b.2).unwrap_or("aarch64"),
    }
}

/// A guest's crate, Rust target and EL1 execution state.
pub fn guest_build(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match name {
        "sw-basic" => ("sw-basic", build::GUEST_TARGET, "aarch64"),
        // The same program as an AArch32 (ARMv7-A) EL1 guest.
        "sw-basic32" => ("sw-basic", build::GUEST_TARGET32, "aarch32"),
        "sw-smp" => ("sw-smp", build::GUEST_TARGET, "aarch64"),
        "sw-split" => ("sw-split", build::GUEST_TARGET, "aarch64"),
        "pod-touch" => ("pod-touch", build::GUEST_TARGET, "aarch64"),
        "bench" => ("bench", build::GUEST_TARGET, "aarch64"),
        "isolation" => ("isolation", build::GUEST_TARGET, "aarch64"),
        "hostile" => ("hostile", build::GUEST_TARGET, "aarch64"),
        _ => return None,
    })
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// Options of `cargo xtask run`.
#[derive(Clone, Debug)]
pub struct Args {
    pub board: String,
    pub guest: String,
    pub cpus: u32,
    pub vcpus: u32,
    pub mem: u64,
    pub bootargs: String,
    pub timeout_s: u64,
    /// Do not echo the console (the exit status still tells the outcome).
    pub quiet: bool,
    /// Run QEMU with `-icount shift=0,sleep=off` (deterministic instruction
    /// counts; also set by `--icount` or XTASK_ICOUNT).
    pub icount: bool,
    /// Appended to the guest's kernel command line (Linux guests).
    pub append: String,
    /// Boot this Linux Image or zImage (and initramfs) instead of `guest`.
    pub kernel: Option<PathBuf>,
    /// `kernel` is raw firmware (`--firmware`), not Linux.
    pub firmware: bool,
    pub initrd: Option<PathBuf>,
    /// "aarch64" or "aarch32" for `kernel`; read from its header if absent.
    pub arch: Option<String>,
    /// Start QEMU's gdbstub (port 1234) and wait for a debugger.
    pub gdb: bool,
    /// Run under the cache oracle (tools/cache-oracle); any event fails.
    pub oracle: bool,
    /// Boot the test-only fault-injection build (`fault=` boot argument;
    /// the oracle's negative controls). Not a CLI option.
    pub faults_kernel: bool,
    /// The profiling kernel (`cargo xtask bench`'s breakdown).
    pub profile_kernel: bool,
    /// Typed at the console once the output holds `after` `times` times
    /// (tests). Without it, an interactive terminal's input reaches the
    /// console.
    pub input: Option<Input>,
    /// Replace the DTB root's `compatible` (QEMU's `dt-compatible`): a
    /// board the hypervisor does not know (tests). Not a CLI option.
    pub dt_compatible: Option<String>,
    /// Further guests beside the first (`--guest` given again): each with
    /// 1 vCPU and 64 MiB (512 MiB for a Linux guest).
    pub more_guests: Vec<String>,
    /// The first guest is the hardware domain (`--hwdom`: `guest0.hwdom=yes`
    /// and `hyp,hwdom` on its module node).
    pub hwdom: bool,
    /// `--disk [PATH]`: a virtio-blk disk on QEMU virt for the hardware
    /// domain, which boots the disk initramfs. Without PATH, the test disk
    /// of [`disk::disk`].
    pub disk: bool,
    pub disk_image: Option<PathBuf>,
    /// `--passthrough LIST`: `guest0.passthrough=LIST` (device-tree paths).
    pub passthrough: Option<String>,
    /// `--trace FILE`: the guests' counters over time, as CSV (`trace.rs`).
    pub trace: Option<PathBuf>,
    /// `--manifest FILE`: the guests (and machine) from a TOML file.
    pub manifest: Option<PathBuf>,
}

/// Console input a test types.
#[derive(Clone, Debug)]
pub struct Input {
    pub after: String,
    pub times: usize,
    pub text: Vec<u8>,
    /// Typed next, once its own `after` has been seen `times` times.
    pub then: Option<Box<Input>>,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            board: "qemu-virt".into(),
            guest: "sw-basic".into(),
            cpus: 1,
            vcpus: 1,
            mem: 64 << 20,
            bootargs: String::new(),
            timeout_s: 60,
            quiet: false,
            icount: std::env::var_os("XTASK_ICOUNT").is_some(),
            append: String::new(),
            input: None,
            dt_compatible: None,
            kernel: None,
            firmware: false,
            initrd: None,
            arch: None,
            gdb: false,
            oracle: false,
            faults_kernel: false,
            profile_kernel: false,
            more_guests: Vec::new(),
            hwdom: false,
            disk: false,
            disk_image: None,
            passthrough: None,
            trace: None,
            manifest: None,
        }
    }
}

/// A guest's RAM when none is given: 512 MiB for Linux (a test guest with
/// Linux boot arguments, or a kernel of the user's), 256 MiB for firmware,
/// else 64 MiB.
pub fn default_mem(guest: &str, kernel: bool) -> u64 {
    if kernel || crate::linux::bootargs(guest).is_some() {
        512 << 20
    } else if edk2::arch(guest).is_some() {
        256 << 20
    } else {
        64 << 20
    }
}

/// The EL1 states a kernel of the user's may run in (`--arch`, `arch =`).
pub const ARCHES: [&str; 2] = ["aarch64", "aarch32"];

/// Parse a size such as `64M`, `1G`, `4096`, `512K`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("bad size '{s}' (examples: 4096, 512K, 64M, 1G)"))
}

/// clap's message up to its first blank line, as one line.
fn one_line(e: &clap::Error, cmd: &str) -> String {
    let text = e.to_string();
    let words: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let line = words.join(" ");
    format!("{} (cargo xtask {cmd} --help lists the options)", line.trim_start_matches("error: "))
}

/// A subcommand's options, read by clap. `Ok(None)`: `--help` was asked
/// for, and printed. A mistake is one line.
pub fn parse_cli<T: clap::Parser>(cmd: &str, argv: &[String]) -> Result<Option<T>, String> {
    let name = format!("cargo xtask {cmd}");
    clap_outcome(cmd, T::try_parse_from(std::iter::once(name.as_str()).chain(argv.iter().map(String::as_str))))
}

/// What clap read: `Ok(None)` for `--help` (printed), a mistake as one line.
fn clap_outcome<T>(cmd: &str, r: Result<T, clap::Error>) -> Result<Option<T>, String> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            Ok(None)
        }
        Err(e) => Err(one_line(&e, cmd)),
    }
}

/// The commands that take no options, and what each does (their `--help`).
pub fn plain_command(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "build" => "Build the kernel and the test guests",
        "layers" => "The kernel's module graph; fails on a cycle or on a module naming an item of main.rs",
        "soak" => "The cache-model property test at 10^5 cases",
        "bench" => "Deterministic instruction counts of each trap path, a profile of them, then Linux boot times (BENCH_NO_LINUX=1 skips those)",
        "guests" => "List the test guests",
        _ => return None,
    })
}

/// A command without options: `Ok(true)` to go on, `Ok(false)` when
/// `--help` was asked for (and printed). Anything else is one line.
pub fn parse_plain(cmd: &str, about: &'static str, argv: &[String]) -> Result<bool, String> {
    let name = format!("cargo xtask {cmd}");
    let c = clap::Command::new("xtask").bin_name(name.clone()).about(about).disable_version_flag(true);
    clap_outcome(cmd, c.try_get_matches_from(std::iter::once(name.as_str()).chain(argv.iter().map(String::as_str)))).map(|m| m.is_some())
}

/// `cargo xtask run`'s options, as clap reads them.
#[derive(clap::Parser, Debug)]
#[command(
    name = "cargo xtask run",
    about = "Build, then boot guests under the hypervisor on QEMU. The console is yours: \
             a terminal's input reaches the guest with the focus (CTRL-a three times switches).",
    disable_version_flag = true,
    args_override_self = true
)]
struct RunOpts {
    /// The board QEMU models: qemu-virt or rpi4 (raspi4b).
    #[arg(long, value_name = "BOARD", default_value = "qemu-virt")]
    board: String,
    /// A test guest (cargo xtask guests); given again, a further guest beside
    /// the first (1 vCPU, 64 MiB; 512 MiB for Linux).
    #[arg(long = "guest", value_name = "NAME")]
    guests: Vec<String>,
    /// pCPUs (1..=4).
    #[arg(long, value_name = "N", default_value_t = 1)]
    cpus: u32,
    /// vCPUs of the first guest (1..=8).
    #[arg(long, value_name = "N", default_value_t = 1)]
    vcpus: u32,
    /// RAM of the first guest, e.g. 64M, 1G (default 64M; 512M for Linux).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    mem: Option<u64>,
    /// The hypervisor's boot arguments (README "Boot arguments").
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    bootargs: String,
    /// Added to a Linux guest's command line (`shell`: a busybox shell).
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    append: String,
    /// Stop QEMU after this many seconds.
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 60)]
    timeout_s: u64,
    /// Do not echo the console (the exit status still tells the outcome).
    #[arg(long)]
    quiet: bool,
    /// Deterministic instruction counts (-icount shift=0,sleep=off).
    #[arg(long)]
    icount: bool,
    /// Boot your own Linux Image or zImage as the first guest.
    #[arg(long, value_name = "IMAGE")]
    kernel: Option<PathBuf>,
    /// Its initramfs.
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Its EL1 state, if its header does not tell (firmware: aarch64 unless given).
    #[arg(long, value_parser = ARCHES)]
    arch: Option<String>,
    /// Boot a raw firmware image (UEFI, such as EDK2's QEMU_EFI.fd) as the
    /// first guest: read-only flash at 0, RAM at 1 GiB with its device tree there.
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["kernel", "initrd", "hwdom"])]
    firmware: Option<PathBuf>,
    /// QEMU's gdbstub on :1234, waiting; prints the gdb command.
    #[arg(long)]
    gdb: bool,
    /// Every guest's counters every 100 ms, as CSV (cargo xtask plot draws them).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Under the cache oracle: any event (where real hardware would lose or
    /// expose stale data) fails the run.
    #[arg(long)]
    oracle: bool,
    /// The first guest is the hardware domain.
    #[arg(long)]
    hwdom: bool,
    /// The hardware domain's devices (device-tree paths, comma-separated).
    #[arg(long, value_name = "LIST")]
    passthrough: Option<String>,
    /// A virtio-blk disk for the hardware domain (the test disk without PATH).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    disk: Option<Option<PathBuf>>,
    /// The guests (and cpus, bootargs, board, timeout, which win over the
    /// options) from a TOML file; see scripts/xtask/src/manifest.rs.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["guests", "kernel", "firmware", "initrd", "arch", "vcpus", "mem", "append", "hwdom", "disk", "passthrough"])]
    manifest: Option<PathBuf>,
}

impl Args {
    /// `cargo xtask run --help`.
    pub fn help() -> String {
        <RunOpts as clap::CommandFactory>::command().render_long_help().to_string()
    }

    /// `cargo xtask run`'s options. A mistake is one line.
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let o = <RunOpts as clap::Parser>::try_parse_from(std::iter::once("run").chain(argv.iter().map(String::as_str))).map_err(|e| one_line(&e, "run"))?;
        let mut a = Args {
            board: o.board,
            cpus: o.cpus,
            vcpus: o.vcpus,
            mem: o.mem.unwrap_or(64 << 20),
            bootargs: o.bootargs,
            timeout_s: o.timeout_s,
            quiet: o.quiet,
            icount: o.icount || Args::default().icount,
            append: o.append,
            kernel: o.kernel.or(o.firmware.clone()),
            firmware: o.firmware.is_some(),
            initrd: o.initrd,
            arch: o.arch,
            gdb: o.gdb,
            trace: o.trace,
            oracle: o.oracle,
            hwdom: o.hwdom,
            passthrough: o.passthrough,
            disk: o.disk.is_some(),
            disk_image: o.disk.flatten(),
            manifest: o.manifest,
            ..Args::default()
        };
        let mem_given = o.mem.is_some();
        let guests = o.guests;
        let board = run::Board::parse(&a.board)?;
        // The first --guest is guest0 (unless --kernel is), the rest follow it.
        let mut guests = guests.into_iter();
        if a.kernel.is_none() {
            if let Some(g) = guests.next() {
                a.guest = g;
            }
        }
        a.more_guests = guests.collect();
        if a.disk && !a.hwdom {
            return Err("--disk goes with --hwdom (the disk is a board device: only the hardware domain sees it)".into());
        }
        if a.disk && board == run::Board::Rpi4 {
            return Err("--disk is for --board qemu-virt so far (on rpi4 the SD card is the disk)".into());
        }
        if !(1..=4).contains(&a.cpus) {
            return Err("--cpus must be 1..=4".into());
        }
        // Linux needs more than the bare guests' 64 MiB.
        if a.initrd.is_some() && a.kernel.is_none() {
            return Err("--initrd goes with --kernel".into());
        }
        if !mem_given {
            a.mem = if a.firmware { 256 << 20 } else { default_mem(&a.guest, a.kernel.is_some()) };
        }
        if board == run::Board::Rpi4 && a.mem > 1 << 30 {
            return Err("--mem must be at most 1G on rpi4 (QEMU's raspi4b has 2 GiB in all)".into());
        }
        if a.mem > 64 << 30 {
            return Err("--mem must be at most 64G (the guest RAM the stage-2 pager tracks)".into());
        }
        if !(1..=8).contains(&a.vcpus) {
            return Err("--vcpus must be 1..=8".into());
        }
        Ok(a)
    }
}

/// `cargo xtask soak`: the cache-maintenance property test at 10^5 cases.
pub fn soak() -> Result<u8, String> {
    let status = std::process::Command::new(env!("CARGO"))
        .current_dir(root())
        .env("SOAK_CASES", "100000")
        .args(["test", "--release", "-p", "cache-maint", "-p", "cache-model", "soak", "--", "--nocapture"])
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    Ok(if status.success() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn args() {
        let v: Vec<String> = ["--guest", "sw-basic", "--cpus", "2", "--mem", "32M"].iter().map(|s| s.to_string()).collect();
        let a = Args::parse(&v).unwrap();
        assert_eq!((a.cpus, a.mem), (2, 32 << 20));
        let bad: Vec<String> = ["--board", "pi5"].iter().map(|s| s.to_string()).collect();
        assert!(Args::parse(&bad).unwrap_err().contains("allowed: qemu-virt, rpi4"));
        let pi: Vec<String> = ["--board", "rpi4", "--cpus", "4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(Args::parse(&pi).unwrap().board, "rpi4");
    }

    #[test]
    fn hwdom_args() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let a = Args::parse(&v(&["--guest", "linux-arm64", "--hwdom", "--disk", "--guest", "sw-basic"])).unwrap();
        assert_eq!((a.guest.as_str(), a.more_guests.clone(), a.hwdom, a.disk, a.disk_image.clone()), ("linux-arm64", vec!["sw-basic".to_string()], true, true, None));
        let a = Args::parse(&v(&["--guest", "linux-arm64", "--hwdom", "--disk", "/tmp/d.img", "--cpus", "2"])).unwrap();
        assert_eq!((a.disk_image, a.cpus), (Some(PathBuf::from("/tmp/d.img")), 2));
        assert!(Args::parse(&v(&["--guest", "linux-arm64", "--disk"])).unwrap_err().contains("--hwdom"));
        assert!(Args::parse(&v(&["--board", "rpi4", "--cpus", "4", "--hwdom"])).is_ok());
        assert!(Args::parse(&v(&["--board", "rpi4", "--cpus", "4", "--hwdom", "--disk"])).unwrap_err().contains("SD card"));
        // Without --kernel the first --guest is guest0; with it, every --guest follows.
        let a = Args::parse(&v(&["--kernel", "/k", "--guest", "sw-basic"])).unwrap();
        assert_eq!(a.more_guests, vec!["sw-basic".to_string()]);
        // scripts/run gives --board first; a later one wins.
        assert_eq!(Args::parse(&v(&["--board", "qemu-virt", "--board", "rpi4"])).unwrap().board, "rpi4");
        let e = Args::parse(&v(&["--manifest", "m.toml", "--guest", "sw-basic"])).unwrap_err();
        assert!(e.contains("cannot be used with") && !e.contains('\n'), "{e}");
        let e = Args::parse(&v(&["--arch", "arm"])).unwrap_err();
        assert!(e.contains("possible values: aarch64, aarch32") && !e.contains('\n'), "{e}");
        assert_eq!(Args::parse(&v(&["--append", "-v quiet"])).unwrap().append, "-v quiet");
    }

    /// Every subcommand reads its options with clap: `--help` prints and
    /// does nothing else (no build, no QEMU), a mistake is one line that
    /// names the subcommand's `--help`.
    #[test]
    fn subcommands_take_help_and_refuse_in_one_line() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        assert_eq!(crate::itest::run_all(&v(&["--help"])), Ok(0));
        assert_eq!(crate::fuzz::fuzz(&v(&["--help"])), Ok(0));
        assert_eq!(crate::trace::plot_cli(&v(&["--help"])), Ok(0));
        assert_eq!(crate::serial::console_cli(&v(&["--help"])), Ok(0));
        assert_eq!(crate::disk::disk_cli(&v(&["--help"])), Ok(0));
        assert!(crate::image::ImageArgs::parse_cli(&v(&["--help"])).unwrap().is_none());
        for cmd in ["build", "layers", "soak", "bench", "guests"] {
            let about = crate::plain_command(cmd).unwrap();
            assert_eq!(crate::parse_plain(cmd, about, &v(&["--help"])), Ok(false));
            assert_eq!(crate::parse_plain(cmd, about, &v(&[])), Ok(true));
            let e = crate::parse_plain(cmd, about, &v(&["--fast"])).unwrap_err();
            assert!(e.contains(&format!("cargo xtask {cmd} --help")) && !e.contains('\n'), "{cmd}: {e}");
        }
        for (name, e) in [
            ("itest", crate::itest::run_all(&v(&["--bogus"]))),
            ("fuzz", crate::fuzz::fuzz(&v(&["nope"]))),
            ("plot", crate::trace::plot_cli(&v(&[]))),
            ("console", crate::serial::console_cli(&v(&["--baud", "fast", "/dev/null"]))),
            ("disk", crate::disk::disk_cli(&v(&["riscv"]))),
        ] {
            let e = e.unwrap_err();
            assert!(e.contains(&format!("cargo xtask {name} --help")) && !e.contains('\n'), "{name}: {e}");
        }
    }
}

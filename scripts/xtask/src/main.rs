//! `cargo xtask`: build the hypervisor and the test guests, run them on
//! QEMU, run the QEMU integration tests, and run the soak and benchmarks.

use std::process::ExitCode;

use xtask::{itest, run, Args};

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  build                     build the kernel and the test guests
  run   --guest NAME        build, then boot NAME under the hypervisor on QEMU
        [--board qemu-virt|rpi4] [--cpus N] [--vcpus N] [--mem SIZE]
        [--bootargs \"...\"] [--append \"...\"] [--timeout SECONDS] [--quiet] [--icount]
                            (a terminal's input reaches the guest's console;
                            --append adds to a Linux guest's command line)
  run   --kernel IMAGE [--initrd FILE] [--arch aarch64|aarch32] [options]
                            boot your own Linux Image or zImage as the guest
  run   --firmware IMAGE [--arch aarch64|aarch32] [options]
                            boot raw firmware (UEFI: EDK2's QEMU_EFI.fd) as the guest
  run   ... --gdb           QEMU's gdbstub on :1234, waiting; prints the gdb command
  run   --help              every option of run (clap)
  run   --manifest FILE     the guests (and cpus, bootargs, board, timeout, which win
                            over the options) from a TOML file: see manifest.rs
  run   ... --trace FILE    every guest's counters every 100 ms (memory populated, bytes
                            cleaned, set/way and TVM traps, migrations) as CSV in FILE
  run   ... --oracle        under the cache oracle: reports where real hardware would
                            lose or expose stale data; any event fails the run
  run   ... --guest NAME    again: a further guest beside the first (1 vCPU, 64 MiB;
                            512 MiB for Linux), e.g. --guest linux-arm64 --guest sw-basic
  run   ... --hwdom         the first guest is the hardware domain (guest0.hwdom=yes;
                            needs the kernel's hardware-domain support, issue 13)
        [--disk [PATH]]     with a disk (virtio-blk on QEMU virt, read-only): the test
                            disk by default; a Linux guest boots its disk initramfs
        [--passthrough LIST] guest0.passthrough=LIST (device-tree paths, comma-separated)
  disk  [arm64|armhf]       build the hardware domain's ext4 test disk; prints its path
  image --board rpi4 -o PATH  an SD-card image for a real board (then dd it to the card)
        [--guest NAME]... [--vcpus N] [--mem SIZE] [--bootargs \"...\"] [--append \"...\"]
                            (default guest: linux-arm64, 4 vCPUs, 256 MiB)
        [--hwdom]           the first guest (linux-arm64) is the hardware domain, and
                            partition 2 an ext4 root file system its initramfs mounts
  console DEVICE [--baud N] a board's serial line (e.g. /dev/ttyUSB0) with the
                            hypervisor's defmt log decoded; typing reaches the board
  itest [--board rpi4] [FILTER]
                            the QEMU integration tests (on raspi4b with --board rpi4)
  layers                    the kernel's module graph; fails on a cycle or on a
                            module naming an item of main.rs
  soak                      the cache-model property test at 10^5 cases
  fuzz  [TARGET] [--runs N] coverage-guided fuzzing (libFuzzer on stable); targets:
                            decode, bootcfg, devices, pager; 10^7 runs each by default
  bench                     deterministic instruction counts of each trap path
  plot  TRACE.csv... [--out FILE.svg]
                            draw traces from run --trace: memory populated, bytes
                            cleaned, traps over time; one line per guest and trace
  guests                    list the test guests

Each command takes --help.";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &argv[1..];
    // Commands without options still take --help, and refuse anything else.
    if let Some(about) = xtask::plain_command(&cmd) {
        match xtask::parse_plain(&cmd, about, rest) {
            Ok(true) => {}
            Ok(false) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let result = match cmd.as_str() {
        "build" => xtask::build::build_all().map(|_| 0),
        "run" if rest.iter().any(|a| a == "--help" || a == "-h") => {
            print!("{}", Args::help());
            Ok(0)
        }
        "run" => Args::parse(rest).and_then(|a| run::run_cli(&a)),
        "image" => xtask::image::image_cli(rest),
        "itest" => itest::run_all(rest),
        "console" => xtask::serial::console_cli(rest),
        "disk" => xtask::disk::disk_cli(rest),
        "layers" => xtask::layers::layers_cli(),
        "soak" => xtask::soak(),
        "fuzz" => xtask::fuzz::fuzz(rest),
        "bench" => xtask::bench::bench(),
        "plot" => xtask::trace::plot_cli(rest),
        "guests" => {
            for g in xtask::GUESTS {
                println!("{g}");
            }
            Ok(0)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

//! `cargo xtask console DEVICE`: a board's serial line (a USB serial
//! adapter on the Raspberry Pi 4's GPIO 14/15) with the hypervisor's defmt
//! log decoded, as `cargo xtask run` shows it on QEMU. Guest output and the
//! hypervisor's plain lines pass through; what is typed goes to the board.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

use crate::demux::{render, Demux};

/// `cargo xtask console`'s options.
#[derive(clap::Parser, Debug)]
#[command(about = "A board's serial line with the hypervisor's defmt log decoded; typing reaches the board", disable_version_flag = true, args_override_self = true)]
struct ConsoleOpts {
    /// The serial device, e.g. /dev/ttyUSB0.
    device: PathBuf,
    /// Its speed (8N1, raw).
    #[arg(long, value_name = "N", default_value_t = 115_200)]
    baud: u32,
    /// The kernel ELF whose defmt table decodes the log (default: this build's).
    #[arg(long, value_name = "KERNEL-ELF")]
    elf: Option<PathBuf>,
}

/// `console DEVICE [--baud N] [--elf PATH]`.
pub fn console_cli(argv: &[String]) -> Result<u8, String> {
    let Some(ConsoleOpts { device: dev, baud, elf }) = crate::parse_cli::<ConsoleOpts>("console", argv)? else { return Ok(0) };
    // The kernel on the card must be this build: its defmt table decodes the log.
    let elf = match elf {
        Some(e) => e,
        None => crate::build::kernel()?,
    };
    let st = Command::new("stty")
        .arg("-F")
        .arg(&dev)
        .args([&baud.to_string(), "raw", "-echo", "-ixon", "cs8", "-cstopb", "-parenb"])
        .status()
        .map_err(|e| format!("stty: {e}"))?;
    if !st.success() {
        return Err(format!("stty could not set {} to {baud} 8N1 raw", dev.display()));
    }
    let mut port = std::fs::OpenOptions::new().read(true).write(true).open(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    let mut to_board = port.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_board.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let table = defmt_decoder::Table::parse(&data).map_err(|e| format!("defmt table: {e}"))?;
    let mut decoder = table.as_ref().map(|t| t.new_stream_decoder());
    let mut demux = Demux::default();
    eprintln!("xtask: {} at {baud} 8N1, log decoded with {} (CTRL-c quits)", dev.display(), elf.display());
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let n = port.read(&mut buf).map_err(|e| format!("{}: {e}", dev.display()))?;
        if n == 0 {
            return Ok(0);
        }
        for piece in demux.push(&buf[..n]) {
            let _ = out.write_all(render(piece, decoder.as_mut()).as_bytes());
        }
        let _ = out.flush();
    }
}

//! Write a QEMU `virt`-layout guest DTB to a file, to boot a kernel bare
//! under QEMU with it (see test-images/linux/README.md).
//!
//! ```text
//! write_dtb aarch64|aarch32 VCPUS RAM_MIB OUT.dtb [--initrd FILE@ADDR] [--bootargs STRING]
//! ```

use std::process::exit;

use guest_dtb::{write, Arch, GuestDtbSpec};

fn usage() -> ! {
    eprintln!(
        "usage: write_dtb aarch64|aarch32 VCPUS RAM_MIB OUT.dtb [--initrd FILE@ADDR] [--bootargs STRING]"
    );
    exit(2)
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        usage();
    }
    let arch = match args[0].as_str() {
        "aarch64" => Arch::Aarch64,
        "aarch32" => Arch::Aarch32,
        _ => usage(),
    };
    let vcpus: u32 = args[1].parse().unwrap_or_else(|_| usage());
    let ram_mib: u64 = args[2].parse().unwrap_or_else(|_| usage());
    let out = &args[3];
    let mut bootargs = String::from("console=ttyAMA0");
    let mut initrd = None;
    let mut rest = args[4..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--bootargs" => bootargs = value.clone(),
            "--initrd" => {
                let (file, addr) = value.split_once('@').unwrap_or_else(|| usage());
                let start = parse_hex(addr).unwrap_or_else(|| usage());
                let size = std::fs::metadata(file).unwrap_or_else(|e| {
                    eprintln!("write_dtb: {file}: {e}");
                    exit(1)
                });
                initrd = Some((start, start + size.len()));
            }
            _ => usage(),
        }
    }
    let spec = GuestDtbSpec {
        initrd,
        ..GuestDtbSpec::qemu_virt(arch, ram_mib << 20, vcpus, &bootargs)
    };
    let mut buf = vec![0u8; 64 * 1024];
    match write(&spec, &mut buf) {
        Ok(n) => std::fs::write(out, &buf[..n]).unwrap_or_else(|e| {
            eprintln!("write_dtb: {out}: {e}");
            exit(1)
        }),
        Err(e) => {
            eprintln!("{e}");
            exit(1)
        }
    }
}

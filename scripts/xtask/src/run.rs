//! Booting the hypervisor with guests on QEMU virt and reading its console.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::demux::Demux;
use crate::dtb::{self, Module};
use crate::summary::{self, Summary};
use crate::{build, oracle, Args};

pub const QEMU: &str = "qemu-system-aarch64";
/// Where guest images are loaded in QEMU virt's memory, one after another
/// (above QEMU's DTB, which it puts 128 MiB into RAM for an Image kernel).
pub const MODULE_BASE: u64 = 0x5000_0000;
/// The least host RAM QEMU gives the machine.
const MIN_HOST_RAM: u64 = 2 << 30;
/// Host RAM kept beyond the guests' own: the hypervisor, its stage-2
/// tables, the guest images and the DTB.
const HYP_RAM: u64 = 1 << 30;

/// Host RAM for a run: every guest's RAM plus the hypervisor's share,
/// rounded up to 1 GiB, and never below 2 GiB.
pub fn host_ram(guests: &[GuestSpec]) -> u64 {
    let want = guests.iter().map(|g| g.mem).sum::<u64>() + HYP_RAM;
    want.next_multiple_of(1 << 30).max(MIN_HOST_RAM)
}

/// Arguments every QEMU this project starts carries: no default devices
/// (the `virt` NIC needs an option ROM from a package set-up does not
/// install), no display, no monitor. [`qemu_command`] adds the UART on stdio.
pub const QEMU_BASE: &[&str] = &["-nodefaults", "-display", "none", "-monitor", "none"];

/// A board `cargo xtask run` boots on QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// `-M virt,virtualization=on,gic-version=2`.
    Virt,
    /// `-M raspi4b`: 4 Cortex-A72, 2 GiB, GIC-400, the RPi firmware's
    /// spin tables and no PSCI; the board DTB is Debian's.
    Rpi4,
}

impl Board {
    pub fn parse(name: &str) -> Result<Board, String> {
        match name {
            "qemu-virt" => Ok(Board::Virt),
            "rpi4" => Ok(Board::Rpi4),
            _ => Err(format!("board '{name}' cannot run under QEMU here (allowed: qemu-virt, rpi4; cubietruck is not supported yet)")),
        }
    }

    /// Where QEMU loads the hypervisor's Image: the base of RAM plus the
    /// header's text_offset (0x80000).
    pub fn load_addr(self) -> u64 {
        match self {
            Board::Virt => 0x4008_0000,
            Board::Rpi4 => 0x8_0000,
        }
    }

    /// Where the guest images go, one after another: above QEMU's DTB (128
    /// MiB into RAM). raspi4b's DTB describes only the 960 MiB below the
    /// VideoCore's share (QEMU 10 replaces any memory node it is given).
    pub fn module_base(self) -> u64 {
        match self {
            Board::Virt => MODULE_BASE,
            Board::Rpi4 => 0x1000_0000,
        }
    }

    /// The UARTs on QEMU's stdio: the console the board's DTB names. On
    /// raspi4b that is the mini-UART (`serial1`), QEMU's second serial port,
    /// as on a real Raspberry Pi 4 with `enable_uart=1`.
    fn serial_args(self) -> &'static [&'static str] {
        match self {
            Board::Virt => &["-serial", "stdio"],
            Board::Rpi4 => &["-serial", "null", "-serial", "stdio"],
        }
    }
}

/// One guest of a run.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    pub image: String,
    pub name: String,
    pub vcpus: u32,
    pub mem: u64,
    pub sw: String,
    pub bootargs: String,
    /// A kernel (and initramfs) of the user's, instead of `image`'s.
    pub kernel: Option<(PathBuf, Option<PathBuf>)>,
    /// Its EL1 execution state, when not `image`'s.
    pub arch: Option<String>,
    /// The hardware domain: `guestN.hwdom=yes` and `hyp,hwdom` on its node.
    pub hwdom: bool,
    /// `kernel`, or the test guest's image, is raw firmware (`hyp,firmware`).
    pub firmware: bool,
    /// A disk image QEMU virt attaches as a virtio-blk device (read-only)
    /// for this guest; a Linux test guest then boots the disk initramfs.
    pub disk: Option<PathBuf>,
}

/// "aarch64" for an arm64 Image, "aarch32" for a zImage, from the header.
pub fn image_arch(path: &std::path::Path) -> Result<&'static str, String> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let n = f.read(&mut head).map_err(|e| format!("{}: {e}", path.display()))?;
    if n >= 60 && head[56..60] == *b"ARMd" {
        Ok("aarch64")
    } else if n >= 40 && u32::from_le_bytes(head[36..40].try_into().unwrap()) == 0x016f_2818 {
        Ok("aarch32")
    } else {
        Err(format!("{}: neither an arm64 Image nor a zImage; give --arch aarch64|aarch32", path.display()))
    }
}

impl GuestSpec {
    pub fn from_args(a: &Args) -> GuestSpec {
        if let Some(k) = &a.kernel {
            let stem: String = k
                .file_stem()
                .map(|s| s.to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(16).collect())
                .filter(|s: &String| !s.is_empty())
                .unwrap_or_else(|| "kernel".into());
            let bootargs = if a.firmware { a.append.clone() } else { format!("{} {}", crate::linux::default_bootargs(&a.board, a.hwdom), a.append) };
            return GuestSpec {
                image: stem.clone(),
                name: stem,
                vcpus: a.vcpus,
                mem: a.mem,
                sw: "auto".into(),
                bootargs: bootargs.trim().to_string(),
                kernel: Some((k.clone(), a.initrd.clone())),
                arch: a.arch.clone().or_else(|| a.firmware.then(|| "aarch64".into())),
                hwdom: a.hwdom,
                firmware: a.firmware,
                disk: None,
            };
        }
        GuestSpec {
            image: a.guest.clone(),
            name: a.guest.clone(),
            vcpus: a.vcpus,
            mem: a.mem,
            sw: "auto".into(),
            bootargs: format!("{} {}", crate::linux::bootargs(&a.guest).map(|_| crate::linux::default_bootargs(&a.board, a.hwdom)).unwrap_or_default(), a.append).trim().to_string(),
            kernel: None,
            arch: None,
            hwdom: a.hwdom,
            firmware: crate::edk2::arch(&a.guest).is_some(),
            disk: None,
        }
    }
}

/// Every guest of `cargo xtask run`: the first from the options (the
/// hardware domain with `--hwdom`, with its disk with `--disk`), then each
/// further `--guest` with 1 vCPU and 64 MiB (512 MiB for Linux), named
/// `NAME-2`... when a name repeats.
pub fn specs(a: &Args) -> Result<Vec<GuestSpec>, String> {
    let mut first = GuestSpec::from_args(a);
    if a.disk {
        first.disk = Some(match &a.disk_image {
            Some(p) => p.clone(),
            None => {
                let arch = crate::disk::linux_arch(&first.image)
                    .filter(|_| first.kernel.is_none())
                    .ok_or("--disk without a PATH needs --guest linux-arm64 or linux-armhf (their disk initramfs mounts the test disk)")?;
                crate::disk::disk(arch)?
            }
        });
    }
    let mut v = vec![first];
    for g in &a.more_guests {
        let o = Args { guest: g.clone(), vcpus: 1, mem: crate::default_mem(g, false), append: String::new(), kernel: None, hwdom: false, ..a.clone() };
        let mut s = GuestSpec::from_args(&o);
        let same = v.iter().filter(|x| x.image == s.image).count();
        if same > 0 {
            s.name = numbered(&s.name, same + 1);
        }
        v.push(s);
    }
    Ok(v)
}

/// `name-n`, the name shortened so that it stays within the 16 characters
/// a guest name may have.
pub fn numbered(name: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    name.chars().take(16usize.saturating_sub(suffix.len())).collect::<String>() + &suffix
}

/// The hypervisor boot arguments the guests themselves imply:
/// `guestN.hwdom=yes` for a hardware domain, `guest0.passthrough=` from
/// `--passthrough`.
pub fn guest_bootargs(a: &Args, guests: &[GuestSpec]) -> String {
    let mut v: Vec<String> = guests.iter().enumerate().filter(|(_, g)| g.hwdom).map(|(i, _)| format!("guest{i}.hwdom=yes")).collect();
    if let Some(p) = &a.passthrough {
        v.push(format!("guest0.passthrough={p}"));
    }
    v.join(" ")
}

/// QEMU arguments for the guests' disks: each a read-only virtio-blk
/// device on virt's virtio-mmio transports.
pub fn disk_args(guests: &[GuestSpec]) -> Result<Vec<String>, String> {
    let mut v = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        if let Some(p) = &g.disk {
            if !p.is_file() {
                return Err(format!("--disk {}: no such file", p.display()));
            }
            let path = p.display().to_string();
            if path.contains(',') {
                return Err(format!("--disk {path}: QEMU cannot take a path with a comma"));
            }
            v.extend(["-drive".into(), format!("file={path},if=none,format=raw,id=disk{i},readonly=on"), "-device".into(), format!("virtio-blk-device,drive=disk{i}")]);
        }
    }
    Ok(v)
}

/// QEMU arguments for `img` as raspi4b's SD card: `snapshot=on`, so the
/// guest's writes go to a temporary overlay (QEMU refuses a read-only SD
/// card). QEMU's SD card model takes only a power-of-two size.
pub fn sd_card_args(img: &std::path::Path) -> Result<Vec<String>, String> {
    let len = std::fs::metadata(img).map_err(|e| format!("{}: {e}", img.display()))?.len();
    if !len.is_power_of_two() {
        return Err(format!("{}: {len} bytes; QEMU's SD card needs a power-of-two size", img.display()));
    }
    let path = img.display().to_string();
    if path.contains(',') {
        return Err(format!("{path}: QEMU cannot take a path with a comma"));
    }
    Ok(vec!["-drive".into(), format!("file={path},if=sd,format=raw,snapshot=on")])
}

/// What a run produced.
pub struct RunResult {
    /// Everything the console printed, defmt frames decoded to `[hyp]` lines.
    pub transcript: String,
    pub summaries: Vec<Summary>,
    pub timed_out: bool,
    /// QEMU exited by itself with status 0: every guest exited ok.
    pub qemu_ok: bool,
    /// QEMU's exit code when it exited by itself.
    pub qemu_code: Option<i32>,
    /// Seconds from starting QEMU until a Linux guest printed its marker.
    pub marker_s: Option<f64>,
    /// The cache oracle's report (runs with `oracle`).
    pub oracle: Option<oracle::Report>,
}

impl RunResult {
    /// True when QEMU exited by itself and every guest's summary says ok.
    pub fn all_ok(&self) -> bool {
        !self.timed_out && self.qemu_ok && !self.summaries.is_empty() && self.summaries.iter().all(|s| s.ok)
    }
    pub fn summary(&self, guest: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.guest == guest)
    }
}

pub fn run_cli(a: &Args) -> Result<u8, String> {
    let (a, guests) = match &a.manifest {
        Some(m) => crate::manifest::load(m, a)?,
        None => (a.clone(), specs(a)?),
    };
    let a = &a;
    let r = run(a, &guests, !a.quiet)?;
    if let Some(path) = &a.trace {
        let n = crate::trace::save(&r.transcript, path)?;
        eprintln!("xtask: {n} trace rows written to {} (draw them: cargo xtask plot {})", path.display(), path.display());
    }
    if r.timed_out {
        eprintln!("xtask: timed out after {} s", a.timeout_s);
        return Ok(124);
    }
    if r.summaries.is_empty() {
        eprintln!("xtask: the hypervisor printed no exit summary");
        return Ok(1);
    }
    if a.oracle {
        match &r.oracle {
            None => {
                eprintln!("xtask: the cache oracle wrote no report");
                return Ok(1);
            }
            Some(rep) => {
                eprint!("{}", rep.text);
                if let Some(why) = rep.blind() {
                    eprintln!("xtask: {why}");
                    return Ok(1);
                }
                if rep.events() > 0 {
                    eprintln!("xtask: the cache oracle saw {} event(s): real hardware would lose or expose stale data", rep.events());
                    return Ok(1);
                }
            }
        }
    }
    // QEMU's own exit code carries the guests' status (semihosting exit).
    Ok(if r.all_ok() { 0 } else { 1 })
}

/// The one way this project starts QEMU: `QEMU_BASE` comes first, then the
/// first UART on stdio.
pub fn qemu_command() -> Command {
    qemu_command_for(Board::Virt)
}

/// [`qemu_command`] with `board`'s console UART on stdio.
pub fn qemu_command_for(board: Board) -> Command {
    let mut c = Command::new(QEMU);
    c.args(QEMU_BASE);
    c.args(board.serial_args());
    c
}

fn machine_args(a: &Args, guests: &[GuestSpec]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if Board::parse(&a.board) == Ok(Board::Rpi4) {
        // Four CPUs and 2 GiB, fixed by the model; `--cpus` becomes the
        // hypervisor's `maxcpus=`.
        v.extend(["-M".into(), "raspi4b".into(), "-semihosting-config".into(), "enable=on,target=native".into()]);
        if a.icount {
            v.extend(["-icount".into(), "shift=0,sleep=off".into()]);
        }
        return v;
    }
    v.extend([
        "-M".into(),
        "virt,virtualization=on,gic-version=2".into(),
        "-cpu".into(),
        "cortex-a72".into(),
        "-smp".into(),
        a.cpus.to_string(),
        "-m".into(),
        format!("{}M", host_ram(guests) >> 20),
        // The hypervisor powers off by semihosting (exit=semihosting, added
        // to the boot arguments) so QEMU exits with the guests' status.
        "-semihosting-config".into(),
        "enable=on,target=native".into(),
    ]);
    if a.icount {
        v.extend(["-icount".into(), "shift=0,sleep=off".into()]);
    }
    v
}

fn work_dir() -> PathBuf {
    let d = build::target_dir().join("run");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Build everything needed, boot QEMU, and collect the console until QEMU
/// exits or the timeout passes. With `echo`, the console is shown live.
pub fn run(a: &Args, guests: &[GuestSpec], echo: bool) -> Result<RunResult, String> {
    let board = Board::parse(&a.board)?;
    let kernel = if a.faults_kernel {
        build::kernel_faults()?
    } else if a.profile_kernel {
        build::kernel_profile()?
    } else {
        build::kernel()?
    };
    // Each guest's image (and ramdisk), placed one after another, 2 MiB
    // aligned, from the board's module base.
    let resolved = crate::bundle::resolve(guests)?;
    let mut files: Vec<(PathBuf, u64, u64)> = Vec::new();
    let mut next = board.module_base();
    let mut place = |path: &PathBuf| -> Result<(u64, u64), String> {
        let size = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
        let at = next;
        next = (at + size).next_multiple_of(2 << 20);
        files.push((path.clone(), at, size));
        Ok((at, size))
    };
    let mut modules: Vec<Module> = Vec::new();
    for g in &resolved {
        let (addr, size) = place(&g.image)?;
        let ramdisk = match &g.ramdisk {
            Some(p) => Some(place(p)?),
            None => None,
        };
        modules.push(g.module(addr, size, ramdisk));
    }
    let dir = work_dir();
    let tag = format!("{}-{}", std::process::id(), guests.first().map(|g| g.name.as_str()).unwrap_or("none"));
    let dtb_path = dir.join(format!("{tag}.dtb"));
    let margs = machine_args(a, guests);
    let mut bootargs = String::from("exit=semihosting");
    if board == Board::Rpi4 && a.cpus < 4 {
        bootargs += &format!(" maxcpus={}", a.cpus);
    }
    let implied = guest_bootargs(a, guests);
    if !implied.is_empty() {
        bootargs += " ";
        bootargs += &implied;
    }
    // --trace's period, unless the boot arguments give their own.
    if a.trace.is_some() && !a.bootargs.split_whitespace().any(|t| t.starts_with("trace=")) {
        bootargs += &format!(" trace={}", crate::trace::PERIOD_MS);
    }
    let bootargs = format!("{bootargs} {}", a.bootargs).trim_end().to_string();
    let disks = disk_args(guests)?;
    if !disks.is_empty() && board != Board::Virt {
        return Err("a disk (--disk) is for --board qemu-virt only so far".into());
    }
    let chosen = dtb::chosen_dts(&bootargs, &modules);
    match board {
        Board::Virt => dtb::generate(&margs, &chosen, a.dt_compatible.as_deref(), &dtb_path)?,
        Board::Rpi4 => {
            dtb::generate_from(&crate::linux::rpi4_dtb()?, &chosen, a.dt_compatible.as_deref(), &dtb_path)?;
            dtb::raspi4b_fixup(&dtb_path)?;
        }
    }

    let mut cmd = qemu_command_for(board);
    if a.gdb {
        // QEMU's gdbstub on TCP port 1234; the CPUs wait for the debugger.
        cmd.args(["-s", "-S"]);
        eprintln!(
            "xtask: QEMU waits for gdb: gdb-multiarch -ex 'target remote :1234' -ex 'symbol-file -o {:#x} {}' (Debian: apt-get install gdb-multiarch)",
            board.load_addr(),
            kernel.display()
        );
    }
    let image = build::kernel_image(&kernel)?;
    cmd.args(&margs).arg("-kernel").arg(&image).arg("-dtb").arg(&dtb_path).args(&disks);
    for (path, addr, _) in &files {
        cmd.arg("-device").arg(format!("loader,file={},addr={:#x},force-raw=on", path.display(), addr));
    }
    launch(a, cmd, &kernel, board, echo, &dir.join(&tag), &[dtb_path])
}

/// Boot what an SD image for the Raspberry Pi 4 holds, as its firmware
/// would: the hypervisor Image named by config.txt's `kernel=`, the board
/// DTB, and the guest bundle as the initramfs (QEMU puts it in RAM and
/// names it in `/chosen/linux,initrd-*`). `kernel_elf` is the ELF the image
/// was built from (for defmt and the oracle). QEMU cannot run the GPU
/// firmware, so this is what the firmware's part of the boot leaves. The
/// DTB gets the QEMU-only [`dtb::raspi4b_fixup`]. An image with a root
/// file system partition (`image --hwdom`) is also QEMU's SD card
/// ([`sd_card_args`]; QEMU puts it behind the legacy EMMC at 0xfe300000,
/// not EMMC2).
pub fn run_sd_image(a: &Args, img: &std::path::Path, kernel_elf: &std::path::Path, echo: bool) -> Result<RunResult, String> {
    let files = crate::image::read_boot_files(img)?;
    if files.kernel != std::fs::read(build::kernel_image(kernel_elf)?).map_err(|e| e.to_string())? {
        return Err(format!("{}: its {} is not the image of {}", img.display(), files.config.kernel, kernel_elf.display()));
    }
    let dir = work_dir();
    let tag = dir.join(format!("{}-sd", std::process::id()));
    let (k, d, i) = (tag.with_extension("img"), tag.with_extension("dtb"), tag.with_extension("initrd"));
    for (path, data) in [(&k, &files.kernel), (&d, &files.dtb), (&i, &files.initramfs)] {
        std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    dtb::raspi4b_fixup(&d)?;
    let mut cmd = qemu_command_for(Board::Rpi4);
    cmd.args(machine_args(a, &[])).arg("-kernel").arg(&k).arg("-dtb").arg(&d).arg("-initrd").arg(&i);
    if files.root.is_some() {
        cmd.args(sd_card_args(img)?);
    }
    launch(a, cmd, kernel_elf, Board::Rpi4, echo, &tag, &[k.clone(), d.clone(), i.clone()])
}

/// Start `cmd` (QEMU with everything but the oracle), feed the console
/// input, collect the console until QEMU exits or the timeout passes, and
/// remove `temp` files afterwards (unless XTASK_KEEP is set). `tag` names
/// the oracle's report file.
fn launch(a: &Args, mut cmd: Command, kernel: &std::path::Path, board: Board, echo: bool, tag: &std::path::Path, temp: &[PathBuf]) -> Result<RunResult, String> {
    let report_path = PathBuf::from(format!("{}.oracle", tag.display()));
    let _ = std::fs::remove_file(&report_path);
    if a.oracle {
        let cpus = if board == Board::Rpi4 { 4 } else { a.cpus };
        cmd.args(oracle::qemu_args(kernel, board.load_addr(), cpus, a.icount, &report_path)?);
    }
    // Console input: a test's scripted text, or an interactive terminal.
    let interactive = a.input.is_none() && echo && std::io::stdin().is_terminal();
    let stdin = if a.input.is_some() {
        Stdio::piped()
    } else if interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{QEMU}: {e} (run scripts/setup)"))?;
    let mut typed = child.stdin.take();
    let mut to_type = a.input.clone();
    let started = Instant::now();
    let mut marker_s = None;

    let elf = std::fs::read(kernel).map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().unwrap();
    // Drained as it comes, so a chatty QEMU (or plugin) never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let table = defmt_decoder::Table::parse(&elf).map_err(|e| format!("defmt table: {e}"))?;
    let mut decoder = table.as_ref().map(|t| t.new_stream_decoder());
    let mut demux = Demux::default();
    let mut transcript = String::new();
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    let mut timed_out = false;
    let mut out = std::io::stdout();
    let mut handle = |bytes: Vec<u8>, transcript: &mut String| {
        for piece in demux.push(&bytes) {
            let text = crate::demux::render(piece, decoder.as_mut());
            if echo {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            transcript.push_str(&text);
        }
    };
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(bytes) => {
                handle(bytes, &mut transcript);
                if marker_s.is_none() && transcript.contains("LINUX-MARKER") {
                    marker_s = Some(started.elapsed().as_secs_f64());
                }
                let mut done = None;
                if let (Some(input), Some(pipe)) = (&to_type, typed.as_mut()) {
                    if transcript.matches(input.after.as_str()).count() >= input.times {
                        let _ = pipe.write_all(&input.text);
                        let _ = pipe.flush();
                        done = Some(input.then.as_deref().cloned());
                    }
                }
                if let Some(next) = done {
                    to_type = next;
                    if to_type.is_none() {
                        // Keep the pipe open (EOF would end QEMU's input),
                        // but type each step only once.
                        std::mem::forget(typed.take());
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break child.wait().map_err(|e| e.to_string())?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().map_err(|e| e.to_string())?;
        }
    };
    let _ = reader.join();
    while let Ok(bytes) = rx.try_recv() {
        handle(bytes, &mut transcript);
    }
    let err = err_reader.join().unwrap_or_default();
    if !err.trim().is_empty() && echo {
        eprintln!("qemu: {}", err.trim());
    }
    let oracle = if a.oracle { std::fs::read_to_string(&report_path).ok().and_then(|t| oracle::Report::parse(&t)) } else { None };
    if std::env::var_os("XTASK_KEEP").is_none() {
        for f in temp {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_file(&report_path);
    }
    Ok(RunResult {
        summaries: summary::parse_all(&transcript),
        transcript,
        timed_out,
        qemu_ok: status.success(),
        qemu_code: if timed_out { None } else { status.code() },
        marker_s,
        oracle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(mem: u64) -> GuestSpec {
        GuestSpec { image: "g".into(), name: "g".into(), vcpus: 1, mem, sw: "auto".into(), bootargs: String::new(), kernel: None, arch: None, hwdom: false, firmware: false, disk: None }
    }

    #[test]
    fn hwdom_guests_and_disks() {
        let argv: Vec<String> = ["--guest", "linux-arm64", "--hwdom", "--guest", "sw-basic", "--guest", "sw-basic", "--passthrough", "/virtio_mmio@a003e00"].iter().map(|s| s.to_string()).collect();
        let a = Args::parse(&argv).unwrap();
        let s = specs(&a).unwrap();
        let names: Vec<&str> = s.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["linux-arm64", "sw-basic", "sw-basic-2"]);
        assert_eq!(s.iter().map(|g| g.hwdom).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!((s[0].mem, s[1].mem, s[1].vcpus), (512 << 20, 64 << 20, 1));
        assert_eq!(guest_bootargs(&a, &s), "guest0.hwdom=yes guest0.passthrough=/virtio_mmio@a003e00");
        let mut g = s[0].clone();
        let img = std::env::temp_dir().join(format!("xtask-run-disk-{}.img", std::process::id()));
        std::fs::write(&img, [0u8; 512]).unwrap();
        g.disk = Some(img.clone());
        let d = disk_args(&[s[1].clone(), g]).unwrap();
        assert_eq!(d, [
            "-drive".to_string(),
            format!("file={},if=none,format=raw,id=disk1,readonly=on", img.display()),
            "-device".into(),
            "virtio-blk-device,drive=disk1".into()
        ]);
        let _ = std::fs::remove_file(&img);
        assert!(disk_args(&[GuestSpec { disk: Some(img), ..guest(1) }]).is_err());
    }

    #[test]
    fn an_sd_card_is_a_power_of_two() {
        let img = std::env::temp_dir().join(format!("xtask-run-sd-{}.img", std::process::id()));
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        assert_eq!(sd_card_args(&img).unwrap(), ["-drive".to_string(), format!("file={},if=sd,format=raw,snapshot=on", img.display())]);
        std::fs::write(&img, vec![0u8; 4097]).unwrap();
        assert!(sd_card_args(&img).unwrap_err().contains("power-of-two"));
        let _ = std::fs::remove_file(&img);
    }

    #[test]
    fn host_ram_follows_the_guests() {
        assert_eq!(host_ram(&[guest(64 << 20)]), 2 << 30);
        assert_eq!(host_ram(&[guest(3 << 30)]), 4 << 30);
        assert_eq!(host_ram(&[guest(2 << 30), guest(2 << 30)]), 5 << 30);
    }

    /// Every QEMU starts through `qemu_command`, so with `-nodefaults`: no
    /// default NIC, whose option ROM a fresh machine does not have.
    #[test]
    fn every_qemu_starts_without_default_devices() {
        let c = qemu_command();
        let args: Vec<_> = c.get_args().collect();
        assert_eq!(args.first().and_then(|a| a.to_str()), Some("-nodefaults"));
        let src = crate::root().join("scripts/xtask/src");
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // The code, not its tests (this test names the patterns).
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (i, line) in code.lines().enumerate() {
                let direct = line.contains("Command::new(QEMU)") || line.contains("Command::new(run::QEMU)") || line.contains("\"qemu-system");
                let allowed = path.ends_with("run.rs") && (line.contains("pub const QEMU") || line.trim() == "let mut c = Command::new(QEMU);");
                assert!(!direct || allowed, "{}:{}: start QEMU through run::qemu_command()", path.display(), i + 1);
            }
        }
    }
}

//! Boot-to-marker wall time of Debian's arm64 kernel three ways, alternating
//! in one run: under this hypervisor, on bare QEMU, and as dom0 under
//! Debian's Xen 4.17 in the same QEMU machine. Reported as ratios.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{self, GuestSpec};
use crate::{dtb, root, Args};

const MARKER: &str = "LINUX-MARKER";
const APPEND: &str = "console=ttyAMA0 rdinit=/init";

/// Seconds from spawning `cmd` until `marker` appears on its stdout.
fn time_to_marker(mut cmd: Command, timeout: Duration) -> Result<f64, String> {
    let t = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                let _ = tx.send(());
                break;
            }
        }
    });
    let r = rx.recv_timeout(timeout).map(|_| t.elapsed().as_secs_f64()).map_err(|_| "no marker before the timeout".to_string());
    let _ = child.kill();
    let _ = child.wait();
    r
}

fn qemu_base(virt: &str, gic: u32) -> Command {
    let mut c = run::qemu_command();
    c.args(["-M", &format!("virt,{virt}gic-version={gic}"), "-cpu", "cortex-a72", "-smp", "2"]);
    c
}

fn bare(kernel: &Path, initrd: &Path) -> Command {
    let mut c = qemu_base("", 2);
    c.args(["-m", "512"]).arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).args(["-append", APPEND]);
    c
}

/// Xen with dom0 from `/chosen` modules (dom0less style), as the platform
/// notes describe.
fn xen(xen: &Path, kernel: &Path, initrd: &Path, dtb_out: &Path) -> Result<Command, String> {
    let (k_at, i_at) = (0x5000_0000u64, 0x5400_0000u64);
    let ksize = std::fs::metadata(kernel).map_err(|e| e.to_string())?.len();
    let isize = std::fs::metadata(initrd).map_err(|e| e.to_string())?.len();
    let props = "\t\t#address-cells = <0x02>;\n\t\t#size-cells = <0x02>;\n\t\txen,xen-bootargs = \"console=dtuart dtuart=/pl011@9000000 dom0_mem=512M\";\n".to_string();
    let reg = |a: u64, s: u64| format!("<0x{:x} 0x{:x} 0x{:x} 0x{:x}>", a >> 32, a & 0xffff_ffff, s >> 32, s & 0xffff_ffff);
    let nodes = format!(
        "\t\tmodule@{k_at:x} {{\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = {};\n\t\t\tbootargs = \"console=hvc0 rdinit=/init\";\n\t\t}};\n\t\tmodule@{i_at:x} {{\n\t\t\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n\t\t\treg = {};\n\t\t}};\n",
        reg(k_at, ksize),
        reg(i_at, isize)
    );
    let margs: Vec<String> = ["-M", "virt,virtualization=on,gic-version=3", "-cpu", "cortex-a57", "-smp", "2", "-m", "2048"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    dtb::generate(&margs, &(props, nodes), None, dtb_out)?;
    let mut c = qemu_base("virtualization=on,", 3);
    c.args(["-cpu", "cortex-a57", "-m", "2048"]).arg("-kernel").arg(xen).arg("-dtb").arg(dtb_out);
    c.arg("-device").arg(format!("loader,file={},addr={k_at:#x},force-raw=on", kernel.display()));
    c.arg("-device").arg(format!("loader,file={},addr={i_at:#x},force-raw=on", initrd.display()));
    Ok(c)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn linux_boot(rounds: usize) -> Result<(), String> {
    let (kernel, initrd) = crate::linux::files("linux-arm64")?.ok_or("no linux-arm64")?;
    let initrd = initrd.ok_or("no initrd")?;
    let cache = root().join("test-images/cache/linux");
    let xen_img = cache.join("xen-arm64");
    if !xen_img.exists() {
        let st = Command::new("bash").arg(root().join("test-images/linux/fetch-xen.sh")).status().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("fetching Xen failed".into());
        }
    }
    // Wall time, not instruction counts: no -icount here.
    let a = Args { guest: "linux-arm64".into(), cpus: 2, vcpus: 2, mem: 512 << 20, timeout_s: 120, icount: false, ..Args::default() };
    let spec = GuestSpec::from_args(&a);
    let dtb_out = crate::build::target_dir().join("run/xen-bench.dtb");
    let (mut ours, mut bare_t, mut xen_t) = (Vec::new(), Vec::new(), Vec::new());
    let timeout = Duration::from_secs(120);
    for i in 0..rounds {
        let r = run::run(&a, std::slice::from_ref(&spec), false)?;
        ours.push(r.marker_s.ok_or_else(|| format!("no marker under the hypervisor\n{}", r.transcript))?);
        bare_t.push(time_to_marker(bare(&kernel, &initrd), timeout)?);
        xen_t.push(time_to_marker(xen(&xen_img, &kernel, &initrd, &dtb_out)?, timeout)?);
        println!("round {}: ours {:.2} s, bare {:.2} s, xen {:.2} s", i + 1, ours[i], bare_t[i], xen_t[i]);
    }
    let (o, b, x) = (median(ours), median(bare_t), median(xen_t));
    println!("| boot to marker (median of {rounds}) | seconds | ratio to bare |");
    println!("|---|---|---|");
    println!("| bare QEMU | {b:.2} | 1.00 |");
    println!("| this hypervisor | {o:.2} | {:.2} |", o / b);
    println!("| Xen 4.17 dom0 | {x:.2} | {:.2} |", x / b);
    println!();
    overcommit(rounds)
}

/// The armhf kernel with 4 vCPUs on 2 pCPUs against 2 on 2, alternating
/// (`sched=rr`): what idle vCPUs that hold their pCPU would cost.
fn overcommit(rounds: usize) -> Result<(), String> {
    let [two, four] = alternating(rounds, "armhf boot on 2 pCPUs, vCPUs", [2u32, 4], |vcpus| {
        let a = Args { guest: "linux-armhf".into(), cpus: 2, vcpus, mem: 512 << 20, bootargs: "sched=rr".into(), timeout_s: 180, icount: false, ..Args::default() };
        let r = run::run(&a, &[GuestSpec::from_args(&a)], false)?;
        r.marker_s.ok_or_else(|| format!("no marker with {vcpus} vCPUs\n{}", r.transcript))
    })?;
    println!("| armhf boot to marker on 2 pCPUs (median of {rounds}) | seconds | ratio |");
    println!("|---|---|---|");
    println!("| 2 vCPUs | {two:.2} | 1.00 |");
    println!("| 4 vCPUs | {four:.2} | {:.2} |", four / two);
    println!();
    secondary_bringup(rounds)
}

/// `measure` of each of `variants` in turn, `rounds` times (a line per
/// round); the median of each.
fn alternating<V: Copy + std::fmt::Display, const N: usize>(
    rounds: usize,
    what: &str,
    variants: [V; N],
    measure: impl Fn(V) -> Result<f64, String>,
) -> Result<[f64; N], String> {
    let mut t: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for i in 0..rounds {
        let mut line = format!("round {}: {what}", i + 1);
        for (k, v) in variants.into_iter().enumerate() {
            t[k].push(measure(v)?);
            line += &format!(" {v}: {:.3} s", t[k][i]);
        }
        println!("{line}");
    }
    Ok(t.map(median))
}

/// The guest's own clock at a dmesg line that contains `what`.
fn dmesg_time(transcript: &str, what: &str) -> Option<f64> {
    let line = transcript.lines().find(|l| l.contains(what))?;
    let t = line.split_once('[')?.1.split_once(']')?.0;
    t.trim().parse().ok()
}

/// Guest time from "Bringing up secondary CPUs" to the secondary's first
/// line, for the armhf kernel with 2 GiB, PoD and eager memory (Linux
/// arm32 gives up on a secondary after 1 s).
fn secondary_bringup(rounds: usize) -> Result<(), String> {
    let [pod, eager] = alternating(rounds, "armhf secondary bring-up, 2 GiB,", ["demand", "eager"], |populate| {
        let a = Args {
            guest: "linux-armhf".into(),
            cpus: 2,
            vcpus: 2,
            mem: 2 << 30,
            bootargs: format!("guest0.populate={populate}"),
            timeout_s: 300,
            icount: false,
            ..Args::default()
        };
        let r = run::run(&a, &[GuestSpec::from_args(&a)], false)?;
        match (dmesg_time(&r.transcript, "Bringing up secondary CPUs"), dmesg_time(&r.transcript, "CPU1: thread")) {
            (Some(from), Some(to)) => Ok(to - from),
            _ => Err(format!("no secondary bring-up lines ({populate})\n{}", r.transcript)),
        }
    })?;
    println!("| armhf, 2 GiB, CPU_ON to the secondary's first line (guest time, median of {rounds}) | seconds |");
    println!("|---|---|");
    println!("| PoD | {pod:.3} |");
    println!("| eager | {eager:.3} |");
    Ok(())
}

//! `cargo xtask bench`: deterministic cost figures. QEMU runs with
//! `-icount shift=0,sleep=off`; the `bench` guest counts instructions
//! retired (PMU event 0x08, EL1 and EL2) around each operation, and the
//! hypervisor counts its own zeroing and cleaning of new frames.

use std::collections::BTreeMap;

use crate::run::{run, GuestSpec, RunResult};
use crate::Args;

fn value(r: &RunResult, key: &str) -> Result<u64, String> {
    let pat = format!("{key}=");
    r.transcript
        .lines()
        .find_map(|l| {
            let at = l.find(&pat)? + pat.len();
            l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .ok_or_else(|| format!("the bench run printed no '{key}'\n{}", r.transcript))
}

/// One bench run. `sw`: `yes` traps set/way; `no` runs it natively
/// (TSW off, SWIO on), as a pinned hardware domain does.
fn one(populate: &str, sw: &str) -> Result<(RunResult, BTreeMap<&'static str, u64>), String> {
    let a = Args {
        icount: true,
        guest: "bench".into(),
        mem: 256 << 20,
        // The real PMU, counting EL2 too: a measuring aid, off by default.
        bootargs: format!("pmu=passthrough guest0.sw={sw} guest0.populate={populate}"),
        timeout_s: 300,
        ..Args::default()
    };
    let r = run(&a, &[GuestSpec::from_args(&a)], false)?;
    if !r.all_ok() {
        return Err(format!("bench guest failed\n{}", r.transcript));
    }
    let mut m = BTreeMap::new();
    for k in [
        "hvc_insns",
        "sw_trap_insns",
        "tvm_trap_insns",
        "pod_4k_fault_insns",
        "pod_2m_fault_insns",
        "cleans",
    ] {
        m.insert(k, value(&r, k)?);
    }
    // The hypervisor prints its fill counts only when the PMU counted any
    // (an eager guest populates everything before the guest starts it).
    for k in ["zero_4k", "zero_2m", "clean_4k", "clean_2m"] {
        m.insert(k, value(&r, k).unwrap_or(0));
    }
    let s = r.summary("bench").ok_or("no summary")?;
    for k in ["cleaned_bytes", "pod_2m", "pod_4k", "populated_bytes", "sw_traps"] {
        m.insert(k, s.get(k));
    }
    Ok((r, m))
}

pub fn bench() -> Result<u8, String> {
    crate::build::build_all()?;
    let (_, pod) = one("demand", "yes")?;
    let (_, again) = one("demand", "yes")?;
    let (_, eager) = one("eager", "yes")?;
    let (_, native) = one("eager", "no")?;
    if native["sw_traps"] != 0 {
        return Err(format!("sw=no trapped {} set/way ops", native["sw_traps"]));
    }
    let deterministic = pod == again;
    let per = |m: &BTreeMap<&str, u64>, total: &str, n: &str| m[total] / m[n].max(1);
    let zero_4k = per(&pod, "zero_4k", "pod_4k");
    let clean_4k = per(&pod, "clean_4k", "pod_4k");
    let zero_2m = per(&pod, "zero_2m", "pod_2m");
    let clean_2m = per(&pod, "clean_2m", "pod_2m");
    let f4k = pod["pod_4k_fault_insns"];
    let f2m = pod["pod_2m_fault_insns"];
    let cleaned_pod = per(&pod, "cleaned_bytes", "cleans");
    let cleaned_eager = per(&eager, "cleaned_bytes", "cleans");
    let rows: Vec<(&str, String)> = vec![
        ("HVC round trip", pod["hvc_insns"].to_string()),
        ("set/way trap (DC CSW, TVM on)", pod["sw_trap_insns"].to_string()),
        ("set/way untrapped (DC CSW, TSW off + SWIO: a pinned hwdom)", native["sw_trap_insns"].to_string()),
        ("TVM trap (CONTEXTIDR_EL1 write, caches off)", pod["tvm_trap_insns"].to_string()),
        ("PoD 4 KiB fault, total", f4k.to_string()),
        ("  of which zeroing / cleaning", format!("{zero_4k} / {clean_4k}")),
        ("  the rest (fault path)", f4k.saturating_sub(zero_4k + clean_4k).to_string()),
        ("PoD 2 MiB fault, total", f2m.to_string()),
        ("  of which zeroing / cleaning", format!("{zero_2m} / {clean_2m}")),
        ("  the rest (fault path)", f2m.saturating_sub(zero_2m + clean_2m).to_string()),
        ("bytes cleaned per clean, PoD", cleaned_pod.to_string()),
        ("bytes cleaned per clean, eager", cleaned_eager.to_string()),
    ];
    println!("Instructions retired (EL1+EL2) per operation, QEMU -icount, guest `bench`, 256 MiB:");
    println!("| operation | instructions |");
    println!("|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    println!(
        "PoD/eager cleaned bytes per clean: {:.4} ({} vs {} bytes)",
        cleaned_pod as f64 / cleaned_eager.max(1) as f64,
        cleaned_pod,
        cleaned_eager
    );
    println!("deterministic across two runs: {}", if deterministic { "yes" } else { "NO" });
    let json = format!(
        "{{\"hvc\":{},\"sw_trap\":{},\"sw_native\":{},\"tvm_trap\":{},\"pod_4k_fault\":{},\"pod_4k_zero\":{},\"pod_4k_clean\":{},\"pod_2m_fault\":{},\"pod_2m_zero\":{},\"pod_2m_clean\":{},\"cleaned_per_clean_pod\":{},\"cleaned_per_clean_eager\":{},\"deterministic\":{}}}",
        pod["hvc_insns"], pod["sw_trap_insns"], native["sw_trap_insns"], pod["tvm_trap_insns"], f4k, zero_4k, clean_4k, f2m, zero_2m, clean_2m,
        cleaned_pod, cleaned_eager, deterministic
    );
    let out = crate::build::target_dir().join("bench.json");
    std::fs::write(&out, &json).map_err(|e| e.to_string())?;
    println!("{json}");
    println!("(written to {})", out.display());
    println!();
    profile()?;
    if std::env::var_os("BENCH_NO_LINUX").is_none() {
        println!();
        crate::boot_bench::linux_boot(3)?;
    }
    Ok(0)
}

/// The PoD run again on the kernel built with feature `profile`: where
/// each kind of trap spends its instructions inside the hypervisor.
fn profile() -> Result<(), String> {
    let a = Args {
        icount: true,
        guest: "bench".into(),
        mem: 256 << 20,
        bootargs: "pmu=passthrough guest0.sw=yes guest0.populate=demand".into(),
        timeout_s: 300,
        profile_kernel: true,
        ..Args::default()
    };
    let r = run(&a, &[GuestSpec::from_args(&a)], false)?;
    if !r.all_ok() {
        return Err(format!("bench guest failed on the profiling kernel\n{}", r.transcript));
    }
    println!(
        "Inside the hypervisor, per trap (kernel with feature `profile`, whose HVC round trip is {} and TVM trap {}; instructions, averages):",
        value(&r, "hvc_insns")?,
        value(&r, "tvm_trap_insns")?
    );
    println!("| trap | traps (+ through the run loop) | entry to VM lock | decode + component | resume checks | exit | sum |");
    println!("|---|---|---|---|---|---|---|");
    for line in r.transcript.lines().filter_map(|l| l.trim().strip_prefix("hyp: profile ")) {
        let kv: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let sum = n("entry") + n("handle") + n("resume") + n("exit");
        println!("| {} | {} (+{}) | {} | {} | {} | {} | {} |", kv.get("kind").unwrap_or(&"?"), n("n"), n("slow"), n("entry"), n("handle"), n("resume"), n("exit"), sum);
    }
    Ok(())
}

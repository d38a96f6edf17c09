//! QEMU integration tests: boot test guests under the hypervisor and check
//! their markers and the exit summary.

use crate::run::{run, GuestSpec, RunResult};
use crate::Args;

type TestFn = fn() -> Result<(), String>;

const TESTS: &[(&str, TestFn)] = &[
    ("sw_basic", sw_basic),
    ("bad_bootarg", bad_bootarg),
];

fn check(cond: bool, what: &str, r: &RunResult) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}\n---- console ----\n{}", tail(&r.transcript, 60)))
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A number the guest printed as `key=N`.
fn guest_value(r: &RunResult, key: &str) -> Option<u64> {
    let pat = format!("{key}=");
    r.transcript.lines().filter(|l| !l.starts_with("summary:")).find_map(|l| {
        let at = l.find(&pat)? + pat.len();
        l[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}

fn boot(a: &Args, guests: &[GuestSpec]) -> Result<RunResult, String> {
    run(a, guests, std::env::var_os("XTASK_ECHO").is_some())
}

fn sw_basic() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("sw-basic: PASS"), "marker 'sw-basic: PASS' missing", &r)?;
    let s = r.summary("sw-basic").ok_or("no summary line for sw-basic")?;
    check(s.ok, "exit is not ok", &r)?;
    let guest_ops = guest_value(&r, "sw_ops").ok_or("the guest did not report sw_ops")?;
    check(
        s.get("sw_traps") == guest_ops,
        &format!("sw_traps={} but the guest made {} set/way operations", s.get("sw_traps"), guest_ops),
        &r,
    )?;
    check(s.get("tvm_traps") >= 2, "tvm_traps < 2", &r)?;
    check(r.transcript.contains("sw-basic: abort esr="), "the outside-RAM access was not an abort in the guest", &r)?;
    check(s.get("stage2_faults") >= 1, "stage2_faults = 0", &r)?;
    check(r.qemu_ok, "QEMU did not exit cleanly", &r)
}

fn bad_bootarg() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), bootargs: "sched=fastest".into(), timeout_s: 30, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out instead of stopping with an error", &r)?;
    check(
        r.transcript.contains("sched=fastest") && r.transcript.contains("allowed: rr, pinned, null"),
        "no clear error naming the field and the allowed values",
        &r,
    )?;
    check(r.summaries.is_empty(), "a guest ran despite the bad argument", &r)
}

pub fn run_all(filter: Option<&str>) -> Result<u8, String> {
    crate::build::build_all()?;
    let (mut passed, mut failed) = (0, 0);
    for (name, f) in TESTS {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let t = std::time::Instant::now();
        match f() {
            Ok(()) => {
                passed += 1;
                println!("itest {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                failed += 1;
                println!("itest {name} ... FAILED\n{e}");
            }
        }
    }
    println!("itest: {passed} passed, {failed} failed");
    Ok(if failed == 0 { 0 } else { 1 })
}

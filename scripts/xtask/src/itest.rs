//! QEMU integration tests: boot test guests under the hypervisor and check
//! their markers and the exit summary.

use crate::run::{run, GuestSpec, RunResult};
use crate::Args;

type TestFn = fn() -> Result<(), String>;

const TESTS: &[(&str, TestFn)] = &[
    ("sw_basic", sw_basic),
    ("sw_basic_aarch32", sw_basic_aarch32),
    ("unknown_board", unknown_board),
    ("sw_smp_rr", sw_smp_rr),
    ("sw_smp_pinned", sw_smp_pinned),
    ("pod_touch", pod_touch),
    ("pod_exhaustion", pod_exhaustion),
    ("eager_sw_no", eager_sw_no),
    ("eager_cleans_touched_only", eager_cleans_touched_only),
    ("bench_guest_runs", bench_guest_runs),
    ("bad_bootarg", bad_bootarg),
    ("bad_guest_arg", bad_guest_arg),
    ("linux_arm64", linux_arm64),
    ("linux_armhf_rr", linux_armhf_rr),
    ("linux_armhf_sw_no", linux_armhf_sw_no),
    ("linux_arm64_3g", linux_arm64_3g),
    ("linux_armhf_612_shared_pcpus", linux_armhf_612_shared_pcpus),
    ("two_guests_one_pcpu_isolated", two_guests_one_pcpu_isolated),
    ("hostile_guest", hostile_guest),
    ("linux_shell_input", linux_shell_input),
    ("own_kernel_option", own_kernel_option),
    ("reboot_restarts_guest", reboot_restarts_guest),
    ("edk2_arm64_shell", edk2_arm64_shell),
    ("edk2_armhf_shell", edk2_armhf_shell),
    ("two_guests_input_focus", two_guests_input_focus),
    ("manifest_guests", manifest_guests),
    ("sw_split_trapped_rr", sw_split_trapped_rr),
    ("sw_split_sw_no_pinned", sw_split_sw_no_pinned),
    ("oracle_bites_no_pod_clean", oracle_bites_no_pod_clean),
    ("oracle_bites_skipped_walk", oracle_bites_skipped_walk),
    ("oracle_bites_unpinned_sw_no", oracle_bites_unpinned_sw_no),
];

/// The tests that also run on QEMU raspi4b (`itest --board rpi4`): every
/// bare test guest, as the same tests with the same checks.
const ON_RPI4: &[&str] = &[
    "sw_basic",
    "sw_basic_aarch32",
    "sw_smp_rr",
    "sw_smp_pinned",
    "pod_touch",
    "pod_exhaustion",
    "eager_sw_no",
    "eager_cleans_touched_only",
    "bad_bootarg",
    "two_guests_one_pcpu_isolated",
    "linux_shell_input",
    "hostile_guest",
    "sw_split_trapped_rr",
    "sw_split_sw_no_pinned",
];

/// Raspberry Pi 4 tests (QEMU raspi4b), run by `itest --board rpi4`.
const RPI4_ONLY: &[(&str, TestFn)] = &[
    ("rpi4_linux_arm64_4x4", rpi4_linux_arm64_4x4),
    ("rpi4_linux_armhf_rr", rpi4_linux_armhf_rr),
    ("rpi4_sd_image", rpi4_sd_image),
    ("rpi4_hwdom_sd", rpi4_hwdom_sd),
];

/// The hardware-domain tests (QEMU virt).
const HWDOM: &[(&str, TestFn)] = &[
    ("hwdom_disk", hwdom_disk),
    ("hwdom_armhf_pinned", hwdom_armhf_pinned),
    ("hwdom_unpinned", hwdom_unpinned),
    ("hwdom_restart", hwdom_restart),
    ("hwdom_two_hwdoms_refused", hwdom_two_hwdoms_refused),
    ("hwdom_device_claimed_twice", hwdom_device_claimed_twice),
    ("hwdom_ram_over_hypervisor_refused", hwdom_ram_over_hypervisor_refused),
];

/// Tests that run only when named exactly (`cargo xtask itest NAME`): for
/// one not yet reliable enough for scripts/test (none today).
const ON_REQUEST: &[(&str, TestFn)] = &[];

const MIB: u64 = 1 << 20;

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

/// The number after `key` (and spaces) on the first line holding it.
fn guest_value_after(r: &RunResult, key: &str) -> Option<u64> {
    r.transcript.lines().find_map(|l| {
        let at = l.find(key)? + key.len();
        l[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    })
}

/// Every integration test runs under the cache oracle: with the real
/// policy (not the fault build), real hardware would lose nothing.
fn boot(a: &Args, guests: &[GuestSpec]) -> Result<RunResult, String> {
    let mut a = a.clone();
    a.oracle = true;
    boot_as(&a, guests)
}

/// Without the oracle: only for a test that repeats a boot many times for
/// something caches cannot affect (its first boot runs under `boot`).
fn boot_plain(a: &Args, guests: &[GuestSpec]) -> Result<RunResult, String> {
    let mut a = a.clone();
    a.oracle = false;
    boot_as(&a, guests)
}

/// The board `cargo xtask itest --board` asked for (qemu-virt unless set).
static BOARD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Timeouts in this file are about twice a run on the development machine
/// (2 cores). CI has measured twice as slow as that, so every test's
/// timeout is multiplied by `XTASK_TIMEOUT_SCALE` (default 3). A timeout
/// only ends a hung run; a passing run never waits for it.
fn scaled(a: &Args) -> Args {
    let scale = std::env::var("XTASK_TIMEOUT_SCALE").ok().and_then(|v| v.parse::<u64>().ok()).filter(|&n| n > 0).unwrap_or(3);
    Args { timeout_s: a.timeout_s * scale, ..a.clone() }
}

fn boot_as(a: &Args, guests: &[GuestSpec]) -> Result<RunResult, String> {
    let mut a = scaled(a);
    if let Some(b) = BOARD.get() {
        a.board = b.clone();
    }
    let r = run(&a, guests, std::env::var_os("XTASK_ECHO").is_some())?;
    if BOARD.get().is_some() {
        check(r.transcript.contains("starting on rpi4"), "the run was not on the rpi4 board", &r)?;
    }
    oracle_checks(&a, r)
}

/// Every run fails on a component that reached outside its VM. A run under
/// the oracle fails on a report that saw nothing, or (except on the fault
/// build) on any event.
fn oracle_checks(a: &Args, r: RunResult) -> Result<RunResult, String> {
    // The kernel refused a component's access outside its VM's memory.
    check(!r.transcript.contains("BUG: a component named host memory"), "the hypervisor reported a component reaching outside its VM", &r)?;
    if a.oracle && !r.timed_out {
        let rep = oracle_report(&r)?;
        // A run stopped before any guest (a bad argument) has nothing to see.
        if !r.summaries.is_empty() {
            if let Some(why) = rep.blind() {
                check(false, &format!("{why}:\n{}", rep.text), &r)?;
            }
        }
        if !a.faults_kernel {
            check(rep.events() == 0, &format!("the cache oracle saw lost or stale data:\n{}", rep.text), &r)?;
        }
    }
    Ok(r)
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

/// `hyp: guest NAME cleans=N ...`: how many clean passes ran.
/// A board this build has no description of boots from its DTB alone.
fn unknown_board() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), dt_compatible: Some("acme,unknown-board".into()), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(r.transcript.contains("starting on an unknown board"), "the hypervisor did not say the board is unknown", &r)?;
    check(r.transcript.contains("sw-basic: PASS") && r.all_ok(), "sw-basic did not pass on the unknown board", &r)
}

fn cleans(r: &RunResult, guest: &str) -> Option<u64> {
    let pat = format!("hyp: guest {guest} cleans=");
    r.transcript.lines().find_map(|l| l.strip_prefix(&pat)?.split_whitespace().next()?.parse().ok())
}

/// populated_bytes the hypervisor printed at the guest's report `key=K value=V`.
fn populated_at(r: &RunResult, guest: &str, key: u64, value: u64) -> Option<u64> {
    let pat = format!("hyp: guest {guest} report key={key} value={value} populated_bytes=");
    r.transcript.lines().find_map(|l| l.strip_prefix(&pat)?.trim().parse().ok())
}

fn sw_smp(sched: &str) -> Result<(RunResult, crate::summary::Summary), String> {
    let a = Args {
        guest: "sw-smp".into(),
        cpus: 2,
        vcpus: 4,
        bootargs: format!("sched={sched} slice=64K trace={}", crate::trace::PERIOD_MS),
        timeout_s: 120,
        ..Args::default()
    };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("sw-smp: PASS"), "pattern not intact (no 'sw-smp: PASS')", &r)?;
    let s = r.summary("sw-smp").ok_or("no summary for sw-smp")?.clone();
    check(s.ok, "exit is not ok", &r)?;
    check(s.get("vcpus") == 4, "vcpus != 4", &r)?;
    check(s.get("sw_traps") > 0, "sw_traps = 0", &r)?;
    let guest_ops = guest_value(&r, "sw_ops").ok_or("the guest did not report sw_ops")?;
    check(s.get("sw_traps") == guest_ops, "sw_traps differs from the guest's own count", &r)?;
    let n = cleans(&r, "sw-smp").ok_or("no clean count")?;
    check(n > 0, "no clean ran", &r)?;
    check(
        s.get("cleaned_bytes") <= s.get("populated_bytes") * n,
        &format!("cleaned_bytes {} > populated_bytes {} x {} cleans", s.get("cleaned_bytes"), s.get("populated_bytes"), n),
        &r,
    )?;
    check(s.get("max_slice_bytes") <= 64 * 1024, "a clean slice exceeded the 64 KiB budget", &r)?;
    check(r.qemu_ok, "QEMU did not exit cleanly", &r)?;
    Ok((r, s))
}

fn sw_smp_rr() -> Result<(), String> {
    let (r, s) = sw_smp("rr")?;
    check(s.get("migrations") > 0, "sched=rr with 4 vCPUs on 2 pCPUs made no migration", &r)?;
    // It runs with `trace=` (as `run --trace` does): the counters over time,
    // and their picture.
    let rows = crate::trace::parse(&r.transcript);
    check(rows.len() >= 3, &format!("{} trace lines (trace={} ms)", rows.len(), crate::trace::PERIOD_MS), &r)?;
    check(rows.windows(2).all(|w| w[0].ms < w[1].ms), "trace times do not increase", &r)?;
    let last = rows.last().ok_or("no trace")?;
    check(last.get("populated") > 0 && last.get("sw_traps") <= s.get("sw_traps"), "the last trace line disagrees with the summary", &r)?;
    check(rows.windows(2).all(|w| w[0].get("sw_traps") <= w[1].get("sw_traps")), "a cumulative counter went down", &r)?;
    let svg = std::env::temp_dir().join(format!("xtask-itest-trace-{}.svg", std::process::id()));
    crate::trace::plot(&[("sw-smp".into(), rows)], &svg)?;
    let text = std::fs::read_to_string(&svg).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&svg);
    check(text.contains("<polyline") && text.contains("memory populated"), "the plot is empty", &r)
}

fn sw_smp_pinned() -> Result<(), String> {
    let (r, s) = sw_smp("pinned")?;
    check(s.get("migrations") == 0, &format!("sched=pinned migrated {} times", s.get("migrations")), &r)
}

fn pod_touch() -> Result<(), String> {
    let a = Args { guest: "pod-touch".into(), mem: 256 * MIB, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("pod-touch: PASS"), "first touches did not read zero, or no abort beyond RAM", &r)?;
    let s = r.summary("pod-touch").ok_or("no summary")?;
    check(s.ok, "exit is not ok", &r)?;
    let before = populated_at(&r, "pod-touch", 2, 0).ok_or("no populated figure before the touches")?;
    let after = populated_at(&r, "pod-touch", 2, 1).ok_or("no populated figure after the touches")?;
    let n4k = guest_value(&r, "expect_4k").ok_or("no expect_4k")?;
    let n2m = guest_value(&r, "expect_2m").ok_or("no expect_2m")?;
    let want = n4k * 4096 + n2m * 2 * MIB;
    check(
        after - before == want,
        &format!("the touches populated {} bytes, expected {} ({} x 4 KiB + {} x 2 MiB)", after - before, want, n4k, n2m),
        &r,
    )?;
    check(s.get("populated_bytes") < 256 * MIB / 8, "populated far more than touched", &r)?;
    check(s.get("pod_2m") >= n2m && s.get("pod_4k") >= n4k, "pod_2m/pod_4k below what the guest touched", &r)?;
    check(
        s.get("populated_bytes") == s.get("pod_2m") * 2 * MIB + s.get("pod_4k") * 4096,
        "populated_bytes disagrees with pod_2m/pod_4k",
        &r,
    )?;
    check(r.transcript.contains("pod-touch: beyond-RAM abort ok"), "beyond-RAM touch was not an abort in the guest", &r)
}

fn pod_exhaustion() -> Result<(), String> {
    // 256 MiB of RAM but an 8 MiB pool: the touches cannot all be backed,
    // and nothing touched is all-zero, so nothing can be reclaimed.
    let a = Args { guest: "pod-touch".into(), mem: 256 * MIB, bootargs: "guest0.pool=8M".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    let s = r.summary("pod-touch").ok_or("no summary: the hypervisor did not survive")?;
    check(!s.ok, "exit=ok despite an exhausted pool", &r)?;
    check(r.transcript.contains("Exhausted"), "no clear message naming the exhausted pool", &r)?;
    check(!r.transcript.contains("PANIC"), "the hypervisor panicked", &r)?;
    check(r.qemu_code == Some(1), "QEMU did not exit with the failed guest's status (1)", &r)
}

fn eager_sw_no() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), bootargs: "guest0.sw=no".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("sw-basic: PASS"), "guest failed", &r)?;
    let s = r.summary("sw-basic").ok_or("no summary")?;
    check(s.ok, "exit is not ok", &r)?;
    check(s.get("tvm_traps") == 0 && s.get("sw_traps") == 0, "sw=no still trapped set/way or VM registers", &r)?;
    check(s.get("populated_bytes") == 64 * MIB, "sw=no did not populate all guest RAM eagerly", &r)?;
    check(s.get("cleaned_bytes") == 0, "sw=no ran cleans", &r)
}

/// Eager memory with set/way trapped: the first clean walks all of it, the
/// later ones only what the guest touched since (not all 256 MiB each time).
fn eager_cleans_touched_only() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), mem: 256 * MIB, bootargs: "guest0.sw=yes guest0.populate=eager".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(r.all_ok() && r.transcript.contains("sw-basic: PASS"), "the guest failed", &r)?;
    let s = r.summary("sw-basic").ok_or("no summary")?;
    let n = cleans(&r, "sw-basic").ok_or("no clean count")?;
    check(n >= 3, &format!("only {n} cleans"), &r)?;
    check(s.get("populated_bytes") == 256 * MIB, "memory is not eager", &r)?;
    check(
        s.get("cleaned_bytes") < 2 * 256 * MIB,
        &format!("{} cleans of eager memory cleaned {} bytes: each walked all of it", n, s.get("cleaned_bytes")),
        &r,
    )
}

/// The benchmark guest runs and reports every figure (no numbers are
/// checked here: `cargo xtask bench` measures them under -icount).
fn bench_guest_runs() -> Result<(), String> {
    // QEMU's PMU counts instructions only under -icount.
    let a = Args { guest: "bench".into(), mem: 256 * MIB, bootargs: "pmu=passthrough guest0.sw=yes".into(), icount: true, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(r.all_ok(), "the bench guest failed", &r)?;
    for k in ["hvc_insns", "sw_trap_insns", "tvm_trap_insns", "pod_4k_fault_insns", "pod_2m_fault_insns"] {
        check(guest_value(&r, k).is_some_and(|n| n > 0), &format!("the bench guest did not report {k} (or counted nothing)"), &r)?;
    }
    check(r.transcript.contains("hyp: fill_insns "), "the hypervisor printed no fill counts", &r)
}

fn bad_guest_arg() -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), bootargs: "guest0.sw=maybe".into(), timeout_s: 30, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out instead of stopping with an error", &r)?;
    check(
        r.transcript.contains("guest0.sw=maybe") && r.transcript.contains("allowed: yes, no, auto"),
        "no clear error naming the field and the allowed values",
        &r,
    )?;
    check(r.summaries.is_empty(), "a guest ran despite the bad argument", &r)
}

/// The same guest at EL1 in AArch32 (HCR_EL2.RW = 0): its DCCISW/DCCSW
/// arrive as EC 0x03 traps and its SCTLR/TTBCR/TTBR0 (MCRR)/MAIR writes as
/// TVM traps.
fn sw_basic_aarch32() -> Result<(), String> {
    let a = Args { guest: "sw-basic32".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("sw-basic: PASS"), "marker 'sw-basic: PASS' missing", &r)?;
    let s = r.summary("sw-basic32").ok_or("no summary line for sw-basic32")?;
    check(s.ok, "exit is not ok", &r)?;
    let guest_ops = guest_value(&r, "sw_ops").ok_or("the guest did not report sw_ops")?;
    check(guest_ops > 0 && s.get("sw_traps") == guest_ops, "sw_traps differs from the AArch32 guest's set/way count", &r)?;
    check(s.get("tvm_traps") >= 2, "tvm_traps < 2", &r)?;
    check(r.qemu_ok, "QEMU did not exit cleanly", &r)
}

/// Boot a Debian kernel (fetched on first use) with 2 vCPUs and 512 MiB;
/// check the initramfs marker says the architecture and 2 CPUs.
fn linux(guest: &str, arch: &str, bootargs: &str) -> Result<(RunResult, crate::summary::Summary), String> {
    linux_with(guest, arch, bootargs, 512 * MIB)
}

fn linux_with(guest: &str, arch: &str, bootargs: &str, mem: u64) -> Result<(RunResult, crate::summary::Summary), String> {
    let a = Args { guest: guest.into(), cpus: 2, vcpus: 2, mem, bootargs: bootargs.into(), timeout_s: 180, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    let marker = format!("LINUX-MARKER arch={arch} cpus=2");
    check(r.transcript.contains(&marker), &format!("no '{marker}': Linux did not reach /init with both CPUs"), &r)?;
    let s = r.summary(guest).ok_or("no summary")?.clone();
    check(s.ok, "exit is not ok", &r)?;
    check(s.get("vcpus") == 2, "vcpus != 2", &r)?;
    // An idle vCPU's WFI traps and blocks it (HCR_EL2.TWI).
    check(s.get("wfi_blocks") > 0, "no vCPU blocked in WFI: idle vCPUs hold their pCPUs", &r)?;
    // 2 MiB PoD blocks are filled in steps: nothing zeroes and cleans more
    // than a slice (64 KiB) between two points where interrupts get in.
    check(s.get("pod_2m") > 0, "no 2 MiB PoD block", &r)?;
    check(
        s.get("max_nonpreempt_bytes") <= 64 << 10,
        &format!("{} bytes zeroed and cleaned with interrupts held off (at most 64 KiB)", s.get("max_nonpreempt_bytes")),
        &r,
    )?;
    // Kick SGIs from pCPU 1 carry its number in GICC_IAR[12:10].
    check(!r.transcript.contains("unexpected interrupt"), "an interrupt was not recognised (kick SGI source bits?)", &r)?;
    check(r.qemu_ok, "QEMU did not exit cleanly", &r)?;
    Ok((r, s))
}

fn linux_arm64() -> Result<(), String> {
    linux("linux-arm64", "aarch64", "").map(|_| ())
}

fn linux_armhf_rr() -> Result<(), String> {
    // The 32-bit kernel cleans by set/way at boot and around CPU bring-up.
    let (r, s) = linux("linux-armhf", "armv7l", "sched=rr")?;
    check(s.get("sw_traps") > 0, "the armhf kernel's set/way operations did not trap", &r)?;
    check(s.get("populated_bytes") < 256 * MIB, "PoD populated more than half of guest RAM", &r)?;
    println!(
        "  linux-armhf PoD: populated_bytes={} cleaned_bytes={} sw_traps={}",
        s.get("populated_bytes"),
        s.get("cleaned_bytes"),
        s.get("sw_traps")
    );
    Ok(())
}

/// sw=no (set/way untrapped, eager memory) with 4 vCPUs on 2 pCPUs under
/// sched=rr: its vCPUs are pinned, so they never migrate.
fn linux_armhf_sw_no() -> Result<(), String> {
    let a = Args {
        guest: "linux-armhf".into(),
        cpus: 2,
        vcpus: 4,
        mem: 512 * MIB,
        bootargs: "sched=rr guest0.sw=no".into(),
        timeout_s: 240,
        ..Args::default()
    };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=armv7l cpus=4"), "no marker with all 4 CPUs online", &r)?;
    let s = r.summary("linux-armhf").ok_or("no summary")?;
    check(s.ok && r.qemu_ok, "exit is not ok", &r)?;
    check(s.get("sw_traps") == 0 && s.get("tvm_traps") == 0, "sw=no still trapped", &r)?;
    check(s.get("populated_bytes") == 512 * MIB, "sw=no memory is not eager", &r)?;
    check(s.get("migrations") == 0, &format!("{} migrations of a sw=no guest (untrapped set/way would lose data)", s.get("migrations")), &r)?;
    check(s.get("wfi_blocks") > 0, "no vCPU blocked in WFI with 4 vCPUs on 2 pCPUs", &r)?;
    check(r.transcript.contains("its vCPUs are pinned"), "the boot log does not say the sw=no guest was pinned", &r)?;
    println!("  linux-armhf sw=no: cleaned_bytes={}", s.get("cleaned_bytes"));
    Ok(())
}

/// Debian's 6.12 armhf kernel with 4 vCPUs on 2 pCPUs, six boots (rr and
/// pinned alternately). Before the AArch32 SPSR fix about half of such
/// boots crashed (a Thumb bit in the kernel's PSR, stack corruption), so
/// six clean boots in a row would have happened by chance about 1 in 64.
/// The first boot, under the oracle, takes the zImage as a user's own
/// kernel (`--kernel`/`--initrd`: its architecture read from its header).
fn linux_armhf_612_shared_pcpus() -> Result<(), String> {
    let (kernel, initrd) = crate::linux::files("linux-armhf-6.12")?.ok_or("no fetched kernel")?;
    for round in 0..6 {
        let sched = if round % 2 == 0 { "rr" } else { "pinned" };
        let a = Args {
            guest: "linux-armhf-6.12".into(),
            cpus: 2,
            vcpus: 4,
            mem: 512 * MIB,
            bootargs: format!("sched={sched}"),
            timeout_s: 180,
            ..Args::default()
        };
        // The SPSR-banking regression this guards is not about caches: the
        // oracle watches the first boot, the other five run plain.
        let a = if round == 0 { Args { kernel: Some(kernel.clone()), initrd: initrd.clone(), ..a } } else { a };
        let spec = GuestSpec::from_args(&a);
        let r = if round == 0 { boot(&a, std::slice::from_ref(&spec))? } else { boot_plain(&a, std::slice::from_ref(&spec))? };
        let what = format!("boot {} of 6 (sched={sched})", round + 1);
        check(!r.timed_out, &format!("{what}: timed out"), &r)?;
        check(r.transcript.contains("LINUX-MARKER arch=armv7l cpus=4"), &format!("{what}: no marker with all 4 CPUs online"), &r)?;
        let s = r.summary(&spec.name).ok_or_else(|| format!("{what}: no summary under the name {}", spec.name))?;
        check(s.ok && r.qemu_ok, &format!("{what}: exit is not ok"), &r)?;
        check(s.get("sw_traps") > 0, &format!("{what}: set/way did not trap"), &r)?;
        check(!r.transcript.contains("unexpected interrupt"), &format!("{what}: an interrupt was not recognised"), &r)?;
    }
    Ok(())
}

/// `run --manifest`: the guests, their vCPUs, RAM and set/way modes from a
/// TOML file.
fn manifest_guests() -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("xtask-itest-manifest-{}.toml", std::process::id()));
    let text = "cpus = 2\nbootargs = \"sched=rr\"\ntimeout = 120\n\n\
                [[guest]]\nguest = \"sw-smp\"\nname = \"smp\"\nvcpus = 3\nmem = \"96M\"\n\n\
                [[guest]]\nguest = \"sw-basic\"\nsw = \"no\"\n";
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    let loaded = crate::manifest::load(&path, &Args::default());
    let _ = std::fs::remove_file(&path);
    let (a, guests) = loaded?;
    let r = boot(&a, &guests)?;
    check(!r.timed_out && r.all_ok(), "not every guest of the manifest exited ok", &r)?;
    let smp = r.summary("smp").ok_or("no summary for the manifest's guest 'smp'")?;
    check(smp.get("vcpus") == 3 && smp.get("sw_traps") > 0, "guest 'smp' did not run with its 3 vCPUs and trapped set/way", &r)?;
    let basic = r.summary("sw-basic").ok_or("no summary for sw-basic")?;
    check(basic.get("sw_traps") == 0, "sw = \"no\" did not reach the guest", &r)
}

/// Two guests time-share one pCPU; each marks its timers, debug, PMU and
/// thread-ID registers and must never read the other's values.
fn two_guests_one_pcpu_isolated() -> Result<(), String> {
    let a = Args { guest: "isolation".into(), cpus: 1, timeout_s: 120, ..Args::default() };
    let spec = |name: &str| GuestSpec { name: name.into(), ..GuestSpec::from_args(&a) };
    let r = boot(&a, &[spec("iso-a"), spec("iso-b")])?;
    check(!r.timed_out, "timed out", &r)?;
    let passes = r.transcript.matches("isolation: PASS").count();
    check(passes == 2, &format!("{passes} of 2 guests passed: one read another guest's register values"), &r)?;
    check(r.all_ok() && r.summaries.len() == 2, "not both guests exited ok", &r)
}

/// A hostile guest beside a well-behaved one: its bad calls get errors, its
/// abort flood a few log lines, and its last CPU_OFF stops it (with a
/// summary) instead of leaving the machine running forever.
fn hostile_guest() -> Result<(), String> {
    let a = Args { guest: "hostile".into(), cpus: 2, vcpus: 2, timeout_s: 120, ..Args::default() };
    let good = Args { guest: "sw-basic".into(), vcpus: 1, ..a.clone() };
    let r = boot(&a, &[GuestSpec::from_args(&a), GuestSpec::from_args(&good)])?;
    check(!r.timed_out, "timed out: the hostile guest was never counted as stopped", &r)?;
    // NOT_SUPPORTED is -1, PSCI INVALID_ADDRESS -9.
    let want = "hostile: hvc1=-1 cpu_on_outside=-9 cpu_on_misaligned=-9";
    check(r.transcript.contains(want), &format!("wanted '{want}'"), &r)?;
    check(r.transcript.contains("hostile: aborts=5000"), "not every outside-RAM load came back as an abort", &r)?;
    // At most LOG_LINES_PER_S a second, over the seconds the flood's lines
    // span (by the hypervisor's own timestamps; a span of s seconds touches
    // at most floor(s) + 2 of the kernel's one-second windows).
    let stamps: Vec<f64> = r
        .transcript
        .lines()
        .filter(|l| l.contains("abort injected"))
        .filter_map(|l| l.strip_prefix("[hyp] ")?.split_whitespace().next()?.parse().ok())
        .collect();
    let logged = stamps.len();
    let span = stamps.last().zip(stamps.first()).map_or(0.0, |(b, a)| b - a);
    // sw-basic, the other guest, logs one outside-RAM abort of its own.
    let allowed = (span.floor() as usize + 2) * crate::LOG_LINES_PER_S + 1;
    check(logged <= allowed, &format!("{logged} abort log lines in {span:.1} s for one guest's flood (at most {allowed})"), &r)?;
    check(r.transcript.contains("log lines suppressed") || logged < 5000, "no suppression noted", &r)?;
    let h = r.summary("hostile").ok_or("no summary for the hostile guest")?;
    check(!h.ok, "the hostile guest's CPU_OFF of its last vCPU counted as ok", &r)?;
    check(r.summary("sw-basic").is_some_and(|s| s.ok), "the well-behaved guest did not pass", &r)?;
    check(r.qemu_code == Some(1), "QEMU did not exit with the failed guest's status", &r)
}

/// Typed console input reaches a Linux guest's shell through the emulated
/// PL011 (RX FIFO and interrupt): it runs a command and powers off.
fn linux_shell_input() -> Result<(), String> {
    let a = Args {
        guest: "linux-arm64".into(),
        mem: 512 * MIB,
        append: "shell".into(),
        // A command, then CTRL-a three times to the hypervisor ('l' lists
        // guests, 'c' shows counters), three more back to the guest.
        input: Some(crate::Input {
            after: "LINUX-SHELL ready".into(),
            times: 1,
            text: b"echo HELLO-$((6*7))\n\x01\x01\x01lc\x01\x01\x01poweroff -f\n".to_vec(),
            then: None,
        }),
        timeout_s: 180,
        ..Args::default()
    };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out: the typed commands never ran", &r)?;
    check(r.transcript.contains("HELLO-42"), "the shell did not run the typed command", &r)?;
    check(r.transcript.contains("hyp: guest0 linux-arm64: running, 1 vCPUs"), "the hypervisor's 'l' did not list the guest", &r)?;
    check(r.transcript.contains("hyp: guest linux-arm64 counters: sw_traps="), "the hypervisor's 'c' did not show counters", &r)?;
    check(r.all_ok(), "the guest did not power off cleanly", &r)
}

/// Two Linux guests with shells: input goes to guest0 until CTRL-a three
/// times moves the focus to guest1, and back.
fn two_guests_input_focus() -> Result<(), String> {
    let a = Args {
        guest: "linux-arm64".into(),
        cpus: 2,
        mem: 256 * MIB,
        append: "shell".into(),
        timeout_s: 240,
        ..Args::default()
    };
    let one = GuestSpec { name: "one".into(), ..GuestSpec::from_args(&a) };
    let two = GuestSpec { name: "two".into(), ..GuestSpec::from_args(&a) };
    // one -> two -> (two stopped) the hypervisor -> one.
    let text = b"echo ONE-$((1+1))\n\x01\x01\x01echo TWO-$((2+2))\npoweroff -f\n\x01\x01\x01\x01\x01\x01poweroff -f\n".to_vec();
    let a = Args { input: Some(crate::Input { after: "LINUX-SHELL ready".into(), times: 2, text, then: None }), ..a };
    let r = boot(&a, &[one, two])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("ONE-2") && r.transcript.contains("TWO-4"), "a typed command did not run", &r)?;
    check(r.transcript.contains("hyp: console input goes to guest two"), "the focus did not move to guest two", &r)?;
    check(r.transcript.contains("hyp: console input goes to guest one"), "the focus did not come back to guest one", &r)?;
    check(r.all_ok() && r.summaries.len() == 2, "not both guests powered off cleanly", &r)
}

/// `--kernel`/`--initrd` boot any Linux image: the 6.12 arm64 Image here,
/// the armhf zImage in `linux_armhf_612_shared_pcpus` (each architecture
/// read from the image's header).
fn own_kernel_option() -> Result<(), String> {
    let (kernel, initrd) = crate::linux::files("linux-arm64-6.12")?.ok_or("no fetched kernel")?;
    let a = Args { kernel: Some(kernel.clone()), initrd, cpus: 2, vcpus: 2, mem: 512 * MIB, timeout_s: 120, ..Args::default() };
    let spec = GuestSpec::from_args(&a);
    let r = boot(&a, std::slice::from_ref(&spec))?;
    check(!r.timed_out, &format!("{}: timed out", kernel.display()), &r)?;
    let marker = "LINUX-MARKER arch=aarch64 cpus=2";
    check(r.transcript.contains(marker), &format!("{}: no '{marker}'", kernel.display()), &r)?;
    check(r.summary(&spec.name).is_some_and(|s| s.ok), "no ok summary under the file's name", &r)
}

/// Debian's UEFI firmware (AAVMF) as a firmware guest: it reaches the
/// UEFI shell, keeps a non-volatile variable in its emulated flash across
/// a `reset` (PSCI SYSTEM_RESET), and powers off with `reset -s`.
fn edk2_arm64_shell() -> Result<(), String> {
    edk2_shell("edk2-arm64")
}

/// The same with AAVMF32, an AArch32 guest.
fn edk2_armhf_shell() -> Result<(), String> {
    edk2_shell("edk2-armhf")
}

fn edk2_shell(guest: &str) -> Result<(), String> {
    // Boot 1: prompts before `set`, `echo` and `reset`; boot 2's first is
    // the fourth.
    let second = crate::Input { after: "Shell>".into(), times: 4, text: b"echo %HYPNV%+%HYPNV%\rreset -s\r".to_vec(), then: None };
    let first = crate::Input {
        after: "Shell>".into(),
        times: 1,
        text: b"set HYPNV EDK2\recho %HYPNV%-%HYPNV%\rreset\r".to_vec(),
        then: Some(Box::new(second)),
    };
    let a = Args { guest: guest.into(), mem: 256 * MIB, input: Some(first), timeout_s: 240, ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out before the shell powered off", &r)?;
    check(r.transcript.contains("UEFI Interactive Shell"), "the UEFI shell never started", &r)?;
    check(r.transcript.contains("EDK2-EDK2"), "the shell did not run the typed command", &r)?;
    check(r.transcript.contains("EDK2+EDK2"), "the non-volatile variable did not survive the reset (variable flash)", &r)?;
    let s = r.summary(guest).ok_or("no summary")?;
    check(s.ok && s.get("restarts") == 1, "not one restart and a clean power-off", &r)?;
    // What the README says of these builds: no set/way at all.
    check(s.get("sw_traps") == 0, "EDK2 made set/way operations (the README says it makes none)", &r)
}

/// `reboot -f` (PSCI SYSTEM_RESET) restarts the guest from its pristine
/// image with fresh memory; the second boot powers off cleanly. A guest
/// that reboots every time is stopped after `reboots=` restarts.
fn reboot_restarts_guest() -> Result<(), String> {
    let a = Args { guest: "linux-arm64".into(), append: "reboot".into(), timeout_s: 180, ..Args::parse(&["--guest".into(), "linux-arm64".into()])? };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.matches("LINUX-MARKER arch=aarch64").count() == 2, "not exactly two boots", &r)?;
    let s = r.summary("linux-arm64").ok_or("no summary")?;
    check(s.ok && s.get("restarts") == 1, "not one restart and a clean power-off", &r)?;
    let a = Args { append: "rebootloop".into(), bootargs: "reboots=2".into(), ..a };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out: a reboot loop was not stopped", &r)?;
    check(r.transcript.matches("LINUX-MARKER arch=aarch64").count() == 3, "not three boots (2 restarts)", &r)?;
    let s = r.summary("linux-arm64").ok_or("no summary")?;
    check(!s.ok && s.get("restarts") == 2, "the loop was not stopped after 2 restarts", &r)?;
    check(r.transcript.contains("(reboots=2); stopped"), "no line saying why it stopped", &r)
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
    check(r.summaries.is_empty(), "a guest ran despite the bad argument", &r)?;
    check(r.qemu_code == Some(1), "QEMU did not exit with a failure status", &r)
}

/// Guest RAM above what QEMU used to get (2 GiB): QEMU's RAM is sized from
/// the guests, so a 3 GiB guest boots.
fn linux_arm64_3g() -> Result<(), String> {
    let (r, _) = linux_with("linux-arm64", "aarch64", "", 3 << 30)?;
    let kib = guest_value_after(&r, "MemTotal:").ok_or("the marker carries no MemTotal")?;
    check(kib > 5 * (1 << 20) / 2, &format!("the guest sees {kib} kB, not about 3 GiB"), &r)
}

/// `cargo xtask itest`'s options.
#[derive(clap::Parser, Debug)]
#[command(about = "The QEMU integration tests (each boots the hypervisor with guests and checks what it prints)", disable_version_flag = true, args_override_self = true)]
struct ItestOpts {
    /// The board QEMU models: qemu-virt, or rpi4 (raspi4b: the tests that run there).
    #[arg(long, value_name = "BOARD", default_value = "qemu-virt")]
    board: String,
    /// Run only the tests whose name contains this (and an on-request test of exactly this name).
    filter: Option<String>,
}

/// `cargo xtask itest [--board qemu-virt|rpi4] [FILTER]`. On rpi4 (QEMU
/// raspi4b) the tests in [`ON_RPI4`] run there, then [`RPI4_ONLY`].
pub fn run_all(argv: &[String]) -> Result<u8, String> {
    let Some(o) = crate::parse_cli::<ItestOpts>("itest", argv)? else { return Ok(0) };
    let board = crate::run::Board::parse(&o.board)?;
    let filter = o.filter.as_deref();
    crate::build::build_all()?;
    let tests: Vec<(&str, TestFn)> = match board {
        crate::run::Board::Virt => TESTS.iter().chain(HWDOM).copied().collect(),
        crate::run::Board::Rpi4 => {
            let _ = BOARD.set("rpi4".into());
            TESTS.iter().filter(|(n, _)| ON_RPI4.contains(n)).chain(RPI4_ONLY).copied().collect()
        }
    };
    let (mut passed, mut failed) = (0, 0);
    let requested = ON_REQUEST.iter().filter(|(name, _)| filter == Some(*name));
    for (name, f) in tests.iter().filter(|(name, _)| filter.is_none_or(|f| name.contains(f))).chain(requested) {
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

// ---- the hardware domain (issue 13) ----

/// `guest` as the hardware domain with `vcpus` vCPUs and 256 MiB on 2 pCPUs.
fn hwdom_args(guest: &str, vcpus: u32, bootargs: &str, timeout_s: u64) -> Args {
    Args { guest: guest.into(), cpus: 2, vcpus, mem: 256 * MIB, hwdom: true, bootargs: bootargs.into(), timeout_s, ..Args::default() }
}

/// The hardware domain's summary: it must say `hwdom=yes`.
fn hwdom_summary<'r>(r: &'r RunResult, guest: &str) -> Result<&'r crate::summary::Summary, String> {
    let s = r.summary(guest).ok_or_else(|| format!("no summary for the hardware domain {guest}\n---- console ----\n{}", tail(&r.transcript, 60)))?;
    check(s.is_hwdom(), &format!("{guest}'s summary does not say hwdom=yes"), r)?;
    Ok(s)
}

/// Debian's arm64 kernel as the hardware domain (1 vCPU) with the test
/// disk passed through (virtio-blk on virt's virtio-mmio), its vCPU pinned
/// (`hwdom_pin=on`), beside sw-basic (a PoD guest) on 2 pCPUs: the disk
/// initramfs loads the package's virtio/ext4 modules, mounts /dev/vda and
/// runs the disk's own marker program.
fn hwdom_disk() -> Result<(), String> {
    let a = Args { disk: true, more_guests: vec!["sw-basic".into()], ..hwdom_args("linux-arm64", 1, "hwdom_pin=on", 90) };
    let r = hwdom_disk_boot(&a, "arm64", 1)?;
    let h = hwdom_summary(&r, "linux-arm64")?;
    check(h.ok, "the hardware domain's exit is not ok", &r)?;
    check(h.pinned == Some(true), "hwdom_pin=on but the summary does not say pinned=yes", &r)?;
    check(h.get("migrations") == 0, &format!("the pinned hardware domain migrated {} times", h.get("migrations")), &r)?;
    let g = r.summary("sw-basic").ok_or("no summary for sw-basic")?;
    check(g.ok && r.transcript.contains("sw-basic: PASS"), "sw-basic beside the hardware domain did not pass", &r)?;
    check(g.hwdom == Some(false), "sw-basic's summary does not say hwdom=no", &r)?;
    check(r.qemu_ok, "QEMU did not exit cleanly", &r)
}

/// Boot a hardware domain with the test disk: it must reach /init with
/// `cpus` CPUs online and mount the disk (`arch`: arm64 or armhf).
fn hwdom_disk_boot(a: &Args, arch: &str, cpus: u32) -> Result<RunResult, String> {
    let r = boot(a, &crate::run::specs(a)?)?;
    check(!r.timed_out, "timed out", &r)?;
    let uname = if arch == "arm64" { "aarch64" } else { "armv7l" };
    check(r.transcript.contains(&format!("LINUX-MARKER arch={uname} cpus={cpus}")), "the hardware domain did not reach /init with all its CPUs", &r)?;
    let want = crate::disk::marker_line(arch);
    check(r.transcript.contains(&want), &format!("no '{want}': the hardware domain did not mount the passed-through disk"), &r)?;
    check(!r.transcript.contains("HWDOM-DISK-FAIL"), "the disk initramfs reported a failure", &r)?;
    Ok(r)
}

/// Debian's armhf kernel as a pinned hardware domain (`hwdom_pin=on`,
/// `sw=yes`): pinned, its set/way operations need no trap (sw_traps=0),
/// and the cache oracle (every `boot` runs under it) sees no lost or
/// stale data. One vCPU on 2 pCPUs: the armhf kernel with 2 vCPUs takes
/// about 53 s under the oracle (`linux_armhf_rr`).
fn hwdom_armhf_pinned() -> Result<(), String> {
    let a = hwdom_args("linux-armhf", 1, "hwdom_pin=on guest0.sw=yes", 90);
    let r = boot(&a, &crate::run::specs(&a)?)?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=armv7l cpus=1"), "the hardware domain did not reach /init", &r)?;
    let h = hwdom_summary(&r, "linux-armhf")?;
    check(h.ok && r.qemu_ok, "exit is not ok", &r)?;
    check(h.pinned == Some(true), "hwdom_pin=on but not pinned=yes", &r)?;
    check(h.get("sw_traps") == 0, &format!("the pinned hardware domain trapped {} set/way operations", h.get("sw_traps")), &r)?;
    check(h.get("migrations") == 0, "the pinned hardware domain migrated", &r)?;
    check(r.oracle.is_some(), "no cache oracle report", &r)
}

/// `hwdom_pin=off`: Debian's armhf kernel (which cleans by set/way) as an
/// unpinned hardware domain, 2 vCPUs on 2 pCPUs with the passed-through
/// disk: pinned=no, the boot log says why, its set/way operations trap and
/// its direct-mapped RAM is cleaned (the cache oracle sees no lost line),
/// and device interrupts taken on one pCPU reach a vCPU on either.
fn hwdom_unpinned() -> Result<(), String> {
    let a = Args { disk: true, ..hwdom_args("linux-armhf", 2, "hwdom_pin=off", 150) };
    let r = hwdom_disk_boot(&a, "armhf", 2)?;
    let h = hwdom_summary(&r, "linux-armhf")?;
    check(h.ok && r.qemu_ok, "exit is not ok", &r)?;
    check(h.pinned == Some(false), "hwdom_pin=off but not pinned=no", &r)?;
    check(h.get("sw_traps") > 0, "the unpinned hardware domain's set/way operations were not trapped", &r)?;
    check(h.get("cleaned_bytes") > 0, "the unpinned hardware domain's RAM was never cleaned", &r)?;
    check(r.oracle.is_some(), "no cache oracle report", &r)?;
    let said = r.transcript.lines().any(|l| l.contains("hwdom") && l.contains("not pinned") && l.contains("hwdom_pin=off"));
    check(said, "the boot log does not say the hardware domain is not pinned (and why)", &r)
}

/// PSCI SYSTEM_RESET of the hardware domain: rebuilt in the same RAM with
/// its devices and interrupts again (the disk mounts twice), its second
/// boot marked with `hyp.restarts=1` in the same device tree (so the
/// initramfs does not reboot again).
fn hwdom_restart() -> Result<(), String> {
    let a = Args { disk: true, append: "reboot".into(), ..hwdom_args("linux-arm64", 1, "hwdom_pin=on", 120) };
    let r = boot(&a, &crate::run::specs(&a)?)?;
    check(!r.timed_out, "timed out", &r)?;
    let want = crate::disk::marker_line("arm64");
    check(r.transcript.matches(want.as_str()).count() == 2, "the disk was not mounted in both boots", &r)?;
    check(r.transcript.contains("hyp.restarts=1"), "the second boot's command line has no hyp.restarts=1", &r)?;
    let h = hwdom_summary(&r, "linux-arm64")?;
    check(h.ok && h.get("restarts") == 1, "not one restart and a clean stop", &r)?;
    check(h.get("migrations") == 0, "the pinned hardware domain migrated", &r)
}

/// A bad hardware-domain configuration stops the boot with one clear line
/// holding `what` and a failure status, before any guest runs.
fn hwdom_refused(bootargs: &str, what: &str) -> Result<(), String> {
    let a = Args { guest: "sw-basic".into(), bootargs: bootargs.into(), timeout_s: 30, ..Args::default() };
    let spec = |name: &str| GuestSpec { name: name.into(), ..GuestSpec::from_args(&a) };
    let r = boot(&a, &[spec("one"), spec("two")])?;
    check(!r.timed_out, "timed out instead of stopping with an error", &r)?;
    check(r.transcript.lines().any(|l| l.contains(what)), &format!("no line says '{what}'"), &r)?;
    check(!r.transcript.contains("PANIC"), "the hypervisor panicked", &r)?;
    check(r.summaries.is_empty(), "a guest ran despite the bad configuration", &r)?;
    check(r.qemu_code == Some(1), "QEMU did not exit with a failure status", &r)
}

fn hwdom_two_hwdoms_refused() -> Result<(), String> {
    hwdom_refused("guest0.hwdom=yes guest1.hwdom=yes", "hardware domain")
}

/// Its RAM asked for where the hypervisor's image lies (QEMU virt loads it
/// at 0x40080000).
fn hwdom_ram_over_hypervisor_refused() -> Result<(), String> {
    hwdom_refused("guest0.hwdom=yes guest0.base=0x40000000", "overlaps the hypervisor's memory")
}

fn hwdom_device_claimed_twice() -> Result<(), String> {
    hwdom_refused("guest0.hwdom=yes guest0.passthrough=/virtio_mmio@a000000,/virtio_mmio@a000000", "claimed twice")
}

// ---- the Raspberry Pi 4 (QEMU raspi4b) ----

fn rpi4(guest: &str, cpus: u32, vcpus: u32, bootargs: &str) -> Args {
    Args { board: "rpi4".into(), guest: guest.into(), cpus, vcpus, mem: 512 * MIB, bootargs: bootargs.into(), timeout_s: 240, ..Args::default() }
}

/// Debian's arm64 kernel, 4 vCPUs on the 4 pCPUs the spin table starts.
fn rpi4_linux_arm64_4x4() -> Result<(), String> {
    let a = rpi4("linux-arm64", 4, 4, "");
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("starting on rpi4"), "the hypervisor did not recognise the board", &r)?;
    check(r.transcript.contains("pCPU 3 up"), "pCPU 3 did not come up from its spin table", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=aarch64 cpus=4"), "no marker with all 4 CPUs online", &r)?;
    let s = r.summary("linux-arm64").ok_or("no summary")?;
    check(s.ok && r.qemu_ok, "exit is not ok", &r)?;
    check(s.get("pod_2m") + s.get("pod_4k") > 0, "no PoD population", &r)
}

/// The armhf kernel as an AArch32 guest, set/way trapped, 3 vCPUs on 2
/// pCPUs under sched=rr: its vCPUs migrate.
fn rpi4_linux_armhf_rr() -> Result<(), String> {
    let a = rpi4("linux-armhf", 2, 3, "sched=rr");
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=armv7l cpus=3"), "no marker with all 3 CPUs online", &r)?;
    let s = r.summary("linux-armhf").ok_or("no summary")?;
    check(s.ok && r.qemu_ok, "exit is not ok", &r)?;
    check(s.get("sw_traps") > 0, "the armhf kernel's set/way operations did not trap", &r)?;
    check(s.get("migrations") > 0, "sched=rr with 3 vCPUs on 2 pCPUs made no migration", &r)
}

/// `cargo xtask image --board rpi4` as a user runs it (plus an exit QEMU
/// understands), read back with our own FAT code, and its kernel, DTB and
/// guest bundle booted on raspi4b as the firmware would start them.
fn rpi4_sd_image() -> Result<(), String> {
    let img = crate::build::target_dir().join("run/itest-rpi4.img");
    let argv: Vec<String> = ["--board", "rpi4", "--bootargs", "exit=semihosting", "-o"].iter().map(|s| s.to_string()).chain([img.display().to_string()]).collect();
    if crate::image::image_cli(&argv)? != 0 {
        return Err("cargo xtask image failed".into());
    }
    let a = scaled(&Args { oracle: true, ..rpi4("linux-arm64", 4, 4, "") });
    let r = crate::run::run_sd_image(&a, &img, &crate::build::kernel()?, std::env::var_os("XTASK_ECHO").is_some())?;
    let _ = std::fs::remove_file(&img);
    let r = oracle_checks(&a, r)?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("starting on rpi4"), "the hypervisor did not recognise the board", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=aarch64 cpus=4"), "the bundle's Linux guest did not reach its marker with 4 CPUs", &r)?;
    let s = r.summary("linux-arm64").ok_or("no summary for the bundle's guest")?;
    check(s.ok && r.qemu_ok, "exit is not ok", &r)
}

/// `cargo xtask image --board rpi4 --hwdom`: the card's bundle boots
/// Debian's arm64 kernel as the hardware domain (the board's devices, its
/// DTB edited by the hypervisor), whose disk initramfs loads the SD card's
/// modules, mounts the card's second partition (ext4) and runs its marker
/// program. The image is also QEMU's SD card (behind the legacy EMMC at
/// 0xfe300000 on raspi4b; EMMC2 on a real Pi 4). Two vCPUs: four of
/// them under the oracle on a 2-core host took 290 s instead of 90.
fn rpi4_hwdom_sd() -> Result<(), String> {
    let img = crate::build::target_dir().join("run/itest-rpi4-hwdom.img");
    let argv: Vec<String> = ["--board", "rpi4", "--hwdom", "--vcpus", "2", "--bootargs", "exit=semihosting", "-o"].iter().map(|s| s.to_string()).chain([img.display().to_string()]).collect();
    if crate::image::image_cli(&argv)? != 0 {
        return Err("cargo xtask image --hwdom failed".into());
    }
    let a = scaled(&Args { oracle: true, timeout_s: 180, ..rpi4("linux-arm64", 4, 2, "") });
    let r = crate::run::run_sd_image(&a, &img, &crate::build::kernel()?, std::env::var_os("XTASK_ECHO").is_some());
    let _ = std::fs::remove_file(&img);
    let r = oracle_checks(&a, r?)?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("starting on rpi4"), "the hypervisor did not recognise the board", &r)?;
    check(r.transcript.contains("LINUX-MARKER arch=aarch64"), "the hardware domain did not reach /init", &r)?;
    let want = crate::disk::marker_line("arm64");
    check(r.transcript.contains(&want), &format!("no '{want}': the hardware domain did not mount the SD card's root partition"), &r)?;
    check(!r.transcript.contains("HWDOM-DISK-FAIL"), "the disk initramfs reported a failure", &r)?;
    let h = hwdom_summary(&r, "linux-arm64")?;
    check(h.ok && r.qemu_ok, "exit is not ok", &r)
}

// ---- the cache oracle (tools/cache-oracle) ----

/// The oracle's report of a run; a run under it without one fails.
fn oracle_report(r: &RunResult) -> Result<&crate::oracle::Report, String> {
    r.oracle.as_ref().ok_or_else(|| format!("the cache oracle wrote no report\n---- console ----\n{}", tail(&r.transcript, 40)))
}

/// Run `guest` on the fault-injection build with `fault` and expect the
/// oracle to report events (a negative control: the oracle must bite).
fn oracle_bites(guest: &str, cpus: u32, vcpus: u32, bootargs: &str, sw: &str) -> Result<(RunResult, crate::summary::Summary), String> {
    let a = Args {
        guest: guest.into(),
        cpus,
        vcpus,
        bootargs: bootargs.into(),
        oracle: true,
        faults_kernel: true,
        timeout_s: 240,
        ..Args::default()
    };
    let mut g = GuestSpec::from_args(&a);
    g.sw = sw.into();
    let r = boot(&a, &[g])?;
    check(!r.timed_out, "timed out", &r)?;
    check(r.transcript.contains("UNSAFE test build: fault="), "the fault build did not say so", &r)?;
    let s = r.summary(guest).cloned().ok_or("no summary")?;
    let rep = oracle_report(&r)?;
    check(rep.events() > 0, &format!("with {bootargs} the cache oracle saw nothing:\n{}", rep.text), &r)?;
    println!("  {bootargs}: {}", rep.text.lines().next().unwrap_or(""));
    if let Some(first) = rep.text.lines().nth(1) {
        println!("    first: {first}");
    }
    Ok((r, s))
}

/// sw-split (write, run a while, clean by set/way, read back with caches
/// off, twelve rounds) under sched=rr with more vCPUs than pCPUs: set/way
/// trapped, so the hypervisor's clean covers a vCPU moved mid-round.
fn sw_split_trapped_rr() -> Result<(), String> {
    let a = Args { guest: "sw-split".into(), cpus: 2, vcpus: 3, bootargs: "sched=rr".into(), ..Args::default() };
    let r = boot(&a, &[GuestSpec::from_args(&a)])?;
    check(r.transcript.contains("sw-split: PASS"), "sw-split did not pass", &r)?;
    let s = r.summary("sw-split").ok_or("no summary")?;
    check(s.get("sw_traps") > 0, "set/way did not trap", &r)
}

/// The twin of the heisenbug control: the same guest with sw=no under
/// sched=rr on the normal build, whose pinning keeps each vCPU's writes
/// and cleans on one pCPU: the oracle (in `boot`) sees nothing.
fn sw_split_sw_no_pinned() -> Result<(), String> {
    let a = Args { guest: "sw-split".into(), cpus: 2, vcpus: 3, bootargs: "sched=rr".into(), ..Args::default() };
    let mut g = GuestSpec::from_args(&a);
    g.sw = "no".into();
    let r = boot(&a, &[g])?;
    check(r.transcript.contains("sw-split: PASS"), "sw-split did not pass", &r)?;
    let s = r.summary("sw-split").ok_or("no summary")?;
    check(s.get("sw_traps") == 0 && s.get("migrations") == 0, "sw=no trapped set/way or migrated", &r)
}

/// PoD maps frames zeroed but not cleaned: the guest, caches off at boot,
/// reads what the zeroing left dirty in the hypervisor's cache.
fn oracle_bites_no_pod_clean() -> Result<(), String> {
    oracle_bites("sw-basic", 1, 1, "fault=no-pod-clean", "auto").map(|_| ())
}

/// The clean after a trapped set/way op walks nothing: sw-smp's check with
/// caches off reads data still dirty in other pCPUs' caches.
fn oracle_bites_skipped_walk() -> Result<(), String> {
    let (r, s) = oracle_bites("sw-smp", 2, 4, "sched=rr slice=64K fault=clean-skips-walk", "auto")?;
    check(s.get("cleaned_bytes") == 0, "the faulty clean still cleaned", &r)?;
    // QEMU has no caches: without the oracle this run would pass.
    check(r.transcript.contains("sw-smp: PASS"), "sw-smp did not pass on QEMU", &r)
}

/// The heisenbug itself: set/way not trapped and the vCPUs not pinned, so
/// sw-split's clean runs on another pCPU than its writes in some round and
/// its caches-off read-back sees old memory. Its twin is
/// `sw_split_sw_no_pinned`.
/// Where the scheduler's ticks fall decides whether a round is split: up
/// to three boots (each of 24 rounds), and one must show it.
fn oracle_bites_unpinned_sw_no() -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        // Three busy vCPUs on two pCPUs: the shared rr queue moves one at
        // every tick (four can pair up with their pCPUs for good).
        match oracle_bites("sw-split", 2, 3, "sched=rr fault=sw-unpinned", "no") {
            Ok((r, s)) => {
                check(s.get("sw_traps") == 0, "set/way was trapped", &r)?;
                check(s.get("migrations") > 0, "no vCPU migrated", &r)?;
                let rep = oracle_report(&r)?;
                let seen = rep.text.lines().any(|l| l.starts_with("oracle: stale_read") && l.contains(" el=1 "));
                return check(seen, &format!("no stale read by the guest:\n{}", rep.text), &r);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpi4_test_exists() {
        for name in ON_RPI4 {
            assert!(TESTS.iter().any(|(n, _)| n == name), "ON_RPI4 names '{name}', which TESTS does not have");
        }
    }

    #[test]
    fn hwdom_tests_are_virt_only_and_unique() {
        for (name, _) in HWDOM {
            assert!(!TESTS.iter().any(|(n, _)| n == name), "{name} is in TESTS too");
            assert!(!ON_RPI4.contains(name));
        }
    }
}

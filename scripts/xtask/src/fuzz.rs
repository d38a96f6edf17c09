//! `cargo xtask fuzz [TARGET] [--runs N]`: coverage-guided fuzzing with
//! libFuzzer (the `libfuzzer-sys` crate) on stable Rust. Coverage comes from
//! LLVM's SanitizerCoverage pass, asked for with stable `-C passes` and
//! `-C llvm-args` flags; the targets live in `scripts/fuzz`, a workspace of
//! their own. Each corpus is kept in `target/fuzz-corpus/TARGET`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::root;

pub const TARGETS: &[&str] = &["decode", "bootcfg", "devices", "pager"];
const HOST: &str = "x86_64-unknown-linux-gnu";
const RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks";

fn build() -> Result<PathBuf, String> {
    let dir = root().join("scripts/fuzz");
    // A host triple of its own, so the flags reach the targets but not
    // build scripts and proc macros.
    let st = Command::new(env!("CARGO"))
        .current_dir(&dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("CARGO_TARGET_DIR", root().join("target/fuzz"))
        .args(["build", "--quiet", "--release", "--locked", "--target", HOST])
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err("building the fuzz targets failed (libFuzzer needs a C++ compiler: scripts/setup installs g++)".into());
    }
    Ok(root().join("target/fuzz").join(HOST).join("release"))
}

/// `cargo xtask fuzz`'s options.
#[derive(clap::Parser, Debug)]
#[command(about = "Coverage-guided fuzzing (libFuzzer on stable) of the parsers a guest or a board can feed", disable_version_flag = true, args_override_self = true)]
struct FuzzOpts {
    /// One target (default: all of them).
    #[arg(value_parser = TARGETS.to_vec())]
    target: Option<String>,
    /// Runs per target.
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    runs: u64,
}

/// Run `only` (or every target) for `runs` executions each. Returns the
/// exit status: non-zero when a target crashed or did not finish.
pub fn fuzz(argv: &[String]) -> Result<u8, String> {
    let Some(FuzzOpts { target, runs }) = crate::parse_cli::<FuzzOpts>("fuzz", argv)? else { return Ok(0) };
    let only = target.as_deref();
    let bin = build()?;
    let mut failed = 0;
    for t in TARGETS.iter().filter(|t| only.is_none_or(|o| o == **t)) {
        let corpus = root().join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        let artifacts = root().join("target/fuzz-artifacts");
        std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let out = Command::new(bin.join(t))
            .arg(&corpus)
            .arg(format!("-runs={runs}"))
            .arg(format!("-artifact_prefix={}/{t}-", artifacts.display()))
            .arg("-print_final_stats=1")
            // Guides the search through comparisons of shifted fields.
            .arg("-use_value_profile=1")
            .output()
            .map_err(|e| format!("{t}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let done = log.lines().find_map(|l| l.strip_prefix("Done ")?.split_whitespace().next()?.parse::<u64>().ok());
        let secs = started.elapsed().as_secs_f64();
        match (out.status.success(), done) {
            (true, Some(n)) => println!("fuzz: {t} runs={n} crashes=0 seconds={secs:.0}"),
            _ => {
                failed += 1;
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                println!("fuzz: {t} FAILED after {secs:.0} s (input saved in target/fuzz-artifacts)");
                for l in tail.iter().rev() {
                    println!("  {l}");
                }
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

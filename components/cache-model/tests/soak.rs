//! The set/way soak on the real components: random guests write with their
//! caches on, flush by set/way (Linux-shaped loops), turn their caches off
//! and read back at the PoC, with vCPUs migrating between pCPUs at random
//! points, while the real `cache-maint` policy cleans through the real
//! `stage2-pager` (access flags, touched record, TLB invalidations into a
//! per-pCPU TLB model) and the real `pod` populates, zeroes and reclaims.
//! See `common/mod.rs` for what is real and what is modelled.
//!
//! Each case runs:
//! 1. with the policy and migrations: must lose no word, and the pod's
//!    accounting, the pager's touch record and the TLBs must stay
//!    consistent (checked every few hundred steps and at the end);
//! 2. natively (no traps) without migration, every eighth case and after
//!    any failure: must lose nothing, which checks the generated programs
//!    are ones a correct guest could run;
//! 3. natively with migrations, every fourth case: losses are counted, and
//!    the soak must see some, or it could not tell 1 from 2.
//!
//! Every run picks a random seed and prints it (`soak seed=0x...`, shown with
//! `--nocapture` and in a failure's output). Environment:
//! - `CACHE_SOAK_SEED=0x...`: replay that run;
//! - `CACHE_SOAK_CASE=0x...`: replay one case (a failure names its seed);
//! - `CACHE_SOAK_CASES=N` (else `SOAK_CASES`, which `cargo xtask soak` sets):
//!   how many cases; the default (300) keeps `cargo test` to a few seconds;
//! - for checking that the soak can fail (break a component, run, restore):
//!   `CACHE_SOAK_DATA_ONLY=1` counts only lost words, not the invariants that
//!   usually fire first, and `CACHE_SOAK_KEEP_GOING=1` runs every case and
//!   reports how many failed.

mod common;

use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use cache_maint::{SwMode, SwOp, VmConfig, Walk};
use cache_model::rng::Rng;
use cache_model::{CacheModel, Config};
use common::{linux_flush, Expect, Memory, Mode, Op, Sim, VmSpec, MIB, PAGE};

/// Cases in a plain `cargo test` run.
const DEFAULT_CASES: u64 = 300;

#[derive(Clone, Debug)]
struct Case {
    cfg: Config,
    tlb_entries: usize,
    vms: Vec<VmSpec>,
    migrate_den: u64,
}

/// One vCPU's program over its own region `[base, base + size)`; `scan`
/// adds that many reads of random pages to each round (populating zero
/// pages, so that a small pool runs dry and sweeps reclaim them).
fn program(rng: &mut Rng, model: &CacheModel, base: u64, size: u64, writes: u64, scan: u64) -> Vec<Op> {
    let mut p = Vec::new();
    let mut expect = Expect::new();
    let word = |rng: &mut Rng| base + rng.below(size / 8) * 8;
    let write = |rng: &mut Rng, ipa: u64, expect: &mut Expect| {
        let val = rng.next_u64() | 1;
        expect.insert(ipa, val);
        Op::Write { ipa, val }
    };
    if rng.chance(1, 4) {
        // Early boot with caches off: page tables, boot arguments.
        for _ in 0..rng.range(1, 8) {
            let ipa = word(rng);
            p.push(write(rng, ipa, &mut expect));
        }
    }
    if rng.chance(1, 3) {
        // Invalidate the L1 before turning caches on (v7_invalidate_l1).
        p.extend(linux_flush(model, SwOp::Isw, 0..1));
    }
    for _ in 0..rng.range(1, 3) {
        p.push(Op::Sctlr(true));
        for _ in 0..scan {
            p.push(Op::Read { ipa: base + rng.below(size / PAGE) * PAGE });
        }
        for _ in 0..rng.range(1, writes) {
            let ipa = word(rng);
            match rng.below(8) {
                0 => p.push(Op::Read { ipa }),
                1 if !expect.is_empty() => {
                    // Read back a word with caches on.
                    let k = rng.below(expect.len() as u64) as usize;
                    let (&ipa, &val) = expect.iter().nth(k).unwrap();
                    p.push(Op::Verify { ipa, val });
                }
                _ => p.push(write(rng, ipa, &mut expect)),
            }
        }
        let op = if rng.chance(1, 3) { SwOp::Csw } else { SwOp::Cisw };
        let mut flush = linux_flush(model, op, 0..model.levels());
        if rng.chance(1, 2) {
            // Flush, then caches off (arm64 style)...
            if rng.chance(1, 2) {
                // ...with stack writes early in the loop, after its first
                // op: with the policy they land after the clean that op
                // started, so only the access flag tells the caches-off
                // clean about them (and a TLB entry the clean left behind
                // would hide them).
                let at = rng.range(1, model.geometry(0).unwrap().ways as u64 - 1) as usize;
                let mut stack = Vec::new();
                for _ in 0..rng.range(1, 3) {
                    let ipa = base + rng.below(size / PAGE) * PAGE;
                    stack.push(write(rng, ipa, &mut expect));
                }
                flush.splice(at..at, stack);
            }
            p.extend(flush);
            p.push(Op::Sctlr(false));
        } else {
            // ...or caches off, then flush (v7 CPU power-down style).
            p.push(Op::Sctlr(false));
            p.extend(flush);
        }
        p.extend(expect.iter().map(|(&ipa, &val)| Op::Verify { ipa, val }));
    }
    p
}

fn gen_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let cpus = rng.range(1, 4) as usize;
    let big = rng.chance(1, 50);
    let cfg = match (big, rng.below(2)) {
        (true, 0) => Config::cortex_a7(cpus),
        (true, _) => Config::cortex_a72(cpus),
        (false, _) => Config::small(cpus),
    };
    let model = CacheModel::new(cfg);
    let tlb_entries = [2, 8, 64][rng.below(3) as usize];
    let nvms = rng.range(1, 2) as usize;
    let vms = (0..nvms)
        .map(|vm| {
            let nvcpus = rng.range(1, 3);
            let fwb = rng.chance(1, 10);
            let direct = vm == 0 && rng.chance(1, 10);
            let mut ram = [MIB, 4 * MIB, 8 * MIB, 16 * MIB][rng.below(4) as usize];
            let memory = if direct {
                Memory::Direct
            } else {
                match rng.below(8) {
                    0..=2 => Memory::PodBlocks,
                    3 | 4 => Memory::PodPages,
                    5 => {
                        ram = ram.max(8 * MIB);
                        Memory::PodBallooned
                    }
                    _ => Memory::Eager,
                }
            };
            // Ballooned guests read many pages, so that their pool runs dry.
            let scan = if memory == Memory::PodBallooned { rng.range(128, 512) } else { 0 };
            let cfg = VmConfig {
                sw: if fwb && rng.chance(1, 2) { SwMode::Yes } else { SwMode::Auto },
                fwb,
                direct_mapped: direct,
                walk: if rng.chance(1, 5) { Walk::All } else { Walk::Touched },
                slice_bytes: [16 * 1024, 64 * 1024, 256 * 1024, 2 * MIB][rng.below(4) as usize],
                slice_steps: [2, 8, 64][rng.below(3) as usize],
                ..VmConfig::new(nvcpus as u8)
            };
            let ram_base = if direct { common::DIRECT_RAM } else { common::RAM_IPA };
            // Each vCPU writes its own 4 KiB-aligned region: no line is
            // shared, so the native run without migration is correct.
            let region = (ram / nvcpus) & !(PAGE - 1);
            let writes = if big { 24 } else { 64 };
            let vcpus = (0..nvcpus)
                .map(|v| {
                    let pcpu = rng.below(cpus as u64) as usize;
                    (pcpu, program(&mut rng, &model, ram_base + v * region, region, writes, scan))
                })
                .collect();
            VmSpec { cfg, memory, ram, vcpus }
        })
        .collect();
    Case { cfg, tlb_entries, vms, migrate_den: rng.range(4, 60) }
}

/// What a run checks besides lost words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Checks {
    /// Component invariants every 512 steps and at the end (see
    /// `Sim::check_invariants`), and the policy's own counters.
    invariants: bool,
}

/// Run `case`; `Err` carries what went wrong beyond lost words.
fn run(case: &Case, mode: Mode, migrate: bool, seed: u64, checks: Checks) -> (Sim, Result<(), String>) {
    let mut sim = Sim::new(CacheModel::new(case.cfg), case.tlb_entries, mode, case.vms.clone());
    let mut rng = Rng::new(seed);
    let every = if checks.invariants { 512 } else { 0 };
    let mut r = sim.run_random(&mut rng, if migrate { 1 } else { 0 }, case.migrate_den, every);
    if checks.invariants {
        r = r.and_then(|()| sim.check_invariants());
    }
    let r = r.and_then(|()| {
        if checks.invariants && sim.tlb.stats().stale_hits != 0 {
            return Err(format!("{} accesses went through TLB entries the table no longer backs", sim.tlb.stats().stale_hits));
        }
        for (i, vm) in sim.vms.iter().enumerate() {
            if !vm.errors.is_empty() {
                return Err(format!("vm {i} stopped: {:?}", vm.errors));
            }
            // In every mode: the pod zeroes and cleans only its own frames.
            if vm.foreign_ops != 0 {
                return Err(format!("vm {i}: {} maintenance or zeroing calls outside its frames", vm.foreign_ops));
            }
            if mode == Mode::Policy && checks.invariants {
                let c = vm.cm.counters();
                if vm.cm.clean_in_progress() {
                    return Err(format!("vm {i}: a clean pass nobody waits for"));
                }
                if c.max_slice_bytes > vm.cm.config().slice_bytes || c.source_faults != 0 {
                    return Err(format!("vm {i}: slice or source fault: {c:?}"));
                }
            }
        }
        Ok(())
    });
    (sim, r)
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

#[derive(Default)]
struct Totals {
    checked: usize,
    migrations: usize,
    cleaned: u64,
    af_faults: u64,
    translation_faults: u64,
    reclaimed: u64,
    tlb_invalidations: u64,
    blocks: u64,
    pages: u64,
    native_lost: usize,
    native_runs: usize,
    oracle_runs: usize,
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn soak_real_pager_and_pod_random_schedules_lose_nothing() {
    let seed = env_u64("CACHE_SOAK_SEED").unwrap_or_else(|| RandomState::new().hash_one(Instant::now()));
    let only = env_u64("CACHE_SOAK_CASE");
    let cases = env_u64("CACHE_SOAK_CASES").or_else(|| env_u64("SOAK_CASES")).unwrap_or(DEFAULT_CASES);
    let cases = if only.is_some() { 1 } else { cases };
    // For checking that the soak can fail (break a component, then run):
    // only lost words count, not the invariants that usually fire first;
    // and every case runs, failures are counted.
    let checks = Checks { invariants: !env_flag("CACHE_SOAK_DATA_ONLY") };
    let keep_going = env_flag("CACHE_SOAK_KEEP_GOING");
    let n = if cases == DEFAULT_CASES { String::new() } else { format!("CACHE_SOAK_CASES={cases} ") };
    let replay = format!("CACHE_SOAK_SEED={seed:#x} {n}cargo test -p cache-model --test soak -- --nocapture");
    match only {
        Some(case) => eprintln!("soak case={case:#x}"),
        None => eprintln!("soak seed={seed:#x} cases={cases} (replay: {replay})"),
    }
    let start = Instant::now();
    let mut t = Totals::default();
    let mut failures: Vec<String> = Vec::new();
    let mut case_seeds = Rng::new(seed);
    for n in 0..cases {
        let case_seed = only.unwrap_or_else(|| case_seeds.next_u64());
        let case = gen_case(case_seed);
        let (sim, r) = run(&case, Mode::Policy, true, case_seed ^ 2, checks);
        let what = match (sim.lost(), r) {
            (0, Ok(())) => None,
            (0, Err(e)) => Some(format!("policy run with migrations: {e}")),
            (_, r) => Some(format!("policy run with migrations lost data; invariants: {r:?}")),
        };
        if let Some(what) = what {
            // Tell a policy failure from a program no guest could run.
            let (oracle, r) = run(&case, Mode::Native, false, case_seed ^ 1, checks);
            let msg = format!(
                "soak seed={seed:#x} case {n} (replay it: CACHE_SOAK_CASE={case_seed:#x}): {what}\n  {}\n  \
                 native run without migration (program check): lost {}, {r:?}",
                sim.describe(),
                oracle.lost(),
            );
            if !keep_going {
                panic!("{msg}\n{case:#?}");
            }
            failures.push(msg);
            continue;
        }
        t.checked += sim.checked();
        t.migrations += sim.migrations();
        t.tlb_invalidations += sim.tlb.stats().ipa_invalidations + sim.tlb.stats().vmid_invalidations;
        for vm in &sim.vms {
            t.cleaned += vm.cm.counters().cleaned_bytes;
            t.af_faults += vm.faults.access_flag;
            t.translation_faults += vm.faults.translation;
            t.reclaimed += vm.pod().stats().reclaimed_pages;
            let (blocks, pages) = common::leaf_sizes(vm);
            t.blocks += blocks;
            t.pages += pages;
        }
        drop(sim);

        if n % 8 == 0 || only.is_some() {
            let (oracle, r) = run(&case, Mode::Native, false, case_seed ^ 1, checks);
            t.oracle_runs += 1;
            if oracle.lost() != 0 || oracle.migrations() != 0 || r.is_err() {
                panic!(
                    "soak seed={seed:#x} case {n} (CACHE_SOAK_CASE={case_seed:#x}): the native run without \
                     migration lost data, so the generated program is wrong: {r:?}\n  {}\n{case:#?}",
                    oracle.describe()
                );
            }
        }
        if n % 4 == 0 || only.is_some() {
            let (native, _) = run(&case, Mode::Native, true, case_seed ^ 2, checks);
            t.native_lost += native.lost();
            t.native_runs += 1;
        }
    }
    if let Some(first) = failures.first() {
        let lost = failures.iter().filter(|f| f.contains("lost data")).count();
        panic!("{} of {cases} cases failed ({lost} lost data); the first:\n{first}", failures.len());
    }
    eprintln!(
        "soak seed={seed:#x}: {cases} cases in {:.1} s; policy: {} words checked, 0 lost, {} migrations, {} MiB \
         cleaned, {} access-flag and {} translation faults, {} pages reclaimed, {} TLB invalidations, \
         {} blocks and {} pages mapped at the end; {} native runs without migration lost nothing; \
         native with migrations: {} words lost in {} runs",
        start.elapsed().as_secs_f64(),
        t.checked,
        t.migrations,
        t.cleaned / MIB,
        t.af_faults,
        t.translation_faults,
        t.reclaimed,
        t.tlb_invalidations,
        t.blocks,
        t.pages,
        t.oracle_runs,
        t.native_lost,
        t.native_runs,
    );
    if only.is_none() && cases >= 40 {
        assert!(t.native_lost > 0, "soak seed={seed:#x}: without the policy nothing was lost: the soak cannot see the bug");
        assert!(
            t.af_faults > 0 && t.reclaimed > 0 && t.blocks > 0 && t.pages > 0,
            "soak seed={seed:#x}: a path was never taken: {} access-flag faults, {} pages reclaimed, {} blocks, {} pages",
            t.af_faults,
            t.reclaimed,
            t.blocks,
            t.pages
        );
    }
}

//! Randomised schedules: guests write with caches on, flush by set/way
//! (Linux-style loops), turn caches off and read back at the PoC, while
//! vCPUs migrate between pCPUs at random points.
//!
//! Each case runs three ways:
//! 1. natively without migration: must lose nothing (checks the model and
//!    the generated programs are right);
//! 2. with the policy and migrations: must lose nothing (the property);
//! 3. natively with migrations (every fourth case): losses are counted, and
//!    the run must see some, or the harness could not tell 1 from 2.
//!
//! Default: a fixed seed and 1000 cases (a few seconds). A long soak:
//! `SOAK_CASES=100000 cargo test -p cache-maint --release soak` (what
//! `cargo xtask soak` runs). `SOAK_SEED` picks another seed; a failure prints
//! the case seed, and `SOAK_ONLY=<case seed>` replays just that case.

mod common;

use std::time::Instant;

use cache_maint::{SwMode, SwOp, VmConfig, Walk};
use cache_model::guest::Populate;
use cache_model::rng::Rng;
use cache_model::{CacheModel, Config};
use common::{linux_flush, Mode, Op, Sim, VmSpec};

const MIB: u64 = 1024 * 1024;

#[derive(Debug)]
struct Case {
    cfg: Config,
    vms: Vec<VmCase>,
    migrate_den: u64,
}

#[derive(Debug)]
struct VmCase {
    cfg: VmConfig,
    populate: Populate,
    vcpus: Vec<(usize, Vec<Op>)>,
}

fn program(rng: &mut Rng, model: &CacheModel, base: u64, size: u64, writes: u64) -> Vec<Op> {
    let mut p = Vec::new();
    if rng.chance(1, 3) {
        // Early boot: invalidate the L1 with caches off (v7_invalidate_l1).
        p.extend(linux_flush(model, SwOp::Isw, 0..1));
    }
    for _ in 0..rng.range(1, 2) {
        p.push(Op::Sctlr(true));
        for _ in 0..rng.range(1, writes) {
            p.push(Op::Write { ipa: base + rng.below(size / 8) * 8, val: rng.next_u64() });
        }
        let op = if rng.chance(1, 3) { SwOp::Csw } else { SwOp::Cisw };
        let mut flush = linux_flush(model, op, 0..model.levels());
        if rng.chance(1, 2) {
            // Flush, then caches off (arm64 style)...
            if rng.chance(1, 2) {
                // ...with stack writes early in the loop, to page-aligned
                // addresses: their L1 set is below the top set the loop
                // starts from, so the loop itself cleans them later. With
                // the policy only the caches-off clean catches them.
                let at = rng.range(1, model.geometry(0).unwrap().ways as u64 - 1) as usize;
                for k in 0..rng.range(1, 3) {
                    let page = base + rng.below(size / 4096) * 4096;
                    flush.insert(at, Op::Write { ipa: page, val: rng.next_u64() ^ k });
                }
            }
            p.extend(flush);
            p.push(Op::Sctlr(false));
        } else {
            // ...or caches off, then flush (v7 CPU power-down style).
            p.push(Op::Sctlr(false));
            p.extend(flush);
        }
        p.push(Op::Check);
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
    let nvms = rng.range(1, 2);
    let vms = (0..nvms)
        .map(|vm| {
            let nvcpus = rng.range(1, 3);
            let fwb = rng.chance(1, 10);
            let cfg = VmConfig {
                sw: if fwb && rng.chance(1, 2) { SwMode::Yes } else { SwMode::Auto },
                fwb,
                direct_mapped: vm == 0 && rng.chance(1, 10),
                walk: if rng.chance(1, 5) { Walk::All } else { Walk::Touched },
                slice_bytes: [16 * 1024, 64 * 1024, 256 * 1024, 2 * MIB][rng.below(4) as usize],
                ..VmConfig::new(nvcpus as u8)
            };
            let populate = [Populate::Block, Populate::Page, Populate::Mixed][rng.below(3) as usize];
            let mem = [MIB, 4 * MIB, 8 * MIB, 16 * MIB][rng.below(4) as usize];
            // Each vCPU writes its own 4 KiB-aligned region: no line is
            // shared, so the native run without migration is correct.
            let region = (mem / nvcpus) & !0xfff;
            let writes = if big { 24 } else { 64 };
            let vcpus = (0..nvcpus)
                .map(|v| {
                    let pcpu = rng.below(cpus as u64) as usize;
                    (pcpu, program(&mut rng, &model, v * region, region, writes))
                })
                .collect();
            VmCase { cfg, populate, vcpus }
        })
        .collect();
    Case { cfg, vms, migrate_den: rng.range(4, 60) }
}

fn run(case: &Case, mode: Mode, migrate: bool, seed: u64) -> Sim {
    let specs = case
        .vms
        .iter()
        .map(|v| VmSpec { cfg: v.cfg, populate: v.populate, vcpus: v.vcpus.clone() })
        .collect();
    let mut sim = Sim::new(CacheModel::new(case.cfg), mode, specs);
    let mut rng = Rng::new(seed);
    sim.run_random(&mut rng, if migrate { 1 } else { 0 }, case.migrate_den);
    sim
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

#[test]
fn soak_random_schedules_lose_nothing() {
    let cases = env_u64("SOAK_CASES").unwrap_or(1000);
    let seed = env_u64("SOAK_SEED").unwrap_or(0x5e7_3a1);
    let only = env_u64("SOAK_ONLY");
    let start = Instant::now();
    let (mut native_lost, mut native_runs, mut migrations, mut checked) = (0usize, 0usize, 0usize, 0usize);
    let mut cleaned = 0u64;
    let mut case_seeds = Rng::new(seed);
    for n in 0..cases {
        let case_seed = match only {
            Some(s) => s,
            None => case_seeds.next_u64(),
        };
        let case = gen_case(case_seed);
        let fail = |what: &str, sim: &Sim| -> ! {
            panic!(
                "case {n} (SOAK_ONLY={case_seed:#x}): {what}: lost {} of {} checked words, {} migrations\n{case:#?}",
                sim.lost(),
                sim.checked(),
                sim.migrations()
            )
        };

        let oracle = run(&case, Mode::Native, false, case_seed ^ 1);
        if oracle.lost() != 0 || oracle.migrations() != 0 {
            fail("native run without migration", &oracle);
        }

        let sim = run(&case, Mode::Policy, true, case_seed ^ 2);
        if sim.lost() != 0 {
            fail("policy run with migrations", &sim);
        }
        if sim.checked() != oracle.checked() {
            fail("policy run checked a different number of words", &sim);
        }
        for vm in &sim.vms {
            assert_eq!(vm.foreign_ops, 0, "case {case_seed:#x}: maintenance outside the VM's frames");
            assert!(!vm.cm.clean_in_progress(), "case {case_seed:#x}: a pass nobody waits for");
            let c = vm.cm.counters();
            assert!(c.max_slice_bytes <= vm.cm.config().slice_bytes);
            assert_eq!(c.source_faults, 0);
            cleaned += c.cleaned_bytes;
        }
        migrations += sim.migrations();
        checked += sim.checked();

        if n % 4 == 0 || only.is_some() {
            let native = run(&case, Mode::Native, true, case_seed ^ 2);
            native_lost += native.lost();
            native_runs += 1;
        }
        if only.is_some() {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "soak: {cases} cases in {secs:.1} s; policy: {checked} words checked, 0 lost, {migrations} migrations, \
         {} MiB cleaned; native with migrations: {native_lost} words lost in {native_runs} runs",
        cleaned / MIB
    );
    if only.is_none() && cases >= 40 {
        assert!(native_lost > 0, "the harness never reproduced the set/way bug without the policy");
    }
}

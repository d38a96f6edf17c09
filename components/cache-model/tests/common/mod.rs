//! A simulated machine that runs the real kernel-independent components on
//! the models, wired the way the kernel wires them (`kernel/src/exits.rs`,
//! `kernel/src/hyp.rs`, `kernel/src/vm.rs`):
//!
//! - real: `stage2_pager::Pager` over a heap-backed AArch64 table (access
//!   flags, touched record, break-before-make, the TLB invalidations it asks
//!   for), `pod::Pod` (zero + clean + map on translation faults, sweeps that
//!   reclaim zero pages when the pool is dry, eager and direct population),
//!   `cache_maint::CacheMaint` (TSW/TVM policy, resumable sliced clean);
//! - modelled: pCPU caches and PoC memory ([`CacheModel`]), per-pCPU stage-2
//!   TLBs ([`Tlb`]), the kernel's hardware ops ([`ModelHw`]), and guests
//!   whose vCPUs run scripted programs ([`Op`]) and move between pCPUs.
//!
//! Every guest access is translated as hardware would: a TLB hit is used
//! without a look at the table (so a stale entry lets the access through
//! without a fault), a miss walks the real table and takes a translation
//! fault (to the pod) or an access-flag fault (to the pager). A faulting
//! access is retried on the vCPU's next step, after whatever other vCPUs did
//! in between, as after a real `eret`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use cache_maint::{
    caches_enabled, CacheMaint, CacheOps, Hcr, Hw, Next, Reply, Request, SwOp, VcpuId, VmConfig, VmReg, SCTLR_C,
    SCTLR_M,
};
use cache_model::hw::{CleanRange, ModelHw};
use cache_model::rng::Rng;
use cache_model::tlb::{Tlb, Translation, Walked};
use cache_model::{Access, CacheModel, SwOp as ModelSwOp};
use capabilities::{SchedCap, VgicCap, VmCaps};
use hwops::{Scoped, BLOCK_SIZE, PAGE_SIZE};
use pod::{Mode as PodMode, Outcome, Pod, PodConfig};
use stage2_pager::testing::{self, HostTable};
use stage2_pager::{LeafSize, MemAttrs, Pager};

pub const MIB: u64 = 1024 * 1024;
/// Guest RAM starts here in IPA space (PoD and eager guests).
pub const RAM_IPA: u64 = 0x4000_0000;
/// A direct-mapped guest's RAM (IPA = PA).
pub const DIRECT_RAM: u64 = 0x8000_0000;

/// One guest instruction (or a short sequence the test treats as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write SCTLR with M and C both set (true) or both clear (false).
    Sctlr(bool),
    /// Store `val` at guest address `ipa`.
    Write { ipa: u64, val: u64 },
    /// Load from `ipa` and ignore the value (populates, fills TLBs).
    Read { ipa: u64 },
    /// A set/way instruction with its raw operand.
    Sw { op: SwOp, operand: u32 },
    /// Load from `ipa`; the value must be `val` (what this vCPU last wrote).
    Verify { ipa: u64, val: u64 },
}

/// How set/way and VM-register writes are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No TSW/TVM traps: set/way runs on the pCPU the vCPU is on (HCR.SWIO
    /// makes an ISW a CISW), SCTLR writes go straight to the register.
    /// Stage-2 faults still go to the real pod and pager.
    Native,
    /// TSW/TVM traps handled by the real cache-maint, as the kernel does.
    Policy,
}

/// Where a guest's RAM comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    /// Populate on demand from one 2 MiB-aligned grant: 2 MiB blocks where
    /// a whole chunk fits, 4 KiB pages (splintered frames) elsewhere.
    PodBlocks,
    /// Populate on demand from 1 MiB grants off 2 MiB alignment: 4 KiB
    /// pages only.
    PodPages,
    /// Populate on demand from a 4 MiB pool of pages only, smaller than the
    /// RAM: when it runs dry, faults sweep and reclaim zero pages (unmap +
    /// invalidate, then the frame is zeroed and mapped elsewhere).
    PodBallooned,
    /// All RAM mapped at start from one aligned grant.
    Eager,
    /// The hardware domain: RAM mapped IPA = PA at start, never zeroed;
    /// cache-maint walks everything (`direct_mapped`).
    Direct,
}

/// Guest setup for [`Sim::new`].
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub cfg: VmConfig,
    pub memory: Memory,
    /// Bytes of RAM (a multiple of 1 MiB).
    pub ram: u64,
    /// Starting pCPU and program of each vCPU.
    pub vcpus: Vec<(usize, Vec<Op>)>,
}

/// The first word that read back wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub vcpu: usize,
    pub ipa: u64,
    pub pa: u64,
    pub want: u64,
    pub got: u64,
    pub cached: bool,
}

pub struct Vcpu {
    pub pcpu: usize,
    pub sctlr: u64,
    pub hcr: Hcr,
    pub waiting: bool,
    pub prog: Vec<Op>,
    pub pc: usize,
    pub lost: usize,
    pub checked: usize,
    pub migrations: usize,
}

/// Stage-2 fault counts of one VM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub translation: u64,
    pub access_flag: u64,
    pub pod_retries: u64,
}

pub struct Vm {
    pager: Option<Pager<HostTable>>,
    pod: Option<Pod>,
    rest: Option<(SchedCap, VgicCap)>,
    pub cm: CacheMaint,
    pub memory: Memory,
    pub vmid: u16,
    pub fwb: bool,
    /// PA ranges this VM owns: its grants, or its RAM when direct-mapped.
    pub owned: Vec<(u64, u64)>,
    pub vcpus: Vec<Vcpu>,
    /// By-address maintenance cache-maint issued outside `owned`, and
    /// zeroing or cleaning the pod asked for there (refused, as the
    /// kernel's `Scoped` does).
    pub foreign_ops: usize,
    pub sw_first_events: usize,
    pub faults: Faults,
    pub first_lost: Option<Lost>,
    /// Component errors (pod exhausted, pager refusals, ...).
    pub errors: Vec<String>,
}

impl Vm {
    pub fn pager(&self) -> &Pager<HostTable> {
        self.pager.as_ref().expect("pager")
    }

    pub fn pod(&self) -> &Pod {
        self.pod.as_ref().expect("pod")
    }

    /// The table as the TLB walks it: Normal leaves only.
    fn walked(pager: &Pager<HostTable>, ipa: u64) -> Option<Walked> {
        pager.leaf(ipa).filter(|l| l.attrs == MemAttrs::Normal).map(|l| Walked {
            ipa: l.ipa,
            pa: l.pa,
            size: l.size.bytes(),
            accessed: l.accessed,
        })
    }

    /// The PA of `ipa`, if mapped now.
    pub fn translate(&self, ipa: u64) -> Option<u64> {
        self.pager().translate(ipa).map(|(pa, _)| pa)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Give the VMID back, so thousands of cases can run in one process.
        if let (Some(pager), Some(pod), Some(cache), Some(sched)) = (self.pager.take(), self.pod.take(), self.cm.take_cap(), self.rest.take()) {
            let (stage2, _table) = pager.into_parts();
            testing::revoke(VmCaps { stage2, pod: pod.into_cap(), cache, sched: sched.0, vgic: sched.1 });
        }
    }
}

pub struct Sim {
    pub model: CacheModel,
    pub tlb: Tlb,
    pub vms: Vec<Vm>,
    pub mode: Mode,
    clean_range: CleanRange,
    pub steps: u64,
}

/// A `CacheOps` that forwards cache-maint's maintenance to the model and
/// counts every range that is not inside the VM's own frames.
struct Fenced<'a> {
    model: &'a mut CacheModel,
    owned: &'a [(u64, u64)],
    foreign: &'a mut usize,
}

impl Fenced<'_> {
    fn check(&mut self, pa: u64, len: u64) {
        if !self.owned.iter().any(|&(lo, hi)| pa >= lo && pa + len <= hi) {
            *self.foreign += 1;
        }
    }
}

impl CacheOps for Fenced<'_> {
    fn clean_range(&mut self, pa: u64, len: u64) {
        self.check(pa, len);
        self.model.clean_va(pa, len);
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        self.check(pa, len);
        self.model.clean_invalidate_va(pa, len);
    }
    fn invalidate_icache_all(&mut self) {}
}

/// The ops of a Linux `v7_flush_dcache_all`-shaped set/way loop
/// (`CacheModel::linux_flush_operands`).
pub fn linux_flush(model: &CacheModel, op: SwOp, levels: std::ops::Range<u8>) -> Vec<Op> {
    model.linux_flush_operands(levels).into_iter().map(|operand| Op::Sw { op, operand }).collect()
}

/// `owned` as the ranges a `hwops::Scoped` checks.
fn ranges(owned: &[(u64, u64)]) -> Vec<std::ops::Range<u64>> {
    owned.iter().map(|&(lo, hi)| lo..hi).collect()
}

fn pool_base(vm: usize) -> u64 {
    (vm as u64 + 1) << 36
}

/// Give `pod` its pool for `memory`; returns the PA ranges granted.
fn grant(pod: &mut Pod, vm: usize, memory: Memory, ram: u64) -> Vec<(u64, u64)> {
    let base = pool_base(vm);
    let pieces = |total: u64| -> Vec<(u64, u64)> {
        // 1 MiB pieces in the middle of 2 MiB frames: no 2 MiB frame forms.
        (0..total / MIB).map(|k| (base + k * 2 * MIB + MIB / 2, MIB)).collect()
    };
    let grants = match memory {
        Memory::PodBlocks | Memory::Eager => vec![(base, ram.next_multiple_of(BLOCK_SIZE))],
        Memory::PodPages => pieces(ram),
        Memory::PodBallooned => pieces(4 * MIB),
        Memory::Direct => Vec::new(),
    };
    for &(pa, len) in &grants {
        pod.grant(pa, len).expect("grant");
    }
    grants.into_iter().map(|(pa, len)| (pa, pa + len)).collect()
}

impl Sim {
    /// Build the machine: per VM a real pager, pod and cache-maint state;
    /// eager and direct RAM is mapped before any vCPU runs. The hardware's
    /// `clean_range` is the kernel's (clean + invalidate).
    pub fn new(model: CacheModel, tlb_entries: usize, mode: Mode, specs: Vec<VmSpec>) -> Sim {
        Sim::with_clean_range(model, tlb_entries, mode, CleanRange::default(), specs)
    }

    /// [`Sim::new`] with the given `clean_range` behaviour.
    pub fn with_clean_range(
        model: CacheModel,
        tlb_entries: usize,
        mode: Mode,
        clean_range: CleanRange,
        specs: Vec<VmSpec>,
    ) -> Sim {
        let mut tlb = Tlb::new(model.cpus(), tlb_entries);
        let mut model = model;
        let mut vms = Vec::new();
        for (i, s) in specs.into_iter().enumerate() {
            assert_eq!(s.cfg.vcpus as usize, s.vcpus.len());
            assert!(s.ram.is_multiple_of(MIB) && s.ram > 0);
            let direct = s.memory == Memory::Direct;
            assert_eq!(direct, s.cfg.direct_mapped, "direct memory goes with a direct-mapped policy");
            let VmCaps { stage2, pod, cache, sched, vgic } = testing::grant();
            let sched = (sched, vgic);
            let vmid = stage2.vm().vmid();
            let ram_base = if direct { DIRECT_RAM } else { RAM_IPA };
            let mut pager = Pager::new(stage2, testing::host_table(), ram_base).expect("pager");
            let pod_mode = match s.memory {
                Memory::Eager => PodMode::Eager,
                Memory::Direct => PodMode::DirectMap,
                _ => PodMode::OnDemand,
            };
            let mut pod = Pod::new(pod, PodConfig::new(ram_base, s.ram, pod_mode)).expect("pod");
            let mut owned = grant(&mut pod, i, s.memory, s.ram);
            if direct {
                owned.push((DIRECT_RAM, DIRECT_RAM + s.ram));
            }
            let scope = ranges(&owned);
            let mut hw = Scoped::new(ModelHw { cache: &mut model, tlb: &mut tlb, clean_range }, scope.as_slice());
            pod.start(&mut pager, &mut hw).expect("eager population");
            let foreign_ops = hw.refused() as usize;
            let cm = CacheMaint::new(cache, s.cfg).expect("valid config");
            let vcpus = s
                .vcpus
                .into_iter()
                .enumerate()
                .map(|(k, (pcpu, prog))| Vcpu {
                    pcpu,
                    sctlr: 0,
                    hcr: cm.hcr(VcpuId(k as u8)).unwrap(),
                    waiting: false,
                    prog,
                    pc: 0,
                    lost: 0,
                    checked: 0,
                    migrations: 0,
                })
                .collect();
            vms.push(Vm {
                pager: Some(pager),
                pod: Some(pod),
                rest: Some(sched),
                cm,
                memory: s.memory,
                vmid,
                fwb: s.cfg.fwb,
                owned,
                vcpus,
                foreign_ops,
                sw_first_events: 0,
                faults: Faults::default(),
                first_lost: None,
                errors: Vec::new(),
            });
        }
        Sim { model, tlb, vms, mode, clean_range, steps: 0 }
    }

    fn access(&self, vm: usize, v: usize) -> Access {
        let c = &self.vms[vm].vcpus[v];
        if self.vms[vm].fwb || caches_enabled(c.sctlr) {
            Access::Cached(c.pcpu)
        } else {
            Access::Uncached
        }
    }

    pub fn done(&self, vm: usize, v: usize) -> bool {
        let c = &self.vms[vm].vcpus[v];
        c.pc == c.prog.len() && !c.waiting
    }

    /// Stopped by a component error (the kernel would stop the guest).
    pub fn stopped(&self, vm: usize) -> bool {
        !self.vms[vm].errors.is_empty()
    }

    pub fn migrate(&mut self, vm: usize, v: usize, pcpu: usize) {
        let c = &mut self.vms[vm].vcpus[v];
        if c.pcpu != pcpu {
            c.migrations += 1;
        }
        c.pcpu = pcpu;
    }

    fn apply(&mut self, vm: usize, v: usize, r: Reply) {
        let vmr = &mut self.vms[vm];
        if r.sw_first_seen {
            vmr.sw_first_events += 1;
        }
        let c = &mut vmr.vcpus[v];
        c.hcr = r.hcr;
        c.waiting = match r.next {
            Next::Resume(t) => {
                assert_eq!(t.vcpu(), VcpuId(v as u8));
                assert_eq!(t.hcr(), r.hcr);
                false
            }
            Next::MoreWork => true,
        };
    }

    /// `handle()` on the VM's cache-maint state with the real pager as the
    /// clean source, as `Vm::cache_maint` in the kernel does.
    fn request(&mut self, vm: usize, req: Request) -> Reply {
        let Sim { model, tlb, vms, .. } = self;
        let vmr = &mut vms[vm];
        let mut cache = Fenced { model, owned: &vmr.owned, foreign: &mut vmr.foreign_ops };
        let pager = vmr.pager.as_mut().expect("pager");
        let mut hw = Hw { cache: &mut cache, source: pager, tlb };
        vmr.cm.handle(req, &mut hw).expect("request accepted")
    }

    /// One guest access by `vm`/`v` at `ipa` through its pCPU's TLB: the
    /// value loaded (or stored), or `None` when it faulted (the fault was
    /// handled; the access runs again on the vCPU's next step).
    fn guest_access(&mut self, vm: usize, v: usize, ipa: u64, store: Option<u64>) -> Option<(u64, u64)> {
        let access = self.access(vm, v);
        let clean_range = self.clean_range;
        let Sim { model, tlb, vms, .. } = self;
        let vmr = &mut vms[vm];
        let pcpu = vmr.vcpus[v].pcpu;
        let pager = vmr.pager.as_mut().expect("pager");
        let walk = |ipa: u64| Vm::walked(pager, ipa);
        match tlb.translate(pcpu, vmr.vmid, ipa, &walk) {
            Translation::Hit { pa } | Translation::Filled { pa } => {
                let val = match store {
                    Some(val) => {
                        model.store_u64(access, pa, val);
                        val
                    }
                    None => model.load_u64(access, pa),
                };
                Some((pa, val))
            }
            Translation::AccessFlagFault => {
                vmr.faults.access_flag += 1;
                if let Err(e) = pager.handle_access_fault(ipa) {
                    vmr.errors.push(format!("access-flag fault at {ipa:#x}: {e}"));
                }
                None
            }
            Translation::TranslationFault => {
                vmr.faults.translation += 1;
                // The fault is handled on the pCPU the vCPU runs on: the
                // pod's zeroing goes through that pCPU's cache.
                model.set_hyp_cpu(pcpu);
                // As the kernel does: the pod reaches only this VM's frames.
                let scope = ranges(&vmr.owned);
                let mut hw = Scoped::new(ModelHw { cache: model, tlb, clean_range }, scope.as_slice());
                match vmr.pod.as_mut().expect("pod").fault(pager, &mut hw, ipa) {
                    Ok(Outcome::Retry) => vmr.faults.pod_retries += 1,
                    Ok(_) => {}
                    Err(e) => vmr.errors.push(format!("stage-2 fault at {ipa:#x}: {e}")),
                }
                vmr.foreign_ops += hw.refused() as usize;
                None
            }
        }
    }

    /// One step of a vCPU: a clean slice if it waits, else its next op (an
    /// op whose access faulted stays next).
    pub fn step(&mut self, vm: usize, v: usize) {
        self.steps += 1;
        let id = VcpuId(v as u8);
        if self.vms[vm].vcpus[v].waiting {
            // The kernel's entry check: another vCPU's slices may have
            // finished the pass this one waits for.
            match self.vms[vm].cm.may_run(id) {
                Ok(t) => {
                    let c = &mut self.vms[vm].vcpus[v];
                    c.hcr = t.hcr();
                    c.waiting = false;
                }
                Err(_) => {
                    let r = self.request(vm, Request::RunSlice { vcpu: id });
                    self.apply(vm, v, r);
                }
            }
            return;
        }
        if self.mode == Mode::Policy {
            assert!(self.vms[vm].cm.may_run(id).is_ok(), "a runnable vCPU gets a token");
        }
        let c = &self.vms[vm].vcpus[v];
        let Some(&op) = c.prog.get(c.pc) else { return };
        let done = match op {
            Op::Write { ipa, val } => self.guest_access(vm, v, ipa, Some(val)).is_some(),
            Op::Read { ipa } => self.guest_access(vm, v, ipa, None).is_some(),
            Op::Verify { ipa, val } => match self.guest_access(vm, v, ipa, None) {
                None => false,
                Some((pa, got)) => {
                    let cached = matches!(self.access(vm, v), Access::Cached(_));
                    let vmr = &mut self.vms[vm];
                    let c = &mut vmr.vcpus[v];
                    c.checked += 1;
                    if got != val {
                        c.lost += 1;
                        vmr.first_lost.get_or_insert(Lost { vcpu: v, ipa, pa, want: val, got, cached });
                    }
                    true
                }
            },
            Op::Sctlr(on) => {
                let c = &self.vms[vm].vcpus[v];
                let old = c.sctlr;
                let value = if on { old | SCTLR_M | SCTLR_C } else { old & !(SCTLR_M | SCTLR_C) };
                if self.mode == Mode::Policy && c.hcr.tvm {
                    let r = self.request(vm, Request::VmRegWrite { vcpu: id, reg: VmReg::Sctlr, value, old, sctlr: value });
                    let w = r.write.expect("the kernel writes the register");
                    assert_eq!(w.reg, VmReg::Sctlr);
                    self.vms[vm].vcpus[v].sctlr = w.value;
                    self.apply(vm, v, r);
                } else {
                    self.vms[vm].vcpus[v].sctlr = value;
                }
                true
            }
            Op::Sw { op, operand } => {
                let c = &self.vms[vm].vcpus[v];
                if self.mode == Mode::Policy && c.hcr.tsw {
                    let level = ((operand >> 1) & 7) as u8;
                    let r = self.request(vm, Request::SetWay { vcpu: id, op, level });
                    self.apply(vm, v, r);
                } else {
                    let mop = match op {
                        SwOp::Isw | SwOp::Cisw => ModelSwOp::CleanInvalidate,
                        SwOp::Csw => ModelSwOp::Clean,
                    };
                    self.model.dc_sw(c.pcpu, mop, operand);
                }
                true
            }
        };
        if done {
            self.vms[vm].vcpus[v].pc += 1;
        }
    }

    /// Step `vm`/`v` until it has executed `pc` ops and is not waiting.
    pub fn run_to(&mut self, vm: usize, v: usize, pc: usize) {
        let mut guard = 0u64;
        while self.vms[vm].vcpus[v].pc < pc || self.vms[vm].vcpus[v].waiting {
            self.step(vm, v);
            guard += 1;
            assert!(guard < 10_000_000 && !self.stopped(vm), "vCPU {vm}/{v} makes no progress: {:?}", self.vms[vm].errors);
        }
    }

    /// Run every vCPU to the end in a random interleaving; before each step
    /// the stepped vCPU moves to a random pCPU with probability `num/den`.
    /// Every `check_every` steps (0: never) the invariants are checked; the
    /// run goes on after a violation (so that its effect on the guests'
    /// data shows too), and the first one is returned.
    pub fn run_random(&mut self, rng: &mut Rng, num: u64, den: u64, check_every: u64) -> Result<(), String> {
        let mut first = Ok(());
        let cpus = self.model.cpus() as u64;
        let mut live: Vec<(usize, usize)> = Vec::new();
        loop {
            live.clear();
            for m in 0..self.vms.len() {
                if self.stopped(m) {
                    continue;
                }
                for v in 0..self.vms[m].vcpus.len() {
                    if !self.done(m, v) {
                        live.push((m, v));
                    }
                }
            }
            if live.is_empty() {
                return first;
            }
            let (m, v) = live[rng.below(live.len() as u64) as usize];
            if num > 0 && rng.chance(num, den) {
                let p = rng.below(cpus) as usize;
                self.migrate(m, v, p);
            }
            self.step(m, v);
            if check_every > 0 && first.is_ok() && self.steps.is_multiple_of(check_every) {
                first = self.check_invariants().map_err(|e| format!("after step {}: {e}", self.steps));
            }
        }
    }

    /// The components' own invariants, checked from outside:
    /// - pod accounting (`Pod::check_invariants`);
    /// - the pager's touch record: a Normal leaf with AF = 1 lies in a chunk
    ///   marked touched (else a guest access since the last clear could be
    ///   missed by the next clean);
    /// - no TLB holds a translation the table no longer has.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, vm) in self.vms.iter().enumerate() {
            let pager = vm.pager();
            if let Err(e) = vm.pod().check_invariants(pager) {
                return Err(format!("vm {i}: pod invariant: {e:?}"));
            }
            let (lo, hi) = pager.tracked();
            let mut bad = None;
            pager.walk(lo, hi, &mut |l| {
                if l.attrs == MemAttrs::Normal && l.accessed && !pager.is_touched(l.ipa) {
                    bad = Some(*l);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if let Some(l) = bad {
                return Err(format!("vm {i}: leaf {l:x?} has AF = 1 in a chunk not marked touched"));
            }
            let walk = |ipa: u64| Vm::walked(pager, ipa);
            let stale = self.tlb.stale_entries(vm.vmid, &walk);
            if let Some(s) = stale.first() {
                return Err(format!("vm {i}: {} TLB entries the table no longer backs, first {s:x?}", stale.len()));
            }
        }
        Ok(())
    }

    pub fn lost(&self) -> usize {
        self.vms.iter().flat_map(|m| m.vcpus.iter()).map(|c| c.lost).sum()
    }

    pub fn checked(&self) -> usize {
        self.vms.iter().flat_map(|m| m.vcpus.iter()).map(|c| c.checked).sum()
    }

    pub fn migrations(&self) -> usize {
        self.vms.iter().flat_map(|m| m.vcpus.iter()).map(|c| c.migrations).sum()
    }

    /// One line of what happened, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "lost {} of {} checked words, {} migrations, {} steps, tlb {:?}",
            self.lost(),
            self.checked(),
            self.migrations(),
            self.steps,
            self.tlb.stats()
        );
        if let Some(h) = self.tlb.first_stale() {
            s += &format!("\n  first stale TLB hit: {h:x?}");
        }
        for (i, vm) in self.vms.iter().enumerate() {
            let p = vm.pod().stats();
            s += &format!(
                "\n  vm {i} (vmid {}, {:?}): {:?}; faults {:?}; pod 2m={} 4k={} reclaimed={} sweeps={}; touched chunks {}",
                vm.vmid,
                vm.memory,
                vm.cm.counters(),
                vm.faults,
                p.pod_2m,
                p.pod_4k,
                p.reclaimed_pages,
                p.sweeps,
                vm.pager().touched_chunks()
            );
            if let Some(l) = vm.first_lost {
                let leaf = vm.pager().leaf(l.ipa);
                s += &format!(
                    "\n    first lost word: {l:x?}; leaf now {leaf:x?}, chunk touched: {}",
                    vm.pager().is_touched(l.ipa)
                );
            }
            if !vm.errors.is_empty() {
                s += &format!("\n    errors: {:?}", vm.errors);
            }
        }
        s
    }
}

/// How many 2 MiB blocks and 4 KiB pages `vm`'s table maps (for coverage
/// counts).
pub fn leaf_sizes(vm: &Vm) -> (u64, u64) {
    let (mut blocks, mut pages) = (0, 0);
    let (lo, hi) = vm.pager().tracked();
    vm.pager().walk(lo, hi, &mut |l| {
        match l.size {
            LeafSize::Block2M => blocks += 1,
            LeafSize::Page4K => pages += 1,
        }
        ControlFlow::Continue(())
    });
    (blocks, pages)
}

/// Bytes in a 4 KiB page, for generators.
pub const PAGE: u64 = PAGE_SIZE;

/// A map of the last value each vCPU wrote at each address, for generators.
pub type Expect = BTreeMap<u64, u64>;

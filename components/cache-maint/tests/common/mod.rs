//! A small simulated machine for the cache-maint tests: the cache model's
//! pCPUs, guests whose vCPUs run scripted programs, and the kernel's part of
//! the policy (trap, call `CacheMaint`, apply the reply, run slices).
#![allow(dead_code)]

use std::collections::BTreeMap;

use cache_maint::{
    caches_enabled, CacheMaint, CacheOps, Hcr, Hw, Next, Reply, Request, SwOp, VcpuId, VmConfig, VmReg, SCTLR_C,
    SCTLR_M,
};
use cache_model::fakes::CountingTlb;
use cache_model::guest::{GuestMem, Populate};
use cache_model::rng::Rng;
use cache_model::{Access, CacheModel, SwOp as ModelSwOp};

/// One guest instruction (or a short sequence the test treats as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write SCTLR with M and C both set (true) or both clear (false).
    Sctlr(bool),
    /// Store `val` at guest address `ipa`.
    Write { ipa: u64, val: u64 },
    /// A set/way instruction with its raw operand.
    Sw { op: SwOp, operand: u32 },
    /// Read back every address this vCPU wrote and count mismatches.
    Check,
}

/// How set/way and VM-register writes are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No traps: set/way runs on the pCPU the vCPU is on (with HCR.SWIO, an
    /// ISW acts as CISW), SCTLR writes go straight to the register.
    Native,
    /// Native, and without HCR.SWIO: an ISW really invalidates.
    NativeNoSwio,
    /// TSW/TVM traps handled by cache-maint, as the kernel will.
    Policy,
}

pub struct Vcpu {
    pub pcpu: usize,
    pub sctlr: u64,
    pub hcr: Hcr,
    pub waiting: bool,
    pub prog: Vec<Op>,
    pub pc: usize,
    pub expect: BTreeMap<u64, u64>,
    pub lost: usize,
    pub checked: usize,
    pub migrations: usize,
}

pub struct Vm {
    pub mem: GuestMem,
    pub cm: CacheMaint,
    pub vcpus: Vec<Vcpu>,
    pub fwb: bool,
    /// By-address maintenance issued for this VM outside its own frames.
    pub foreign_ops: usize,
    pub sw_first_events: usize,
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Give the VM id back, so thousands of cases run in one process.
        if let Some(cap) = self.cm.take_cap() {
            stage2_pager::testing::return_cache_cap(cap);
        }
    }
}

pub struct Sim {
    pub model: CacheModel,
    pub vms: Vec<Vm>,
    pub mode: Mode,
    pub tlb: CountingTlb,
}

/// A `CacheOps` that forwards to the model and checks that every range lies
/// inside one VM's frames.
struct Fenced<'a> {
    model: &'a mut CacheModel,
    lo: u64,
    hi: u64,
    foreign: &'a mut usize,
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

impl Fenced<'_> {
    fn check(&mut self, pa: u64, len: u64) {
        if pa < self.lo || pa + len > self.hi {
            *self.foreign += 1;
        }
    }
}

/// The ops of a Linux `v7_flush_dcache_all`-shaped set/way loop
/// (`CacheModel::linux_flush_operands`).
pub fn linux_flush(model: &CacheModel, op: SwOp, levels: std::ops::Range<u8>) -> Vec<Op> {
    model.linux_flush_operands(levels).into_iter().map(|operand| Op::Sw { op, operand }).collect()
}

/// Guest setup for [`Sim::new`].
pub struct VmSpec {
    pub cfg: VmConfig,
    pub populate: Populate,
    /// Starting pCPU and program of each vCPU.
    pub vcpus: Vec<(usize, Vec<Op>)>,
}

impl Sim {
    pub fn new(model: CacheModel, mode: Mode, specs: Vec<VmSpec>) -> Sim {
        let vms = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                assert_eq!(s.cfg.vcpus as usize, s.vcpus.len());
                let cm = CacheMaint::new(stage2_pager::testing::cache_cap(), s.cfg).expect("valid config");
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
                        expect: BTreeMap::new(),
                        lost: 0,
                        checked: 0,
                        migrations: 0,
                    })
                    .collect();
                Vm {
                    mem: GuestMem::new(i as u16 + 1, (i as u64 + 1) << 40, s.populate),
                    cm,
                    vcpus,
                    fwb: s.cfg.fwb,
                    foreign_ops: 0,
                    sw_first_events: 0,
                }
            })
            .collect();
        Sim { model, vms, mode, tlb: CountingTlb::default() }
    }

    pub fn access(&self, vm: usize, v: usize) -> Access {
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

    fn request(&mut self, vm: usize, req: Request) -> Reply {
        let (lo, hi) = self.vms[vm].mem.pa_range();
        let vmr = &mut self.vms[vm];
        let mut cache = Fenced { model: &mut self.model, lo, hi, foreign: &mut vmr.foreign_ops };
        let mut hw = Hw { cache: &mut cache, source: &mut vmr.mem.source, tlb: &mut self.tlb };
        vmr.cm.handle(req, &mut hw).expect("request accepted")
    }

    /// One step of a vCPU: a clean slice if it waits, else its next op.
    pub fn step(&mut self, vm: usize, v: usize) {
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
            assert!(self.vms[vm].cm.may_run(id).is_ok(), "runnable vCPU gets a token");
        }
        let c = &mut self.vms[vm].vcpus[v];
        let Some(&op) = c.prog.get(c.pc) else { return };
        c.pc += 1;
        match op {
            Op::Write { ipa, val } => {
                let a = self.access(vm, v);
                let vmr = &mut self.vms[vm];
                vmr.mem.write_u64(&mut self.model, a, ipa, val);
                vmr.vcpus[v].expect.insert(ipa, val);
            }
            Op::Sctlr(on) => {
                let c = &self.vms[vm].vcpus[v];
                let old = c.sctlr;
                let value = if on { old | SCTLR_M | SCTLR_C } else { old & !(SCTLR_M | SCTLR_C) };
                if self.mode == Mode::Policy && c.hcr.tvm {
                    let r = self.request(vm, Request::VmRegWrite { vcpu: id, reg: VmReg::Sctlr, value, old, sctlr: value });
                    let w = r.write.expect("kernel writes the register");
                    assert_eq!(w.reg, VmReg::Sctlr);
                    self.vms[vm].vcpus[v].sctlr = w.value;
                    self.apply(vm, v, r);
                } else {
                    self.vms[vm].vcpus[v].sctlr = value;
                }
            }
            Op::Sw { op, operand } => {
                let c = &self.vms[vm].vcpus[v];
                if self.mode == Mode::Policy && c.hcr.tsw {
                    let level = ((operand >> 1) & 7) as u8;
                    let r = self.request(vm, Request::SetWay { vcpu: id, op, level });
                    self.apply(vm, v, r);
                } else {
                    let mop = match op {
                        SwOp::Isw if self.mode == Mode::NativeNoSwio => ModelSwOp::Invalidate,
                        SwOp::Isw | SwOp::Cisw => ModelSwOp::CleanInvalidate,
                        SwOp::Csw => ModelSwOp::Clean,
                    };
                    self.model.dc_sw(c.pcpu, mop, operand);
                }
            }
            Op::Check => {
                let a = self.access(vm, v);
                let vmr = &mut self.vms[vm];
                let expect: Vec<(u64, u64)> = vmr.vcpus[v].expect.iter().map(|(&k, &x)| (k, x)).collect();
                for (ipa, want) in expect {
                    let got = vmr.mem.read_u64(&mut self.model, a, ipa);
                    vmr.vcpus[v].checked += 1;
                    if got != want {
                        vmr.vcpus[v].lost += 1;
                    }
                }
            }
        }
    }

    /// Step `vm`/`v` until it has executed `pc` ops and is not waiting.
    pub fn run_to(&mut self, vm: usize, v: usize, pc: usize) {
        while self.vms[vm].vcpus[v].pc < pc || self.vms[vm].vcpus[v].waiting {
            self.step(vm, v);
        }
    }

    /// Run every vCPU to the end in a random interleaving; before each step
    /// the stepped vCPU moves to a random pCPU with probability `num/den`.
    pub fn run_random(&mut self, rng: &mut Rng, num: u64, den: u64) {
        let cpus = self.model.cpus() as u64;
        loop {
            let live: Vec<(usize, usize)> = (0..self.vms.len())
                .flat_map(|m| (0..self.vms[m].vcpus.len()).map(move |v| (m, v)))
                .filter(|&(m, v)| !self.done(m, v))
                .collect();
            if live.is_empty() {
                break;
            }
            let (m, v) = live[rng.below(live.len() as u64) as usize];
            if num > 0 && rng.chance(num, den) {
                let p = rng.below(cpus) as usize;
                self.migrate(m, v, p);
            }
            self.step(m, v);
        }
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
}

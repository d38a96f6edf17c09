//! The dispatch with every real component (stage-2 pager, PoD,
//! cache-maintenance service, scheduler) on the cache and TLB models.
//!
//! A [`Machine`] is a few pCPUs that each run whatever vCPU the dispatch
//! loaded there. A vCPU's program counter is its frame's ELR; its ops touch
//! memory through the pCPU's TLB and caches, and whatever a real core
//! would trap on (a stage-2 fault, set/way with HCR.TSW, an SCTLR write
//! with HCR.TVM, HVC) goes to `Hyp::trap` with a syndrome from
//! `trap::encode`, exactly as the kernel's vectors hand it over. Ticks at
//! random points make the real scheduler move vCPUs between pCPUs, through
//! `Hyp::step` as the kernel's run loop does.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cache_maint::{CacheMaint, SwMode, VmConfig};
use cache_model::hw::ModelHw;
use cache_model::rng::Rng;
use cache_model::tlb::{Tlb, Translation, Walked};
use cache_model::{Access, CacheModel, Config, SwOp as ModelSwOp};
use capabilities::{VgicCap, VmCaps};
use dispatch::vm::{Counters, LogLimit, HCR_TSW, HCR_TVM, HCR_TWI};
use dispatch::{AbortKind, Devices, GuestEvent, Hyp, NullOut, Platform, Step, Syndrome, TimerWake, TrapFrame, Vcpu, Vm};
use hwops::{CacheOps, Frames, Scoped, TlbOps};
use pod::{Mode as PodMode, Pod, PodConfig};
use stage2_pager::testing::{self, HostTable};
use stage2_pager::{MemAttrs, Pager};
use trap::{encode, Width};
use trap::hypercall::psci;
use trap::{DataAbort, FaultKind, Trap};
use vcpu_sched::{AnySched, HwdomPin, SchedPolicy, Scheduler, VcpuRef};

const MIB: u64 = 1 << 20;
const RAM_IPA: u64 = 0x4000_0000;
const SCTLR_MC: u64 = 0b101;

/// One guest instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Write SCTLR with M and C both set (true) or both clear (false).
    Sctlr(bool),
    Write { ipa: u64, val: u64 },
    /// Load; the value must be `val`.
    Verify { ipa: u64, val: u64 },
    /// Load and store back one more: run twice, it counts twice, so a vCPU
    /// resumed from a stale copy of its state shows.
    Bump { ipa: u64 },
    /// `DC CISW` with its raw operand.
    Cisw(u32),
    /// PSCI CPU_ON of vCPU `n` at the start of its program.
    CpuOn(u8),
    /// PSCI CPU_OFF: the vCPU's program is done.
    Off,
    /// Arm its timer `after` clock steps from now (`None`: off), then WFI.
    Wfi { after: Option<u64> },
    /// An interrupt is raised for vCPU `n` of its VM (as an SGI through its
    /// vGIC would be): counted in its `ModelDevices`, then `Hyp::kick_vcpus`.
    Kick(u8),
    /// Take one raised interrupt, or, with none raised, go back to the op
    /// before (a WFI): a guest's idle loop.
    TakeIrq,
    /// Record the clock (vCPU, clock) in `Shared::stamps`.
    Stamp,
}

/// The model's interrupt controller: per vCPU, the interrupts raised for
/// it and not taken yet.
#[derive(Default)]
struct ModelDevices {
    raised: [u32; 8],
    out: NullOut,
}

impl Devices for ModelDevices {
    type Out = NullOut;
    fn mmio(&mut self, _: usize, _: u64, _: &trap::Access, _: bool, _: &mut TrapFrame) -> Option<vgic::VcpuSet> {
        None
    }
    fn sync(&mut self, _: usize) {}
    fn flush(&mut self, _: usize) {}
    fn loaded(&mut self, _: usize) {}
    fn pending(&mut self, vcpu: usize) -> bool {
        self.raised[vcpu] > 0
    }
    fn take_rerouted(&mut self) -> vgic::VcpuSet {
        vgic::VcpuSet::EMPTY
    }
    fn out(&mut self) -> &mut NullOut {
        &mut self.out
    }
}

/// A vCPU's registers outside the frame: SCTLR and its timer.
struct Ctx {
    sctlr: u64,
    timer: Option<u64>,
}

/// What every pCPU shares: the caches and memory, the TLBs, and what the
/// dispatch reported.
struct Shared {
    model: Mutex<CacheModel>,
    tlb: Mutex<Tlb>,
    injected: AtomicUsize,
    lines: Mutex<Vec<String>>,
    powered_off: Mutex<Option<bool>>,
    checked: AtomicUsize,
    lost: Mutex<Vec<String>>,
    /// The physical counter: one count per machine step.
    clock: AtomicU64,
    stamps: Mutex<Vec<(VcpuRef, u64)>>,
}

/// `dispatch::Platform` over the models: one pCPU, with its own registers.
struct ModelPlat {
    cur: usize,
    shared: Arc<Shared>,
    sctlr: u64,
    hcr: u64,
    /// The loaded vCPU's timer deadline.
    timer: Option<u64>,
    /// When this pCPU's hypervisor timer fires for a WFI deadline.
    wake_at: u64,
}

/// The models' hardware operations, with the models locked (model, then TLBs).
struct LockedHw<'a> {
    model: MutexGuard<'a, CacheModel>,
    tlb: MutexGuard<'a, Tlb>,
}

impl Frames for LockedHw<'_> {
    fn zero(&mut self, pa: u64, len: u64) {
        ModelHw::new(&mut self.model, &mut self.tlb).zero(pa, len)
    }
    fn is_zero(&self, pa: u64, len: u64) -> bool {
        self.model.is_zero(pa, len)
    }
}

impl CacheOps for LockedHw<'_> {
    fn clean_range(&mut self, pa: u64, len: u64) {
        ModelHw::new(&mut self.model, &mut self.tlb).clean_range(pa, len)
    }
    fn clean_invalidate_range(&mut self, pa: u64, len: u64) {
        ModelHw::new(&mut self.model, &mut self.tlb).clean_invalidate_range(pa, len)
    }
    fn invalidate_icache_all(&mut self) {
        ModelHw::new(&mut self.model, &mut self.tlb).invalidate_icache_all()
    }
}

impl TlbOps for LockedHw<'_> {
    fn invalidate_ipa(&mut self, vmid: u16, ipa: u64) {
        self.tlb.invalidate_ipa(vmid, ipa)
    }
    fn invalidate_vmid(&mut self, vmid: u16) {
        self.tlb.invalidate_vmid(vmid)
    }
}

impl Platform for ModelPlat {
    type Table = HostTable;
    type Hw<'a> = LockedHw<'a>;
    type Ctx = Ctx;
    type Devices = ModelDevices;
    type Out = NullOut;
    type Boot = ();

    fn cpu_id(&self) -> usize {
        self.cur
    }
    fn hw(&mut self, _vttbr: u64, mem: Range<u64>, skip_frame_clean: bool) -> Scoped<LockedHw<'_>> {
        assert!(!skip_frame_clean, "no fault= in the model");
        let mut model = self.shared.model.lock().unwrap();
        // Frames are zeroed through the cache of the pCPU that trapped.
        model.set_hyp_cpu(self.cur);
        Scoped::new(LockedHw { model, tlb: self.shared.tlb.lock().unwrap() }, mem)
    }
    fn sctlr(&self) -> u64 {
        self.sctlr
    }
    fn write_vmreg(&mut self, reg: trap::VmReg, value: u64) {
        if reg.is_sctlr() {
            self.sctlr = value;
        }
    }
    fn inject_abort(&mut self, _frame: &mut TrapFrame, _far: u64, _kind: AbortKind, _aarch32: bool) {
        self.shared.injected.fetch_add(1, Ordering::Relaxed);
    }
    fn timer_wake(&self) -> TimerWake {
        match self.timer {
            Some(t) if t <= self.counter() => TimerWake::Now,
            Some(t) => TimerWake::At(t),
            None => TimerWake::Never,
        }
    }
    fn reset_ctx(&self, _index: usize, _aarch32: bool) -> Ctx {
        Ctx { sctlr: 0, timer: None }
    }
    fn save(&mut self, ctx: &mut Ctx, _devices: bool, _aarch32: bool, _spsr: u64) -> bool {
        ctx.sctlr = self.sctlr;
        ctx.timer = self.timer.take();
        true
    }
    fn load(&mut self, ctx: &mut Ctx, hcr: u64, _cntvoff: u64, _devices: bool, _aarch32: bool, _spsr: u64) -> bool {
        self.sctlr = ctx.sctlr;
        self.timer = ctx.timer;
        self.hcr = hcr;
        true
    }
    fn set_vttbr(&mut self, _vttbr: u64) {}
    fn set_hcr(&mut self, hcr: u64) {
        self.hcr = hcr;
    }
    fn local_guest_flush(&mut self) {}
    fn kick(&mut self, _mask: u16) {}
    fn counter(&self) -> u64 {
        self.shared.clock.load(Ordering::Relaxed)
    }
    fn arm_wake(&mut self, at: u64) {
        self.wake_at = self.wake_at.min(at);
    }
    fn now_s(&self) -> u64 {
        0
    }
    fn log(&mut self, args: std::fmt::Arguments) {
        self.shared.lines.lock().unwrap().push(args.to_string());
    }
    fn guest_event(&mut self, e: GuestEvent) {
        self.shared.lines.lock().unwrap().push(format!("{e:?}"));
    }
    fn summary(&mut self, vm: &Vm<Self>) {
        self.log(format_args!("summary: guest={} cleans={}", vm.name, vm.cm.counters().cleans));
    }
    fn power_off(&mut self, ok: bool) {
        *self.shared.powered_off.lock().unwrap() = Some(ok);
    }
    fn rebuild(&mut self, _vm: Vm<Self>) -> Result<Vm<Self>, &'static str> {
        Err("the model rebuilds no VM")
    }
    fn release_hw(&mut self, _vm: &Vm<Self>) {}
}

/// A guest for [`Machine::new`].
struct Guest {
    /// With an interrupt controller (`ModelDevices`): its WFIs block.
    devices: bool,
    sw: SwMode,
    ram: u64,
    /// 2 MiB-aligned PoD pool (true), or 1 MiB pieces: 4 KiB pages only.
    blocks: bool,
    progs: Vec<Vec<Op>>,
}

/// What a guest access does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Load,
    Store(u64),
    Bump,
}

/// One pCPU as it runs guests: its registers (in `plat`), its live frame,
/// and whether it is in a guest (else in the run loop).
struct Pcpu {
    plat: ModelPlat,
    frame: TrapFrame,
    entered: bool,
}

fn pc(frame: &TrapFrame) -> usize {
    ((frame.elr - RAM_IPA) / 4) as usize
}

fn walked(pager: &Pager<HostTable>, ipa: u64) -> Option<Walked> {
    pager
        .leaf(ipa)
        .filter(|l| l.attrs == MemAttrs::Normal)
        .map(|l| Walked { ipa: l.ipa, pa: l.pa, size: l.size.bytes(), accessed: l.accessed })
}

impl Pcpu {
    fn trap(&mut self, h: &Hyp<ModelPlat>, t: Trap) {
        let (esr, far, hpfar) = encode(&t, Width::Aarch64);
        let p = self.plat.cur;
        if !h.trap(&mut self.plat, p, &mut self.frame, Syndrome { esr, far, hpfar }) {
            self.entered = false;
        }
    }

    /// A load or store through this pCPU's TLB: the value, or `None` when it
    /// trapped (a stage-2 fault; it runs again after the trap, as after an
    /// `eret`). Its VM stays locked from the walk to the access, so no
    /// unmap of the same VM comes between (as a TLBI waits for accesses in
    /// flight).
    fn access(&mut self, h: &Hyp<ModelPlat>, v: VcpuRef, ipa: u64, kind: Kind) -> Option<u64> {
        let p = self.plat.cur;
        let fault = {
            let vm = h.vm(v.vm as usize);
            let vmid = (vm.vttbr() >> 48) as u16;
            let mut model = self.plat.shared.model.lock().unwrap();
            let mut tlb = self.plat.shared.tlb.lock().unwrap();
            let access = if self.plat.sctlr & SCTLR_MC == SCTLR_MC { Access::Cached(p) } else { Access::Uncached };
            match tlb.translate(p, vmid, ipa, &|a| walked(&vm.pager, a)) {
                Translation::Hit { pa } | Translation::Filled { pa } => {
                    return Some(match kind {
                        Kind::Store(val) => {
                            model.store_u64(access, pa, val);
                            val
                        }
                        Kind::Load => model.load_u64(access, pa),
                        Kind::Bump => {
                            let val = model.load_u64(access, pa) + 1;
                            model.store_u64(access, pa, val);
                            val
                        }
                    })
                }
                Translation::AccessFlagFault => FaultKind::AccessFlag(3),
                Translation::TranslationFault => FaultKind::Translation(3),
            }
        };
        let da = DataAbort { ipa, far: ipa, far_valid: true, write: kind != Kind::Load, access: None, fault, s1ptw: false, cache_maint: false, ext_abort: false };
        self.trap(h, Trap::DataAbort(da));
        None
    }

    /// An HVC with `x` in x0..x3; the guest's PC is past it, as on hardware.
    fn hvc(&mut self, h: &Hyp<ModelPlat>, x: [u64; 4]) {
        self.frame.x[..4].copy_from_slice(&x);
        self.frame.elr += 4;
        self.trap(h, Trap::Hvc { imm: 0 });
    }

    /// One step: the run loop if not in a guest, else the vCPU's next op.
    fn step(&mut self, h: &Hyp<ModelPlat>, progs: &[Vec<Vec<Op>>]) {
        let p = self.plat.cur;
        if !self.entered {
            self.entered = h.step(&mut self.plat, p, &mut self.frame) == Step::Enter;
            return;
        }
        let v = h.loaded(p).expect("an entered pCPU has a vCPU");
        let at = pc(&self.frame);
        let op = *progs[v.vm as usize][v.vcpu as usize].get(at).unwrap_or_else(|| panic!("{v:?} ran past its program (an off vCPU woken?)"));
        let hcr = self.plat.hcr;
        match op {
            Op::Write { ipa, val } => {
                if self.access(h, v, ipa, Kind::Store(val)).is_some() {
                    self.frame.elr += 4;
                }
            }
            Op::Bump { ipa } => {
                if self.access(h, v, ipa, Kind::Bump).is_some() {
                    self.frame.elr += 4;
                }
            }
            Op::Verify { ipa, val } => {
                if let Some(got) = self.access(h, v, ipa, Kind::Load) {
                    let shared = &self.plat.shared;
                    shared.checked.fetch_add(1, Ordering::Relaxed);
                    if got != val {
                        shared.lost.lock().unwrap().push(format!("vm {} vcpu {} op {at}: {ipa:#x} read {got:#x}, wrote {val:#x}", v.vm, v.vcpu));
                    }
                    self.frame.elr += 4;
                }
            }
            Op::Sctlr(on) => {
                let old = self.plat.sctlr;
                let value = if on { old | SCTLR_MC } else { old & !SCTLR_MC };
                if hcr & HCR_TVM != 0 {
                    self.frame.x[1] = value;
                    self.trap(h, Trap::VmReg { reg: trap::VmReg::SctlrEl1, rt: 1, rt2: None, write: true });
                } else {
                    self.plat.sctlr = value;
                    self.frame.elr += 4;
                }
            }
            Op::Cisw(operand) => {
                if hcr & HCR_TSW != 0 {
                    self.frame.x[1] = operand.into();
                    self.trap(h, Trap::SetWay { op: trap::SwOp::Cisw, rt: 1 });
                } else {
                    self.plat.shared.model.lock().unwrap().dc_sw(p, ModelSwOp::CleanInvalidate, operand);
                    self.frame.elr += 4;
                }
            }
            Op::CpuOn(n) => {
                self.hvc(h, [psci::CPU_ON_64.into(), n.into(), RAM_IPA, 0]);
                assert_eq!(self.frame.x[0], 0, "CPU_ON of vCPU {n}");
            }
            Op::Off => self.hvc(h, [psci::CPU_OFF.into(), 0, 0, 0]),
            Op::Wfi { after } => {
                self.plat.timer = after.map(|n| self.plat.counter() + n);
                if hcr & HCR_TWI != 0 {
                    // ELR points at the WFI; the dispatch steps past it.
                    self.trap(h, Trap::Wfx { wfe: false, timed: false });
                } else if self.plat.timer.is_some_and(|t| t <= self.plat.counter()) {
                    // Untrapped, it holds the pCPU until its timer fires.
                    self.frame.elr += 4;
                }
            }
            Op::Kick(n) => {
                let mut vm = h.vm(v.vm as usize);
                if let Some(d) = vm.devices.as_mut() {
                    d.raised[n as usize] += 1;
                }
                h.kick_vcpus(&mut self.plat, v.vm, vgic::VcpuSet::from_bits(1 << n));
                drop(vm);
                self.frame.elr += 4;
            }
            Op::TakeIrq => {
                let mut vm = h.vm(v.vm as usize);
                let raised = vm.devices.as_mut().map(|d| &mut d.raised[v.vcpu as usize]);
                match raised {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        self.frame.elr += 4;
                    }
                    _ => self.frame.elr -= 4,
                }
            }
            Op::Stamp => {
                self.plat.shared.stamps.lock().unwrap().push((v, self.plat.counter()));
                self.frame.elr += 4;
            }
        }
    }

    /// This pCPU's hypervisor timer, if its WFI deadline has come: the
    /// dispatch wakes what is due (as the kernel's timer interrupt does).
    fn timer(&mut self, h: &Hyp<ModelPlat>) {
        if self.plat.counter() >= self.plat.wake_at {
            self.plat.wake_at = h.wake_due(&mut self.plat);
            self.entered = false;
        }
    }

    /// A timer tick: the scheduler decides, and the pCPU goes through the
    /// run loop (as `lower_irq` then `leave` do).
    fn tick(&mut self, h: &Hyp<ModelPlat>) {
        self.plat.wake_at = h.wake_due(&mut self.plat);
        let _ = h.core().sched.tick(self.plat.cur);
        self.entered = false;
    }
}

struct Machine {
    h: Hyp<ModelPlat>,
    shared: Arc<Shared>,
    pcpus: Vec<Pcpu>,
    progs: Vec<Vec<Vec<Op>>>,
    /// Guests without emulated devices keep their vGIC's capability here.
    vgic_caps: Vec<VgicCap>,
}

impl Machine {
    fn new(cpus: usize, policy: SchedPolicy, guests: Vec<Guest>) -> Machine {
        Machine::with_reboots(cpus, policy, guests, 0)
    }

    /// [`Machine::new`] where a guest may restart `reboots` times.
    fn with_reboots(cpus: usize, policy: SchedPolicy, guests: Vec<Guest>, reboots: u32) -> Machine {
        let shared = Arc::new(Shared {
            model: Mutex::new(CacheModel::new(Config::small(cpus))),
            tlb: Mutex::new(Tlb::new(cpus, 16)),
            injected: AtomicUsize::new(0),
            lines: Mutex::new(Vec::new()),
            powered_off: Mutex::new(None),
            checked: AtomicUsize::new(0),
            lost: Mutex::new(Vec::new()),
            clock: AtomicU64::new(0),
            stamps: Mutex::new(Vec::new()),
        });
        let pcpus: Vec<Pcpu> = (0..cpus)
            .map(|cur| Pcpu { plat: ModelPlat { cur, shared: shared.clone(), sctlr: 0, hcr: 0, timer: None, wake_at: u64::MAX }, frame: TrapFrame::default(), entered: false })
            .collect();
        let plat = &pcpus[0].plat;
        let mut sched = AnySched::new(policy, cpus, HwdomPin::default()).unwrap();
        let mut vms = Vec::new();
        let mut progs = Vec::new();
        let mut vgic_caps = Vec::new();
        for (i, g) in guests.into_iter().enumerate() {
            let VmCaps { stage2, pod, cache, sched: sched_cap, vgic } = testing::grant();
            let pager = Pager::new(stage2, testing::host_table(), RAM_IPA).unwrap();
            // 2 MiB blocks are filled in 64 KiB steps, in `Hyp::step`.
            let mut pod = Pod::new(pod, PodConfig { fill_slice: 64 << 10, ..PodConfig::new(RAM_IPA, g.ram, PodMode::OnDemand) }).unwrap();
            let base = (i as u64 + 1) << 36;
            let memory = if g.blocks {
                pod.grant(base, g.ram).unwrap();
                base..base + g.ram
            } else {
                for k in 0..g.ram / MIB {
                    pod.grant(base + k * 2 * MIB + MIB / 2, MIB).unwrap();
                }
                base..base + 2 * g.ram
            };
            let n = g.progs.len();
            let cfg = VmConfig { sw: g.sw, slice_bytes: 64 << 10, walk: cache_maint::Walk::Touched, ..VmConfig::new(n as u8) };
            let cm = CacheMaint::new(cache, cfg).unwrap();
            let mut vm = Vm {
                log: LogLimit::default(),
                boot: (),
                memory,
                restarts: 0,
                restart_pending: false,
                name: heapless::String::try_from(format!("g{i}").as_str()).unwrap(),
                pager,
                pod,
                cm,
                vcpus: (0..n).map(|k| Vcpu::new(plat, k, false)).collect(),
                fills: [None; vcpu_sched::MAX_VCPUS_PER_VM],
                counters: Counters::default(),
                exit_ok: None,
                aarch32: false,
                devices: g.devices.then(ModelDevices::default),
                cntvoff: 0,
                faults: bootcfg::Faults::default(),
                hwdom_pinned: None,
                hw_spis: Vec::new(),
            };
            vm.vcpus[0].reset(plat, 0, RAM_IPA, 0, false);
            sched.add_vm(i as u8, sched_cap, n as u8, false).unwrap();
            vgic_caps.push(vgic);
            sched.wake(VcpuRef::new(i as u8, 0)).unwrap();
            vms.push(vm);
            progs.push(g.progs);
        }
        Machine { h: Hyp::new(vms, sched, reboots), shared, pcpus, progs, vgic_caps }
    }

    fn step(&mut self, p: usize) {
        self.shared.clock.fetch_add(1, Ordering::Relaxed);
        self.pcpus[p].timer(&self.h);
        self.pcpus[p].step(&self.h, &self.progs);
    }

    fn all_stopped(&self) -> bool {
        (0..self.h.vm_count()).all(|i| self.h.vm(i).finished())
    }

    /// Step random pCPUs, with a tick 1 time in `tick_every`, until every
    /// VM stopped.
    fn run(&mut self, rng: &mut Rng, tick_every: u64) {
        assert!(self.run_for(rng, tick_every, 20_000_000), "no progress: {:?}", self.shared.lines.lock().unwrap());
    }

    /// [`Machine::run`] for at most `max` steps (`tick_every` 0: no ticks):
    /// whether every VM stopped.
    fn run_for(&mut self, rng: &mut Rng, tick_every: u64, max: u64) -> bool {
        for _ in 0..max {
            if self.all_stopped() {
                return true;
            }
            let p = rng.below(self.pcpus.len() as u64) as usize;
            if tick_every != 0 && rng.chance(1, tick_every) {
                self.pcpus[p].tick(&self.h);
            } else {
                self.step(p);
            }
        }
        self.all_stopped()
    }

    /// Every pCPU a thread of its own, each stepping and ticking at random,
    /// until every VM stopped. A deadlock ends the test process with a
    /// message after 60 s (it cannot unwind threads stuck in a spin lock).
    fn run_threads(&mut self, seed: u64, tick_every: u64) {
        let done = AtomicBool::new(false);
        let (h, progs) = (&self.h, &self.progs);
        std::thread::scope(|s| {
            for (k, pcpu) in self.pcpus.iter_mut().enumerate() {
                let done = &done;
                s.spawn(move || {
                    let mut rng = Rng::new(seed * 31 + k as u64);
                    while !done.load(Ordering::Relaxed) {
                        if rng.chance(1, tick_every) {
                            pcpu.tick(h);
                        } else {
                            pcpu.plat.shared.clock.fetch_add(1, Ordering::Relaxed);
                            pcpu.timer(h);
                            pcpu.step(h, progs);
                        }
                    }
                });
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !(0..h.vm_count()).all(|i| h.vm(i).finished()) {
                if std::time::Instant::now() > deadline {
                    eprintln!("run_threads: the guests did not all stop within 60 s (a deadlock or a lost wake-up)");
                    std::process::exit(1);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            done.store(true, Ordering::Relaxed);
        });
    }

    fn migrations(&self) -> u64 {
        (0..self.h.vm_count()).map(|i| self.h.vm(i).counters.migrations).sum()
    }

    fn lost(&self) -> Vec<String> {
        self.shared.lost.lock().unwrap().clone()
    }

    fn checked(&self) -> usize {
        self.shared.checked.load(Ordering::Relaxed)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Give the VMIDs back, so many cases run in one process.
        let empty = Hyp::new(Vec::new(), AnySched::new(SchedPolicy::Rr, 1, HwdomPin::default()).unwrap(), 0);
        let (vms, mut sched) = std::mem::replace(&mut self.h, empty).into_parts();
        let mut scheds: Vec<_> = sched.take_caps().collect();
        for (vm, vgic) in vms.into_iter().zip(self.vgic_caps.drain(..)) {
            let (stage2, _) = vm.pager.into_parts();
            let mut cm = vm.cm;
            let k = scheds.iter().position(|c| c.vm() == stage2.vm()).unwrap();
            let sched = scheds.swap_remove(k);
            if let Some(cache) = cm.take_cap() {
                testing::revoke(VmCaps { stage2, pod: vm.pod.into_cap(), cache, sched, vgic });
            }
        }
    }
}

/// The ops of a Linux `v7_flush_dcache_all`-shaped set/way loop
/// (`CacheModel::linux_flush_operands`).
fn linux_flush(model: &CacheModel) -> Vec<Op> {
    model.linux_flush_operands(0..model.levels()).into_iter().map(Op::Cisw).collect()
}

/// vCPU `k` of `n`: `rounds` times, caches on, write `words` random words
/// of its own in `ram` bytes, flush by set/way, caches off, read them all
/// back. vCPU 0 first turns the others on.
fn program(rng: &mut Rng, model: &CacheModel, k: usize, n: usize, ram: u64, rounds: usize, words: usize) -> Vec<Op> {
    let mut prog: Vec<Op> = if k == 0 { (1..n).map(|i| Op::CpuOn(i as u8)).collect() } else { Vec::new() };
    // A counter of its own, in the last page, bumped after every write.
    let counter = RAM_IPA + ram - 4096 + k as u64 * 64;
    let mut bumps = 0;
    for _ in 0..rounds {
        prog.push(Op::Sctlr(true));
        let mut written = std::collections::BTreeMap::new();
        for _ in 0..words {
            let ipa = RAM_IPA + rng.below(ram / 64 - 64) * 64 + k as u64 * 8;
            let val = rng.below(u64::MAX) | 1;
            written.insert(ipa, val);
            prog.push(Op::Write { ipa, val });
            prog.push(Op::Bump { ipa: counter });
            bumps += 1;
        }
        written.insert(counter, bumps);
        // Idle a moment (blocked in WFI, its timer armed) and wake a
        // sibling that may be idle too: blocks and wake-ups race with
        // moves and the other pCPUs.
        prog.push(Op::Wfi { after: Some(rng.below(300)) });
        if n > 1 {
            // Each round each vCPU raises one interrupt for the next and
            // waits, with no timer, for the one the previous raises.
            prog.extend([Op::Kick(((k + 1) % n) as u8), Op::Wfi { after: None }, Op::TakeIrq]);
        }
        prog.extend(linux_flush(model));
        prog.push(Op::Sctlr(false));
        prog.extend(written.iter().map(|(&ipa, &val)| Op::Verify { ipa, val }));
    }
    prog.push(Op::Off);
    prog
}

fn guest(rng: &mut Rng, sw: SwMode, vcpus: usize, blocks: bool) -> Guest {
    let model = CacheModel::new(Config::small(1));
    let ram = 8 * MIB;
    let progs = (0..vcpus).map(|k| program(rng, &model, k, vcpus, ram, 2, 24)).collect();
    Guest { devices: true, sw, ram, blocks, progs }
}

/// The property the project exists for, through the real dispatch: vCPUs
/// that the real scheduler moves in the middle of their set/way loops lose
/// no data when set/way is trapped, and do lose it when it is not.
#[test]
fn set_way_loops_across_migrations_lose_nothing_only_when_trapped() {
    let (mut lost_trapped, mut lost_untrapped, mut migrations) = (0, 0, 0);
    for seed in 0..12 {
        for sw in [SwMode::Auto, SwMode::No] {
            let mut rng = Rng::new(seed);
            let guests = vec![guest(&mut rng, sw, 2, seed % 2 == 0), guest(&mut rng, sw, 1, seed % 2 == 1)];
            let expected: usize = guests.iter().flat_map(|g| &g.progs).flatten().filter(|o| matches!(o, Op::Verify { .. })).count();
            let mut m = Machine::new(2, SchedPolicy::Rr, guests);
            m.run(&mut rng, 40);
            assert_eq!(m.checked(), expected, "every vCPU ran its program to the end: {:?}", m.shared.lines.lock().unwrap());
            assert_eq!(m.shared.injected.load(Ordering::Relaxed), 0);
            assert_eq!(*m.shared.powered_off.lock().unwrap(), Some(false), "the last CPU_OFF stops each guest");
            for i in 0..m.h.vm_count() {
                let vm = m.h.vm(i);
                vm.pod.check_invariants(&vm.pager).unwrap();
            }
            let lost = m.lost();
            match sw {
                SwMode::No => lost_untrapped += lost.len(),
                _ => {
                    assert!(lost.is_empty(), "seed {seed}: {} words lost, first {:?}", lost.len(), lost.first());
                    assert!((0..m.h.vm_count()).all(|i| {
                        let c = m.h.vm(i).cm.counters();
                        c.sw_traps > 0 && c.cleans > 0
                    }));
                    lost_trapped += lost.len();
                    migrations += m.migrations();
                }
            }
        }
    }
    assert_eq!(lost_trapped, 0);
    assert!(migrations > 50, "the scheduler moved vCPUs ({migrations} migrations)");
    assert!(lost_untrapped > 0, "without the traps, moved set/way loops lose data (the harness can see it)");
}

/// Per-VM locking: while one pCPU holds VM B (a PoD fault's zeroing, a
/// clean slice), another pCPU's trap of VM A completes.
#[test]
fn a_trap_of_one_vm_does_not_wait_for_another_vm() {
    let mut rng = Rng::new(7);
    let guests = vec![guest(&mut rng, SwMode::Auto, 1, true), guest(&mut rng, SwMode::Auto, 1, true)];
    let mut m = Machine::new(2, SchedPolicy::Pinned, guests);
    // Both pCPUs enter their guest (pinned: VM 0 on pCPU 0, VM 1 on pCPU 1).
    for p in [0, 1, 0, 1] {
        m.step(p);
    }
    assert_eq!(m.h.loaded(0).map(|v| v.vm), Some(0));
    assert_eq!(m.h.loaded(1).map(|v| v.vm), Some(1));
    let (hyp, cpu0) = (&m.h, &mut m.pcpus[0]);
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        // pCPU 1 is inside a long operation of VM 1.
        let busy = hyp.vm(1);
        s.spawn(move || {
            // pCPU 0: PSCI_VERSION from VM 0.
            cpu0.frame.x[0] = psci::VERSION.into();
            cpu0.frame.elr += 4;
            let (esr, far, hpfar) = encode(&Trap::Hvc { imm: 0 }, Width::Aarch64);
            let resumed = hyp.trap(&mut cpu0.plat, 0, &mut cpu0.frame, Syndrome { esr, far, hpfar });
            done.send((resumed, cpu0.frame.x[0])).unwrap();
        });
        let r = wait.recv_timeout(std::time::Duration::from_secs(20));
        drop(busy);
        assert_eq!(r, Ok((true, 0x1_0000)), "the trap of VM 0 waited for VM 1's lock");
    });
}

/// A restart asked for by one vCPU and then cancelled by a stop from
/// another leaves no housekeeping behind (else every run-loop pass of
/// every pCPU would look at every VM forever).
#[test]
fn a_stop_cancels_a_pending_restart_and_its_housekeeping() {
    let mut rng = Rng::new(3);
    let mut m = Machine::with_reboots(2, SchedPolicy::Rr, vec![guest(&mut rng, SwMode::Auto, 2, true)], 5);
    assert_eq!(m.h.housekeeping(), 0);
    let (h, plat) = (&m.h, &mut m.pcpus[0].plat);
    let mut vm = h.vm(0);
    h.request_restart(plat, 0, &mut vm);
    assert!(vm.restart_pending);
    assert_eq!(h.housekeeping(), 1);
    h.finish_vm(plat, 0, &mut vm, true);
    assert!(vm.finished() && !vm.restart_pending);
    drop(vm);
    assert_eq!(h.housekeeping(), 0, "the stop took the restart's count back");
    assert_eq!(*m.shared.powered_off.lock().unwrap(), Some(true));
}

/// The same guests with every pCPU a real thread: the dispatch's locks
/// under true concurrency (traps, faults, clean slices and ticks of
/// several VMs at once). No deadlock, no vCPU run from a stale copy, no
/// data lost.
#[test]
fn pcpus_as_threads_lose_nothing_and_never_deadlock() {
    let (mut migrations, mut blocks, mut fills) = (0, 0, 0);
    for seed in 0..6 {
        let mut rng = Rng::new(100 + seed);
        let guests = vec![guest(&mut rng, SwMode::Auto, 2, true), guest(&mut rng, SwMode::Auto, 2, false), guest(&mut rng, SwMode::Auto, 1, true)];
        let expected: usize = guests.iter().flat_map(|g| &g.progs).flatten().filter(|o| matches!(o, Op::Verify { .. })).count();
        let mut m = Machine::new(3, SchedPolicy::Rr, guests);
        m.run_threads(seed, 30);
        let lost = m.lost();
        assert!(lost.is_empty(), "seed {seed}: {} words lost, first {:?}", lost.len(), lost.first());
        assert_eq!(m.checked(), expected, "every vCPU ran its program to the end: {:?}", m.shared.lines.lock().unwrap());
        for i in 0..m.h.vm_count() {
            let vm = m.h.vm(i);
            vm.pod.check_invariants(&vm.pager).unwrap();
            assert!(vm.cm.counters().cleans > 0);
            blocks += vm.counters.wfi_blocks;
            fills += vm.pod.stats().fill_steps;
        }
        migrations += m.migrations();
    }
    assert!(migrations > 0, "the threads moved no vCPU");
    assert!(blocks > 0, "no vCPU blocked in WFI");
    assert!(fills > 0, "no 2 MiB block was filled in steps");
}

fn one_guest(vcpus: Vec<Vec<Op>>) -> Guest {
    Guest { devices: true, sw: SwMode::Auto, ram: 8 * MIB, blocks: true, progs: vcpus }
}

/// WFI trapping: on one pCPU with no scheduler tick at all, a vCPU that
/// waits for an interrupt gives the pCPU to its sibling, and the
/// sibling's interrupt for it wakes it. (Untrapped, or trapped as a mere
/// yield, the waiting vCPU would hold the pCPU until a tick.)
#[test]
fn an_idle_vcpu_gives_its_pcpu_away_and_an_interrupt_wakes_it() {
    let x = RAM_IPA + 0x1000;
    let mut work = vec![Op::Write { ipa: x, val: 0 }];
    work.extend((0..40).map(|_| Op::Bump { ipa: x }));
    work.extend([Op::Kick(0), Op::Off]);
    let waiter = vec![Op::CpuOn(1), Op::Wfi { after: None }, Op::TakeIrq, Op::Verify { ipa: x, val: 40 }, Op::Off];
    let mut m = Machine::new(1, SchedPolicy::Rr, vec![one_guest(vec![waiter, work])]);
    let done = m.run_for(&mut Rng::new(1), 0, 200_000);
    assert!(done, "with no tick, the waiting vCPU never let its sibling run: {:?}", m.shared.lines.lock().unwrap());
    assert_eq!(m.checked(), 1, "the waiter read its sibling's work after the wake-up");
    assert!(m.lost().is_empty(), "{:?}", m.lost());
    let c = m.h.vm(0).counters;
    assert_eq!((c.wfi, c.wfi_blocks), (1, 1));
}

/// A guest with no interrupt controller could never be woken: its WFI is
/// a yield, never a block.
#[test]
fn a_wfi_without_a_vgic_is_a_yield() {
    let x = RAM_IPA + 0x3000;
    let v0 = vec![Op::CpuOn(1), Op::Write { ipa: x, val: 0 }, Op::Wfi { after: None }, Op::Bump { ipa: x }, Op::Off];
    let v1 = vec![Op::Wfi { after: None }, Op::Bump { ipa: x }, Op::Off];
    let g = Guest { devices: false, ..one_guest(vec![v0, v1]) };
    let mut m = Machine::new(1, SchedPolicy::Rr, vec![g]);
    assert!(m.run_for(&mut Rng::new(4), 0, 200_000), "a WFI with nothing to wake it blocked: {:?}", m.shared.lines.lock().unwrap());
    let c = m.h.vm(0).counters;
    assert_eq!(c.wfi_blocks, 0);
}

/// A vCPU blocked in WFI whose VM stops is off: no record of its wait is
/// left, and an interrupt raised for it afterwards does not start it.
#[test]
fn a_stopped_vms_waiting_vcpu_stays_off() {
    let v0 = vec![Op::CpuOn(1), Op::Wfi { after: Some(1_000_000) }, Op::Off];
    let v1 = vec![Op::Wfi { after: None }, Op::TakeIrq, Op::Off];
    let mut m = Machine::new(2, SchedPolicy::Rr, vec![one_guest(vec![v0, v1])]);
    let mut rng = Rng::new(5);
    let w = VcpuRef::new(0, 1);
    for _ in 0..10_000 {
        if m.h.core().waiting(w) {
            break;
        }
        m.step(rng.below(2) as usize);
    }
    assert!(m.h.core().waiting(w), "vCPU 1 never blocked in its WFI");
    let (h, plat) = (&m.h, &mut m.pcpus[0].plat);
    let mut vm = h.vm(0);
    h.finish_vm(plat, 0, &mut vm, true);
    h.kick_vcpus(plat, 0, vgic::VcpuSet::from_bits(1 << 1));
    drop(vm);
    let core = h.core();
    assert!(!core.waiting(w), "a stopped VM's vCPU still waits");
    assert!(!core.sched.queue().contains(&w) && (0..2).all(|p| core.sched.current(p) != Some(w)), "the interrupt started an off vCPU");
}

/// A WFI with the vCPU's timer armed ends when the timer is due (the
/// hypervisor timer the dispatch arms), not before, and with no tick.
#[test]
fn a_wfi_ends_at_its_timer_and_not_before() {
    let prog = vec![Op::Stamp, Op::Wfi { after: Some(5_000) }, Op::Stamp, Op::Off];
    let mut m = Machine::new(2, SchedPolicy::Rr, vec![one_guest(vec![prog])]);
    assert!(m.run_for(&mut Rng::new(2), 0, 200_000), "the timer never woke it: {:?}", m.shared.lines.lock().unwrap());
    let stamps = m.shared.stamps.lock().unwrap().clone();
    assert_eq!(stamps.len(), 2);
    let (before, after) = (stamps[0].1, stamps[1].1);
    assert!(after >= before + 5_000, "woken early: {before} -> {after}");
    assert!(after < before + 5_000 + 100, "woken late, not by its own deadline: {before} -> {after}");
    assert_eq!(m.h.vm(0).counters.wfi_blocks, 1);
}

/// A WFI whose timer is already due, or with an interrupt it may take,
/// does not block; an interrupt raised for a vCPU that is off (CPU_OFF)
/// does not start it.
#[test]
fn a_due_wfi_goes_on_and_an_off_vcpu_stays_off() {
    let x = RAM_IPA + 0x2000;
    // After the kick of vCPU 1 (off by then), vCPU 0 waits again, leaving
    // the pCPU free for vCPU 1 if the kick had wrongly started it.
    let v0 = vec![
        Op::CpuOn(1),
        Op::Wfi { after: Some(3_000) },
        Op::Kick(1),
        Op::Wfi { after: Some(0) },
        Op::Wfi { after: Some(3_000) },
        Op::Write { ipa: x, val: 5 },
        Op::Verify { ipa: x, val: 5 },
        Op::Off,
    ];
    let v1 = vec![Op::Off];
    let mut m = Machine::new(1, SchedPolicy::Rr, vec![one_guest(vec![v0, v1])]);
    assert!(m.run_for(&mut Rng::new(3), 0, 200_000), "{:?}", m.shared.lines.lock().unwrap());
    assert_eq!(m.checked(), 1);
    let c = m.h.vm(0).counters;
    assert_eq!((c.wfi, c.wfi_blocks), (3, 2), "the due WFI went on at once");
}

//! The hypervisor's state and the run-loop decision that reconciles each
//! pCPU's registers with the scheduler's choice.
//!
//! Handlers only change component state (scheduler, cache-maint, ...). On
//! the way back to a guest, [`Hyp::step`] makes the pCPU's registers match
//! `sched.current(pcpu)`: it saves the vCPU that was loaded, runs any
//! pending clean slice by slice (the platform lets the tick in between
//! slices), and loads the next vCPU. A pCPU with nothing to run idles.
//!
//! ## Locks
//! - Each VM has its own lock ([`Hyp::vm`]): a trap, a PoD fault, a clean
//!   slice or a restart of VM A holds A's lock only, so it never waits for
//!   VM B's.
//! - [`Core`] (the scheduler, which vCPU each pCPU holds, console focus)
//!   is the one global lock. It is held for bookkeeping only, never across
//!   a component's work: a scheduler call or a look at `loaded`.
//! - Each pCPU's [`Local`] state is touched by that pCPU only (atomics,
//!   no lock), except `loaded`, a copy of `Core::loaded` written under
//!   `Core` and read by its own pCPU without it.
//!
//! Order: a VM's lock (at most one at a time), then `Core`. Nothing takes a
//! VM's lock while it holds `Core`. Housekeeping ([`Hyp::run_restarts`])
//! only tries VM locks, so a pCPU never waits there for another VM's work.
//!
//! The trap fast path takes only the trapping VM's lock: it finds its vCPU
//! in `Local::loaded`, and skips `Core` at the end unless the handler
//! called the scheduler on its pCPU (a yield, CPU_OFF; `report_set_way`
//! only changes pins, never what runs). That is sound because a running vCPU `v` of VM
//! `x` stops being current on its pCPU only by that pCPU's own scheduler
//! calls, or by a block under `x`'s lock that also stops or restarts `x`
//! (which the end of the trap checks). It also asks cache-maint for the
//! vCPU's trap bits and its right to run only when the handler made a
//! cache-maint request: both are per vCPU and change only by the vCPU's
//! own requests (a `debug_assert` checks it in host tests).

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use cache_maint::{Request, VcpuId};
use spin::mutex::{SpinMutex, SpinMutexGuard};
use vcpu_sched::{AnySched, BlockKind, Scheduler, VcpuRef};

use crate::frame::TrapFrame;
use crate::platform::{Devices, Out, Platform};
use crate::vm::{Power, Vm, LOG_LINES_PER_S};

pub const MAX_PCPUS: usize = 4;

/// What every pCPU shares and holds only briefly.
pub struct Core {
    pub sched: AnySched,
    /// The vCPU whose state is in each pCPU's registers. An entry naming a
    /// vCPU of VM `x` changes only while VM `x`'s lock is held too, and
    /// always with its copy in `Local` ([`Hyp::set_loaded`]).
    pub(crate) loaded: [Option<VcpuRef>; MAX_PCPUS],
    /// Where console input goes: a guest's index, or the number of VMs for
    /// the hypervisor's own commands.
    pub focus: usize,
    /// CTRL-a bytes typed in a row (three switch the focus).
    pub ctrl_a: u8,
    /// vCPUs blocked in WFI ([`Hyp::wait`]): the physical count at which
    /// their timer ends the wait (`u64::MAX`: only an interrupt does).
    waits: [[Option<u64>; vcpu_sched::MAX_VCPUS_PER_VM]; vcpu_sched::MAX_VMS],
}

impl Core {
    /// `v` is off (stopped, restarting, CPU_OFF): blocked, and no longer
    /// waiting in WFI, so no interrupt wakes it.
    pub(crate) fn off(&mut self, v: VcpuRef) {
        self.waits[v.vm as usize][v.vcpu as usize] = None;
        let _ = self.sched.block(v, BlockKind::Off);
    }

    /// Wake `v` if it waits in WFI: the idle pCPU that may run it now, as
    /// a kick mask bit (0 when none, or when it is `me`).
    fn wake_waiter(&mut self, v: VcpuRef, me: usize) -> u16 {
        let Some(w) = self.waits.get_mut(v.vm as usize).and_then(|w| w.get_mut(v.vcpu as usize)) else { return 0 };
        if w.take().is_none() {
            return 0;
        }
        match self.sched.wake(v) {
            Ok(Some(p)) if p != me => 1 << p,
            _ => 0,
        }
    }

    /// Whether `v` is blocked in WFI.
    pub fn waiting(&self, v: VcpuRef) -> bool {
        self.waits.get(v.vm as usize).and_then(|w| w.get(v.vcpu as usize)).is_some_and(Option::is_some)
    }
}

/// One pCPU's own state.
pub struct Local {
    /// `Core::loaded` of this pCPU ([`pack`]ed).
    loaded: AtomicU32,
    /// The HCR_EL2 value it runs with now.
    hcr_now: AtomicU64,
    /// Whether the vCPU loaded here has emulated devices (a vGIC to sync
    /// and flush), so other guests' traps skip that work.
    devices_now: AtomicBool,
    /// Per VM: the vCPU of that VM that last ran here, [`pack`]ed.
    ran_here: [AtomicU32; vcpu_sched::MAX_VMS],
}

/// The pCPUs other than `me` that hold a vCPU of VM `vmi` (bit n = pCPU n).
fn held_elsewhere(core: &Core, me: usize, vmi: usize) -> u16 {
    core.loaded.iter().enumerate().filter(|(p, l)| *p != me && l.is_some_and(|l| l.vm as usize == vmi)).fold(0, |m, (p, _)| m | 1 << p)
}

/// An optional vCPU as one word (0: none).
fn pack(v: Option<VcpuRef>) -> u32 {
    v.map_or(0, |v| 1 << 16 | u32::from(v.vm) << 8 | u32::from(v.vcpu))
}

fn unpack(w: u32) -> Option<VcpuRef> {
    (w != 0).then(|| VcpuRef::new((w >> 8) as u8, w as u8))
}

/// One VM, locked. Always holds the VM (empty only inside a restart).
pub struct VmGuard<'a, P: Platform>(SpinMutexGuard<'a, Option<Vm<P>>>);

impl<P: Platform> Deref for VmGuard<'_, P> {
    type Target = Vm<P>;
    fn deref(&self) -> &Vm<P> {
        self.0.as_ref().expect("a VM outside its restart")
    }
}

impl<P: Platform> DerefMut for VmGuard<'_, P> {
    fn deref_mut(&mut self) -> &mut Vm<P> {
        self.0.as_mut().expect("a VM outside its restart")
    }
}

pub struct Hyp<P: Platform> {
    vms: Vec<SpinMutex<Option<Vm<P>>>>,
    core: SpinMutex<Core>,
    local: [Local; MAX_PCPUS],
    /// VMs not stopped yet.
    running: AtomicUsize,
    /// No VM stopped with a failure so far.
    all_ok: AtomicBool,
    /// Restarts waiting, and stopped hardware domains whose interrupts
    /// wait to be released: [`Hyp::run_restarts`] looks only when nonzero.
    housekeeping: AtomicUsize,
    /// Restarts a guest may make (`reboots=`) before it is stopped.
    reboots: u32,
}

/// What a pCPU does next, decided by [`Hyp::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Enter the vCPU now in the frame.
    Enter,
    /// Nothing to run: wait for an interrupt.
    Idle,
    /// One slice of a pending clean ran: let the tick in, then step again.
    Slice,
    /// The chosen vCPU is still being saved by another pCPU.
    Wait,
}

#[allow(clippy::declare_interior_mutable_const)]
const LOCAL: Local = Local {
    loaded: AtomicU32::new(0),
    hcr_now: AtomicU64::new(0),
    devices_now: AtomicBool::new(false),
    ran_here: [const { AtomicU32::new(0) }; vcpu_sched::MAX_VMS],
};

impl<P: Platform> Hyp<P> {
    pub fn new(vms: Vec<Vm<P>>, sched: AnySched, reboots: u32) -> Self {
        let n = vms.len();
        Hyp {
            vms: vms.into_iter().map(|vm| SpinMutex::new(Some(vm))).collect(),
            core: SpinMutex::new(Core { sched, loaded: [None; MAX_PCPUS], focus: 0, ctrl_a: 0, waits: [[None; vcpu_sched::MAX_VCPUS_PER_VM]; vcpu_sched::MAX_VMS] }),
            local: [LOCAL; MAX_PCPUS],
            running: AtomicUsize::new(n),
            all_ok: AtomicBool::new(true),
            housekeeping: AtomicUsize::new(0),
            reboots,
        }
    }

    /// The VMs and the scheduler back (host tests give their capabilities back).
    pub fn into_parts(self) -> (Vec<Vm<P>>, AnySched) {
        let vms = self.vms.into_iter().filter_map(|m| m.into_inner()).collect();
        (vms, self.core.into_inner().sched)
    }

    /// Restarts waiting plus stopped hardware domains whose interrupts wait
    /// to be released (0 when there is nothing to do).
    pub fn housekeeping(&self) -> usize {
        self.housekeeping.load(Ordering::Acquire)
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// VM `i`, locked (see the module's lock order).
    pub fn vm(&self, i: usize) -> VmGuard<'_, P> {
        VmGuard(self.vms[i].lock())
    }

    /// VM `i`, locked, unless another pCPU holds it now (housekeeping and
    /// diagnostics never wait for a VM's work).
    pub fn try_vm(&self, i: usize) -> Option<VmGuard<'_, P>> {
        self.vms[i].try_lock().map(VmGuard)
    }

    /// The shared bookkeeping, locked (never take a VM's lock while holding it).
    pub fn core(&self) -> SpinMutexGuard<'_, Core> {
        self.core.lock()
    }

    /// The vCPU whose state is in `pcpu`'s registers.
    pub fn loaded(&self, pcpu: usize) -> Option<VcpuRef> {
        unpack(self.local[pcpu].loaded.load(Ordering::Acquire))
    }

    /// Set `Core::loaded[pcpu]` (with `Core` held) and its copy.
    pub(crate) fn set_loaded(&self, core: &mut Core, pcpu: usize, v: Option<VcpuRef>) {
        core.loaded[pcpu] = v;
        self.local[pcpu].loaded.store(pack(v), Ordering::Release);
    }

    /// Make the pCPUs running any of `set` (vCPUs of VM `vm`) exit, so the
    /// virtual interrupts just raised for them are delivered at once; wake
    /// those of them blocked in WFI. Every injection ends here.
    pub fn kick_vcpus(&self, plat: &mut P, vm: u8, set: vgic::VcpuSet) {
        if set.is_empty() {
            return;
        }
        let me = plat.cpu_id();
        let mut mask = 0u16;
        {
            let mut core = self.core.lock();
            for (p, l) in core.loaded.iter().enumerate() {
                if let Some(l) = l {
                    if p != me && l.vm == vm && set.contains(vgic::VcpuId(l.vcpu)) {
                        mask |= 1 << p;
                    }
                }
            }
            for id in set.iter() {
                mask |= core.wake_waiter(VcpuRef::new(vm, id.0), me);
            }
        }
        if mask != 0 {
            plat.kick(mask);
        }
    }

    /// Block `v` (running on this pCPU, its VM locked) in WFI until an
    /// interrupt is raised for it or the physical count reaches `deadline`.
    pub(crate) fn wait(&self, plat: &mut P, v: VcpuRef, deadline: u64) {
        {
            let mut core = self.core.lock();
            core.waits[v.vm as usize][v.vcpu as usize] = Some(deadline);
            let _ = core.sched.block(v, BlockKind::Wait);
        }
        if deadline != u64::MAX {
            plat.arm_wake(deadline);
        }
    }

    /// Wake the vCPUs blocked in WFI whose timer deadline has passed (on
    /// every hypervisor timer interrupt). Returns the earliest deadline
    /// still waited for (`u64::MAX`: none), for the platform to arm.
    pub fn wake_due(&self, plat: &mut P) -> u64 {
        let now = plat.counter();
        let me = plat.cpu_id();
        let (mut mask, mut next) = (0u16, u64::MAX);
        {
            let mut core = self.core.lock();
            for vm in 0..vcpu_sched::MAX_VMS {
                for vcpu in 0..vcpu_sched::MAX_VCPUS_PER_VM {
                    match core.waits[vm][vcpu] {
                        Some(d) if d <= now => mask |= core.wake_waiter(VcpuRef::new(vm as u8, vcpu as u8), me),
                        Some(d) => next = next.min(d),
                        None => {}
                    }
                }
            }
        }
        if mask != 0 {
            plat.kick(mask);
        }
        next
    }

    /// Stop VM `vmi` (`vm`, locked): every vCPU off, summary printed. Power
    /// off when it was the last one.
    pub fn finish_vm(&self, plat: &mut P, vmi: usize, vm: &mut Vm<P>, ok: bool) {
        if vm.finished() {
            return;
        }
        vm.exit_ok = Some(ok);
        if core::mem::take(&mut vm.restart_pending) {
            // A restart it asked for will not happen now.
            self.housekeeping.fetch_sub(1, Ordering::AcqRel);
        }
        for c in vm.vcpus.iter_mut() {
            c.out.flush();
        }
        if let Some(d) = vm.devices.as_mut() {
            d.out().flush();
        }
        let dropped = vm.log.take_dropped();
        if dropped > 0 {
            plat.log(format_args!("hyp: guest {}: {} log lines suppressed (at most {} a second)", vm.name, dropped, LOG_LINES_PER_S));
        }
        let me = plat.cpu_id();
        let mask = {
            let mut core = self.core.lock();
            for (i, v) in vm.vcpus.iter_mut().enumerate() {
                if v.power == Power::On {
                    v.power = Power::Off;
                    core.off(VcpuRef::new(vmi as u8, i as u8));
                }
            }
            held_elsewhere(&core, me, vmi)
        };
        // pCPUs running its other vCPUs let go of them now.
        if mask != 0 {
            plat.kick(mask);
        }
        plat.summary(vm);
        if !vm.hw_spis.is_empty() {
            // Its interrupts are released once no pCPU holds its vCPUs.
            self.housekeeping.fetch_add(1, Ordering::AcqRel);
        }
        if !ok {
            self.all_ok.store(false, Ordering::Release);
        }
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            plat.log(format_args!("hyp: all guests stopped; powering off"));
            plat.power_off(self.all_ok.load(Ordering::Acquire));
        }
    }

    /// Save the vCPU loaded on `pcpu` (if any) from `frame` and the registers.
    fn save(&self, plat: &mut P, pcpu: usize, frame: &TrapFrame) {
        let Some(o) = self.loaded(pcpu) else { return };
        let mut vm = self.vm(o.vm as usize);
        {
            let mut core = self.core.lock();
            // CPU_ON of this vCPU may have dropped the stale entry meanwhile.
            if core.loaded[pcpu] != Some(o) {
                return;
            }
            self.set_loaded(&mut core, pcpu, None);
        }
        let devices = vm.devices.is_some();
        if let Some(d) = vm.devices.as_mut() {
            // List registers fold back into the vGIC; VMCR/APR stay
            // with the vCPU (in its context).
            d.sync(o.vcpu as usize);
            let moved = d.take_rerouted();
            self.kick_vcpus(plat, o.vm, moved);
        }
        let aarch32 = vm.aarch32;
        let vc = &mut vm.vcpus[o.vcpu as usize];
        vc.frame = *frame;
        // Its timers go with it: a stale one must not fire here.
        // (Restored on another pCPU, an expired timer fires there at once
        // and is injected, so a descheduled vCPU loses no tick.)
        if !plat.save(&mut vc.ctx, devices, aarch32, frame.spsr) {
            plat.log(format_args!("hyp: guest {}: AArch32 SPSR bank sync failed on pCPU {}; stopping it", vm.name, pcpu));
            self.finish_vm(plat, o.vm as usize, &mut vm, false);
        }
    }

    /// PSCI SYSTEM_RESET from VM `vmi` (`vm`, locked): every vCPU stops
    /// now; the VM is rebuilt once no pCPU holds any of them
    /// ([`Hyp::run_restarts`]).
    pub fn request_restart(&self, plat: &mut P, vmi: usize, vm: &mut Vm<P>) {
        if vm.finished() || vm.restart_pending {
            return;
        }
        if vm.restarts >= self.reboots {
            plat.log(format_args!("hyp: guest {}: asked for its restart number {} (reboots={}); stopped", vm.name, vm.restarts + 1, self.reboots));
            return self.finish_vm(plat, vmi, vm, false);
        }
        plat.log(format_args!("hyp: guest {}: restarting", vm.name));
        vm.restart_pending = true;
        if let Some(d) = vm.devices.as_mut() {
            d.out().flush();
        }
        let me = plat.cpu_id();
        let mask = {
            let mut core = self.core.lock();
            for (i, c) in vm.vcpus.iter_mut().enumerate() {
                c.out.flush();
                if c.power == Power::On {
                    c.power = Power::Off;
                    core.off(VcpuRef::new(vmi as u8, i as u8));
                }
            }
            // pCPUs running its other vCPUs exit now and let go of them.
            held_elsewhere(&core, me, vmi)
        };
        self.housekeeping.fetch_add(1, Ordering::AcqRel);
        if mask != 0 {
            plat.kick(mask);
        }
    }

    fn held(&self, vmi: usize) -> bool {
        self.core.lock().loaded.iter().any(|l| l.is_some_and(|l| l.vm as usize == vmi))
    }

    /// Rebuild every VM whose restart waits and whose vCPUs no pCPU holds;
    /// release the interrupts of stopped hardware domains no pCPU holds.
    pub fn run_restarts(&self, plat: &mut P) {
        if self.housekeeping.load(Ordering::Acquire) == 0 {
            return;
        }
        for i in 0..self.vms.len() {
            // A VM busy on another pCPU (a fault, a clean slice, its own
            // rebuild) is not waited for: the count stays up, so a later
            // pass looks again.
            let Some(mut vm) = self.try_vm(i) else { continue };
            let held = self.held(i);
            // A stopped hardware domain: its device interrupts are released
            // once (its list registers are folded back by then).
            if vm.finished() && !vm.hw_spis.is_empty() && !held {
                plat.release_hw(&vm);
                vm.hw_spis.clear();
                self.housekeeping.fetch_sub(1, Ordering::AcqRel);
            }
            if !vm.restart_pending || vm.finished() || held {
                continue;
            }
            {
                // None of its vCPUs may run again before the rebuild.
                let mut core = self.core.lock();
                for k in 0..vm.vcpus.len() {
                    core.off(VcpuRef::new(i as u8, k as u8));
                }
            }
            plat.release_hw(&vm);
            let old = vm.0.take().expect("a VM outside its restart");
            match plat.rebuild(old) {
                Ok(mut new) => {
                    if self.vms.len() > 1 {
                        new.prefix_console();
                    }
                    *vm.0 = Some(new);
                    self.housekeeping.fetch_sub(1, Ordering::AcqRel);
                    let woken = self.core.lock().sched.wake(VcpuRef::new(i as u8, 0));
                    if let Ok(Some(p)) = woken {
                        if p != plat.cpu_id() {
                            plat.kick(1 << p);
                        }
                    }
                }
                Err(e) => {
                    // It was built from the same spec and memory at boot.
                    plat.log(format_args!("hyp: guest{}: restart failed: {}; powering off", i, e));
                    plat.power_off(false);
                    return;
                }
            }
        }
    }

    /// Entry bookkeeping: pending virtual interrupts into the list registers.
    fn on_entry(&self, plat: &mut P, pcpu: usize, v: VcpuRef, vm: &mut Vm<P>) {
        if !self.local[pcpu].devices_now.load(Ordering::Relaxed) {
            return;
        }
        if let Some(d) = vm.devices.as_mut() {
            d.flush(v.vcpu as usize);
            let moved = d.take_rerouted();
            if !moved.is_empty() {
                self.kick_vcpus(plat, v.vm, moved);
            }
        }
    }

    /// Make `v` (of `vm`, locked) the vCPU in this pCPU's registers. False
    /// when its VM had to be stopped on the way (an AArch32 SPSR load that
    /// failed).
    fn load(&self, plat: &mut P, pcpu: usize, v: VcpuRef, vm: &mut Vm<P>, frame: &mut TrapFrame) -> bool {
        let hcr = vm.hcr(v.vcpu as usize);
        let vttbr = vm.vttbr();
        let devices = vm.devices.is_some();
        let (cntvoff, aarch32) = (vm.cntvoff, vm.aarch32);
        let vc = &mut vm.vcpus[v.vcpu as usize];
        let moved = vc.last_pcpu.is_some_and(|p| p != pcpu);
        vc.last_pcpu = Some(pcpu);
        let loaded = plat.load(&mut vc.ctx, hcr, cntvoff, devices, aarch32, vc.frame.spsr);
        *frame = vc.frame;
        if moved {
            vm.counters.migrations += 1;
        }
        if let Some(d) = vm.devices.as_mut() {
            d.loaded(v.vcpu as usize);
        }
        plat.set_vttbr(vttbr);
        let local = &self.local[pcpu];
        local.hcr_now.store(hcr, Ordering::Relaxed);
        local.devices_now.store(devices, Ordering::Relaxed);
        // Another vCPU of this VM ran here last: the TLB and I-cache may
        // hold its stage-1 entries that the guest flushed only locally on
        // the pCPU where this vCPU ran before. Drop them (as KVM does).
        let last = unpack(local.ran_here[v.vm as usize].swap(pack(Some(v)), Ordering::Relaxed));
        if last.is_some_and(|l| l != v) {
            plat.local_guest_flush();
        }
        self.set_loaded(&mut self.core.lock(), pcpu, Some(v));
        if !loaded {
            plat.log(format_args!("hyp: guest {}: AArch32 SPSR load failed on pCPU {}; stopping it", vm.name, pcpu));
            self.finish_vm(plat, v.vm as usize, vm, false);
        }
        loaded
    }

    /// Re-program HCR_EL2 for `v` (loaded here) when its trap bits changed
    /// (after a cache-maint reply).
    fn refresh_hcr(&self, plat: &mut P, pcpu: usize, v: VcpuRef, vm: &Vm<P>) {
        self.set_hcr(plat, pcpu, vm.hcr(v.vcpu as usize));
    }

    /// Program HCR_EL2 = `hcr` on `pcpu` unless it already is.
    fn set_hcr(&self, plat: &mut P, pcpu: usize, hcr: u64) {
        let now = &self.local[pcpu].hcr_now;
        if hcr != now.load(Ordering::Relaxed) {
            plat.set_hcr(hcr);
            now.store(hcr, Ordering::Relaxed);
        }
    }

    /// The common case at the end of a trap of `v` (its VM locked): it may
    /// simply go on. False when [`Hyp::step`] has work to do. `resched`:
    /// the handler called the scheduler, so `v` may no longer be current
    /// (see the module docs for why nothing else can change that). `cm`:
    /// the handler made a cache-maint request for `v`, the only thing that
    /// changes its trap bits or makes it wait for a clean.
    pub(crate) fn resume(&self, plat: &mut P, pcpu: usize, v: VcpuRef, vm: &mut Vm<P>, resched: bool, cm: bool) -> bool {
        if resched && self.core.lock().sched.current(pcpu) != Some(v) {
            return false;
        }
        debug_assert!(
            resched || vm.finished() || vm.restart_pending || self.core.lock().sched.current(pcpu) == Some(v),
            "a running vCPU stopped being current without its pCPU's scheduler call"
        );
        if self.loaded(pcpu) != Some(v) {
            return false;
        }
        if vm.finished() || vm.restart_pending || vm.fills.get(v.vcpu as usize).copied().flatten().is_some() {
            return false;
        }
        debug_assert!(cm || vm.cm.may_run(VcpuId(v.vcpu)).is_ok(), "a vCPU waits for a clean it did not ask for in this trap");
        debug_assert!(cm || vm.hcr(v.vcpu as usize) == self.local[pcpu].hcr_now.load(Ordering::Relaxed), "trap bits changed without a cache-maint request");
        if cm {
            // Its trap bits come with the token that lets it run.
            let Ok(t) = vm.cm.may_run(VcpuId(v.vcpu)) else { return false };
            self.set_hcr(plat, pcpu, vm.hcr_with(t.hcr()));
        }
        self.on_entry(plat, pcpu, v, vm);
        true
    }

    /// One pass of the run loop on `pcpu`: decide what runs here and make
    /// `frame` and the registers match it.
    pub fn step(&self, plat: &mut P, pcpu: usize, frame: &mut TrapFrame) -> Step {
        loop {
            self.run_restarts(plat);
            let (cur, here) = {
                let mut core = self.core.lock();
                let mut cur = core.sched.current(pcpu);
                if cur.is_none() {
                    if let Ok(vcpu_sched::Decision::Run(v)) = core.sched.pick_next(pcpu) {
                        cur = Some(v);
                    }
                }
                (cur, core.loaded[pcpu])
            };
            let Some(v) = cur else {
                // Idle: nothing of a guest may stay live here.
                self.save(plat, pcpu, frame);
                return Step::Idle;
            };
            if here.is_some_and(|o| o != v) {
                self.save(plat, pcpu, frame);
            }
            let mut vm = self.vm(v.vm as usize);
            {
                let mut core = self.core.lock();
                // Blocked or moved since it was chosen: choose again.
                if core.sched.current(pcpu) != Some(v) {
                    continue;
                }
                // A vCPU of a stopped VM, or of one waiting for its
                // restart, does not run.
                if vm.finished() || vm.restart_pending {
                    core.off(v);
                    continue;
                }
                // A vCPU whose live state still sits on another pCPU (that
                // pCPU has not saved it yet) must wait, or it would run from
                // a stale copy.
                if core.loaded.iter().enumerate().any(|(q, l)| q != pcpu && *l == Some(v)) {
                    return Step::Wait;
                }
            }
            let id = VcpuId(v.vcpu);
            if vm.fills[v.vcpu as usize].is_some() {
                // One bounded step of the block its fault waits for; then
                // the tick gets in, unless that was the last.
                match vm.fill_step(plat, v.vcpu as usize) {
                    Ok(true) => {}
                    Ok(false) => return Step::Slice,
                    Err(e) => {
                        plat.log(format_args!("hyp: guest {}: stopped: {} (guest memory could not be populated)", vm.name, e));
                        self.finish_vm(plat, v.vm as usize, &mut vm, false);
                        return Step::Slice;
                    }
                }
            }
            if vm.cm.may_run(id).is_ok() {
                if self.loaded(pcpu) != Some(v) && !self.load(plat, pcpu, v, &mut vm, frame) {
                    // Its VM stopped: choose again.
                    continue;
                }
                self.refresh_hcr(plat, pcpu, v, &vm);
                self.on_entry(plat, pcpu, v, &mut vm);
                return Step::Enter;
            }
            // One bounded slice of the pending clean, then let the tick in
            // before the next.
            if let Err(e) = vm.cache_maint(plat, Request::RunSlice { vcpu: id }) {
                plat.log(format_args!("hyp: guest {}: clean failed: {}", vm.name, e));
                self.finish_vm(plat, v.vm as usize, &mut vm, false);
            }
            return Step::Slice;
        }
    }
}

//! The hypervisor's state and the run-loop decision that reconciles each
//! pCPU's registers with the scheduler's choice.
//!
//! Handlers only change component state (scheduler, cache-maint, ...). On
//! the way back to a guest, [`Hyp::step`] makes the pCPU's registers match
//! `sched.current(pcpu)`: it saves the vCPU that was loaded, runs any
//! pending clean slice by slice (the platform lets the tick in between
//! slices), and loads the next vCPU. A pCPU with nothing to run idles.

use alloc::vec::Vec;

use cache_maint::{Request, VcpuId};
use vcpu_sched::{AnySched, BlockKind, Scheduler, VcpuRef};

use crate::frame::TrapFrame;
use crate::platform::{Devices, Out, Platform};
use crate::vm::{Power, Vm, LOG_LINES_PER_S};

pub const MAX_PCPUS: usize = 4;

pub struct Hyp<P: Platform> {
    /// The arch glue of the pCPU running the dispatch.
    pub plat: P,
    pub vms: Vec<Vm<P>>,
    pub sched: AnySched,
    /// The vCPU whose state is in each pCPU's registers.
    pub loaded: [Option<VcpuRef>; MAX_PCPUS],
    /// The HCR_EL2 value each pCPU runs with now.
    pub hcr_now: [u64; MAX_PCPUS],
    /// Whether the vCPU loaded on each pCPU has emulated devices (a vGIC to
    /// sync and flush), so other guests' traps skip that work.
    pub devices_now: [bool; MAX_PCPUS],
    /// Per pCPU and VM: the vCPU of that VM that last ran there.
    pub ran_here: [[Option<u8>; vcpu_sched::MAX_VMS]; MAX_PCPUS],
    /// Where console input goes: a guest's index, or `vms.len()` for the
    /// hypervisor's own commands.
    pub focus: usize,
    /// CTRL-a bytes typed in a row (three switch the focus).
    pub ctrl_a: u8,
    /// Restarts a guest may make (`reboots=`) before it is stopped.
    pub reboots: u32,
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

impl<P: Platform> Hyp<P> {
    pub fn new(plat: P, vms: Vec<Vm<P>>, sched: AnySched, reboots: u32) -> Self {
        Hyp {
            plat,
            vms,
            sched,
            loaded: [None; MAX_PCPUS],
            hcr_now: [0; MAX_PCPUS],
            devices_now: [false; MAX_PCPUS],
            ran_here: [[None; vcpu_sched::MAX_VMS]; MAX_PCPUS],
            focus: 0,
            ctrl_a: 0,
            reboots,
        }
    }

    /// Make the pCPUs running any of `set` (vCPUs of VM `vm`) exit, so the
    /// virtual interrupts just raised for them are delivered at once.
    pub fn kick_vcpus(&mut self, vm: u8, set: vgic::VcpuSet) {
        if set.is_empty() {
            return;
        }
        let me = self.plat.cpu_id();
        let mut mask = 0u16;
        for (p, l) in self.loaded.iter().enumerate() {
            if let Some(l) = l {
                if p != me && l.vm == vm && set.contains(vgic::VcpuId(l.vcpu)) {
                    mask |= 1 << p;
                }
            }
        }
        if mask != 0 {
            self.plat.kick(mask);
        }
    }

    pub fn vcpu_ref(&self, pcpu: usize) -> Option<VcpuRef> {
        self.loaded[pcpu]
    }

    /// Stop a VM: every vCPU off, summary printed. Power off when it was the
    /// last one.
    pub fn finish_vm(&mut self, vmi: usize, ok: bool) {
        let vm = &mut self.vms[vmi];
        if vm.finished() {
            return;
        }
        vm.exit_ok = Some(ok);
        vm.restart_pending = false;
        for c in vm.vcpus.iter_mut() {
            c.out.flush();
        }
        if let Some(d) = vm.devices.as_mut() {
            d.out().flush();
        }
        let dropped = vm.log.take_dropped();
        if dropped > 0 {
            self.plat.log(format_args!("hyp: guest {}: {} log lines suppressed (at most {} a second)", vm.name, dropped, LOG_LINES_PER_S));
        }
        let vm = &mut self.vms[vmi];
        for (i, v) in vm.vcpus.iter_mut().enumerate() {
            if v.power == Power::On {
                v.power = Power::Off;
                let _ = self.sched.block(VcpuRef::new(vmi as u8, i as u8), BlockKind::Off);
            }
        }
        self.plat.summary(&self.vms[vmi]);
        if self.vms.iter().all(|v| v.finished()) {
            self.plat.log(format_args!("hyp: all guests stopped; powering off"));
            let ok = self.vms.iter().all(|v| v.exit_ok == Some(true));
            self.plat.power_off(ok);
        }
    }

    fn save(&mut self, pcpu: usize, frame: &TrapFrame) {
        if let Some(v) = self.loaded[pcpu].take() {
            let vm = &mut self.vms[v.vm as usize];
            let devices = vm.devices.is_some();
            if let Some(d) = vm.devices.as_mut() {
                // List registers fold back into the vGIC; VMCR/APR stay
                // with the vCPU (in its context).
                d.sync(v.vcpu as usize);
            }
            let vc = &mut vm.vcpus[v.vcpu as usize];
            vc.frame = *frame;
            // Its timers go with it: a stale one must not fire here.
            // (Restored on another pCPU, an expired timer fires there at once
            // and is injected, so a descheduled vCPU loses no tick.)
            let banked = self.plat.save(&mut vc.ctx, devices, vm.aarch32, frame.spsr);
            if !banked {
                self.plat.log(format_args!("hyp: guest {}: AArch32 SPSR bank sync failed on pCPU {}; stopping it", vm.name, pcpu));
                self.finish_vm(v.vm as usize, false);
            }
        }
    }

    /// PSCI SYSTEM_RESET from VM `vmi`: every vCPU stops now; the VM is
    /// rebuilt once no pCPU holds any of them ([`Hyp::run_restarts`]).
    pub fn request_restart(&mut self, vmi: usize) {
        let limit = self.reboots;
        let vm = &mut self.vms[vmi];
        if vm.finished() || vm.restart_pending {
            return;
        }
        if vm.restarts >= limit {
            self.plat.log(format_args!("hyp: guest {}: asked for its restart number {} (reboots={}); stopped", vm.name, vm.restarts + 1, limit));
            return self.finish_vm(vmi, false);
        }
        self.plat.log(format_args!("hyp: guest {}: restarting", vm.name));
        vm.restart_pending = true;
        for (i, c) in vm.vcpus.iter_mut().enumerate() {
            c.out.flush();
            if c.power == Power::On {
                c.power = Power::Off;
                let _ = self.sched.block(VcpuRef::new(vmi as u8, i as u8), BlockKind::Off);
            }
        }
        if let Some(d) = vm.devices.as_mut() {
            d.out().flush();
        }
        // pCPUs running its other vCPUs exit now and let go of them.
        let me = self.plat.cpu_id();
        let mask = self.loaded.iter().enumerate().filter(|(p, l)| *p != me && l.is_some_and(|l| l.vm as usize == vmi)).fold(0u16, |m, (p, _)| m | 1 << p);
        if mask != 0 {
            self.plat.kick(mask);
        }
    }

    fn held(&self, vmi: usize) -> bool {
        self.loaded.iter().any(|l| l.is_some_and(|l| l.vm as usize == vmi))
    }

    /// Rebuild every VM whose restart waits and whose vCPUs no pCPU holds.
    pub fn run_restarts(&mut self) {
        for i in 0..self.vms.len() {
            // A stopped hardware domain no pCPU holds: its device
            // interrupts are released once (its list registers are folded
            // back by then).
            if self.vms[i].finished() && !self.vms[i].hw_spis.is_empty() && !self.held(i) {
                self.plat.release_hw(&self.vms[i]);
                self.vms[i].hw_spis.clear();
            }
            let vm = &self.vms[i];
            if !vm.restart_pending || vm.finished() || self.held(i) {
                continue;
            }
            // None of its vCPUs may run again before the rebuild.
            for k in 0..vm.vcpus.len() {
                let _ = self.sched.block(VcpuRef::new(i as u8, k as u8), BlockKind::Off);
            }
            self.plat.release_hw(&self.vms[i]);
            let old = self.vms.remove(i);
            match self.plat.rebuild(old) {
                Ok(mut new) => {
                    if !self.vms.is_empty() {
                        new.prefix_console();
                    }
                    self.vms.insert(i, new);
                    if let Ok(Some(p)) = self.sched.wake(VcpuRef::new(i as u8, 0)) {
                        if p != self.plat.cpu_id() {
                            self.plat.kick(1 << p);
                        }
                    }
                }
                Err(e) => {
                    // It was built from the same spec and memory at boot.
                    self.plat.log(format_args!("hyp: guest{}: restart failed: {}; powering off", i, e));
                    self.plat.power_off(false);
                    return;
                }
            }
        }
    }

    /// Entry bookkeeping: pending virtual interrupts into the list registers.
    fn on_entry(&mut self, pcpu: usize) {
        if !self.devices_now[pcpu] {
            return;
        }
        if let Some(v) = self.loaded[pcpu] {
            if let Some(d) = self.vms[v.vm as usize].devices.as_mut() {
                d.flush(v.vcpu as usize);
            }
        }
    }

    /// Make `v` the vCPU in this pCPU's registers. False when its VM had to
    /// be stopped on the way (an AArch32 SPSR load that failed).
    fn load(&mut self, pcpu: usize, v: VcpuRef, frame: &mut TrapFrame) -> bool {
        let vm = &mut self.vms[v.vm as usize];
        let hcr = vm.hcr(v.vcpu as usize);
        let vttbr = vm.vttbr();
        let devices = vm.devices.is_some();
        let vc = &mut vm.vcpus[v.vcpu as usize];
        if vc.last_pcpu.is_some_and(|p| p != pcpu) {
            vm.counters.migrations += 1;
        }
        vc.last_pcpu = Some(pcpu);
        let loaded = self.plat.load(&mut vc.ctx, hcr, vm.cntvoff, devices, vm.aarch32, vc.frame.spsr);
        self.hcr_now[pcpu] = hcr;
        *frame = vc.frame;
        if let Some(d) = vm.devices.as_mut() {
            d.loaded(v.vcpu as usize);
        }
        self.devices_now[pcpu] = devices;
        self.plat.set_vttbr(vttbr);
        // Another vCPU of this VM ran here last: the TLB and I-cache may hold
        // its stage-1 entries that the guest flushed only locally on the pCPU
        // where this vCPU ran before. Drop them (as KVM does).
        let last = &mut self.ran_here[pcpu][v.vm as usize];
        if *last != Some(v.vcpu) {
            if last.is_some() {
                self.plat.local_guest_flush();
            }
            *last = Some(v.vcpu);
        }
        self.loaded[pcpu] = Some(v);
        if !loaded {
            self.plat.log(format_args!("hyp: guest {}: AArch32 SPSR load failed on pCPU {}; stopping it", self.vms[v.vm as usize].name, pcpu));
            self.finish_vm(v.vm as usize, false);
        }
        loaded
    }

    /// Re-program HCR_EL2 for the vCPU loaded here when its trap bits
    /// changed (after a cache-maint reply).
    pub fn refresh_hcr(&mut self, pcpu: usize) {
        if let Some(v) = self.loaded[pcpu] {
            let hcr = self.vms[v.vm as usize].hcr(v.vcpu as usize);
            if hcr != self.hcr_now[pcpu] {
                self.plat.set_hcr(hcr);
                self.hcr_now[pcpu] = hcr;
            }
        }
    }

    /// The common case at the end of a trap: the loaded vCPU may simply go
    /// on. False when [`Hyp::step`] has work to do (switch, clean, idle).
    pub fn try_resume(&mut self, pcpu: usize) -> bool {
        let Some(v) = self.loaded[pcpu] else { return false };
        if self.sched.current(pcpu) != Some(v) {
            return false;
        }
        let vm = &self.vms[v.vm as usize];
        if vm.finished() || vm.restart_pending || vm.cm.may_run(VcpuId(v.vcpu)).is_err() {
            return false;
        }
        self.refresh_hcr(pcpu);
        self.on_entry(pcpu);
        true
    }

    /// A vCPU of a stopped VM, or of one waiting for its restart, does not run.
    fn halted(&self, v: VcpuRef) -> bool {
        let vm = &self.vms[v.vm as usize];
        vm.finished() || vm.restart_pending
    }

    /// One pass of the run loop on `pcpu` (with the hypervisor's state
    /// held): decide what runs here and make `frame` and the registers
    /// match it.
    pub fn step(&mut self, pcpu: usize, frame: &mut TrapFrame) -> Step {
        loop {
            self.run_restarts();
            let mut cur = self.sched.current(pcpu);
            if let Some(v) = cur {
                if self.halted(v) {
                    let _ = self.sched.block(v, BlockKind::Off);
                    cur = None;
                }
            }
            if cur.is_none() {
                if let Ok(vcpu_sched::Decision::Run(v)) = self.sched.pick_next(pcpu) {
                    if self.halted(v) {
                        let _ = self.sched.block(v, BlockKind::Off);
                    } else {
                        cur = Some(v);
                    }
                }
            }
            let Some(v) = cur else {
                // Idle: nothing of a guest may stay live here.
                self.save(pcpu, frame);
                return Step::Idle;
            };
            // A vCPU whose live state still sits on another pCPU (that pCPU
            // has not saved it yet) must wait, or it would run from a stale
            // copy.
            if self.loaded.iter().enumerate().any(|(q, l)| q != pcpu && *l == Some(v)) {
                return Step::Wait;
            }
            let id = VcpuId(v.vcpu);
            if self.vms[v.vm as usize].cm.may_run(id).is_ok() {
                if self.loaded[pcpu] != Some(v) {
                    self.save(pcpu, frame);
                    if !self.load(pcpu, v, frame) {
                        // Its VM stopped: choose again.
                        continue;
                    }
                }
                self.refresh_hcr(pcpu);
                self.on_entry(pcpu);
                return Step::Enter;
            }
            // One bounded slice of the pending clean, then let the tick in
            // before the next.
            let vm = &mut self.vms[v.vm as usize];
            if let Err(e) = vm.cache_maint(&mut self.plat, Request::RunSlice { vcpu: id }) {
                self.plat.log(format_args!("hyp: guest {}: clean failed: {}", vm.name, e));
                self.finish_vm(v.vm as usize, false);
            }
            return Step::Slice;
        }
    }
}

//! The hypervisor's shared state and the run loop that reconciles each
//! pCPU's hardware with the scheduler's decision.
//!
//! Handlers only change component state (scheduler, cache-maint, ...). On
//! the way back to a guest, [`leave`] makes the pCPU's registers match
//! `sched.current(pcpu)`: it saves the vCPU that was loaded, runs any
//! pending clean slice by slice (the tick may preempt between slices), and
//! loads the next vCPU. A pCPU with nothing to run waits for its tick.

use alloc::vec::Vec;

use cache_maint::{Request, VcpuId};
use vcpu_sched::{AnySched, BlockKind, Scheduler, VcpuRef};

use crate::arch::{self, el1::El1Regs, sysreg_write, TrapFrame};
use crate::frames::spin_cell::SpinCell;
use crate::irq::Irq;
use crate::vm::{self, Power, Vm};

pub const MAX_PCPUS: usize = 4;

pub struct Hyp {
    pub vms: Vec<Vm>,
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

pub static HYP: SpinCell<Option<Hyp>> = SpinCell::new(None);

/// Each pCPU's interrupt state, used only by that pCPU.
pub static IRQS: [SpinCell<Option<Irq>>; MAX_PCPUS] =
    [SpinCell::new(None), SpinCell::new(None), SpinCell::new(None), SpinCell::new(None)];

impl Hyp {
    /// Make the pCPUs running any of `set` (vCPUs of VM `vm`) exit, so the
    /// virtual interrupts just raised for them are delivered at once.
    pub fn kick_vcpus(&self, vm: u8, set: vgic::VcpuSet) {
        if set.is_empty() {
            return;
        }
        let me = arch::cpu_id();
        let mut mask = 0u16;
        for (p, l) in self.loaded.iter().enumerate() {
            if let Some(l) = l {
                if p != me && l.vm == vm && set.contains(vgic::VcpuId(l.vcpu)) {
                    mask |= 1 << p;
                }
            }
        }
        kick_pcpus(mask);
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
            d.out.flush();
        }
        let dropped = vm.log.take_dropped();
        if dropped > 0 {
            crate::kprintln!("hyp: guest {}: {} log lines suppressed (at most {} a second)", vm.name, dropped, vm::LOG_LINES_PER_S);
        }
        for (i, v) in vm.vcpus.iter_mut().enumerate() {
            if v.power == Power::On {
                v.power = Power::Off;
                let _ = self.sched.block(VcpuRef::new(vmi as u8, i as u8), BlockKind::Off);
            }
        }
        vm::print_summary(&self.vms[vmi]);
        if self.vms.iter().all(|v| v.finished()) {
            crate::kprintln!("hyp: all guests stopped; powering off");
            crate::power::power_off(self.vms.iter().all(|v| v.exit_ok == Some(true)));
        }
    }

    fn save(&mut self, pcpu: usize, frame: &TrapFrame) {
        if let Some(v) = self.loaded[pcpu].take() {
            let vm = &mut self.vms[v.vm as usize];
            if let Some(d) = vm.devices.as_mut() {
                // List registers fold back into the vGIC; VMCR/APR stay
                // with the vCPU.
                d.sync(v.vcpu as usize);
                let (vmcr, apr) = crate::gich::save_cpu_if();
                let vc = &mut vm.vcpus[v.vcpu as usize];
                vc.vmcr = vmcr;
                vc.apr = apr;
            }
            // AArch32: the live SPSR of the mode it trapped from into its
            // bank first, or QEMU would hand it to the next vCPU here.
            let banked = !vm.aarch32 || arch::spsr32::bank_live(frame.spsr);
            let vc = &mut vm.vcpus[v.vcpu as usize];
            vc.frame = *frame;
            vc.el1 = El1Regs::save();
            vc.fp.save();
            // Its timers go with it: a stale one must not fire here.
            // (Restored on another pCPU, an expired timer fires there at once
            // and is injected, so a descheduled vCPU loses no tick.)
            sysreg_write!("cntv_ctl_el0", 0);
            sysreg_write!("cntp_ctl_el0", 0);
            if !banked {
                crate::kprintln!("hyp: guest {}: AArch32 SPSR bank sync failed on pCPU {}; stopping it", self.vms[v.vm as usize].name, pcpu);
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
            crate::kprintln!("hyp: guest {}: asked for its restart number {} (reboots={}); stopped", vm.name, vm.restarts + 1, limit);
            return self.finish_vm(vmi, false);
        }
        crate::kprintln!("hyp: guest {}: restarting", vm.name);
        vm.restart_pending = true;
        for (i, c) in vm.vcpus.iter_mut().enumerate() {
            c.out.flush();
            if c.power == Power::On {
                c.power = Power::Off;
                let _ = self.sched.block(VcpuRef::new(vmi as u8, i as u8), BlockKind::Off);
            }
        }
        if let Some(d) = vm.devices.as_mut() {
            d.out.flush();
        }
        // pCPUs running its other vCPUs exit now and let go of them.
        let me = arch::cpu_id();
        let mask = self.loaded.iter().enumerate().filter(|(p, l)| *p != me && l.is_some_and(|l| l.vm as usize == vmi)).fold(0u16, |m, (p, _)| m | 1 << p);
        kick_pcpus(mask);
    }

    /// Rebuild every VM whose restart waits and whose vCPUs no pCPU holds.
    fn run_restarts(&mut self) {
        for i in 0..self.vms.len() {
            // A stopped hardware domain no pCPU holds: its device
            // interrupts are released once (its list registers are folded
            // back by then).
            let held = self.loaded.iter().any(|l| l.is_some_and(|l| l.vm as usize == i));
            if self.vms[i].finished() && !self.vms[i].hw_spis.is_empty() && !held {
                self.release_hw(i);
                self.vms[i].hw_spis.clear();
            }
            let vm = &self.vms[i];
            if !vm.restart_pending || vm.finished() || self.loaded.iter().any(|l| l.is_some_and(|l| l.vm as usize == i)) {
                continue;
            }
            // None of its vCPUs may run again before the rebuild.
            for k in 0..vm.vcpus.len() {
                let _ = self.sched.block(VcpuRef::new(i as u8, k as u8), BlockKind::Off);
            }
            self.release_hw(i);
            let old = self.vms.remove(i);
            match vm::restart(old) {
                Ok(mut new) => {
                    if !self.vms.is_empty() {
                        new.prefix_console();
                    }
                    self.vms.insert(i, new);
                    if let Ok(Some(p)) = self.sched.wake(VcpuRef::new(i as u8, 0)) {
                        if p != arch::cpu_id() {
                            kick_pcpus(1 << p);
                        }
                    }
                }
                Err(e) => {
                    // It was built from the same spec and memory at boot.
                    crate::kprintln!("hyp: guest{}: restart failed: {}; powering off", i, e);
                    crate::power::power_off(false);
                }
            }
        }
    }

    /// Hand what was typed at the console to the guest with the focus
    /// (its emulated UART). CTRL-a three times in a row moves the focus to
    /// the next running guest instead.
    pub fn route_input(&mut self, pcpu: usize) {
        let mut typed: heapless::Vec<u8, 256> = heapless::Vec::new();
        {
            let mut q = crate::console::INPUT.lock();
            while let Some(b) = q.pop_front() {
                let _ = typed.push(b);
            }
        }
        let mut out: heapless::Vec<u8, 256> = heapless::Vec::new();
        for b in typed {
            if b == 0x01 {
                self.ctrl_a += 1;
                if self.ctrl_a == 3 {
                    self.ctrl_a = 0;
                    self.deliver(pcpu, &out);
                    out.clear();
                    self.next_focus();
                }
                continue;
            }
            for _ in 0..core::mem::take(&mut self.ctrl_a) {
                let _ = out.push(0x01);
            }
            let _ = out.push(b);
        }
        self.deliver(pcpu, &out);
    }

    fn deliver(&mut self, pcpu: usize, bytes: &[u8]) {
        let f = self.focus;
        if f == self.vms.len() {
            for &b in bytes {
                self.command(b);
            }
            return;
        }
        let here = self.loaded[pcpu].filter(|v| v.vm as usize == f).map(|v| v.vcpu as usize);
        let Some(vm) = self.vms.get_mut(f) else { return };
        if bytes.is_empty() || vm.finished() {
            return;
        }
        if let Some(d) = vm.devices.as_mut() {
            let kick = d.feed(bytes, here);
            self.kick_vcpus(f as u8, kick);
        }
    }

    /// The next running guest, or the hypervisor after the last guest.
    fn next_focus(&mut self) {
        let n = self.vms.len();
        for k in 1..=n + 1 {
            let i = (self.focus + k) % (n + 1);
            if i == n || !self.vms[i].finished() {
                self.focus = i;
                break;
            }
        }
        if self.focus == n {
            crate::kprintln!("hyp: console input goes to the hypervisor (l: list guests, c: counters, h: help)");
        } else {
            crate::kprintln!("hyp: console input goes to guest {}", self.vms[self.focus].name);
        }
    }

    /// One key typed to the hypervisor.
    fn command(&mut self, key: u8) {
        match key {
            b'l' => {
                for (i, vm) in self.vms.iter().enumerate() {
                    let state = match vm.exit_ok {
                        None => "running",
                        Some(true) => "stopped (ok)",
                        Some(false) => "stopped (fail)",
                    };
                    crate::kprintln!(
                        "hyp: guest{} {}: {}, {} vCPUs, {} MiB RAM, {} MiB populated, {}",
                        i,
                        vm.name,
                        state,
                        vm.vcpus.len(),
                        vm.pod.config().ram_size >> 20,
                        vm.pod.stats().populated_bytes() >> 20,
                        if vm.aarch32 { "AArch32" } else { "AArch64" }
                    );
                }
            }
            b'c' => {
                for vm in self.vms.iter() {
                    let (c, cm, pod) = (&vm.counters, vm.cm.counters(), vm.pod.stats());
                    crate::kprintln!(
                        "hyp: guest {} counters: sw_traps={} tvm_traps={} stage2_faults={} populated_bytes={} cleaned_bytes={} cleans={} migrations={} mmio={} irq_exits={}",
                        vm.name,
                        cm.sw_traps,
                        cm.tvm_traps,
                        c.stage2_faults,
                        pod.populated_bytes(),
                        cm.cleaned_bytes,
                        cm.cleans,
                        c.migrations,
                        c.mmio,
                        c.irq_exits
                    );
                }
            }
            b'h' | b'?' => crate::kprintln!("hyp: keys: l list guests, c counters, h help; CTRL-a three times: next guest"),
            _ => {}
        }
    }

    /// A hardware domain's SPI was taken here (priority dropped, still
    /// active): make it pending in its vGIC as a hardware interrupt, whose
    /// EOI by the guest deactivates it. While its hardware domain restarts
    /// it is only deactivated (the line stays on for the rebuilt VM); with
    /// none to take it (stopped, or nobody's) it is disabled and deactivated.
    pub fn hw_irq(&mut self, pcpu: usize, intid: u32) {
        let owner = self.vms.iter().position(|vm| vm.hw_spis.contains(&intid));
        let Some(vmi) = owner.filter(|&i| !self.vms[i].finished() && !self.vms[i].restart_pending) else {
            // Restarting: the line stays on for the rebuilt VM. Stopped for
            // good (or nobody's): it is switched off.
            let restarting = owner.is_some_and(|i| self.vms[i].restart_pending && !self.vms[i].finished());
            if restarting {
                crate::irq::deactivate(intid);
            } else {
                drop_hw(pcpu, intid);
            }
            return;
        };
        let here = self.loaded[pcpu].filter(|v| v.vm as usize == vmi).map(|v| v.vcpu as usize);
        let Some(d) = self.vms[vmi].devices.as_mut() else { return };
        if let Some(v) = here {
            d.sync(v);
        }
        match d.vgic.hw_fire(intid) {
            Ok(Some(v)) => self.kick_vcpus(vmi as u8, vgic::VcpuSet::from_bits(1 << v.0)),
            Ok(None) => {}
            Err(_) => drop_hw(pcpu, intid),
        }
    }

    /// A hardware domain that stops or restarts: every device interrupt of
    /// it still active in the GIC is deactivated (nothing would ever EOI it).
    pub fn release_hw(&mut self, vmi: usize) {
        let pcpu = arch::cpu_id();
        if self.vms[vmi].hw_spis.is_empty() {
            return;
        }
        let Some(d) = self.vms[vmi].devices.as_ref() else { return };
        let stopping = self.vms[vmi].finished();
        if stopping {
            // Stopped for good: its lines are switched off first, so none
            // fires again while the outstanding ones are deactivated.
            if let Some(irq) = IRQS[pcpu].lock().as_mut() {
                for &intid in self.vms[vmi].hw_spis.iter() {
                    irq.disable(intid);
                }
            }
        }
        for intid in d.vgic.hw_outstanding().iter() {
            crate::irq::deactivate(intid);
        }
    }

    /// The physical interrupts that belong to the guest running here.
    pub fn virtual_irqs(&mut self, pcpu: usize, ev: crate::irq::Events) {
        let Some(v) = self.loaded[pcpu] else { return };
        if let Some(d) = self.vms[v.vm as usize].devices.as_mut() {
            d.sync(v.vcpu as usize);
            if ev.vtimer {
                let _ = d.vgic.inject(vgic::VcpuId(v.vcpu), crate::irq::VIRT_TIMER_INTID);
            }
            if ev.ptimer {
                let _ = d.vgic.inject(vgic::VcpuId(v.vcpu), crate::irq::PHYS_TIMER_INTID);
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
        let vc = &mut vm.vcpus[v.vcpu as usize];
        if vc.last_pcpu.is_some_and(|p| p != pcpu) {
            vm.counters.migrations += 1;
        }
        vc.last_pcpu = Some(pcpu);
        vc.el1.hcr = hcr;
        // The virtual counter offset first, then the timer compared with it.
        sysreg_write!("cntvoff_el2", vm.cntvoff);
        vc.el1.restore();
        // AArch32: the banked SPSR of the mode it resumes in becomes live.
        let loaded = !vm.aarch32 || arch::spsr32::load_live(vc.frame.spsr);
        self.hcr_now[pcpu] = hcr;
        vc.fp.restore();
        *frame = vc.frame;
        if let Some(d) = vm.devices.as_mut() {
            crate::gich::restore_cpu_if(vc.vmcr, vc.apr);
            d.loaded(v.vcpu as usize);
        }
        self.devices_now[pcpu] = vm.devices.is_some();
        sysreg_write!("vttbr_el2", vttbr);
        arch::isb();
        // Another vCPU of this VM ran here last: the TLB and I-cache may hold
        // its stage-1 entries that the guest flushed only locally on the pCPU
        // where this vCPU ran before. Drop them (as KVM does).
        let last = &mut self.ran_here[pcpu][v.vm as usize];
        if *last != Some(v.vcpu) {
            if last.is_some() {
                arch::local_guest_flush();
            }
            *last = Some(v.vcpu);
        }
        self.loaded[pcpu] = Some(v);
        if !loaded {
            crate::kprintln!("hyp: guest {}: AArch32 SPSR load failed on pCPU {}; stopping it", self.vms[v.vm as usize].name, pcpu);
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
                sysreg_write!("hcr_el2", hcr);
                arch::isb();
                self.hcr_now[pcpu] = hcr;
            }
        }
    }

    /// The common case at the end of a trap: the loaded vCPU may simply go
    /// on. False when `leave` has work to do (switch, clean, idle).
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
}

/// What `leave` found to do in one pass under the lock.
enum Step {
    Enter,
    Idle,
    Slice,
    /// The chosen vCPU is still being saved by another pCPU.
    Wait,
}

/// Make this pCPU run what the scheduler chose, then return (to eret).
/// Called at the end of every trap, and by a pCPU entering its first guest.
pub fn leave(pcpu: usize, frame: &mut TrapFrame) {
    loop {
        let step = {
            let mut g = HYP.lock();
            let h = g.as_mut().expect("hypervisor state");
            h.run_restarts();
            let mut cur = h.sched.current(pcpu);
            // A vCPU of a stopped VM, or of one waiting for its restart,
            // does not run.
            let halted = |h: &Hyp, v: VcpuRef| h.vms[v.vm as usize].finished() || h.vms[v.vm as usize].restart_pending;
            if let Some(v) = cur {
                if halted(h, v) {
                    let _ = h.sched.block(v, BlockKind::Off);
                    cur = None;
                }
            }
            if cur.is_none() {
                if let Ok(vcpu_sched::Decision::Run(v)) = h.sched.pick_next(pcpu) {
                    if halted(h, v) {
                        let _ = h.sched.block(v, BlockKind::Off);
                    } else {
                        cur = Some(v);
                    }
                }
            }
            // A vCPU whose live state still sits on another pCPU (that pCPU
            // has not saved it yet) must wait, or it would run from a stale
            // copy.
            let elsewhere = |v: VcpuRef| h.loaded.iter().enumerate().any(|(q, l)| q != pcpu && *l == Some(v));
            match cur {
                Some(v) if elsewhere(v) => Step::Wait,
                None => {
                    // Idle: nothing of a guest may stay live here.
                    h.save(pcpu, frame);
                    Step::Idle
                }
                Some(v) => {
                    let vm = &mut h.vms[v.vm as usize];
                    let id = VcpuId(v.vcpu);
                    if vm.cm.may_run(id).is_ok() {
                        if h.loaded[pcpu] != Some(v) {
                            h.save(pcpu, frame);
                            if !h.load(pcpu, v, frame) {
                                // Its VM stopped: choose again.
                                continue;
                            }
                        }
                        h.refresh_hcr(pcpu);
                        h.on_entry(pcpu);
                        Step::Enter
                    } else {
                        // One bounded slice of the pending clean, then let
                        // the tick in before the next.
                        match vm.cache_maint(Request::RunSlice { vcpu: id }) {
                            Ok(_) => {}
                            Err(e) => {
                                crate::kprintln!("hyp: guest {}: clean failed: {}", vm.name, e);
                                let vmi = v.vm as usize;
                                h.finish_vm(vmi, false);
                            }
                        }
                        Step::Slice
                    }
                }
            }
        };
        // No lock is held here: the console may take its time.
        crate::console::drain();
        match step {
            Step::Enter => return,
            Step::Slice => poll_tick(pcpu),
            Step::Wait => {
                core::hint::spin_loop();
                poll_tick(pcpu);
            }
            Step::Idle => {
                arch::wfi();
                poll_tick(pcpu);
            }
        }
    }
}

/// A hardware domain's SPI taken on `pcpu` that nobody will take: off and
/// deactivated.
fn drop_hw(pcpu: usize, intid: u32) {
    if let Some(irq) = IRQS[pcpu].lock().as_mut() {
        irq.drop_hw(intid);
    }
}

/// Make the pCPUs in `mask` (bit n = pCPU n) exit their guests, through
/// this pCPU's GIC.
pub fn kick_pcpus(mask: u16) {
    if let Some(irq) = IRQS[arch::cpu_id()].lock().as_mut() {
        irq.kick(mask);
    }
}

/// Take this pCPU's pending interrupts; on a tick, let the scheduler decide.
pub fn poll_tick(pcpu: usize) {
    let ev = IRQS[pcpu].lock().as_mut().map(|i| i.handle()).unwrap_or_default();
    if ev.tick || ev.vtimer || ev.ptimer || ev.maint || ev.kick || ev.input || ev.hw_n > 0 {
        let mut g = HYP.lock();
        if let Some(h) = g.as_mut() {
            for &intid in &ev.hw[..ev.hw_n] {
                h.hw_irq(pcpu, u32::from(intid));
            }
            if ev.input {
                h.route_input(pcpu);
            }
            if ev.vtimer || ev.ptimer || ev.maint || ev.kick {
                h.virtual_irqs(pcpu, ev);
            }
            if ev.tick {
                let _ = h.sched.tick(pcpu);
            }
        }
    }
}

//! The kernel's run loop around `dispatch`: the hypervisor lock, each
//! pCPU's interrupts, and what comes from them (ticks, device interrupts,
//! console input).
//!
//! [`leave`] runs at the end of every trap: under the lock,
//! `dispatch::Hyp::step` makes the pCPU's registers match the scheduler's
//! choice; outside it, the console drains, and the tick may preempt
//! between the slices of a pending clean. A pCPU with nothing to run waits
//! for an interrupt.

pub use dispatch::MAX_PCPUS;
use dispatch::Step;
use vcpu_sched::Scheduler;

use crate::arch::{self, TrapFrame};
use crate::frames::spin_cell::SpinCell;
use crate::irq::{drop_hw, IRQS};
use crate::pcpu::Kernel;

pub type Hyp = dispatch::Hyp<Kernel>;

pub static HYP: SpinCell<Option<Hyp>> = SpinCell::new(None);

/// Make this pCPU run what the scheduler chose, then return (to eret).
/// Called at the end of every trap, and by a pCPU entering its first guest.
pub fn leave(pcpu: usize, frame: &mut TrapFrame) {
    loop {
        let step = HYP.lock().as_mut().expect("hypervisor state").step(pcpu, frame);
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

/// Hand what was typed at the console to the guest with the focus
/// (its emulated UART). CTRL-a three times in a row moves the focus to
/// the next running guest instead.
pub fn route_input(h: &mut Hyp, pcpu: usize) {
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
            h.ctrl_a += 1;
            if h.ctrl_a == 3 {
                h.ctrl_a = 0;
                deliver(h, pcpu, &out);
                out.clear();
                next_focus(h);
            }
            continue;
        }
        for _ in 0..core::mem::take(&mut h.ctrl_a) {
            let _ = out.push(0x01);
        }
        let _ = out.push(b);
    }
    deliver(h, pcpu, &out);
}

fn deliver(h: &mut Hyp, pcpu: usize, bytes: &[u8]) {
    let f = h.focus;
    if f == h.vms.len() {
        for &b in bytes {
            command(h, b);
        }
        return;
    }
    let here = h.loaded[pcpu].filter(|v| v.vm as usize == f).map(|v| v.vcpu as usize);
    let Some(vm) = h.vms.get_mut(f) else { return };
    if bytes.is_empty() || vm.finished() {
        return;
    }
    if let Some(d) = vm.devices.as_mut() {
        let kick = d.feed(bytes, here);
        h.kick_vcpus(f as u8, kick);
    }
}

/// The next running guest, or the hypervisor after the last guest.
fn next_focus(h: &mut Hyp) {
    let n = h.vms.len();
    for k in 1..=n + 1 {
        let i = (h.focus + k) % (n + 1);
        if i == n || !h.vms[i].finished() {
            h.focus = i;
            break;
        }
    }
    if h.focus == n {
        crate::kprintln!("hyp: console input goes to the hypervisor (l: list guests, c: counters, h: help)");
    } else {
        crate::kprintln!("hyp: console input goes to guest {}", h.vms[h.focus].name);
    }
}

/// One key typed to the hypervisor.
fn command(h: &mut Hyp, key: u8) {
    match key {
        b'l' => {
            for (i, vm) in h.vms.iter().enumerate() {
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
            for vm in h.vms.iter() {
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
pub fn hw_irq(h: &mut Hyp, pcpu: usize, intid: u32) {
    let owner = h.vms.iter().position(|vm| vm.hw_spis.contains(&intid));
    let Some(vmi) = owner.filter(|&i| !h.vms[i].finished() && !h.vms[i].restart_pending) else {
        // Restarting: the line stays on for the rebuilt VM. Stopped for
        // good (or nobody's): it is switched off.
        let restarting = owner.is_some_and(|i| h.vms[i].restart_pending && !h.vms[i].finished());
        if restarting {
            crate::irq::deactivate(intid);
        } else {
            drop_hw(pcpu, intid);
        }
        return;
    };
    let here = h.loaded[pcpu].filter(|v| v.vm as usize == vmi).map(|v| v.vcpu as usize);
    let Some(d) = h.vms[vmi].devices.as_mut() else { return };
    if let Some(v) = here {
        d.sync(v);
    }
    match d.vgic.hw_fire(intid) {
        Ok(Some(v)) => h.kick_vcpus(vmi as u8, vgic::VcpuSet::from_bits(1 << v.0)),
        Ok(None) => {}
        Err(_) => drop_hw(pcpu, intid),
    }
}

/// The physical interrupts that belong to the guest running here.
pub fn virtual_irqs(h: &mut Hyp, pcpu: usize, ev: crate::irq::Events) {
    let Some(v) = h.loaded[pcpu] else { return };
    if let Some(d) = h.vms[v.vm as usize].devices.as_mut() {
        d.sync(v.vcpu as usize);
        if ev.vtimer {
            let _ = d.vgic.inject(vgic::VcpuId(v.vcpu), crate::irq::VIRT_TIMER_INTID);
        }
        if ev.ptimer {
            let _ = d.vgic.inject(vgic::VcpuId(v.vcpu), crate::irq::PHYS_TIMER_INTID);
        }
    }
}

/// Take this pCPU's pending interrupts; on a tick, let the scheduler decide.
pub fn poll_tick(pcpu: usize) {
    let ev = IRQS[pcpu].lock().as_mut().map(|i| i.handle()).unwrap_or_default();
    if ev.tick || ev.vtimer || ev.ptimer || ev.maint || ev.kick || ev.input || ev.hw_n > 0 {
        let mut g = HYP.lock();
        if let Some(h) = g.as_mut() {
            for &intid in &ev.hw[..ev.hw_n] {
                hw_irq(h, pcpu, u32::from(intid));
            }
            if ev.input {
                route_input(h, pcpu);
            }
            if ev.vtimer || ev.ptimer || ev.maint || ev.kick {
                virtual_irqs(h, pcpu, ev);
            }
            if ev.tick {
                let _ = h.sched.tick(pcpu);
            }
        }
    }
}

//! The kernel's run loop around `dispatch`: the shared hypervisor state,
//! each pCPU's interrupts, and what comes from them (ticks, device
//! interrupts, console input).
//!
//! [`leave`] runs at the end of every trap: `dispatch::Hyp::step` makes the
//! pCPU's registers match the scheduler's choice; between steps the console
//! drains and the tick may preempt the slices of a pending clean. A pCPU
//! with nothing to run waits for an interrupt. `dispatch::Hyp` takes its
//! own locks: one per VM, and a short global one for the scheduler (see
//! `kernel/dispatch/src/hyp.rs`). No lock is held across `leave`'s waits.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use dispatch::MAX_PCPUS;
use dispatch::Step;
use vcpu_sched::Scheduler;

use crate::arch::{self, TrapFrame};
use crate::irq::{drop_hw, IRQS};
use crate::pcpu::Kernel;

pub type Hyp = dispatch::Hyp<Kernel>;

/// Set once, before any pCPU enters a guest.
pub static HYP: spin::Once<Hyp> = spin::Once::new();

/// `trace=`: print every guest's counters this often (ms; 0: never), on
/// pCPU 0's tick; and when the last one went out.
pub static TRACE_MS: AtomicU64 = AtomicU64::new(0);
static TRACE_LAST: AtomicU64 = AtomicU64::new(0);

/// One `trace:` line per guest (cumulative counters), for `cargo xtask run
/// --trace` and `cargo xtask plot`.
fn trace(h: &Hyp) {
    let period = TRACE_MS.load(Ordering::Relaxed);
    if period == 0 {
        return;
    }
    let ms = arch::counter() / (arch::counter_freq() / 1000).max(1);
    if ms < TRACE_LAST.load(Ordering::Relaxed) + period {
        return;
    }
    TRACE_LAST.store(ms, Ordering::Relaxed);
    for i in 0..h.vm_count() {
        // A VM busy on another pCPU is left out of this round; nothing
        // waits for it, and the line goes out with no lock held.
        let Some(vm) = h.try_vm(i) else { continue };
        let (name, c, cm, pod) = (vm.name.clone(), vm.counters, vm.cm.counters(), vm.pod.stats());
        drop(vm);
        crate::kprintln!(
            "trace: ms={} guest={} populated={} pod_2m={} pod_4k={} cleaned={} cleans={} sw_traps={} tvm_traps={} stage2_faults={} migrations={}",
            ms,
            name,
            pod.populated_bytes(),
            pod.pod_2m,
            pod.pod_4k,
            cm.cleaned_bytes,
            cm.cleans,
            cm.sw_traps,
            cm.tvm_traps,
            c.stage2_faults,
            c.migrations
        );
    }
}

/// The hardware domain's index among the VMs (`usize::MAX`: none), set
/// before any pCPU enters a guest.
pub static HWDOM: AtomicUsize = AtomicUsize::new(usize::MAX);

pub fn hyp() -> &'static Hyp {
    HYP.get().expect("hypervisor state")
}

/// Make this pCPU run what the scheduler chose, then return (to eret).
/// Called at the end of every trap, and by a pCPU entering its first guest.
pub fn leave(pcpu: usize, frame: &mut TrapFrame) {
    loop {
        let step = hyp().step(&mut Kernel, pcpu, frame);
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
pub fn route_input(h: &Hyp, pcpu: usize) {
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
            let switch = {
                let mut c = h.core();
                c.ctrl_a += 1;
                let three = c.ctrl_a == 3;
                if three {
                    c.ctrl_a = 0;
                }
                three
            };
            if switch {
                deliver(h, pcpu, &out);
                out.clear();
                next_focus(h);
            }
            continue;
        }
        let held = core::mem::take(&mut h.core().ctrl_a);
        for _ in 0..held {
            let _ = out.push(0x01);
        }
        let _ = out.push(b);
    }
    deliver(h, pcpu, &out);
}

fn deliver(h: &Hyp, pcpu: usize, bytes: &[u8]) {
    let f = h.core().focus;
    if f == h.vm_count() {
        for &b in bytes {
            command(h, b);
        }
        return;
    }
    if bytes.is_empty() {
        return;
    }
    let mut vm = h.vm(f);
    if vm.finished() {
        return;
    }
    let here = h.loaded(pcpu).filter(|v| v.vm as usize == f).map(|v| v.vcpu as usize);
    if let Some(d) = vm.devices.as_mut() {
        let kick = d.feed(bytes, here);
        h.kick_vcpus(&mut Kernel, f as u8, kick);
    }
}

/// The next running guest, or the hypervisor after the last guest.
fn next_focus(h: &Hyp) {
    let n = h.vm_count();
    let focus = h.core().focus;
    let mut next = n;
    for k in 1..=n + 1 {
        let i = (focus + k) % (n + 1);
        if i == n || !h.vm(i).finished() {
            next = i;
            break;
        }
    }
    h.core().focus = next;
    if next == n {
        crate::kprintln!("hyp: console input goes to the hypervisor (l: list guests, c: counters, h: help)");
    } else {
        crate::kprintln!("hyp: console input goes to guest {}", h.vm(next).name);
    }
}

/// One key typed to the hypervisor.
fn command(h: &Hyp, key: u8) {
    match key {
        b'l' => {
            for i in 0..h.vm_count() {
                let vm = h.vm(i);
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
            for i in 0..h.vm_count() {
                let vm = h.vm(i);
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
pub fn hw_irq(h: &Hyp, pcpu: usize, intid: u32) {
    // Only the hardware domain owns device interrupts: no other VM's lock
    // is taken to find the owner.
    let vmi = HWDOM.load(Ordering::Relaxed);
    if vmi >= h.vm_count() {
        drop_hw(pcpu, intid);
        return;
    }
    let mut vm = h.vm(vmi);
    if !vm.hw_spis.contains(&intid) {
        // Not its line, or released since it stopped: nobody's.
        drop_hw(pcpu, intid);
        return;
    }
    if vm.finished() || vm.restart_pending {
        // Restarting: the line stays on for the rebuilt VM. Stopped for
        // good: it is switched off.
        if vm.restart_pending && !vm.finished() {
            crate::irq::deactivate(intid);
        } else {
            drop_hw(pcpu, intid);
        }
        return;
    }
    let here = h.loaded(pcpu).filter(|v| v.vm as usize == vmi).map(|v| v.vcpu as usize);
    let Some(d) = vm.devices.as_mut() else { return };
    if let Some(v) = here {
        d.sync(v);
    }
    let mut kick = d.take_rerouted();
    match d.vgic.hw_fire(intid) {
        Ok(Some(v)) => kick = kick.union(vgic::VcpuSet::from_bits(1 << v.0)),
        Ok(None) => {}
        Err(_) => drop_hw(pcpu, intid),
    }
    h.kick_vcpus(&mut Kernel, vmi as u8, kick);
}

/// The physical interrupts that belong to the guest running here.
pub fn virtual_irqs(h: &Hyp, pcpu: usize, ev: crate::irq::Events) {
    let Some(v) = h.loaded(pcpu) else { return };
    let mut vm = h.vm(v.vm as usize);
    // Still loaded here now that its VM is locked?
    if h.loaded(pcpu) != Some(v) {
        return;
    }
    if let Some(d) = vm.devices.as_mut() {
        d.sync(v.vcpu as usize);
        for ((intid, bit), fired) in crate::irq::TIMER_PPIS.into_iter().zip([ev.vtimer, ev.ptimer]) {
            if fired {
                d.timer_masked[v.vcpu as usize] |= bit;
                let _ = d.vgic.inject(vgic::VcpuId(v.vcpu), intid);
            }
        }
        let moved = d.take_rerouted();
        h.kick_vcpus(&mut Kernel, v.vm, moved);
    }
}

/// Take this pCPU's pending interrupts; on a tick, let the scheduler decide.
pub fn poll_tick(pcpu: usize) {
    crate::hw::preempt_point();
    let ev = IRQS[pcpu].lock().as_mut().map(|i| i.handle()).unwrap_or_default();
    if ev.timer || ev.vtimer || ev.ptimer || ev.maint || ev.kick || ev.input || ev.hw_n > 0 {
        let Some(h) = HYP.get() else { return };
        for &intid in &ev.hw[..ev.hw_n] {
            hw_irq(h, pcpu, u32::from(intid));
        }
        if ev.input {
            route_input(h, pcpu);
        }
        if ev.vtimer || ev.ptimer || ev.maint || ev.kick {
            virtual_irqs(h, pcpu, ev);
        }
        if ev.timer {
            // Blocked vCPUs whose WFI deadline passed wake; this pCPU's
            // timer then waits for the next deadline too.
            let next = h.wake_due(&mut Kernel);
            if let Some(irq) = IRQS[pcpu].lock().as_mut() {
                irq.set_wake(next);
            }
        }
        if ev.tick {
            let _ = h.core().sched.tick(pcpu);
            if pcpu == 0 {
                trace(h);
            }
        }
    }
}

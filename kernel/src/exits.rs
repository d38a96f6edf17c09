//! Trap dispatch: decode what the guest did, act on it, and return to it (or
//! to another vCPU).

use crate::arch::{self, el1, sysreg_read, sysreg_write, TrapFrame};
use crate::vm::{self, Vm, VcpuState};
use crate::{Hyp, HYP};
use trap::hypercall::{self, psci, Call, HypCall, PsciCall};
use trap::{DataAbort, FaultKind, Trap};

/// Load vCPU (`vm`, `vcpu`)'s EL1 state and stage-2 onto this pCPU.
fn load(h: &Hyp, vmi: usize, vci: usize) {
    let v = &h.vms[vmi];
    sysreg_write!("vttbr_el2", v.vttbr());
    v.vcpus[vci].el1.restore();
    arch::isb();
}

pub fn start_first() -> ! {
    let frame = {
        let mut g = HYP.lock();
        let h = g.as_mut().unwrap();
        load(h, 0, 0);
        h.current = (0, 0);
        h.vms[0].vcpus[0].frame
    };
    arch::enter_guest(arch::cpu_id(), &frame)
}

/// Advance the guest PC past the trapped instruction.
fn skip(frame: &mut TrapFrame, esr: u64) {
    frame.elr += if trap::il_32bit(esr) { 4 } else { 2 };
}

#[unsafe(no_mangle)]
extern "C" fn lower_sync(frame: &mut TrapFrame) {
    let esr = sysreg_read!("esr_el2");
    let far = sysreg_read!("far_el2");
    let hpfar = sysreg_read!("hpfar_el2");
    let mut g = HYP.lock();
    let h = g.as_mut().expect("trap before boot finished");
    let (vmi, _vci) = h.current;
    // AArch32 guests: a trapped instruction whose condition fails is skipped.
    if frame.spsr & (1 << 4) != 0 && !trap::cond_passed(esr, frame.spsr) {
        skip(frame, esr);
        return;
    }
    let vm = &mut h.vms[vmi];
    match trap::decode(esr, far, hpfar) {
        Trap::Hvc { .. } => {
            vm.counters.hvc += 1;
            call(vm, frame);
        }
        Trap::Smc { .. } => {
            skip(frame, esr);
            call(vm, frame);
        }
        Trap::SetWay { op: _, rt: _ } => {
            vm.counters.sw_traps += 1;
            // Emulated as clean+invalidate by address of this VM's own memory,
            // never executed as-is (SWIO-style): one guest's invalidate can't
            // drop another guest's dirty lines.
            if !vm.cleaned_since_toggle {
                clean_vm(vm);
                vm.cleaned_since_toggle = true;
            }
            skip(frame, esr);
        }
        Trap::VmReg { reg, rt, rt2, write: true } => {
            vm.counters.tvm_traps += 1;
            let mut v = frame.reg(rt);
            if let Some(r2) = rt2 {
                v = (v & 0xffff_ffff) | (frame.reg(r2) << 32);
            }
            let caches_on = |s: u64| s & 0b101 == 0b101;
            let before = caches_on(el1::sctlr_el1());
            el1::write_vmreg(reg, v);
            if reg.is_sctlr() && caches_on(el1::sctlr_el1()) != before {
                // The guest turned its caches on or off: clean again.
                clean_vm(vm);
                vm.cleaned_since_toggle = false;
            }
            skip(frame, esr);
        }
        Trap::DataAbort(da) => data_abort(vm, frame, &da, esr),
        Trap::InstrAbort(ia) => {
            vm.counters.stage2_faults += 1;
            crate::kprintln!("hyp: guest {}: instruction fetch outside its memory at IPA {:#x} ({:?})", vm.name, ia.ipa, ia.fault);
            stop_vm(h, false, frame);
        }
        Trap::Wfx { .. } => skip(frame, esr),
        other => {
            crate::kprintln!("hyp: guest {}: unhandled trap {:?} (ESR {:#x}) at PC {:#x}; stopping it", vm.name, other, esr, frame.elr);
            stop_vm(h, false, frame);
        }
    }
    if h.vms[h.current.0].finished() {
        reschedule(h, frame);
    }
}

fn clean_vm(vm: &mut Vm) {
    arch::dc_range(arch::DcOp::CleanInval, vm.ram_pa, vm.ram_size);
    vm.counters.cleans += 1;
    vm.counters.cleaned_bytes += vm.ram_size;
}

fn data_abort(vm: &mut Vm, frame: &mut TrapFrame, da: &DataAbort, _esr: u64) {
    vm.counters.stage2_faults += 1;
    let stage2_fault = matches!(da.fault, FaultKind::Translation(_) | FaultKind::AccessFlag(_) | FaultKind::Permission(_));
    if stage2_fault && !vm.in_ram(da.ipa) {
        // Outside guest RAM and no device there: the guest gets an abort.
        defmt::info!("guest access outside RAM at IPA {=u64:#x}: abort injected", da.ipa);
        el1::inject_data_abort(frame, da.far, da.write);
        return;
    }
    crate::kprintln!(
        "hyp: guest {}: unexpected stage-2 fault at IPA {:#x} ({:?}); injecting an abort",
        vm.name,
        da.ipa,
        da.fault
    );
    el1::inject_data_abort(frame, da.far, da.write);
}

/// A hypercall or PSCI call (HVC or SMC conduit).
fn call(vm: &mut Vm, frame: &mut TrapFrame) {
    let ret = match hypercall::classify(frame.x[0], frame.x[1], frame.x[2], frame.x[3]) {
        Call::Hyp(HypCall::Putc(b)) => {
            crate::console::lock().guest_byte(b);
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Puts8(chunk)) => {
            let mut c = crate::console::lock();
            for &b in chunk.as_bytes() {
                if b == b'\n' {
                    c.guest_byte(b'\r');
                }
                c.guest_byte(b);
            }
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Report { key, value }) => {
            defmt::info!("guest report {=u32} = {=u64}", key as u32, value);
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Exit { status }) => {
            return finish(vm, status == 0, frame);
        }
        Call::Psci(PsciCall::SystemOff) => return finish(vm, true, frame),
        Call::Psci(PsciCall::SystemReset) => {
            crate::kprintln!("hyp: guest {} asked for a reset; stopping it (reset is not supported yet)", vm.name);
            return finish(vm, false, frame);
        }
        Call::Psci(PsciCall::Version) => 0x0001_0000, // PSCI 1.0
        Call::Psci(PsciCall::MigrateInfoType) => 2,    // no migration needed
        Call::Psci(PsciCall::Features { fid }) => match fid {
            psci::VERSION | psci::CPU_OFF | psci::SYSTEM_OFF | psci::SYSTEM_RESET | psci::FEATURES => 0,
            _ => psci::ret(psci::NOT_SUPPORTED),
        },
        Call::Psci(_) => psci::ret(psci::NOT_SUPPORTED),
        Call::Invalid(_) => hypercall::HC_INVALID_PARAMETERS,
        Call::Unknown(_) => hypercall::HC_NOT_SUPPORTED,
    };
    frame.x[0] = ret;
}

fn finish(vm: &mut Vm, ok: bool, _frame: &mut TrapFrame) {
    vm.exit_ok = Some(ok);
    for v in vm.vcpus.iter_mut() {
        v.state = VcpuState::Stopped;
    }
    vm::print_summary(vm);
    // With every guest finished, power off. Otherwise the next runnable vCPU
    // is picked by `lower_sync`'s caller path.
}

fn stop_vm(h: &mut Hyp, ok: bool, frame: &mut TrapFrame) {
    let vmi = h.current.0;
    finish(&mut h.vms[vmi], ok, frame);
    reschedule(h, frame);
}

/// After a guest stopped: run another runnable vCPU, or power off.
fn reschedule(h: &mut Hyp, frame: &mut TrapFrame) {
    for (vmi, vm) in h.vms.iter().enumerate() {
        if let Some(vci) = vm.vcpus.iter().position(|v| v.state == VcpuState::Runnable) {
            load(h, vmi, vci);
            h.current = (vmi, vci);
            *frame = h.vms[vmi].vcpus[vci].frame;
            return;
        }
    }
    crate::kprintln!("hyp: all guests stopped; powering off");
    crate::system_off()
}

#[unsafe(no_mangle)]
extern "C" fn lower_irq(_frame: &mut TrapFrame) {}

#[unsafe(no_mangle)]
extern "C" fn lower_serror(frame: &mut TrapFrame) {
    let esr = sysreg_read!("esr_el2");
    let mut g = HYP.lock();
    let h = g.as_mut().unwrap();
    let vmi = h.current.0;
    crate::kprintln!("hyp: guest {}: SError (ESR {:#x}); stopping it", h.vms[vmi].name, esr);
    stop_vm(h, false, frame);
}

#[unsafe(no_mangle)]
extern "C" fn el2_unexpected(frame: &mut TrapFrame, kind: u64) {
    let esr = sysreg_read!("esr_el2");
    let far = sysreg_read!("far_el2");
    panic!("exception at EL2: vector {} ESR {:#x} FAR {:#x} ELR {:#x}", kind, esr, far, frame.elr);
}

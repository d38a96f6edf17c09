//! Trap dispatch: decode what the guest did, hand it to the component that
//! owns it, apply the reply, then [`hyp::leave`] runs what comes next.

use cache_maint::{Request as CmRequest, VcpuId};
use pod::{Outcome, PodError};
use trap::hypercall::{self, psci, Call, HypCall, PsciCall};
use trap::{DataAbort, FaultKind, Trap};
use vcpu_sched::{BlockKind, Scheduler, VcpuRef};

use crate::arch::{self, el1, sysreg_read, TrapFrame};
use crate::hyp::{self, Hyp, HYP};
use crate::vm::Power;

/// Advance the guest PC past the trapped instruction (and, for AArch32
/// Thumb code in an IT block, its IT state).
fn skip(frame: &mut TrapFrame, esr: u64) {
    frame.elr += if trap::il_32bit(esr) { 4 } else { 2 };
    if frame.spsr & (1 << 4) != 0 {
        frame.spsr = trap::aarch32::advance_it(frame.spsr);
    }
}

#[unsafe(no_mangle)]
extern "C" fn lower_sync(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    let esr = sysreg_read!("esr_el2");
    let far = sysreg_read!("far_el2");
    let hpfar = sysreg_read!("hpfar_el2");
    let resumed = {
        let mut g = HYP.lock();
        let h = g.as_mut().expect("trap before boot finished");
        if let Some(v) = h.vcpu_ref(pcpu) {
            handle(h, pcpu, v, frame, esr, far, hpfar);
        }
        h.try_resume(pcpu)
    };
    if !resumed {
        hyp::leave(pcpu, frame);
    }
    crate::console::drain();
}

fn handle(h: &mut Hyp, pcpu: usize, v: VcpuRef, frame: &mut TrapFrame, esr: u64, far: u64, hpfar: u64) {
    let vmi = v.vm as usize;
    // AArch32 guests: a trapped instruction whose condition fails is skipped.
    if frame.spsr & (1 << 4) != 0 && !trap::cond_passed(esr, frame.spsr) {
        skip(frame, esr);
        return;
    }
    match trap::decode(esr, far, hpfar) {
        Trap::Hvc { imm } => {
            h.vms[vmi].counters.hvc += 1;
            call(h, v, frame, imm);
        }
        Trap::Smc { imm } => {
            skip(frame, esr);
            call(h, v, frame, imm);
        }
        Trap::SetWay { op, rt } => {
            let op = match op {
                trap::SwOp::Isw => cache_maint::SwOp::Isw,
                trap::SwOp::Csw => cache_maint::SwOp::Csw,
                trap::SwOp::Cisw => cache_maint::SwOp::Cisw,
            };
            let level = trap::sw_level(frame.guest_reg(rt));
            skip(frame, esr);
            cache_request(h, v, CmRequest::SetWay { vcpu: VcpuId(v.vcpu), op, level });
        }
        Trap::VmReg { reg, rt, rt2, write: true } => {
            let mut value = frame.guest_reg(rt);
            if let Some(r2) = rt2 {
                value = (value & 0xffff_ffff) | (frame.guest_reg(r2) << 32);
            }
            let (policy_reg, value, old) = if reg.is_sctlr() {
                let old = el1::sctlr_el1();
                el1::write_vmreg(reg, value);
                (cache_maint::VmReg::Sctlr, el1::sctlr_el1(), old)
            } else {
                el1::write_vmreg(reg, value);
                (cache_maint::VmReg::Other(0), value, 0)
            };
            skip(frame, esr);
            cache_request(h, v, CmRequest::VmRegWrite { vcpu: VcpuId(v.vcpu), reg: policy_reg, value, old });
        }
        Trap::DataAbort(da) => data_abort(h, v, frame, &da, false),
        Trap::InstrAbort(ia) => {
            // Populated like a data access; an abort it needs is an
            // instruction abort.
            let da = DataAbort { ipa: ia.ipa, far: ia.far, far_valid: ia.far_valid, write: false, access: None, fault: ia.fault, s1ptw: ia.s1ptw, cache_maint: false, ext_abort: false };
            data_abort(h, v, frame, &da, true);
        }
        Trap::SysReg { op0, op1, crn, crm, op2, rt, read } => {
            shadow_access(h, v, frame, esr, vsysreg::RegId::Sys(op0, op1, crn, crm, op2), rt, None, read)
        }
        Trap::Cp15 { opc1, crn, crm, opc2, rt, read } => {
            shadow_access(h, v, frame, esr, vsysreg::RegId::Cp15(opc1, crn, crm, opc2), rt, None, read)
        }
        Trap::Cp15Wide { opc1, crm, rt, rt2, read } => {
            shadow_access(h, v, frame, esr, vsysreg::RegId::Cp15Wide(opc1, crm), rt, Some(rt2), read)
        }
        Trap::Cp14 { opc1, crn, crm, opc2, rt, read } => {
            shadow_access(h, v, frame, esr, vsysreg::RegId::Cp14(opc1, crn, crm, opc2), rt, None, read)
        }
        Trap::Cp14Wide { opc1, crm, rt, rt2, read } => {
            shadow_access(h, v, frame, esr, vsysreg::RegId::Cp14Wide(opc1, crm), rt, Some(rt2), read)
        }
        // A debug data transfer (LDC/STC p14): no debugger listens.
        Trap::Cp14Transfer => skip(frame, esr),
        Trap::Wfx { .. } => {
            // No virtual interrupts yet: a WFI/WFE is a yield.
            skip(frame, esr);
            let _ = h.sched.pick_next(pcpu);
        }
        other => {
            crate::kprintln!(
                "hyp: guest {}: unhandled trap {:?} (ESR {:#x}) at PC {:#x}; stopping it",
                h.vms[vmi].name,
                other,
                esr,
                frame.elr
            );
            h.finish_vm(vmi, false);
        }
    }
}

/// A trapped debug, PMU or ACTLR register: the vCPU's shadow answers. Any
/// other register stops the guest, as an unknown trap does.
#[allow(clippy::too_many_arguments)]
fn shadow_access(h: &mut Hyp, v: VcpuRef, frame: &mut TrapFrame, esr: u64, id: vsysreg::RegId, rt: u8, rt2: Option<u8>, read: bool) {
    let vmi = v.vm as usize;
    if vsysreg::classify(id).is_none() {
        crate::kprintln!("hyp: guest {}: unhandled register access {:?} at PC {:#x}; stopping it", h.vms[vmi].name, id, frame.elr);
        h.finish_vm(vmi, false);
        return;
    }
    let shadow = &mut h.vms[vmi].vcpus[v.vcpu as usize].shadow;
    if read {
        let value = shadow.read(id);
        match rt2 {
            Some(r2) => {
                frame.set_guest_reg(rt, value & 0xffff_ffff);
                frame.set_guest_reg(r2, value >> 32);
            }
            None => frame.set_guest_reg(rt, value),
        }
    } else {
        let value = match rt2 {
            Some(r2) => (frame.guest_reg(rt) & 0xffff_ffff) | (frame.guest_reg(r2) << 32),
            None => frame.guest_reg(rt),
        };
        let _ = shadow.write(id, value);
    }
    skip(frame, esr);
}

/// Hand a set/way or VM-register trap to cache-maint and apply its reply.
fn cache_request(h: &mut Hyp, v: VcpuRef, req: CmRequest) {
    let vmi = v.vm as usize;
    let vm = &mut h.vms[vmi];
    match vm.cache_maint(req) {
        Ok(reply) => {
            if reply.sw_first_seen {
                let _ = h.sched.report_set_way(v.vm);
            }
            // New TSW/TVM bits are applied on the way out; a pending clean
            // runs in `leave` before the vCPU may resume.
        }
        Err(e) => {
            crate::kprintln!("hyp: guest {}: cache-maint error: {}", vm.name, e);
            h.finish_vm(vmi, false);
        }
    }
}

/// Give the guest a synchronous external abort for `da`.
fn inject(h: &Hyp, v: VcpuRef, frame: &mut TrapFrame, da: &DataAbort, fetch: bool) {
    let kind = if fetch { el1::AbortKind::Instruction } else { el1::AbortKind::Data { write: da.write } };
    el1::inject_abort(frame, da.far, kind, h.vms[v.vm as usize].aarch32);
}

fn data_abort(h: &mut Hyp, v: VcpuRef, frame: &mut TrapFrame, da: &DataAbort, fetch: bool) {
    let vmi = v.vm as usize;
    let vm = &mut h.vms[vmi];
    vm.counters.stage2_faults += 1;
    match da.fault {
        FaultKind::AccessFlag(_) => {
            if vm.pager.handle_access_fault(da.ipa).is_err() {
                inject(h, v, frame, da, fetch);
            }
        }
        FaultKind::Translation(_) if da.cache_maint && !vm.in_ram(da.ipa) => {
            // Cache maintenance by VA on a device or a hole: nothing to
            // maintain, so it completes (as KVM does).
            skip(frame, sysreg_read!("esr_el2"));
        }
        FaultKind::Translation(_) if vm.devices.is_some() && !vm.in_ram(da.ipa) => {
            // An emulated device (GICD, PL011): needs the syndrome (ISV).
            let handled = match (da.access.as_ref(), vm.devices.as_mut()) {
                (Some(acc), Some(d)) => d.mmio(v.vcpu as usize, da.ipa, acc, da.write, frame),
                _ => None,
            };
            if let Some(kick) = handled {
                h.vms[v.vm as usize].counters.mmio += 1;
                skip(frame, sysreg_read!("esr_el2"));
                h.kick_vcpus(v.vm, kick);
            } else {
                if h.vms[vmi].may_log() {
                    defmt::info!("guest access to IPA {=u64:#x} (PC {=u64:#x}) with no device: abort injected", da.ipa, frame.elr);
                }
                inject(h, v, frame, da, fetch);
            }
        }
        FaultKind::Translation(_) => {
            let mut hw = vm.pod_fault_hw();
            let t = crate::hw::pmu0();
            let r = vm.pod.fault(&mut vm.pager, &mut hw, da.ipa);
            crate::hw::POD_FAULT_INSNS.fetch_add(crate::hw::pmu0().wrapping_sub(t), core::sync::atomic::Ordering::Relaxed);
            if !vm.scope_kept(&hw) {
                h.finish_vm(vmi, false);
                return;
            }
            match r {
                Ok(Outcome::Populated { .. } | Outcome::AlreadyMapped | Outcome::Retry) => {}
                Err(PodError::OutsideRam { ipa }) => {
                    if vm.may_log() {
                        defmt::info!("guest access outside RAM at IPA {=u64:#x}: abort injected", ipa);
                    }
                    inject(h, v, frame, da, fetch);
                }
                Err(PodError::Exhausted { ipa }) => {
                    crate::kprintln!(
                        "hyp: guest {}: stopped: out of memory: PoD pool Exhausted at IPA {:#x} ({} bytes populated, nothing reclaimable)",
                        vm.name,
                        ipa,
                        vm.pod.stats().populated_bytes()
                    );
                    h.finish_vm(vmi, false);
                }
                Err(e) => {
                    crate::kprintln!("hyp: guest {}: stopped: {:?} (guest memory could not be populated)", vm.name, e);
                    h.finish_vm(vmi, false);
                }
            }
        }
        _ => {
            if vm.may_log() {
                defmt::info!("guest stage-2 fault {=u8:#x} at IPA {=u64:#x}: abort injected", da.fault.fsc(), da.ipa);
            }
            inject(h, v, frame, da, fetch);
        }
    }
}

/// A hypercall or PSCI call (HVC or SMC conduit).
fn call(h: &mut Hyp, v: VcpuRef, frame: &mut TrapFrame, imm: u16) {
    // SMCCC: calls are `hvc #0` / `smc #0`; any other immediate is not ours.
    if imm != 0 {
        frame.x[0] = hypercall::HC_NOT_SUPPORTED;
        return;
    }
    let vmi = v.vm as usize;
    // An AArch32 guest's registers are 32 bits; the upper halves are junk.
    let m = if frame.spsr & (1 << 4) != 0 { 0xffff_ffff } else { u64::MAX };
    let ret = match hypercall::classify(frame.x[0] & m, frame.x[1] & m, frame.x[2] & m, frame.x[3] & m) {
        Call::Hyp(HypCall::Putc(b)) => {
            h.vms[vmi].vcpus[v.vcpu as usize].out.push(b);
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Puts8(chunk)) => {
            let out = &mut h.vms[vmi].vcpus[v.vcpu as usize].out;
            for &b in chunk.as_bytes() {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Report { key, value }) => {
            let vm = &mut h.vms[vmi];
            if !vm.may_log() {
                frame.x[0] = hypercall::HC_OK;
                return;
            }
            // Plain text, so tests can read the populated figure at this point.
            crate::kprintln!(
                "hyp: guest {} report key={} value={} populated_bytes={}",
                vm.name,
                key as u32,
                value,
                vm.pod.stats().populated_bytes()
            );
            hypercall::HC_OK
        }
        Call::Hyp(HypCall::Exit { status }) => return h.finish_vm(vmi, status == 0),
        Call::Psci(PsciCall::SystemOff) => return h.finish_vm(vmi, true),
        Call::Psci(PsciCall::SystemReset) => return h.request_restart(vmi),
        Call::Psci(PsciCall::Version) => 0x0001_0000, // PSCI 1.0
        Call::Psci(PsciCall::MigrateInfoType) => 2,    // trusted OS not present
        Call::Psci(PsciCall::Features { fid }) => match fid {
            psci::VERSION | psci::CPU_OFF | psci::CPU_ON_32 | psci::CPU_ON_64 | psci::AFFINITY_INFO_32
            | psci::AFFINITY_INFO_64 | psci::SYSTEM_OFF | psci::SYSTEM_RESET | psci::FEATURES
            | psci::MIGRATE_INFO_TYPE => 0,
            _ => psci::ret(psci::NOT_SUPPORTED),
        },
        Call::Psci(PsciCall::CpuOn { target, entry, context_id }) => cpu_on(h, vmi, target, entry, context_id),
        Call::Psci(PsciCall::CpuOff) => {
            h.vms[vmi].vcpus[v.vcpu as usize].power = Power::Off;
            let _ = h.sched.block(v, BlockKind::Off);
            // With no vCPU on, nothing can ever turn one on again.
            if h.vms[vmi].vcpus.iter().all(|c| c.power == Power::Off) {
                crate::kprintln!("hyp: guest {}: its last vCPU called CPU_OFF; stopped", h.vms[vmi].name);
                h.finish_vm(vmi, false);
            }
            return;
        }
        Call::Psci(PsciCall::AffinityInfo { target, lowest_level }) => {
            let vm = &h.vms[vmi];
            match vcpu_of(target).filter(|&i| i < vm.vcpus.len() && lowest_level == 0) {
                Some(i) if vm.vcpus[i].power == Power::On => 0,
                Some(_) => 1,
                None => psci::ret(psci::INVALID_PARAMETERS),
            }
        }
        Call::Psci(_) => psci::ret(psci::NOT_SUPPORTED),
        Call::Invalid(_) => hypercall::HC_INVALID_PARAMETERS,
        Call::Unknown(_) => hypercall::HC_NOT_SUPPORTED,
    };
    frame.x[0] = ret;
}

/// The vCPU index an MPIDR names (Aff0; our vCPUs have Aff1..3 = 0).
fn vcpu_of(mpidr: u64) -> Option<usize> {
    (mpidr & 0xff_ffff_ff00 == 0).then_some((mpidr & 0xff) as usize)
}

fn cpu_on(h: &mut Hyp, vmi: usize, target: u64, entry: u64, context: u64) -> u64 {
    let vm = &mut h.vms[vmi];
    // A VM that is stopping or restarting starts nothing.
    if vm.finished() || vm.restart_pending {
        return psci::ret(psci::DENIED);
    }
    let Some(i) = vcpu_of(target).filter(|&i| i < vm.vcpus.len()) else {
        return psci::ret(psci::INVALID_PARAMETERS);
    };
    if vm.vcpus[i].power == Power::On {
        return psci::ret(psci::ALREADY_ON);
    }
    // The entry point must be an instruction in its RAM: 4-byte aligned,
    // or 2-byte with bit 0 set (Thumb) for an AArch32 guest.
    let aligned = (vm.aarch32 && entry & 1 == 1) || entry & 0b11 == 0;
    if !aligned || !vm.in_ram(entry & !1) {
        return psci::ret(psci::INVALID_ADDRESS);
    }
    let _ = vm.cache_maint(CmRequest::Reset { vcpu: VcpuId(i as u8) });
    let aarch32 = vm.aarch32;
    vm.vcpus[i].reset(i, entry, context, aarch32);
    // A pCPU that went idle after this vCPU's CPU_OFF may still hold its old
    // live state: drop it, the reset state above is what runs next.
    let me = VcpuRef::new(vmi as u8, i as u8);
    for l in h.loaded.iter_mut() {
        if *l == Some(me) {
            *l = None;
        }
    }
    // An idle pCPU that can run it now is woken at once, not at its tick.
    if let Ok(Some(p)) = h.sched.wake(VcpuRef::new(vmi as u8, i as u8)) {
        if p != arch::cpu_id() {
            hyp::kick_pcpus(1 << p);
        }
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn lower_irq(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    if let Some(h) = HYP.lock().as_mut() {
        if let Some(v) = h.vcpu_ref(pcpu) {
            h.vms[v.vm as usize].counters.irq_exits += 1;
        }
    }
    hyp::poll_tick(pcpu);
    hyp::leave(pcpu, frame);
}

#[unsafe(no_mangle)]
extern "C" fn lower_serror(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    let esr = sysreg_read!("esr_el2");
    {
        let mut g = HYP.lock();
        let h = g.as_mut().unwrap();
        if let Some(v) = h.vcpu_ref(pcpu) {
            crate::kprintln!("hyp: guest {}: SError (ESR {:#x}); stopping it", h.vms[v.vm as usize].name, esr);
            h.finish_vm(v.vm as usize, false);
        }
    }
    hyp::leave(pcpu, frame);
}

#[unsafe(no_mangle)]
extern "C" fn el2_unexpected(frame: &mut TrapFrame, kind: u64) {
    let esr = sysreg_read!("esr_el2");
    let far = sysreg_read!("far_el2");
    panic!("exception at EL2: vector {} ESR {:#x} FAR {:#x} ELR {:#x}", kind, esr, far, frame.elr);
}

//! Trap dispatch: decode what the guest did, hand it to the component that
//! owns it, apply the reply. [`Hyp::step`] then runs what comes next.

use cache_maint::{Request as CmRequest, VcpuId};
use pod::{Outcome, PodError};
use stage2_pager::{LeafSize, MemAttrs};
use trap::hypercall::{self, psci, Call, HypCall, PsciCall};
use trap::{DataAbort, FaultKind, Trap};
use vcpu_sched::{Scheduler, VcpuRef};

use crate::frame::TrapFrame;
use crate::hyp::Hyp;
use crate::platform::{AbortKind, Devices, GuestEvent, Out, Platform, Prof, TimerWake};
use crate::vm::{scope_broken, Power, Vm};

/// A synchronous exception from a guest, with its syndrome registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome {
    pub esr: u64,
    pub far: u64,
    pub hpfar: u64,
}

impl<P: Platform> Hyp<P> {
    /// A synchronous trap from the vCPU loaded on `pcpu`, handled under its
    /// VM's lock. The frame is the guest's, updated in place. True when the
    /// vCPU may simply go on; else [`Hyp::step`] has work to do (and with
    /// no vCPU loaded, the trap is ignored).
    pub fn trap(&self, plat: &mut P, pcpu: usize, frame: &mut TrapFrame, s: Syndrome) -> bool {
        let Some(v) = self.loaded(pcpu) else { return false };
        let mut vm = self.vm(v.vm as usize);
        plat.profile(Prof::Locked);
        // Only a request to cache-maint changes the trapping vCPU's trap
        // bits or makes it wait for a clean (both are per vCPU, and only
        // its own requests change them); other traps skip those checks.
        let mut cm = false;
        let resched = self.handle(plat, &mut vm, pcpu, v, frame, s, &mut cm);
        plat.profile(Prof::Handled);
        let go_on = self.resume(plat, pcpu, v, &mut vm, resched, cm);
        plat.profile(Prof::Resumed);
        go_on
    }

    /// True when it called the scheduler on `pcpu` (WFI/WFE, CPU_OFF).
    /// `cm` is set when it made a cache-maint request for `v`.
    #[allow(clippy::too_many_arguments)]
    fn handle(&self, plat: &mut P, vm: &mut Vm<P>, pcpu: usize, v: VcpuRef, frame: &mut TrapFrame, s: Syndrome, cm: &mut bool) -> bool {
        let Syndrome { esr, far, hpfar } = s;
        let vmi = v.vm as usize;
        // AArch32 guests: a trapped instruction whose condition fails is skipped.
        if frame.aarch32() && !trap::cond_passed(esr, frame.spsr) {
            frame.skip(esr);
            return false;
        }
        let t = trap::decode(esr, far, hpfar);
        plat.profile(Prof::Kind(match t {
            Trap::Hvc { .. } => 0,
            Trap::SetWay { .. } => 1,
            Trap::VmReg { .. } => 2,
            Trap::DataAbort(_) | Trap::InstrAbort(_) => 3,
            _ => 4,
        }));
        match t {
            Trap::Hvc { imm } => {
                vm.counters.hvc += 1;
                return self.call(plat, vm, v, frame, imm);
            }
            Trap::Smc { imm } => {
                frame.skip(esr);
                return self.call(plat, vm, v, frame, imm);
            }
            Trap::SetWay { op, rt } => {
                let op = match op {
                    trap::SwOp::Isw => cache_maint::SwOp::Isw,
                    trap::SwOp::Csw => cache_maint::SwOp::Csw,
                    trap::SwOp::Cisw => cache_maint::SwOp::Cisw,
                };
                let level = trap::sw_level(frame.guest_reg(rt));
                frame.skip(esr);
                *cm = true;
                self.cache_request(plat, vm, v, CmRequest::SetWay { vcpu: VcpuId(v.vcpu), op, level });
            }
            Trap::VmReg { reg, rt, rt2, write: true } => {
                let mut value = frame.guest_reg(rt);
                if let Some(r2) = rt2 {
                    value = (value & 0xffff_ffff) | (frame.guest_reg(r2) << 32);
                }
                let (policy_reg, value, old) = if reg.is_sctlr() {
                    let old = plat.sctlr();
                    plat.write_vmreg(reg, value);
                    (cache_maint::VmReg::Sctlr, plat.sctlr(), old)
                } else {
                    plat.write_vmreg(reg, value);
                    (cache_maint::VmReg::Other(0), value, 0)
                };
                frame.skip(esr);
                *cm = true;
                self.cache_request(plat, vm, v, CmRequest::VmRegWrite { vcpu: VcpuId(v.vcpu), reg: policy_reg, value, old, sctlr: plat.sctlr() });
            }
            Trap::DataAbort(da) => self.data_abort(plat, vm, v, frame, esr, &da, false),
            Trap::InstrAbort(ia) => {
                // Populated like a data access; an abort it needs is an
                // instruction abort.
                let da = DataAbort { ipa: ia.ipa, far: ia.far, far_valid: ia.far_valid, write: false, access: None, fault: ia.fault, s1ptw: ia.s1ptw, cache_maint: false, ext_abort: false };
                self.data_abort(plat, vm, v, frame, esr, &da, true);
            }
            Trap::SysReg { op0, op1, crn, crm, op2, rt, read } => {
                self.shadow_access(plat, vm, v, frame, esr, vsysreg::RegId::Sys(op0, op1, crn, crm, op2), (rt, None), read)
            }
            Trap::Cp15 { opc1, crn, crm, opc2, rt, read } => {
                self.shadow_access(plat, vm, v, frame, esr, vsysreg::RegId::Cp15(opc1, crn, crm, opc2), (rt, None), read)
            }
            Trap::Cp15Wide { opc1, crm, rt, rt2, read } => {
                self.shadow_access(plat, vm, v, frame, esr, vsysreg::RegId::Cp15Wide(opc1, crm), (rt, Some(rt2)), read)
            }
            Trap::Cp14 { opc1, crn, crm, opc2, rt, read } => {
                self.shadow_access(plat, vm, v, frame, esr, vsysreg::RegId::Cp14(opc1, crn, crm, opc2), (rt, None), read)
            }
            Trap::Cp14Wide { opc1, crm, rt, rt2, read } => {
                self.shadow_access(plat, vm, v, frame, esr, vsysreg::RegId::Cp14Wide(opc1, crm), (rt, Some(rt2)), read)
            }
            // A debug data transfer (LDC/STC p14): no debugger listens.
            Trap::Cp14Transfer => frame.skip(esr),
            Trap::Wfx { wfe: false, timed: false } if vm.devices.is_some() => {
                frame.skip(esr);
                vm.counters.wfi += 1;
                // It goes on at once when an interrupt waits for it or a
                // timer is due; else it blocks and the pCPU runs another
                // vCPU or idles, until `kick_vcpus` or `wake_due` wakes it.
                let deadline = match plat.timer_wake() {
                    TimerWake::Now => return false,
                    TimerWake::At(t) => t,
                    TimerWake::Never => u64::MAX,
                };
                let Some(d) = vm.devices.as_mut() else { return false };
                let pending = d.pending(v.vcpu as usize);
                let moved = d.take_rerouted();
                self.kick_vcpus(plat, v.vm, moved);
                if pending || deadline <= plat.counter() {
                    return false;
                }
                // Idle mid-line: a prompt waits for input, so show it.
                d.out().flush();
                vm.counters.wfi_blocks += 1;
                self.wait(plat, v, deadline);
                return true;
            }
            Trap::Wfx { .. } => {
                // WFE (not trapped by HCR_BASE), WFIT/WFET (their timeout
                // is not tracked), or a WFI of a guest with no vGIC (no
                // interrupt could ever wake it): a yield, which a WFI may
                // architecturally be.
                frame.skip(esr);
                let _ = self.core().sched.pick_next(pcpu);
                return true;
            }
            other => {
                plat.log(format_args!(
                    "hyp: guest {}: unhandled trap {:?} (ESR {:#x}) at PC {:#x}; stopping it",
                    vm.name,
                    other,
                    esr,
                    frame.elr
                ));
                self.finish_vm(plat, vmi, vm, false);
            }
        }
        false
    }

    /// A trapped debug, PMU or ACTLR register: the vCPU's shadow answers. Any
    /// other register stops the guest, as an unknown trap does.
    #[allow(clippy::too_many_arguments)]
    fn shadow_access(&self, plat: &mut P, vm: &mut Vm<P>, v: VcpuRef, frame: &mut TrapFrame, esr: u64, id: vsysreg::RegId, (rt, rt2): (u8, Option<u8>), read: bool) {
        let vmi = v.vm as usize;
        if vsysreg::classify(id).is_none() {
            plat.log(format_args!("hyp: guest {}: unhandled register access {:?} at PC {:#x}; stopping it", vm.name, id, frame.elr));
            self.finish_vm(plat, vmi, vm, false);
            return;
        }
        let shadow = &mut vm.vcpus[v.vcpu as usize].shadow;
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
        frame.skip(esr);
    }

    /// Hand a set/way or VM-register trap to cache-maint and apply its reply.
    fn cache_request(&self, plat: &mut P, vm: &mut Vm<P>, v: VcpuRef, req: CmRequest) {
        let vmi = v.vm as usize;
        match vm.cache_maint(plat, req) {
            Ok(reply) => {
                if reply.sw_first_seen {
                    let _ = self.core().sched.report_set_way(v.vm);
                }
                // New TSW/TVM bits are applied on the way out; a pending clean
                // runs in `step` before the vCPU may resume.
            }
            Err(e) => {
                plat.log(format_args!("hyp: guest {}: cache-maint error: {}", vm.name, e));
                self.finish_vm(plat, vmi, vm, false);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_abort(&self, plat: &mut P, vm: &mut Vm<P>, v: VcpuRef, frame: &mut TrapFrame, esr: u64, da: &DataAbort, fetch: bool) {
        let vmi = v.vm as usize;
        vm.counters.stage2_faults += 1;
        match da.fault {
            FaultKind::AccessFlag(_) => {
                if vm.pager.handle_access_fault(da.ipa).is_err() {
                    inject(plat, vm, frame, da, fetch);
                }
            }
            FaultKind::Translation(_) if da.cache_maint && !vm.in_ram(da.ipa) => {
                // Cache maintenance by VA on a device or a hole: nothing to
                // maintain, so it completes (as KVM does).
                frame.skip(esr);
            }
            FaultKind::Translation(_) if vm.devices.is_some() && !vm.in_ram(da.ipa) => {
                // An emulated device (GICD, PL011): needs the syndrome (ISV).
                let handled = match (da.access.as_ref(), vm.devices.as_mut()) {
                    (Some(acc), Some(d)) => d.mmio(v.vcpu as usize, da.ipa, acc, da.write, frame),
                    _ => None,
                };
                if let Some(kick) = handled {
                    vm.counters.mmio += 1;
                    frame.skip(esr);
                    self.remap(plat, vmi, vm);
                    self.kick_vcpus(plat, v.vm, kick);
                } else {
                    if vm.may_log(plat) {
                        plat.guest_event(GuestEvent::NoDevice { ipa: da.ipa, pc: frame.elr });
                    }
                    inject(plat, vm, frame, da, fetch);
                }
            }
            FaultKind::Translation(_) => {
                let t = plat.pmu();
                let mut hw = vm.pod_fault_hw(plat);
                let r = vm.pod.fault(&mut vm.pager, &mut hw, da.ipa);
                let refused = hw.refused();
                drop(hw);
                let cost = plat.pmu().wrapping_sub(t);
                plat.pod_fault_cost(cost);
                if refused != 0 {
                    scope_broken(plat, &vm.name, refused);
                    self.finish_vm(plat, vmi, vm, false);
                    return;
                }
                match r {
                    Ok(Outcome::Populated { .. } | Outcome::AlreadyMapped | Outcome::Retry) => {}
                    // Its block is zeroed and cleaned in steps, in `step`,
                    // with interrupts taken in between; then it runs again.
                    Ok(Outcome::Filling { chunk }) => vm.fills[v.vcpu as usize] = Some(chunk),
                    Err(PodError::OutsideRam { ipa }) => {
                        if vm.may_log(plat) {
                            plat.guest_event(GuestEvent::OutsideRam { ipa });
                        }
                        inject(plat, vm, frame, da, fetch);
                    }
                    Err(PodError::Exhausted { ipa }) => {
                        plat.log(format_args!(
                            "hyp: guest {}: stopped: out of memory: PoD pool Exhausted at IPA {:#x} ({} bytes populated, nothing reclaimable)",
                            vm.name,
                            ipa,
                            vm.pod.stats().populated_bytes()
                        ));
                        self.finish_vm(plat, vmi, vm, false);
                    }
                    Err(e) => {
                        plat.log(format_args!("hyp: guest {}: stopped: {:?} (guest memory could not be populated)", vm.name, e));
                        self.finish_vm(plat, vmi, vm, false);
                    }
                }
            }
            FaultKind::Permission(_) if da.write && !fetch && vm.pager.leaf(da.ipa).is_some_and(|l| l.attrs == MemAttrs::Rom) => {
                // A firmware guest's flash, as QEMU's pflash in read-array
                // mode: a command to the variable store, or else a write
                // that is no flash command and changes nothing.
                vm.counters.flash_writes += 1;
                let kick = match (da.access.as_ref(), vm.devices.as_mut()) {
                    (Some(acc), Some(d)) => d.mmio(v.vcpu as usize, da.ipa, acc, da.write, frame),
                    _ => None,
                };
                frame.skip(esr);
                if let Some(kick) = kick {
                    self.remap(plat, vmi, vm);
                    self.kick_vcpus(plat, v.vm, kick);
                }
            }
            _ => {
                if vm.may_log(plat) {
                    plat.guest_event(GuestEvent::Stage2Fault { fsc: da.fault.fsc(), ipa: da.ipa });
                }
                inject(plat, vm, frame, da, fetch);
            }
        }
    }

    /// Apply the stage-2 change a device access asked for. A failure stops
    /// the guest (its flash would read wrong).
    fn remap(&self, plat: &mut P, vmi: usize, vm: &mut Vm<P>) {
        let Some(r) = vm.devices.as_mut().and_then(|d| d.take_remap()) else { return };
        let mut hw = vm.hw(plat);
        let done = match r.pa {
            Some(pa) => vm.pager.map(r.ipa, pa, LeafSize::Block2M, MemAttrs::Rom, &mut hw),
            None => vm.pager.unmap(r.ipa, LeafSize::Block2M, &mut hw),
        };
        drop(hw);
        if done.is_err() {
            plat.log(format_args!("hyp: guest {}: stopped: its flash at {:#x} could not be remapped", vm.name, r.ipa));
            self.finish_vm(plat, vmi, vm, false);
        }
    }

    /// A hypercall or PSCI call (HVC or SMC conduit). True when it called
    /// the scheduler on this pCPU (CPU_OFF).
    fn call(&self, plat: &mut P, vm: &mut Vm<P>, v: VcpuRef, frame: &mut TrapFrame, imm: u16) -> bool {
        // SMCCC: calls are `hvc #0` / `smc #0`; any other immediate is not ours.
        if imm != 0 {
            frame.x[0] = hypercall::HC_NOT_SUPPORTED;
            return false;
        }
        let vmi = v.vm as usize;
        // An AArch32 guest's registers are 32 bits; the upper halves are junk.
        let m = if frame.aarch32() { 0xffff_ffff } else { u64::MAX };
        let ret = match hypercall::classify(frame.x[0] & m, frame.x[1] & m, frame.x[2] & m, frame.x[3] & m) {
            Call::Hyp(HypCall::Putc(b)) => {
                vm.vcpus[v.vcpu as usize].out.push(b);
                hypercall::HC_OK
            }
            Call::Hyp(HypCall::Puts8(chunk)) => {
                let out = &mut vm.vcpus[v.vcpu as usize].out;
                for &b in chunk.as_bytes() {
                    if b == b'\n' {
                        out.push(b'\r');
                    }
                    out.push(b);
                }
                hypercall::HC_OK
            }
            Call::Hyp(HypCall::Report { key, value }) => {
                if !vm.may_log(plat) {
                    frame.x[0] = hypercall::HC_OK;
                    return false;
                }
                // Plain text, so tests can read the populated figure at this point.
                plat.log(format_args!(
                    "hyp: guest {} report key={} value={} populated_bytes={}",
                    vm.name,
                    key as u32,
                    value,
                    vm.pod.stats().populated_bytes()
                ));
                hypercall::HC_OK
            }
            Call::Hyp(HypCall::Exit { status }) => {
                self.finish_vm(plat, vmi, vm, status == 0);
                return false;
            }
            Call::Psci(PsciCall::SystemOff) => {
                self.finish_vm(plat, vmi, vm, true);
                return false;
            }
            Call::Psci(PsciCall::SystemReset) => {
                self.request_restart(plat, vmi, vm);
                return false;
            }
            Call::Psci(PsciCall::Version) => 0x0001_0000, // PSCI 1.0
            Call::Psci(PsciCall::MigrateInfoType) => 2,    // trusted OS not present
            Call::Psci(PsciCall::Features { fid }) => match fid {
                psci::VERSION | psci::CPU_OFF | psci::CPU_ON_32 | psci::CPU_ON_64 | psci::AFFINITY_INFO_32
                | psci::AFFINITY_INFO_64 | psci::SYSTEM_OFF | psci::SYSTEM_RESET | psci::FEATURES
                | psci::MIGRATE_INFO_TYPE => 0,
                _ => psci::ret(psci::NOT_SUPPORTED),
            },
            Call::Psci(PsciCall::CpuOn { target, entry, context_id }) => self.cpu_on(plat, vm, vmi, target, entry, context_id),
            Call::Psci(PsciCall::CpuOff) => {
                vm.vcpus[v.vcpu as usize].power = Power::Off;
                self.core().off(v);
                // With no vCPU on, nothing can ever turn one on again.
                if vm.vcpus.iter().all(|c| c.power == Power::Off) {
                    plat.log(format_args!("hyp: guest {}: its last vCPU called CPU_OFF; stopped", vm.name));
                    self.finish_vm(plat, vmi, vm, false);
                }
                return true;
            }
            Call::Psci(PsciCall::AffinityInfo { target, lowest_level }) => {
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
        false
    }

    fn cpu_on(&self, plat: &mut P, vm: &mut Vm<P>, vmi: usize, target: u64, entry: u64, context: u64) -> u64 {
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
        let _ = vm.cache_maint(plat, CmRequest::Reset { vcpu: VcpuId(i as u8) });
        let aarch32 = vm.aarch32;
        vm.vcpus[i].reset(plat, i, entry, context, aarch32);
        // A pCPU that went idle after this vCPU's CPU_OFF may still hold its old
        // live state: drop it, the reset state above is what runs next.
        let me = VcpuRef::new(vmi as u8, i as u8);
        let woken = {
            let mut core = self.core();
            for p in 0..core.loaded.len() {
                if core.loaded[p] == Some(me) {
                    self.set_loaded(&mut core, p, None);
                }
            }
            core.sched.wake(me)
        };
        // An idle pCPU that can run it now is woken at once, not at its tick.
        if let Ok(Some(p)) = woken {
            if p != plat.cpu_id() {
                plat.kick(1 << p);
            }
        }
        0
    }
}

/// The vCPU index an MPIDR names (Aff0; our vCPUs have Aff1..3 = 0).
fn vcpu_of(mpidr: u64) -> Option<usize> {
    (mpidr & 0xff_ffff_ff00 == 0).then_some((mpidr & 0xff) as usize)
}

/// Give the guest a synchronous external abort for `da`.
fn inject<P: Platform>(plat: &mut P, vm: &Vm<P>, frame: &mut TrapFrame, da: &DataAbort, fetch: bool) {
    let kind = if fetch { AbortKind::Instruction } else { AbortKind::Data { write: da.write } };
    plat.inject_abort(frame, da.far, kind, vm.aarch32);
}

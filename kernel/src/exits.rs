//! The exception entry points from the vectors: read the syndrome, hand
//! the trap to `dispatch` (which locks the trapping VM), then
//! [`hyp::leave`] runs what comes next.

use crate::arch::{self, sysreg_read, TrapFrame};
use crate::hyp::{self, hyp};
use crate::pcpu::Kernel;

#[unsafe(no_mangle)]
extern "C" fn lower_sync(frame: &mut TrapFrame) {
    crate::prof::start();
    let pcpu = arch::cpu_id();
    let (esr, far) = (sysreg_read!("esr_el2"), sysreg_read!("far_el2"));
    let s = dispatch::Syndrome { esr, far, hpfar: fault_hpfar(esr, far, frame.aarch32()) };
    let fast = hyp().trap(&mut Kernel, pcpu, frame, s);
    if !fast {
        hyp::leave(pcpu, frame);
    }
    crate::console::drain();
    crate::hw::preempt_point();
    crate::prof::end(fast);
}

/// HPFAR_EL2, or what it should say where the architecture leaves it
/// UNKNOWN: a stage-2 permission fault that is not on a stage-1 table walk
/// (a write to a firmware guest's flash). There the faulting IPA comes from
/// the guest's own stage-1 translation of FAR (as KVM does). Should that
/// walk fail (the guest changed its tables meanwhile), HPFAR is kept.
fn fault_hpfar(esr: u64, far: u64, aarch32: bool) -> u64 {
    let hpfar = sysreg_read!("hpfar_el2");
    let ec = (esr >> 26) & 0x3f;
    let (fsc, s1ptw) = (esr & 0x3f, esr & (1 << 7) != 0);
    // Lower-EL instruction or data abort, permission fault at any level.
    if !(ec == 0x20 || ec == 0x24) || fsc & 0x3c != 0x0c || s1ptw {
        return hpfar;
    }
    // From AArch32, FAR_EL2 holds HDFAR in [31:0] and HIFAR in [63:32].
    let va = match (aarch32, ec) {
        (true, 0x20) => far >> 32,
        (true, _) => far & 0xffff_ffff,
        _ => far,
    };
    arch::guest_ipa(va).map_or(hpfar, |ipa| (ipa & !0xfff) >> 8)
}

#[unsafe(no_mangle)]
extern "C" fn lower_irq(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    if let Some(h) = hyp::HYP.get() {
        if let Some(v) = h.loaded(pcpu) {
            h.vm(v.vm as usize).counters.irq_exits += 1;
        }
    }
    hyp::poll_tick(pcpu);
    hyp::leave(pcpu, frame);
    crate::hw::preempt_point();
}

#[unsafe(no_mangle)]
extern "C" fn lower_serror(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    let esr = sysreg_read!("esr_el2");
    let h = hyp();
    if let Some(v) = h.loaded(pcpu) {
        let mut vm = h.vm(v.vm as usize);
        crate::kprintln!("hyp: guest {}: SError (ESR {:#x}); stopping it", vm.name, esr);
        h.finish_vm(&mut Kernel, v.vm as usize, &mut vm, false);
    }
    hyp::leave(pcpu, frame);
    crate::hw::preempt_point();
}

#[unsafe(no_mangle)]
extern "C" fn el2_unexpected(frame: &mut TrapFrame, kind: u64) {
    let esr = sysreg_read!("esr_el2");
    let far = sysreg_read!("far_el2");
    panic!("exception at EL2: vector {} ESR {:#x} FAR {:#x} ELR {:#x}", kind, esr, far, frame.elr);
}

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
    let s = dispatch::Syndrome { esr: sysreg_read!("esr_el2"), far: sysreg_read!("far_el2"), hpfar: sysreg_read!("hpfar_el2") };
    let fast = hyp().trap(&mut Kernel, pcpu, frame, s);
    if !fast {
        hyp::leave(pcpu, frame);
    }
    crate::console::drain();
    crate::hw::preempt_point();
    crate::prof::end(fast);
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

//! The exception entry points from the vectors: read the syndrome, hand
//! the trap to `dispatch` under the hypervisor lock, then [`hyp::leave`]
//! runs what comes next.

use crate::arch::{self, sysreg_read, TrapFrame};
use crate::hyp::{self, HYP};

#[unsafe(no_mangle)]
extern "C" fn lower_sync(frame: &mut TrapFrame) {
    let pcpu = arch::cpu_id();
    let s = dispatch::Syndrome { esr: sysreg_read!("esr_el2"), far: sysreg_read!("far_el2"), hpfar: sysreg_read!("hpfar_el2") };
    let resumed = {
        let mut g = HYP.lock();
        let h = g.as_mut().expect("trap before boot finished");
        h.trap(pcpu, frame, s);
        h.try_resume(pcpu)
    };
    if !resumed {
        hyp::leave(pcpu, frame);
    }
    crate::console::drain();
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

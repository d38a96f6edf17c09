//! The trap decoder: any ESR/HSR, FAR, HPFAR and CPSR. It must never
//! panic, must decode deterministically, and what it decodes must encode
//! back to a syndrome that decodes to the same trap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swhyp_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut i = Input::new(data);
    let (esr, far, hpfar, cpsr) = (i.u64(), i.u64(), i.u64(), i.u64());
    let t = trap::decode(esr, far, hpfar);
    assert_eq!(t, trap::decode(esr, far, hpfar));
    let _ = trap::cond_passed(esr, cpsr);
    let _ = trap::cond(esr);
    let next = trap::aarch32::advance_it(cpsr);
    // Only the IT bits change.
    assert_eq!(next & !((0b11 << 25) | (0x3f << 10)), cpsr & !((0b11 << 25) | (0x3f << 10)));
    for rt in 0..16 {
        if let Some(x) = trap::aarch32::xreg(rt, cpsr) {
            assert!(x < 31);
        }
    }
    let _ = trap::hypercall::classify(far, hpfar, cpsr, esr);
    if !matches!(t, trap::Trap::Unknown { .. }) {
        for w in [trap::Width::Aarch64, trap::Width::Aarch32] {
            let (e, f, h) = trap::encode(&t, w);
            let back = trap::decode(e, f, h);
            // The AArch32 form of an AArch64-only trap decodes as itself too.
            if !matches!(back, trap::Trap::Unknown { .. }) {
                assert_eq!(back, t, "esr {esr:#x} -> {t:?} -> {e:#x} -> {back:?}");
            }
        }
    }
});

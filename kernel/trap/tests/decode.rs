//! Table-driven decoder tests with real syndrome values.

use proptest::prelude::*;
use trap::*;

/// AArch64 EC 0x18 syndrome, built independently of the crate's encoder.
fn sys_esr(op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, rt: u64, read: bool) -> u64 {
    (0x18 << 26)
        | (1 << 25)
        | (op0 << 20)
        | (op2 << 17)
        | (op1 << 14)
        | (crn << 10)
        | (rt << 5)
        | (crm << 1)
        | read as u64
}

/// AArch32 EC 0x03 syndrome with CV=1, COND=AL.
fn mcr_esr(opc1: u64, crn: u64, crm: u64, opc2: u64, rt: u64, read: bool) -> u64 {
    (0x03 << 26)
        | (1 << 25)
        | (1 << 24)
        | (0xe << 20)
        | (opc2 << 17)
        | (opc1 << 14)
        | (crn << 10)
        | (rt << 5)
        | (crm << 1)
        | read as u64
}

/// AArch32 EC 0x04 syndrome with CV=1, COND=AL.
fn mcrr_esr(opc1: u64, crm: u64, rt: u64, rt2: u64, read: bool) -> u64 {
    (0x04 << 26)
        | (1 << 25)
        | (1 << 24)
        | (0xe << 20)
        | (opc1 << 16)
        | (rt2 << 10)
        | (rt << 5)
        | (crm << 1)
        | read as u64
}

/// (op0, op1, CRn, CRm, op2) and (opc1, CRn, CRm, opc2).
type Enc5 = (u64, u64, u64, u64, u64);
type Enc4 = (u64, u64, u64, u64);

fn d(esr: u64) -> Trap {
    decode(esr, 0, 0)
}

#[test]
fn real_values() {
    let table: &[(u64, Trap)] = &[
        // QEMU, DC CISW x5 from EL1 with HCR_EL2.TSW.
        (
            0x6214_1cbc,
            Trap::SetWay {
                op: SwOp::Cisw,
                rt: 5,
            },
        ),
        (
            0x6214_1c0c,
            Trap::SetWay {
                op: SwOp::Isw,
                rt: 0,
            },
        ),
        (
            0x6214_1c74,
            Trap::SetWay {
                op: SwOp::Csw,
                rt: 3,
            },
        ),
        // AArch32 MCR p15, 0, r0, c7, c14, 2 (DCCISW), c6 (DCISW), c10 (DCCSW).
        (
            0x0fe4_1c1c,
            Trap::SetWay {
                op: SwOp::Cisw,
                rt: 0,
            },
        ),
        (
            0x0fe4_1c2c,
            Trap::SetWay {
                op: SwOp::Isw,
                rt: 1,
            },
        ),
        (
            0x0fe4_1ff4,
            Trap::SetWay {
                op: SwOp::Csw,
                rt: 31,
            },
        ),
        // MSR SCTLR_EL1, x1 / MRS x1, SCTLR_EL1.
        (
            0x6230_0420,
            Trap::VmReg {
                reg: VmReg::SctlrEl1,
                rt: 1,
                rt2: None,
                write: true,
            },
        ),
        (
            0x6230_0421,
            Trap::VmReg {
                reg: VmReg::SctlrEl1,
                rt: 1,
                rt2: None,
                write: false,
            },
        ),
        // MCR p15, 0, r2, c1, c0, 0 (SCTLR) / MRC.
        (
            0x0fe0_0440,
            Trap::VmReg {
                reg: VmReg::Sctlr,
                rt: 2,
                rt2: None,
                write: true,
            },
        ),
        (
            0x0fe0_0441,
            Trap::VmReg {
                reg: VmReg::Sctlr,
                rt: 2,
                rt2: None,
                write: false,
            },
        ),
        // MCRR p15, 0, r0, r1, c2 (TTBR0); MCRR p15, 1, r2, r3, c2 (TTBR1).
        (
            0x13e0_0404,
            Trap::VmReg {
                reg: VmReg::Ttbr0,
                rt: 0,
                rt2: Some(1),
                write: true,
            },
        ),
        (
            0x13e1_0c44,
            Trap::VmReg {
                reg: VmReg::Ttbr1,
                rt: 2,
                rt2: Some(3),
                write: true,
            },
        ),
        (
            0x13e1_0c45,
            Trap::VmReg {
                reg: VmReg::Ttbr1,
                rt: 2,
                rt2: Some(3),
                write: false,
            },
        ),
        // HVC #0 and HVC #0x1234 (AArch64), HVC #0 (AArch32).
        (0x5a00_0000, Trap::Hvc { imm: 0 }),
        (0x5a00_1234, Trap::Hvc { imm: 0x1234 }),
        (0x4a00_0000, Trap::Hvc { imm: 0 }),
        (0x4a00_ffff, Trap::Hvc { imm: 0xffff }),
        // SMC #0 / #1 (AArch64), SMC (AArch32, no immediate reported).
        (0x5e00_0000, Trap::Smc { imm: 0 }),
        (0x5e00_0001, Trap::Smc { imm: 1 }),
        (0x4fe0_0000, Trap::Smc { imm: 0 }),
        // WFI / WFE.
        (0x07e0_0000, Trap::Wfx { wfe: false, timed: false }),
        (0x07e0_0002, Trap::Wfx { wfe: false, timed: true }),
        (0x07e0_0001, Trap::Wfx { wfe: true, timed: false }),
        // MRS x0, CNTPCT_EL0 is not decoded further.
        (
            sys_esr(3, 3, 14, 0, 1, 0, true),
            Trap::SysReg {
                op0: 3,
                op1: 3,
                crn: 14,
                crm: 0,
                op2: 1,
                rt: 0,
                read: true,
            },
        ),
        // DC CIVAC x2 is not set/way.
        (
            sys_esr(1, 3, 7, 14, 1, 2, false),
            Trap::SysReg {
                op0: 1,
                op1: 3,
                crn: 7,
                crm: 14,
                op2: 1,
                rt: 2,
                read: false,
            },
        ),
        // MRC p15, 0, r0, c0, c0, 5 (MPIDR) is plain cp15.
        (
            mcr_esr(0, 0, 0, 5, 0, true),
            Trap::Cp15 {
                opc1: 0,
                crn: 0,
                crm: 0,
                opc2: 5,
                rt: 0,
                read: true,
            },
        ),
        // MRC with a set/way encoding is not a set/way op.
        (
            mcr_esr(0, 7, 14, 2, 4, true),
            Trap::Cp15 {
                opc1: 0,
                crn: 7,
                crm: 14,
                opc2: 2,
                rt: 4,
                read: true,
            },
        ),
        // MRRC p15, 0, r0, r1, c14 (CNTPCT) is plain.
        (
            mcrr_esr(0, 14, 0, 1, true),
            Trap::Cp15Wide {
                opc1: 0,
                crm: 14,
                rt: 0,
                rt2: 1,
                read: true,
            },
        ),
        // EC 0: unknown reason; 0x15: SVC; 0x25: data abort from EL2 itself.
        (0x0200_0000, Trap::Unknown { ec: 0, iss: 0 }),
        (0x5600_0000, Trap::Unknown { ec: 0x15, iss: 0 }),
        (
            0x9600_0050,
            Trap::Unknown {
                ec: 0x25,
                iss: 0x50,
            },
        ),
    ];
    for (esr, want) in table {
        assert_eq!(d(*esr), *want, "esr {esr:#x}");
    }
}

#[test]
fn every_vmreg_aarch64() {
    let table: &[(VmReg, Enc5)] = &[
        (VmReg::SctlrEl1, (3, 0, 1, 0, 0)),
        (VmReg::Ttbr0El1, (3, 0, 2, 0, 0)),
        (VmReg::Ttbr1El1, (3, 0, 2, 0, 1)),
        (VmReg::TcrEl1, (3, 0, 2, 0, 2)),
        (VmReg::Afsr0El1, (3, 0, 5, 1, 0)),
        (VmReg::Afsr1El1, (3, 0, 5, 1, 1)),
        (VmReg::EsrEl1, (3, 0, 5, 2, 0)),
        (VmReg::FarEl1, (3, 0, 6, 0, 0)),
        (VmReg::MairEl1, (3, 0, 10, 2, 0)),
        (VmReg::AmairEl1, (3, 0, 10, 3, 0)),
        (VmReg::ContextidrEl1, (3, 0, 13, 0, 1)),
    ];
    for &(reg, (op0, op1, crn, crm, op2)) in table {
        for rt in [0, 7, 30, 31] {
            for read in [false, true] {
                let esr = sys_esr(op0, op1, crn, crm, op2, rt, read);
                let want = Trap::VmReg {
                    reg,
                    rt: rt as u8,
                    rt2: None,
                    write: !read,
                };
                assert_eq!(d(esr), want, "{}", reg.name());
                assert!(reg.is_aarch64());
            }
        }
    }
    // The same registers at EL2 (op1 = 4) are not guest VM registers.
    assert!(matches!(
        d(sys_esr(3, 4, 1, 0, 0, 0, false)),
        Trap::SysReg { .. }
    ));
}

#[test]
fn every_vmreg_aarch32() {
    let table: &[(VmReg, Enc4)] = &[
        (VmReg::Sctlr, (0, 1, 0, 0)),
        (VmReg::Ttbr0, (0, 2, 0, 0)),
        (VmReg::Ttbr1, (0, 2, 0, 1)),
        (VmReg::Ttbcr, (0, 2, 0, 2)),
        (VmReg::Ttbcr2, (0, 2, 0, 3)),
        (VmReg::Dacr, (0, 3, 0, 0)),
        (VmReg::Dfsr, (0, 5, 0, 0)),
        (VmReg::Ifsr, (0, 5, 0, 1)),
        (VmReg::Adfsr, (0, 5, 1, 0)),
        (VmReg::Aifsr, (0, 5, 1, 1)),
        (VmReg::Dfar, (0, 6, 0, 0)),
        (VmReg::Ifar, (0, 6, 0, 2)),
        (VmReg::Prrr, (0, 10, 2, 0)),
        (VmReg::Nmrr, (0, 10, 2, 1)),
        (VmReg::Amair0, (0, 10, 3, 0)),
        (VmReg::Amair1, (0, 10, 3, 1)),
        (VmReg::Contextidr, (0, 13, 0, 1)),
    ];
    for &(reg, (opc1, crn, crm, opc2)) in table {
        for rt in [0, 1, 12, 14] {
            for read in [false, true] {
                let esr = mcr_esr(opc1, crn, crm, opc2, rt, read);
                let want = Trap::VmReg {
                    reg,
                    rt: rt as u8,
                    rt2: None,
                    write: !read,
                };
                assert_eq!(d(esr), want, "{}", reg.name());
                assert!(!reg.is_aarch64());
            }
        }
        // Same registers with opc1 != 0 are something else.
        assert!(matches!(
            d(mcr_esr(1, crn, crm, opc2, 0, false)),
            Trap::Cp15 { .. }
        ));
    }
    for (reg, opc1) in [(VmReg::Ttbr0, 0), (VmReg::Ttbr1, 1)] {
        for read in [false, true] {
            let want = Trap::VmReg {
                reg,
                rt: 4,
                rt2: Some(5),
                write: !read,
            };
            assert_eq!(d(mcrr_esr(opc1, 2, 4, 5, read)), want);
        }
    }
    // MCRR p15, 2, .., c2 is not a TTBR.
    assert!(matches!(
        d(mcrr_esr(2, 2, 0, 1, false)),
        Trap::Cp15Wide { .. }
    ));
    // Every register has exactly one encoding of its own width.
    for reg in VmReg::ALL {
        assert_ne!(
            reg.sys_encoding().is_some(),
            reg.cp15_encoding().is_some(),
            "{}",
            reg.name()
        );
    }
    assert!(VmReg::SctlrEl1.is_sctlr() && VmReg::Sctlr.is_sctlr() && !VmReg::Ttbr0.is_sctlr());
}

#[test]
fn data_aborts() {
    let far = 0x0000_ffff_8000_1234u64;
    let hpfar = 0x0009_0000_0000_0000u64 | (0x0900_0000 >> 8);
    // STR w1, [x] to unmapped IPA 0x9000234: ISV, SAS=word, SRT=1, WnR, level-3 translation.
    let t = decode(0x9381_0047, far, hpfar);
    let Trap::DataAbort(a) = t else {
        panic!("{t:?}")
    };
    assert_eq!(a.ipa, 0x0900_0234);
    assert_eq!(a.far, far);
    assert!(a.far_valid && a.write && !a.s1ptw && !a.cache_maint && !a.ext_abort);
    assert_eq!(a.fault, FaultKind::Translation(3));
    assert_eq!(
        a.access,
        Some(Access {
            size_bytes: 4,
            rt: 1,
            sign_extend: false,
            sixty_four: false,
            acq_rel: false
        })
    );

    // LDRSB x30, ...: ISV, SAS=byte, SSE, SRT=30, SF, read, level-2 translation.
    let t = decode(0x933e_8006, 0x4000_0fff, 0x40_0000 << 4);
    let Trap::DataAbort(a) = t else {
        panic!("{t:?}")
    };
    assert_eq!(a.ipa, 0x4_0000_0fff);
    assert!(!a.write);
    assert_eq!(a.fault, FaultKind::Translation(2));
    assert_eq!(
        a.access,
        Some(Access {
            size_bytes: 1,
            rt: 30,
            sign_extend: true,
            sixty_four: true,
            acq_rel: false
        })
    );

    // LDAR x2 (64-bit, acquire).
    let Trap::DataAbort(a) = decode(0x93c2_c007, 0, 0) else {
        panic!()
    };
    assert_eq!(
        a.access,
        Some(Access {
            size_bytes: 8,
            rt: 2,
            sign_extend: false,
            sixty_four: true,
            acq_rel: true
        })
    );

    // Without ISV (e.g. LDP): no access syndrome.
    let Trap::DataAbort(a) = decode(0x9200_0046, 0, 0) else {
        panic!()
    };
    assert_eq!(a.access, None);
    assert!(a.write);
    assert_eq!(a.fault, FaultKind::Translation(2));

    // DC IVAC to an unmapped IPA: CM and WnR set.
    let Trap::DataAbort(a) = decode(0x9200_0147, 0, 0) else {
        panic!()
    };
    assert!(a.cache_maint && a.write);

    // Stage-1 walk faulting at stage 2, FnV, EA.
    let Trap::DataAbort(a) = decode(0x9200_0687, 0, 0) else {
        panic!()
    };
    assert!(a.s1ptw && !a.far_valid && a.ext_abort);

    let kinds: &[(u64, FaultKind)] = &[
        (0x00, FaultKind::AddressSize(0)),
        (0x03, FaultKind::AddressSize(3)),
        (0x04, FaultKind::Translation(0)),
        (0x05, FaultKind::Translation(1)),
        (0x07, FaultKind::Translation(3)),
        (0x08, FaultKind::AccessFlag(0)),
        (0x09, FaultKind::AccessFlag(1)),
        (0x0a, FaultKind::AccessFlag(2)),
        (0x0b, FaultKind::AccessFlag(3)),
        (0x0c, FaultKind::Permission(0)),
        (0x0d, FaultKind::Permission(1)),
        (0x0e, FaultKind::Permission(2)),
        (0x0f, FaultKind::Permission(3)),
        (0x10, FaultKind::SyncExternal),
        (0x15, FaultKind::SyncExternalWalk(1)),
        (0x21, FaultKind::Alignment),
        (0x30, FaultKind::Other(0x30)),
        (0x2b, FaultKind::Other(0x2b)),
        (0x11, FaultKind::Other(0x11)),
    ];
    for &(fsc, want) in kinds {
        let Trap::DataAbort(a) = decode(0x9200_0000 | fsc, 0, 0) else {
            panic!()
        };
        assert_eq!(a.fault, want, "dfsc {fsc:#x}");
        assert_eq!(want.fsc(), fsc as u8);
        let Trap::InstrAbort(i) = decode(0x8200_0000 | fsc, 0, 0) else {
            panic!()
        };
        assert_eq!(i.fault, want, "ifsc {fsc:#x}");
    }
    assert!(FaultKind::Permission(3).ipa_valid());
    assert!(!FaultKind::SyncExternal.ipa_valid());
}

#[test]
fn instruction_abort() {
    let t = decode(0x8200_0007, 0x4008_0abc, 0x40080 << 4);
    assert_eq!(
        t,
        Trap::InstrAbort(InstrAbort {
            ipa: 0x4008_0abc,
            far: 0x4008_0abc,
            far_valid: true,
            fault: FaultKind::Translation(3),
            s1ptw: false,
        })
    );
}

#[test]
fn armv7_hsr() {
    assert_eq!(decode_hsr(0x4a00_0000, 0, 0), Trap::Hvc { imm: 0 });
    assert_eq!(
        decode_hsr(0x0fe4_1c1c, 0, 0),
        Trap::SetWay {
            op: SwOp::Cisw,
            rt: 0
        }
    );
    assert_eq!(
        decode_hsr(0x0fe0_0440, 0, 0),
        Trap::VmReg {
            reg: VmReg::Sctlr,
            rt: 2,
            rt2: None,
            write: true
        }
    );
    // STR r3, [..] to IPA 0x0090_1008 (HPFAR[31:4] = IPA[39:12]).
    let Trap::DataAbort(a) = decode_hsr(0x9383_0047, 0xc090_0008, 0x9010) else {
        panic!()
    };
    assert_eq!(a.ipa, 0x0090_1008);
    assert_eq!(
        a.access.map(|x| (x.rt, x.size_bytes, x.sixty_four)),
        Some((3, 4, false))
    );
    // An LPAE IPA above 4 GiB.
    let Trap::DataAbort(a) = decode_hsr(0x9200_0006, 0x123, 0x0fff_fff0) else {
        panic!()
    };
    assert_eq!(a.ipa, 0xf_ffff_f123);
    assert_eq!(decode_hsr(0x07e0_0001, 0, 0), Trap::Wfx { wfe: true, timed: false });
}

#[test]
fn helpers() {
    assert!(il_32bit(0x6214_1cbc));
    assert!(!il_32bit(0x0c00_0000));
    assert_eq!(sw_level(0), 0);
    assert_eq!(sw_level(0b010), 1);
    assert_eq!(sw_level(0x8000_0004), 2);
    assert_eq!(sw_level(u64::MAX), 7);
    assert_eq!(ec_of(0x6214_1cbc), ec::SYS64);
    assert_eq!(iss_of(0x6214_1cbc), 0x14_1cbc);
    assert_eq!(
        fault_ipa(0xfff_ffff, 0xffff_ffff_ffff_ffff),
        0x00ff_ffff_ffff_ffff
    );
}

const SVC: u64 = 0x13; // AArch32 SVC mode, M[4] set.
const Z: u64 = 1 << 30;
const N: u64 = 1 << 31;
const C: u64 = 1 << 29;
const V: u64 = 1 << 28;

/// MCR with CV=1 and a condition.
fn mcr_cond(cond: u64) -> u64 {
    (mcr_esr(0, 7, 14, 2, 0, false) & !(0xf << 20)) | (cond << 20)
}

#[test]
fn conditions() {
    assert_eq!(cond(mcr_cond(0)), Some(0));
    assert_eq!(cond(0x6214_1cbc), None);
    assert_eq!(cond(mcr_cond(0) & !(1 << 24)), None);

    // cond, flags that pass, flags that fail.
    let table: &[(u64, u64, u64)] = &[
        (0x0, Z, 0),
        (0x1, 0, Z),
        (0x2, C, 0),
        (0x3, 0, C),
        (0x4, N, 0),
        (0x5, 0, N),
        (0x6, V, 0),
        (0x7, 0, V),
        (0x8, C, C | Z),
        (0x9, Z, C),
        (0xa, N | V, N),
        (0xb, N, N | V),
        (0xc, 0, Z),
        (0xd, Z, 0),
    ];
    for &(c, pass, fail) in table {
        assert!(
            cond_passed(mcr_cond(c), SVC | pass),
            "cond {c:#x} flags {pass:#x}"
        );
        assert!(
            !cond_passed(mcr_cond(c), SVC | fail),
            "cond {c:#x} flags {fail:#x}"
        );
        // WFI and MCRR are conditional too.
        let wfi = (0x07e0_0000 & !(0xf << 20)) | (c << 20);
        assert!(!cond_passed(wfi, SVC | fail));
        let mcrr = (mcrr_esr(0, 2, 0, 1, false) & !(0xf << 20)) | (c << 20);
        assert!(!cond_passed(mcrr, SVC | fail));
        // An AArch64 SPSR (M[4] clear) never fails.
        assert!(cond_passed(mcr_cond(c), fail));
    }
    assert!(cond_passed(mcr_cond(0xe), SVC));
    assert!(cond_passed(mcr_cond(0xf), SVC));
    // HVC and aborts are unconditional.
    assert!(cond_passed(0x4a00_0000, SVC));
    assert!(cond_passed(0x9200_0047, SVC));

    // CV clear (Thumb): the condition comes from ITSTATE. IT NE, first insn:
    // ITSTATE = 0b0001_1000 -> CPSR[15:10] = 0b000110, CPSR[26:25] = 0.
    let no_cv = mcr_cond(0) & !(1 << 24);
    let it_ne = SVC | (0b000110 << 10);
    assert!(!cond_passed(no_cv, it_ne | Z));
    assert!(cond_passed(no_cv, it_ne));
    // IT EQ with ITSTATE[1:0] used: ITSTATE = 0b0000_0011 -> cond 0 (EQ).
    let it_eq = SVC | (0b11 << 25);
    assert!(!cond_passed(no_cv, it_eq));
    assert!(cond_passed(no_cv, it_eq | Z));
    // No IT block: unconditional.
    assert!(cond_passed(no_cv, SVC));

    // AArch32 SMC: CCKNOWNPASS clear means passed whatever COND says.
    let smc = (0x13 << 26) | (1 << 25) | (1 << 24); // COND = EQ
    assert!(cond_passed(smc, SVC));
    assert!(!cond_passed(smc | (1 << 19), SVC));
    assert!(cond_passed(smc | (1 << 19), SVC | Z));
}

fn any_trap_input() -> impl Strategy<Value = (u64, u64, u64)> {
    // Bias half the cases onto the classes we decode.
    let ecs = prop::sample::select(vec![
        0x01u64, 0x03, 0x04, 0x12, 0x13, 0x16, 0x17, 0x18, 0x20, 0x24,
    ]);
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (ecs, any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(ec, r, far, hpfar)| (
            (r & !(0x3f << 26)) | (ec << 26),
            far,
            hpfar
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn decode_never_panics((esr, far, hpfar) in (any::<u64>(), any::<u64>(), any::<u64>())) {
        let _ = decode(esr, far, hpfar);
        let _ = decode_hsr(esr as u32, far as u32, hpfar as u32);
        let _ = cond_passed(esr, far);
        let _ = cond(esr);
    }

    #[test]
    fn decode_encode_round_trip((esr, far, hpfar) in any_trap_input()) {
        let t = decode(esr, far, hpfar);
        for w in [Width::Aarch64, Width::Aarch32] {
            let (e2, f2, h2) = encode(&t, w);
            prop_assert_eq!(decode(e2, f2, h2), t);
            // The encoder always gives a passing condition.
            if !matches!(t, Trap::Unknown { .. }) {
                prop_assert!(cond_passed(e2, 0x10));
            }
        }
        if let Trap::DataAbort(a) = t {
            prop_assert_eq!(a.ipa & 0xfff, far & 0xfff);
            if let Some(acc) = a.access {
                prop_assert!([1, 2, 4, 8].contains(&acc.size_bytes));
            }
        }
    }

    #[test]
    fn set_way_from_either_width(op in 0usize..3, rt in 0u8..31) {
        let op = [SwOp::Isw, SwOp::Csw, SwOp::Cisw][op];
        let t = Trap::SetWay { op, rt };
        for w in [Width::Aarch64, Width::Aarch32] {
            let (e, f, h) = encode(&t, w);
            prop_assert_eq!(decode(e, f, h), t);
        }
    }
}

#[test]
fn cp14_debug_accesses() {
    // MCR p14, 0, r2, c0, c0, 4 (DBGBVR0): EC 0x05, IL, CV, COND = AL.
    let esr = (0x05u64 << 26) | (1 << 25) | (1 << 24) | (0xe << 20) | (4 << 17) | (2 << 5);
    let want = Trap::Cp14 { opc1: 0, crn: 0, crm: 0, opc2: 4, rt: 2, read: false };
    assert_eq!(decode(esr, 0, 0), want);
    // MRRC p14, 0, r0, r1, c1 (DBGDRAR) and an LDC/STC p14.
    let wide = Trap::Cp14Wide { opc1: 0, crm: 1, rt: 0, rt2: 1, read: true };
    for t in [want, wide, Trap::Cp14Transfer] {
        let (e, f, h) = encode(&t, Width::Aarch32);
        assert_eq!(decode(e, f, h), t);
        assert!(trap::cond_passed(e, 0x1d3), "COND = AL passes");
    }
}

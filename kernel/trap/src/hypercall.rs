//! THE guest hypercall ABI.
//!
//! A guest calls the hypervisor with `HVC #0` (an HVC with another immediate
//! is not a call of this ABI: the kernel answers it with
//! [`HC_NOT_SUPPORTED`]). The function id is in x0 (w0; r0 on AArch32),
//! arguments in x1..x3, the result comes back in x0. Other registers are
//! preserved. All ids are SMCCC fast calls (bit 31 set).
//!
//! ## Hypervisor service calls (SMCCC "standard hypervisor service" range)
//!
//! | id | name | x1 | x2 | x0 on return |
//! |---|---|---|---|---|
//! | `0x8600_0001` | [`HC_PUTC`] | byte (bits `[7:0]`) | - | 0 |
//! | `0x8600_0002` | [`HC_PUTS8`] | up to 8 bytes, first in bits `[7:0]` | count, 1..=8 | 0, or -2 if count is 0 or > 8 |
//! | `0x8600_0003` | [`HC_EXIT`] | status: 0 ok, nonzero fail | - | does not return |
//! | `0x8600_0004` | [`HC_REPORT`] | key ([`ReportKey`]) | value | 0, or -2 for an unknown key |
//!
//! These ids have the SMC32 bit pattern, but x1 and x2 are read as full
//! 64-bit registers on an AArch64 guest. An AArch32 guest's registers are 32
//! bits, so there `HC_PUTS8` carries at most 4 bytes and `HC_REPORT` values
//! are 32-bit.
//!
//! ## PSCI (0.2 and later)
//! The ids in [`psci`], through HVC (or SMC, which the hypervisor traps).
//! SMC32 ids read their arguments as 32-bit values; SMC64 ids as 64-bit.
//! Results are the PSCI return codes ([`psci::SUCCESS`] ...), sign-extended.
//!
//! ## Return codes
//! 0 success, -1 ([`HC_NOT_SUPPORTED`], also SMCCC/PSCI `NOT_SUPPORTED`) for
//! an unknown function id, -2 ([`HC_INVALID_PARAMETERS`]) for a known
//! function with bad arguments. As `u64`, -1 is `0xffff_ffff_ffff_ffff`.

/// Print one byte on the hypervisor console.
pub const HC_PUTC: u32 = 0x8600_0001;
/// Print 1..=8 bytes packed little-endian in x1; x2 is the count.
pub const HC_PUTS8: u32 = 0x8600_0002;
/// Stop this guest; x1 is the status (0 ok, nonzero failure).
pub const HC_EXIT: u32 = 0x8600_0003;
/// Report a counter to the hypervisor: x1 is a [`ReportKey`], x2 the value.
pub const HC_REPORT: u32 = 0x8600_0004;

/// Success.
pub const HC_OK: u64 = 0;
/// Unknown function id (SMCCC NOT_SUPPORTED, -1).
pub const HC_NOT_SUPPORTED: u64 = -1i64 as u64;
/// Known function, bad arguments (-2, as PSCI INVALID_PARAMETERS).
pub const HC_INVALID_PARAMETERS: u64 = -2i64 as u64;

/// PSCI function ids and return codes.
pub mod psci {
    pub const VERSION: u32 = 0x8400_0000;
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    pub const CPU_OFF: u32 = 0x8400_0002;
    pub const CPU_ON_32: u32 = 0x8400_0003;
    pub const CPU_ON_64: u32 = 0xC400_0003;
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    pub const FEATURES: u32 = 0x8400_000A;

    pub const SUCCESS: i32 = 0;
    pub const NOT_SUPPORTED: i32 = -1;
    pub const INVALID_PARAMETERS: i32 = -2;
    pub const DENIED: i32 = -3;
    pub const ALREADY_ON: i32 = -4;
    pub const ON_PENDING: i32 = -5;
    pub const INTERNAL_FAILURE: i32 = -6;
    pub const NOT_PRESENT: i32 = -7;
    pub const DISABLED: i32 = -8;
    pub const INVALID_ADDRESS: i32 = -9;

    /// A return code as the x0 value (sign-extended). An AArch32 guest
    /// sees the low 32 bits.
    pub const fn ret(code: i32) -> u64 {
        code as i64 as u64
    }
}

/// The counters a guest may report with [`HC_REPORT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ReportKey {
    /// How many set/way operations the guest issued.
    SwOps = 1,
    /// Result of a memory pattern check (0 = pattern intact).
    Pattern = 2,
    /// A PMU counter delta the guest measured.
    PmuDelta = 3,
}

impl ReportKey {
    /// The key for a wire value.
    pub const fn from_u64(v: u64) -> Option<ReportKey> {
        match v {
            1 => Some(ReportKey::SwOps),
            2 => Some(ReportKey::Pattern),
            3 => Some(ReportKey::PmuDelta),
            _ => None,
        }
    }
}

/// Up to 8 bytes of console output from [`HC_PUTS8`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    bytes: [u8; 8],
    len: u8,
}

impl Chunk {
    /// The bytes to print (1..=8 of them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// A call to the hypervisor service range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypCall {
    Putc(u8),
    Puts8(Chunk),
    Exit { status: u64 },
    Report { key: ReportKey, value: u64 },
}

/// A PSCI call with its arguments. SMC32 forms have their arguments
/// already cut to 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    Version,
    CpuSuspend {
        power_state: u32,
        entry: u64,
        context_id: u64,
    },
    CpuOff,
    CpuOn {
        target: u64,
        entry: u64,
        context_id: u64,
    },
    AffinityInfo {
        target: u64,
        lowest_level: u32,
    },
    MigrateInfoType,
    SystemOff,
    SystemReset,
    /// Is function `fid` implemented?
    Features {
        fid: u32,
    },
}

/// What a guest's HVC #0 (or trapped SMC) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Psci(PsciCall),
    Hyp(HypCall),
    /// A known hypervisor function with bad arguments: answer
    /// [`HC_INVALID_PARAMETERS`].
    Invalid(u32),
    /// Not a function of this ABI: answer [`HC_NOT_SUPPORTED`].
    Unknown(u32),
}

/// Classify a call from the guest's x0..x3. Only w0 names the function.
pub fn classify(fid: u64, x1: u64, x2: u64, x3: u64) -> Call {
    let fid = fid as u32;
    // SMC64 (bit 30) ids take 64-bit arguments, SMC32 ids 32-bit ones.
    let w = |x: u64| {
        if fid & (1 << 30) != 0 {
            x
        } else {
            x & 0xffff_ffff
        }
    };
    let psci = |c| Call::Psci(c);
    match fid {
        psci::VERSION => psci(PsciCall::Version),
        psci::CPU_SUSPEND_32 | psci::CPU_SUSPEND_64 => psci(PsciCall::CpuSuspend {
            power_state: x1 as u32,
            entry: w(x2),
            context_id: w(x3),
        }),
        psci::CPU_OFF => psci(PsciCall::CpuOff),
        psci::CPU_ON_32 | psci::CPU_ON_64 => psci(PsciCall::CpuOn {
            target: w(x1),
            entry: w(x2),
            context_id: w(x3),
        }),
        psci::AFFINITY_INFO_32 | psci::AFFINITY_INFO_64 => psci(PsciCall::AffinityInfo {
            target: w(x1),
            lowest_level: x2 as u32,
        }),
        psci::MIGRATE_INFO_TYPE => psci(PsciCall::MigrateInfoType),
        psci::SYSTEM_OFF => psci(PsciCall::SystemOff),
        psci::SYSTEM_RESET => psci(PsciCall::SystemReset),
        psci::FEATURES => psci(PsciCall::Features { fid: x1 as u32 }),
        HC_PUTC => Call::Hyp(HypCall::Putc(x1 as u8)),
        HC_PUTS8 => {
            if x2 == 0 || x2 > 8 {
                return Call::Invalid(fid);
            }
            Call::Hyp(HypCall::Puts8(Chunk {
                bytes: x1.to_le_bytes(),
                len: x2 as u8,
            }))
        }
        HC_EXIT => Call::Hyp(HypCall::Exit { status: x1 }),
        HC_REPORT => match ReportKey::from_u64(x1) {
            Some(key) => Call::Hyp(HypCall::Report { key, value: x2 }),
            None => Call::Invalid(fid),
        },
        _ => Call::Unknown(fid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_codes() {
        assert_eq!(HC_NOT_SUPPORTED, u64::MAX);
        assert_eq!(psci::ret(psci::INVALID_ADDRESS), (-9i64) as u64);
        assert_eq!(psci::ret(psci::NOT_SUPPORTED), HC_NOT_SUPPORTED);
        assert_eq!(psci::ret(psci::INVALID_PARAMETERS), HC_INVALID_PARAMETERS);
        // All are fast calls; hyp calls are in the standard hypervisor
        // service range (owner 6), PSCI in standard secure service (owner 4).
        for id in [HC_PUTC, HC_PUTS8, HC_EXIT, HC_REPORT] {
            assert_eq!(id >> 31, 1);
            assert_eq!((id >> 24) & 0x3f, 6);
        }
        assert_eq!((psci::CPU_ON_64 >> 24) & 0x3f, 4);
    }

    #[test]
    fn hyp_calls() {
        assert_eq!(
            classify(0x8600_0001, 0x141, 0, 0),
            Call::Hyp(HypCall::Putc(0x41))
        );
        let c = classify(0x8600_0002, u64::from_le_bytes(*b"hello, w"), 5, 0);
        match c {
            Call::Hyp(HypCall::Puts8(ch)) => assert_eq!(ch.as_bytes(), b"hello"),
            other => panic!("{other:?}"),
        }
        match classify(0x8600_0002, u64::from_le_bytes(*b"12345678"), 8, 0) {
            Call::Hyp(HypCall::Puts8(ch)) => assert_eq!(ch.as_bytes(), b"12345678"),
            other => panic!("{other:?}"),
        }
        assert_eq!(classify(0x8600_0002, 0, 0, 0), Call::Invalid(HC_PUTS8));
        assert_eq!(classify(0x8600_0002, 0, 9, 0), Call::Invalid(HC_PUTS8));
        assert_eq!(
            classify(0x8600_0003, 7, 0, 0),
            Call::Hyp(HypCall::Exit { status: 7 })
        );
        assert_eq!(
            classify(0x8600_0004, 1, 37000, 0),
            Call::Hyp(HypCall::Report {
                key: ReportKey::SwOps,
                value: 37000
            })
        );
        assert_eq!(
            classify(0x8600_0004, 3, u64::MAX, 0),
            Call::Hyp(HypCall::Report {
                key: ReportKey::PmuDelta,
                value: u64::MAX
            })
        );
        assert_eq!(
            classify(0x8600_0004, 2, 0, 0),
            Call::Hyp(HypCall::Report {
                key: ReportKey::Pattern,
                value: 0
            })
        );
        assert_eq!(classify(0x8600_0004, 4, 0, 0), Call::Invalid(HC_REPORT));
        assert_eq!(classify(0x8600_0004, 0, 0, 0), Call::Invalid(HC_REPORT));
        // Only w0 names the function.
        assert_eq!(
            classify(0xdead_0000_8600_0003, 0, 0, 0),
            Call::Hyp(HypCall::Exit { status: 0 })
        );
    }

    #[test]
    fn unknown_calls() {
        for id in [
            0u64,
            0x8600_0000,
            0x8600_0005,
            0x8400_0005,
            0xC400_0007,
            0x8000_0000,
        ] {
            assert_eq!(classify(id, 0, 0, 0), Call::Unknown(id as u32));
        }
    }

    #[test]
    fn psci_calls() {
        let hi = 0xffff_ffff_0000_0000u64;
        let table: &[(u64, Call)] = &[
            (0x8400_0000, Call::Psci(PsciCall::Version)),
            (0x8400_0002, Call::Psci(PsciCall::CpuOff)),
            (0x8400_0006, Call::Psci(PsciCall::MigrateInfoType)),
            (0x8400_0008, Call::Psci(PsciCall::SystemOff)),
            (0x8400_0009, Call::Psci(PsciCall::SystemReset)),
            (
                0x8400_0001,
                Call::Psci(PsciCall::CpuSuspend {
                    power_state: 1,
                    entry: 2,
                    context_id: 3,
                }),
            ),
            (
                0xC400_0001,
                Call::Psci(PsciCall::CpuSuspend {
                    power_state: 1,
                    entry: hi | 2,
                    context_id: hi | 3,
                }),
            ),
            (
                0x8400_0003,
                Call::Psci(PsciCall::CpuOn {
                    target: 1,
                    entry: 2,
                    context_id: 3,
                }),
            ),
            (
                0xC400_0003,
                Call::Psci(PsciCall::CpuOn {
                    target: hi | 1,
                    entry: hi | 2,
                    context_id: hi | 3,
                }),
            ),
            (
                0x8400_0004,
                Call::Psci(PsciCall::AffinityInfo {
                    target: 1,
                    lowest_level: 2,
                }),
            ),
            (
                0xC400_0004,
                Call::Psci(PsciCall::AffinityInfo {
                    target: hi | 1,
                    lowest_level: 2,
                }),
            ),
            (0x8400_000A, Call::Psci(PsciCall::Features { fid: 1 })),
        ];
        for (fid, want) in table {
            assert_eq!(
                classify(*fid, hi | 1, hi | 2, hi | 3),
                *want,
                "fid {fid:#x}"
            );
        }
    }

    #[test]
    fn report_keys() {
        for k in [ReportKey::SwOps, ReportKey::Pattern, ReportKey::PmuDelta] {
            assert_eq!(ReportKey::from_u64(k as u64), Some(k));
        }
    }
}

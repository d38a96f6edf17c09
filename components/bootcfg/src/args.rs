//! The hypervisor's command line: space-separated `key=value` pairs.

use crate::error::Error;
use crate::MAX_GUESTS;

/// Scheduler policy (`sched=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SchedKind {
    /// Round robin of all vCPUs over all pCPUs.
    #[default]
    Rr,
    /// Each vCPU pinned to one pCPU.
    Pinned,
    /// No scheduling: one vCPU per pCPU, never preempted.
    Null,
}

/// Whether the hardware domain (guest0) is pinned (`hwdom_pin=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HwdomPin {
    /// Pin it when it is seen using set/way operations.
    #[default]
    Auto,
    On,
    Off,
}

/// How a guest's set/way operations are handled (`sw=` / `hyp,sw`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SwMode {
    /// Expect set/way use: trap and emulate from the start.
    Yes,
    /// Expect none: don't trap (a guest that uses set/way anyway is on its
    /// own).
    No,
    /// Trap, and decide from what the guest does.
    #[default]
    Auto,
}

/// How the hypervisor powers the machine off when every guest stopped
/// (`exit=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExitMethod {
    /// PSCI SYSTEM_OFF to the firmware (boards; QEMU exits 0).
    #[default]
    Psci,
    /// Semihosting SYS_EXIT with the guests' status (QEMU with
    /// `-semihosting`: its exit code is 0 only when every guest exited ok).
    Semihosting,
}

/// Who sees the PMU (`pmu=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PmuMode {
    /// Guests' PMU accesses trap and read a per-vCPU shadow with no
    /// counters; EL2 is never counted (MDCR_EL2.TPM, HPMD).
    #[default]
    Hidden,
    /// A measuring aid: guests program the real PMU, including counting
    /// EL2, and its state is shared between guests. `cargo xtask bench`
    /// uses it; never on a machine that runs guests that distrust each other.
    Passthrough,
}

/// How a guest's RAM is backed (`guestN.populate=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Populate {
    /// Populate-on-Demand: RAM starts unmapped, each first touch maps it.
    Demand,
    /// Everything mapped at creation.
    Eager,
}

/// Console verbosity (`loglevel=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

pub(crate) const SCHED_ALLOWED: &str = "rr, pinned, null";
pub(crate) const HWDOM_ALLOWED: &str = "auto, on, off";
pub(crate) const SW_ALLOWED: &str = "yes, no, auto";
const POPULATE_ALLOWED: &str = "demand, eager";
pub(crate) const LOGLEVEL_ALLOWED: &str = "error, warn, info, debug, trace, or 0 to 4";
pub(crate) const MEM_ALLOWED: &str = "a size such as 64M: at least 2M, a multiple of 4K";
pub(crate) const SLICE_ALLOWED: &str = "a size such as 64K: 4K to 1G, a multiple of 4K";
pub(crate) const VCPUS_ALLOWED: &str = "1 to 8";
pub const NAME_ALLOWED: &str = "1 to 16 of a-z, A-Z, 0-9, '-', '_', '.'";
#[cfg(not(feature = "faults"))]
const KEYS_ALLOWED: &str =
    "sched, hwdom_pin, slice, loglevel, exit, pmu, reboots, trace, maxcpus, console, guestN.mem, guestN.pool, \
     guestN.populate, guestN.vcpus, guestN.sw, guestN.name, guestN.hwdom, guestN.base, \
     guestN.passthrough";
/// A `faults` (test-only) build also knows `fault`.
#[cfg(feature = "faults")]
const KEYS_ALLOWED: &str =
    "sched, hwdom_pin, slice, loglevel, exit, pmu, reboots, trace, maxcpus, console, guestN.mem, guestN.pool, \
     guestN.populate, guestN.vcpus, guestN.sw, guestN.name, guestN.hwdom, guestN.base, \
     guestN.passthrough, fault";
#[cfg(feature = "faults")]
const FAULTS_ALLOWED: &str =
    "a comma-separated list of sw-unpinned, no-pod-clean, clean-skips-walk";
const EXIT_ALLOWED: &str = "psci, semihosting";
const PMU_ALLOWED: &str = "hidden, passthrough";
const REBOOTS_ALLOWED: &str = "0 to 1000";
const TRACE_ALLOWED: &str = "a period in milliseconds, 10 to 60000";
const MAXCPUS_ALLOWED: &str = "1 to 8";
const GUEST_KEYS_ALLOWED: &str = "mem, pool, populate, vcpus, sw, name, hwdom, base, passthrough";
pub(crate) const YESNO_ALLOWED: &str = "yes, no";
pub(crate) const BASE_ALLOWED: &str = "an address such as 0x60000000, a multiple of 2M";
pub(crate) const PASSTHROUGH_ALLOWED: &str = "device-tree paths separated by commas, such as /virtio_mmio@a000000,/pl061@9030000 (up to 256 bytes)";
const GUEST_INDEX_ALLOWED: &str = "guest0 to guest3";

/// TEST ONLY: safety properties broken on purpose (`fault=NAME[,NAME...]`),
/// as negative controls for tests that must see incoherence. Only a build
/// with feature `faults` parses `fault=`; in any other build every set is
/// empty and [`Faults::contains`] is false, so no fault path is ever taken.
///
/// | name | what breaks |
/// |---|---|
/// | `sw-unpinned` | `sw=no` guests are not pinned: their vCPUs migrate like any other's |
/// | `no-pod-clean` | a PoD fault zeroes the new frame but does not clean it to the PoC before mapping it |
/// | `clean-skips-walk` | the clean a set/way op or a caches on/off toggle asks for walks nothing (cleans 0 bytes) |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults(u8);

impl Faults {
    pub const SW_UNPINNED: Faults = Faults(1 << 0);
    pub const NO_POD_CLEAN: Faults = Faults(1 << 1);
    pub const CLEAN_SKIPS_WALK: Faults = Faults(1 << 2);
    /// Each fault and its `fault=` name.
    pub const NAMES: [(&'static str, Faults); 3] = [
        ("sw-unpinned", Faults::SW_UNPINNED),
        ("no-pod-clean", Faults::NO_POD_CLEAN),
        ("clean-skips-walk", Faults::CLEAN_SKIPS_WALK),
    ];

    /// Whether fault `f` is active; always false without feature `faults`.
    pub fn contains(self, f: Faults) -> bool {
        cfg!(feature = "faults") && f.0 != 0 && self.0 & f.0 == f.0
    }

    /// Whether no fault is active; always true without feature `faults`.
    pub fn is_empty(self) -> bool {
        !cfg!(feature = "faults") || self.0 == 0
    }

    /// The names of the active faults, in [`Faults::NAMES`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Faults::NAMES
            .into_iter()
            .filter(move |&(_, f)| self.contains(f))
            .map(|(n, _)| n)
    }

    /// `NAME[,NAME...]`; `None` for an empty or unknown name.
    #[cfg(feature = "faults")]
    fn parse(list: &str) -> Option<Faults> {
        list.split(',').try_fold(Faults::default(), |acc, name| {
            choose(name, &Faults::NAMES).map(|f| Faults(acc.0 | f.0))
        })
    }
}

/// Most vCPUs a guest may have.
pub const MAX_VCPUS: u32 = 8;
/// Smallest guest memory.
pub const MIN_GUEST_MEM: u64 = 2 << 20;

pub(crate) fn parse_sched(s: &str) -> Option<SchedKind> {
    Some(match s {
        "rr" => SchedKind::Rr,
        "pinned" => SchedKind::Pinned,
        "null" => SchedKind::Null,
        _ => return None,
    })
}

pub(crate) fn parse_hwdom(s: &str) -> Option<HwdomPin> {
    Some(match s {
        "auto" => HwdomPin::Auto,
        "on" => HwdomPin::On,
        "off" => HwdomPin::Off,
        _ => return None,
    })
}

pub(crate) fn parse_sw(s: &str) -> Option<SwMode> {
    Some(match s {
        "yes" => SwMode::Yes,
        "no" => SwMode::No,
        "auto" => SwMode::Auto,
        _ => return None,
    })
}

pub(crate) fn parse_loglevel(s: &str) -> Option<LogLevel> {
    Some(match s {
        "error" | "0" => LogLevel::Error,
        "warn" | "1" => LogLevel::Warn,
        "info" | "2" => LogLevel::Info,
        "debug" | "3" => LogLevel::Debug,
        "trace" | "4" => LogLevel::Trace,
        _ => return None,
    })
}

/// A byte count: decimal or `0x` hex, with an optional binary suffix
/// `K`, `M` or `G` (either case). `None` if malformed or over `u64`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let v = parse_u64(num)?;
    v.checked_mul(1u64 << shift)
}

/// Decimal or `0x` hex, digits only.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Guest memory rule: at least 2 MiB, a multiple of 4 KiB.
pub(crate) fn mem_ok(bytes: u64) -> bool {
    bytes >= MIN_GUEST_MEM && bytes.is_multiple_of(4096)
}

pub(crate) fn vcpus_ok(n: u32) -> bool {
    (1..=MAX_VCPUS).contains(&n)
}

pub(crate) fn slice_ok(bytes: u64) -> bool {
    (4096..=1 << 30).contains(&bytes) && bytes.is_multiple_of(4096)
}

/// A hardware domain's RAM base: 2 MiB aligned (its RAM is mapped in
/// blocks).
pub(crate) fn base_ok(v: u64) -> bool {
    v.is_multiple_of(2 << 20)
}

/// `passthrough=`: comma-separated absolute paths, at most 256 bytes.
pub(crate) fn passthrough_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::PASSTHROUGH_LEN
        && s.split(',').all(|p| p.starts_with('/') && p.len() > 1 && p.bytes().all(|b| b.is_ascii_graphic() && b != b','))
}

/// A guest name the hypervisor accepts ([`NAME_ALLOWED`]).
pub fn name_ok(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Per-guest overrides (`guestN.key=value`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestArgs<'a> {
    pub mem: Option<u64>,
    /// PoD pool size (a target below `mem` is a pre-ballooned guest).
    pub pool: Option<u64>,
    pub populate: Option<Populate>,
    pub vcpus: Option<u32>,
    pub sw: Option<SwMode>,
    pub name: Option<&'a str>,
    /// `guestN.hwdom=yes`: this guest is the hardware domain.
    pub hwdom: Option<bool>,
    /// `guestN.base=`: where the hardware domain's RAM starts (IPA = PA).
    pub base: Option<u64>,
    /// `guestN.passthrough=`: the device-tree paths the hardware domain owns.
    pub passthrough: Option<&'a str>,
    /// The first `guestN.` token, for a "no such guest" error.
    pub first_token: Option<&'a str>,
}

/// A parsed, value-checked command line. `None` means "not given".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Args<'a> {
    pub sched: Option<SchedKind>,
    pub hwdom_pin: Option<HwdomPin>,
    pub slice: Option<u64>,
    pub loglevel: Option<LogLevel>,
    pub exit: Option<ExitMethod>,
    pub pmu: Option<PmuMode>,
    pub reboots: Option<u32>,
    /// `trace=`: print every guest's counters this often (milliseconds).
    pub trace_ms: Option<u32>,
    /// `maxcpus=`: start at most this many physical CPUs.
    pub max_cpus: Option<u32>,
    /// `fault=` (only a `faults` build parses it; TEST ONLY).
    pub faults: Option<Faults>,
    pub guests: [GuestArgs<'a>; MAX_GUESTS],
}

/// The value `table` gives for `value`, if any.
fn choose<T: Copy>(value: &str, table: &[(&str, T)]) -> Option<T> {
    table.iter().find(|(k, _)| *k == value).map(|&(_, v)| v)
}

fn set<'a, T>(slot: &mut Option<T>, v: T, token: &'a str) -> Result<(), Error<'a>> {
    if slot.is_some() {
        return Err(Error::Arg {
            token,
            problem: "given twice",
            allowed: "each key once",
        });
    }
    *slot = Some(v);
    Ok(())
}

/// Parse the hypervisor's command line. Tokens are separated by spaces,
/// tabs or newlines; `console=` is accepted and ignored; every other key
/// must be known and appear once.
pub fn parse_bootargs(line: &str) -> Result<Args<'_>, Error<'_>> {
    let mut a = Args::default();
    for token in line
        .split([' ', '\t', '\n', '\r'])
        .filter(|t| !t.is_empty())
    {
        let Some((key, value)) = token.split_once('=') else {
            return Err(Error::Arg {
                token,
                problem: "expected key=value",
                allowed: KEYS_ALLOWED,
            });
        };
        let bad = |problem, allowed| Error::Arg {
            token,
            problem,
            allowed,
        };
        match key {
            "console" => {}
            "sched" => {
                let v = parse_sched(value).ok_or(bad("unknown scheduler", SCHED_ALLOWED))?;
                set(&mut a.sched, v, token)?;
            }
            "hwdom_pin" => {
                let v = parse_hwdom(value).ok_or(bad("unknown setting", HWDOM_ALLOWED))?;
                set(&mut a.hwdom_pin, v, token)?;
            }
            "slice" => {
                let v = parse_size(value).ok_or(bad("not a size", SLICE_ALLOWED))?;
                if !slice_ok(v) {
                    return Err(bad("out of range", SLICE_ALLOWED));
                }
                set(&mut a.slice, v, token)?;
            }
            "loglevel" => {
                let v = parse_loglevel(value).ok_or(bad("unknown level", LOGLEVEL_ALLOWED))?;
                set(&mut a.loglevel, v, token)?;
            }
            "exit" => {
                let v = choose(value, &[("psci", ExitMethod::Psci), ("semihosting", ExitMethod::Semihosting)])
                    .ok_or(bad("unknown exit method", EXIT_ALLOWED))?;
                set(&mut a.exit, v, token)?;
            }
            "reboots" => {
                let v = value.parse::<u32>().ok().filter(|n| *n <= 1000).ok_or(bad("out of range", REBOOTS_ALLOWED))?;
                set(&mut a.reboots, v, token)?;
            }
            "trace" => {
                let v = value.parse::<u32>().ok().filter(|n| (10..=60_000).contains(n)).ok_or(bad("out of range", TRACE_ALLOWED))?;
                set(&mut a.trace_ms, v, token)?;
            }
            "maxcpus" => {
                let v = parse_u64(value).ok_or(bad("not a number", MAXCPUS_ALLOWED))?;
                let v = u32::try_from(v)
                    .ok()
                    .filter(|n| (1..=crate::MAX_CPUS as u32).contains(n));
                set(
                    &mut a.max_cpus,
                    v.ok_or(bad("out of range", MAXCPUS_ALLOWED))?,
                    token,
                )?;
            }
            "pmu" => {
                let v = choose(value, &[("hidden", PmuMode::Hidden), ("passthrough", PmuMode::Passthrough)])
                    .ok_or(bad("unknown PMU mode", PMU_ALLOWED))?;
                set(&mut a.pmu, v, token)?;
            }
            // TEST ONLY: a normal build has no such key.
            #[cfg(feature = "faults")]
            "fault" => {
                let v = Faults::parse(value).ok_or(bad("unknown fault", FAULTS_ALLOWED))?;
                set(&mut a.faults, v, token)?;
            }
            _ => {
                let Some((guest, field)) =
                    key.strip_prefix("guest").and_then(|k| k.split_once('.'))
                else {
                    return Err(bad("unknown key", KEYS_ALLOWED));
                };
                let index = match guest.as_bytes() {
                    [d @ b'0'..=b'9'] => usize::from(d - b'0'),
                    _ => return Err(bad("bad guest number", GUEST_INDEX_ALLOWED)),
                };
                let Some(g) = a.guests.get_mut(index) else {
                    return Err(bad("bad guest number", GUEST_INDEX_ALLOWED));
                };
                g.first_token.get_or_insert(token);
                match field {
                    "mem" => {
                        let v = parse_size(value).ok_or(bad("not a size", MEM_ALLOWED))?;
                        if !mem_ok(v) {
                            return Err(bad("out of range", MEM_ALLOWED));
                        }
                        set(&mut g.mem, v, token)?;
                    }
                    "pool" => {
                        let v = parse_size(value).ok_or(bad("not a size", MEM_ALLOWED))?;
                        if !mem_ok(v) {
                            return Err(bad("out of range", MEM_ALLOWED));
                        }
                        set(&mut g.pool, v, token)?;
                    }
                    "populate" => {
                        let v = match value {
                            "demand" => Populate::Demand,
                            "eager" => Populate::Eager,
                            _ => return Err(bad("unknown population mode", POPULATE_ALLOWED)),
                        };
                        set(&mut g.populate, v, token)?;
                    }
                    "vcpus" => {
                        let v = parse_u64(value).ok_or(bad("not a number", VCPUS_ALLOWED))?;
                        let v = u32::try_from(v).ok().filter(|&v| vcpus_ok(v));
                        set(
                            &mut g.vcpus,
                            v.ok_or(bad("out of range", VCPUS_ALLOWED))?,
                            token,
                        )?;
                    }
                    "sw" => {
                        let v = parse_sw(value).ok_or(bad("unknown set/way mode", SW_ALLOWED))?;
                        set(&mut g.sw, v, token)?;
                    }
                    "name" => {
                        if !name_ok(value) {
                            return Err(bad("bad name", NAME_ALLOWED));
                        }
                        set(&mut g.name, value, token)?;
                    }
                    "hwdom" => {
                        let v = choose(value, &[("yes", true), ("no", false)]).ok_or(bad("not yes or no", YESNO_ALLOWED))?;
                        set(&mut g.hwdom, v, token)?;
                    }
                    "base" => {
                        let v = parse_u64(value).filter(|v| base_ok(*v)).ok_or(bad("not a 2M-aligned address", BASE_ALLOWED))?;
                        set(&mut g.base, v, token)?;
                    }
                    "passthrough" => {
                        if !passthrough_ok(value) {
                            return Err(bad("bad path list", PASSTHROUGH_ALLOWED));
                        }
                        set(&mut g.passthrough, value, token)?;
                    }
                    _ => return Err(bad("unknown guest key", GUEST_KEYS_ALLOWED)),
                }
            }
        }
    }
    Ok(a)
}

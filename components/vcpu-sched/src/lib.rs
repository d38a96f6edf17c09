//! # vcpu-sched: which vCPU runs on which pCPU
//!
//! **Responsible for:** the run queue, the policy chosen at boot (`sched=`),
//! pin sets, and hardware-domain pinning (`hwdom_pin=`); answering, at each
//! tick, block, wake and yield, which vCPU a pCPU runs next; counting
//! migrations (a vCPU starting on a different pCPU than it last ran on).
//!
//! **Not responsible for:** context switching, timers or IPIs (the kernel does
//! them on a [`Decision`] or a kick hint); locking (the kernel keeps one
//! scheduler behind a spinlock and calls it from every pCPU: it is a plain
//! `&mut self` state machine with fixed capacity and no allocation); cache
//! maintenance (cache-maint; a vCPU that waits for a clean is, to the
//! scheduler, running: the kernel spends its time on clean slices).
//!
//! **Invariants** (checked by [`Sched::check`] in the tests):
//! - A VM is scheduled only once added, and [`Scheduler::add_vm`] consumes
//!   its `SchedCap` (a refusal hands it back): without the capability none
//!   of its vCPUs can be woken or run (`tests/ui`).
//! - A vCPU runs on at most one pCPU, and a pCPU runs at most one vCPU:
//!   `current(p) == Some(v)` exactly when `state(v) == Running(p)`.
//! - The queue holds every runnable vCPU exactly once, and nothing else.
//! - A vCPU with a pin only ever starts running on its pinned pCPU. After
//!   [`Scheduler::pin`] moves a pin away from where it runs, that pCPU's next
//!   tick switches it out.
//! - The hardware domain's vCPUs never migrate under `hwdom_pin=on`, and
//!   never migrate after the VM's first set/way report under `hwdom_pin=auto`
//!   (each is pinned where it runs or last ran, or, if it never ran, where it
//!   first runs).
//! - Under `hwdom_pin=on` the hardware domain has pCPUs of its own: its vCPU
//!   `k` is pinned to pCPU `k` from creation, and pCPUs `0..hwdom_vcpus` are
//!   reserved ([`Sched::reserved_pcpus`]): a reserved pCPU only ever runs the
//!   hardware domain's vCPUs, under every policy. Its set/way then runs
//!   untrapped, which is only safe because its vCPUs never move.
//! - Under `rr`, a runnable vCPU runs within `N + 1` rounds of ticks on every
//!   pCPU, `N` being the number of vCPUs (FIFO queue; requeued vCPUs go to the
//!   tail).
//!
//! ## Policies (`sched=`)
//! - `rr`: time-sliced round robin over one shared FIFO queue; any pCPU takes
//!   the first vCPU it may run, so vCPUs migrate. Best use of pCPUs.
//! - `pinned`: each vCPU has a home pCPU (the k-th vCPU created goes to
//!   `k % npcpus`) and only runs there, round robin among the vCPUs sharing
//!   it. Never migrates.
//! - `null`: like Xen's null scheduler. A vCPU is assigned a pCPU when it
//!   first runs and keeps it, even while blocked in WFI (the pCPU idles);
//!   there is no time slicing. Extra vCPUs wait until an assigned vCPU goes
//!   offline (PSCI CPU_OFF), which frees its pCPU. Why it earns its place:
//!   on a partitioned board (a Pi 4 with 4 cores and as many vCPUs) it gives
//!   each vCPU a core of its own, with no tick-driven switches, warm caches
//!   and predictable interrupt latency; and since a vCPU changes pCPU only
//!   after CPU_OFF, when PSCI requires the guest to have cleaned its caches
//!   already, a set/way loop is never cut by a migration.
//!
//! ## Hardware domain (`hwdom_pin=`)
//! - `on`: the hardware domain (at most one VM, `add_vm(.., hwdom = true)`)
//!   gets one pCPU per vCPU: vCPU `k` is pinned to pCPU `k` and pCPUs
//!   `0..vcpus` are reserved. The other VMs share the remaining pCPUs: `rr`
//!   never starts them on a reserved pCPU, `pinned` homes them round robin
//!   over the unreserved pCPUs only (the k-th other vCPU created goes to the
//!   `k % free`-th unreserved one), `null` assigns them unreserved pCPUs
//!   only, and [`Scheduler::pin`] of one of their vCPUs onto a reserved pCPU
//!   is refused ([`SchedError::Reserved`]), as is a pin moving a hardware
//!   domain vCPU off its pCPU ([`SchedError::HwdomFixed`]). `add_vm` refuses
//!   a hardware domain with more vCPUs than pCPUs
//!   ([`SchedError::HwdomTooBig`]) and any VM that would leave the other VMs
//!   no unreserved pCPU ([`SchedError::NoFreePcpu`]). The kernel should add
//!   the hardware domain first; added later, it is refused while another
//!   VM's vCPU runs on, is assigned (`null`) or pinned to a pCPU it would
//!   reserve, and `pinned` homes of the VMs already added move to the
//!   unreserved pCPUs (a vCPU that ran on a now-reserved pCPU migrates once).
//! - `auto`: as `off` until cache-maint reports the hardware domain's first
//!   set/way ([`Scheduler::report_set_way`]), then each of its vCPUs is
//!   pinned where it runs or last ran (or where it first runs). Nothing is
//!   reserved: other VMs may still share those pCPUs. The kernel now resolves
//!   `auto` to `on` or `off` itself (from the guest's `sw=`) before it creates
//!   the scheduler; `Auto` stays for callers that do not.
//! - `off`: the hardware domain is scheduled like any other VM.
//!
//! ## What the kernel calls
//! - Timer tick on pCPU `p`: [`Scheduler::tick`]`(p)`, then act on the
//!   [`Decision`]: keep, switch to a vCPU, or go idle.
//! - vCPU WFI or CPU_OFF: [`Scheduler::block`], then [`Scheduler::pick_next`]
//!   on the pCPU it returns.
//! - CPU_ON, or an interrupt for a blocked vCPU: [`Scheduler::wake`]; send an
//!   IPI to the idle pCPU it returns, whose handler calls `pick_next`.
//! - cache-maint said `sw_first_seen`: [`Scheduler::report_set_way`].
#![no_std]
#![forbid(unsafe_code)]

use capabilities::SchedCap;
use core::fmt;

/// Most VMs.
pub const MAX_VMS: usize = 8;
/// Most vCPUs per VM.
pub const MAX_VCPUS_PER_VM: usize = 8;
/// Most pCPUs.
pub const MAX_PCPUS: usize = 4;
const MAX_VCPUS: usize = MAX_VMS * MAX_VCPUS_PER_VM;

/// One vCPU: VM index and vCPU index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRef {
    /// VM index, below [`MAX_VMS`].
    pub vm: u8,
    /// vCPU index in the VM.
    pub vcpu: u8,
}

impl VcpuRef {
    /// vCPU `vcpu` of VM `vm`.
    pub const fn new(vm: u8, vcpu: u8) -> Self {
        VcpuRef { vm, vcpu }
    }

    fn slot(self) -> usize {
        self.vm as usize * MAX_VCPUS_PER_VM + self.vcpu as usize
    }

    fn of_slot(i: usize) -> Self {
        VcpuRef { vm: (i / MAX_VCPUS_PER_VM) as u8, vcpu: (i % MAX_VCPUS_PER_VM) as u8 }
    }
}

/// The policy chosen by `sched=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedPolicy {
    /// Time-sliced round robin over a shared queue; vCPUs migrate.
    #[default]
    Rr,
    /// A fixed home pCPU per vCPU; never migrates.
    Pinned,
    /// One vCPU per pCPU, no time slicing (Xen's null scheduler).
    Null,
}

impl SchedPolicy {
    /// The spelling in `sched=`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedPolicy::Rr => "rr",
            SchedPolicy::Pinned => "pinned",
            SchedPolicy::Null => "null",
        }
    }
}

impl fmt::Display for SchedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `hwdom_pin=`: how the hardware domain's vCPUs are pinned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HwdomPin {
    /// Pinned once cache-maint reports the hardware domain used set/way.
    #[default]
    Auto,
    /// Always pinned, on pCPUs of its own: vCPU `k` to pCPU `k`, from
    /// creation; pCPUs `0..vcpus` are reserved for it (no other VM's vCPU
    /// runs there). Needs `vcpus <= npcpus`.
    On,
    /// Never pinned by this rule.
    Off,
}

impl HwdomPin {
    /// The spelling in `hwdom_pin=`.
    pub fn as_str(self) -> &'static str {
        match self {
            HwdomPin::Auto => "auto",
            HwdomPin::On => "on",
            HwdomPin::Off => "off",
        }
    }
}

impl fmt::Display for HwdomPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the hardware domain gets a pCPU of its own per vCPU (and so may
/// run set/way natively), and why: the boot decision behind
/// [`HwdomPin::On`] or [`HwdomPin::Off`] for [`Sched::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinDecision {
    /// `hwdom_pin=on`.
    PinnedOn,
    /// `hwdom_pin=auto` and its `sw=` expects set/way (yes or auto).
    PinnedAuto,
    /// `hwdom_pin=off`.
    NotPinnedOff,
    /// `hwdom_pin=auto` and `sw=no`: no set/way expected.
    NotPinnedNoSw,
    /// A pCPU per vCPU (plus one for the other guests) is more than there are.
    NotPinnedTooFewPcpus,
}

impl PinDecision {
    /// Decide: `sw_expected` is false only for `sw=no`; `others`: other
    /// guests run beside it (they keep at least one pCPU).
    pub fn new(pin: HwdomPin, sw_expected: bool, vcpus: usize, others: bool, npcpus: usize) -> PinDecision {
        let wanted = match pin {
            HwdomPin::Off => return PinDecision::NotPinnedOff,
            HwdomPin::Auto if !sw_expected => return PinDecision::NotPinnedNoSw,
            HwdomPin::Auto => PinDecision::PinnedAuto,
            HwdomPin::On => PinDecision::PinnedOn,
        };
        if vcpus + usize::from(others) > npcpus {
            return PinDecision::NotPinnedTooFewPcpus;
        }
        wanted
    }

    pub fn pinned(self) -> bool {
        matches!(self, PinDecision::PinnedOn | PinDecision::PinnedAuto)
    }

    /// The scheduler setting it asks for.
    pub fn hwdom_pin(self) -> HwdomPin {
        if self.pinned() {
            HwdomPin::On
        } else {
            HwdomPin::Off
        }
    }
}

impl fmt::Display for PinDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinDecision::PinnedOn => "pinned, a pCPU per vCPU, set/way untrapped (hwdom_pin=on)",
            PinDecision::PinnedAuto => "pinned, a pCPU per vCPU, set/way untrapped (hwdom_pin=auto, and its sw= expects set/way)",
            PinDecision::NotPinnedOff => "not pinned, set/way trapped and cleaned (hwdom_pin=off)",
            PinDecision::NotPinnedNoSw => "not pinned, set/way trapped and cleaned (hwdom_pin=auto, and sw=no expects none)",
            PinDecision::NotPinnedTooFewPcpus => {
                "not pinned, set/way trapped and cleaned (too few pCPUs for one per vCPU and one for the other guests)"
            }
        })
    }
}

/// What a pCPU does after a scheduling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on with what it runs (or stay idle).
    Keep,
    /// Switch to this vCPU (the previous one, if any, was put back).
    Run(VcpuRef),
    /// Stop running anything and wait for an interrupt.
    Idle,
}

/// Why a vCPU stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// It waits for an interrupt (WFI/WFE). Under `null` it keeps its pCPU.
    Wait,
    /// It is off (PSCI CPU_OFF, not started yet). Under `null` its pCPU is
    /// freed.
    Off,
}

/// Where a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Stopped; see [`BlockKind`].
    Blocked,
    /// In the queue.
    Runnable,
    /// Running on this pCPU.
    Running(usize),
}

/// A refused call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// `npcpus` is 0 or above [`MAX_PCPUS`].
    PcpuCount(usize),
    /// No such pCPU.
    NoSuchPcpu(usize),
    /// VM index at or above [`MAX_VMS`], or the VM was not added.
    NoSuchVm(u8),
    /// The VM was added already.
    VmExists(u8),
    /// 0 or more than [`MAX_VCPUS_PER_VM`] vCPUs.
    VcpuCount(u8),
    /// The VM has no such vCPU.
    NoSuchVcpu(VcpuRef),
    /// A second hardware domain.
    SecondHwdom(u8),
    /// `hwdom_pin=on`: the hardware domain has more vCPUs than there are
    /// pCPUs, so they cannot have one each.
    HwdomTooBig {
        /// The hardware domain's VM.
        vm: u8,
        /// Its vCPUs.
        vcpus: u8,
        /// The pCPUs.
        npcpus: usize,
    },
    /// `hwdom_pin=on`: adding VM `vm` would leave a VM other than the
    /// hardware domain without an unreserved pCPU (`reserved` is the
    /// hardware domain's pCPU mask, as [`Sched::reserved_pcpus`]).
    NoFreePcpu {
        /// The VM whose `add_vm` was refused.
        vm: u8,
        /// The reserved pCPUs, bit n for pCPU n.
        reserved: u16,
    },
    /// `hwdom_pin=on`: `v`, not of the hardware domain, may not run on
    /// `pcpu`, which is reserved for it (an explicit pin there, or, when
    /// the hardware domain is added late, `v` runs, is assigned or is
    /// pinned there already).
    Reserved {
        /// The vCPU.
        v: VcpuRef,
        /// The reserved pCPU.
        pcpu: usize,
    },
    /// `hwdom_pin=on`: a pin would move a hardware-domain vCPU off its own
    /// pCPU (vCPU `k` stays on pCPU `k`).
    HwdomFixed(VcpuRef),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::PcpuCount(n) => write!(f, "sched: {n} pCPUs (allowed: 1..={MAX_PCPUS})"),
            SchedError::NoSuchPcpu(p) => write!(f, "sched: no pCPU {p}"),
            SchedError::NoSuchVm(vm) => write!(f, "sched: no VM {vm}"),
            SchedError::VmExists(vm) => write!(f, "sched: VM {vm} added twice"),
            SchedError::VcpuCount(n) => write!(f, "sched: {n} vCPUs (allowed: 1..={MAX_VCPUS_PER_VM})"),
            SchedError::NoSuchVcpu(v) => write!(f, "sched: no vCPU {} in VM {}", v.vcpu, v.vm),
            SchedError::SecondHwdom(vm) => write!(f, "sched: VM {vm} cannot be a second hardware domain"),
            SchedError::HwdomTooBig { vm, vcpus, npcpus } => write!(
                f,
                "sched: hwdom_pin=on gives each hardware-domain vCPU a pCPU of its own, \
                 but VM {vm} has {vcpus} vCPUs and there are {npcpus} pCPUs"
            ),
            SchedError::NoFreePcpu { vm, reserved } => write!(
                f,
                "sched: VM {vm} refused: with pCPUs {reserved:#x} (mask) reserved for the hardware domain \
                 (hwdom_pin=on), no pCPU is left for the other VMs"
            ),
            SchedError::Reserved { v, pcpu } => write!(
                f,
                "sched: pCPU {pcpu} is reserved for the hardware domain (hwdom_pin=on): \
                 vCPU {} of VM {} may not run there",
                v.vcpu, v.vm
            ),
            SchedError::HwdomFixed(v) => write!(
                f,
                "sched: vCPU {} of the hardware domain (VM {}) stays on pCPU {} under hwdom_pin=on",
                v.vcpu, v.vm, v.vcpu
            ),
        }
    }
}

/// Counts since boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// A vCPU started on a different pCPU than it last ran on.
    pub migrations: u64,
    /// A vCPU started running (switches in).
    pub switches: u64,
    /// `report_set_way` calls.
    pub set_way_reports: u64,
    /// Pins made by the hardware-domain rule.
    pub hwdom_pins: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    present: bool,
    state: State,
    last: Option<usize>,
    pin: Option<usize>,
    pin_on_next_run: bool,
    migrations: u32,
}

const EMPTY: Slot =
    Slot { present: false, state: State::Blocked, last: None, pin: None, pin_on_next_run: false, migrations: 0 };

/// A FIFO of vCPUs with removal from anywhere (at most 64 entries).
#[derive(Clone, Debug)]
struct Queue {
    items: [VcpuRef; MAX_VCPUS],
    len: usize,
}

impl Queue {
    fn push(&mut self, v: VcpuRef) {
        debug_assert!(self.len < MAX_VCPUS);
        self.items[self.len] = v;
        self.len += 1;
    }

    fn remove_at(&mut self, i: usize) -> VcpuRef {
        let v = self.items[i];
        self.items.copy_within(i + 1..self.len, i);
        self.len -= 1;
        v
    }

    fn remove(&mut self, v: VcpuRef) -> bool {
        match self.as_slice().iter().position(|&x| x == v) {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    fn as_slice(&self) -> &[VcpuRef] {
        &self.items[..self.len]
    }
}

/// State every policy shares: vCPUs, queue, what each pCPU runs.
#[derive(Clone, Debug)]
pub struct Core {
    npcpus: usize,
    slots: [Slot; MAX_VCPUS],
    vms: [Option<u8>; MAX_VMS],
    hwdom: Option<u8>,
    hwdom_pin: HwdomPin,
    /// pCPUs only the hardware domain may run on (bit n for pCPU n).
    reserved: u16,
    queue: Queue,
    current: [Option<VcpuRef>; MAX_PCPUS],
    added: usize,
    stats: Stats,
}

impl Core {
    /// Number of pCPUs.
    pub fn npcpus(&self) -> usize {
        self.npcpus
    }

    /// The pin of `v`, if any.
    pub fn pin_of(&self, v: VcpuRef) -> Option<usize> {
        self.slots[v.slot()].pin
    }

    /// The pCPUs reserved for the hardware domain under `hwdom_pin=on`, bit
    /// n for pCPU n: `0..hwdom_vcpus` once it is added, 0 otherwise.
    pub fn reserved_pcpus(&self) -> u16 {
        self.reserved
    }

    /// The hardware domain's VM, once added.
    pub fn hwdom(&self) -> Option<u8> {
        self.hwdom
    }

    /// False when `pcpu` is reserved for the hardware domain and `v` is not
    /// one of its vCPUs. The engine asks this on top of
    /// [`Policy::eligible`], so no policy can break the reservation.
    pub fn may_run_on(&self, v: VcpuRef, pcpu: usize) -> bool {
        !self.is_reserved(pcpu) || self.hwdom == Some(v.vm)
    }

    /// The `k`-th pCPU (modulo their number) that is not reserved; `k %
    /// npcpus` when nothing is. `None` only if every pCPU is reserved.
    pub fn unreserved_pcpu(&self, k: usize) -> Option<usize> {
        let free = self.npcpus - self.reserved.count_ones() as usize;
        if free == 0 {
            return None;
        }
        (0..self.npcpus).filter(|&p| !self.is_reserved(p)).nth(k % free)
    }

    fn is_reserved(&self, pcpu: usize) -> bool {
        pcpu < 16 && self.reserved & (1 << pcpu) != 0
    }
}

/// What differs between policies. The engine ([`Sched`]) asks it who may run
/// where, and tells it where vCPUs start and stop.
pub trait Policy {
    /// Which policy this is.
    fn kind(&self) -> SchedPolicy;
    /// Does a tick switch out the running vCPU when another may run there?
    fn time_slices(&self) -> bool;
    /// May `v` start on `pcpu` now? Must honour `core.pin_of(v)`.
    fn eligible(&self, core: &Core, v: VcpuRef, pcpu: usize) -> bool;
    /// `v` was created as the `ordinal`-th vCPU overall.
    fn added(&mut self, _v: VcpuRef, _ordinal: usize, _npcpus: usize) {}
    /// `v` starts running on `pcpu`.
    fn started(&mut self, _v: VcpuRef, _pcpu: usize) {}
    /// `v` blocked.
    fn blocked(&mut self, _v: VcpuRef, _kind: BlockKind) {}
    /// `v` was pinned to `pcpu`.
    fn pinned(&mut self, _v: VcpuRef, _pcpu: usize) {}
    /// Where `v` is bound to a pCPU beyond its pin (a `pinned` home, a
    /// `null` assignment), if anywhere: [`Sched::check`] verifies no vCPU
    /// outside the hardware domain is bound to a reserved pCPU.
    fn bound(&self, _core: &Core, _v: VcpuRef) -> Option<usize> {
        None
    }
}

/// `sched=rr`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoundRobin;

impl Policy for RoundRobin {
    fn kind(&self) -> SchedPolicy {
        SchedPolicy::Rr
    }

    fn time_slices(&self) -> bool {
        true
    }

    fn eligible(&self, core: &Core, v: VcpuRef, pcpu: usize) -> bool {
        core.pin_of(v).is_none_or(|p| p == pcpu)
    }
}

/// `sched=pinned`.
#[derive(Clone, Debug)]
pub struct Pinned {
    /// The creation ordinal of each vCPU (hardware-domain vCPUs under
    /// `hwdom_pin=on` are not counted): its home is the ordinal-th
    /// unreserved pCPU, round robin.
    ordinal: [u8; MAX_VCPUS],
}

impl Default for Pinned {
    fn default() -> Self {
        Pinned { ordinal: [0; MAX_VCPUS] }
    }
}

impl Pinned {
    /// The home of `v`: the `ordinal % free`-th unreserved pCPU.
    fn home(&self, core: &Core, v: VcpuRef) -> Option<usize> {
        core.unreserved_pcpu(self.ordinal[v.slot()] as usize)
    }
}

impl Policy for Pinned {
    fn kind(&self) -> SchedPolicy {
        SchedPolicy::Pinned
    }

    fn time_slices(&self) -> bool {
        true
    }

    fn eligible(&self, core: &Core, v: VcpuRef, pcpu: usize) -> bool {
        match core.pin_of(v) {
            Some(p) => p == pcpu,
            None => self.home(core, v) == Some(pcpu),
        }
    }

    fn added(&mut self, v: VcpuRef, ordinal: usize, _npcpus: usize) {
        self.ordinal[v.slot()] = (ordinal % MAX_VCPUS) as u8;
    }

    fn bound(&self, core: &Core, v: VcpuRef) -> Option<usize> {
        match core.pin_of(v) {
            Some(_) => None,
            None => self.home(core, v),
        }
    }
}

/// `sched=null`.
#[derive(Clone, Debug)]
pub struct Null {
    owner: [Option<VcpuRef>; MAX_PCPUS],
    assigned: [Option<u8>; MAX_VCPUS],
}

impl Default for Null {
    fn default() -> Self {
        Null { owner: [None; MAX_PCPUS], assigned: [None; MAX_VCPUS] }
    }
}

impl Null {
    fn release(&mut self, v: VcpuRef) {
        if let Some(p) = self.assigned[v.slot()].take() {
            self.owner[p as usize] = None;
        }
    }
}

impl Policy for Null {
    fn kind(&self) -> SchedPolicy {
        SchedPolicy::Null
    }

    fn time_slices(&self) -> bool {
        false
    }

    fn eligible(&self, core: &Core, v: VcpuRef, pcpu: usize) -> bool {
        match self.assigned[v.slot()] {
            Some(p) => p as usize == pcpu,
            None => self.owner[pcpu].is_none() && core.pin_of(v).is_none_or(|p| p == pcpu),
        }
    }

    fn started(&mut self, v: VcpuRef, pcpu: usize) {
        self.owner[pcpu] = Some(v);
        self.assigned[v.slot()] = Some(pcpu as u8);
    }

    fn blocked(&mut self, v: VcpuRef, kind: BlockKind) {
        if kind == BlockKind::Off {
            self.release(v);
        }
    }

    fn pinned(&mut self, v: VcpuRef, pcpu: usize) {
        if self.assigned[v.slot()].is_some_and(|p| p as usize != pcpu) {
            self.release(v);
        }
    }

    fn bound(&self, _core: &Core, v: VcpuRef) -> Option<usize> {
        self.assigned[v.slot()].map(|p| p as usize)
    }
}

/// The operations the kernel calls. Implemented by [`Sched`] for each
/// policy and by [`AnySched`], the one chosen at boot.
pub trait Scheduler {
    /// Add VM `vm` with `vcpus` vCPUs, all blocked (off) until woken; the
    /// hardware domain if `hwdom`. It consumes the VM's `SchedCap`: without
    /// it no VM can be added, so none of its vCPUs can be scheduled. Under
    /// `hwdom_pin=on` the hardware domain reserves pCPUs `0..vcpus` (see the
    /// crate docs for the refusals, which hand the capability back).
    fn add_vm(&mut self, vm: u8, cap: SchedCap, vcpus: u8, hwdom: bool) -> Result<(), Refused>;
    /// A timer tick on `pcpu`.
    fn tick(&mut self, pcpu: usize) -> Result<Decision, SchedError>;
    /// Choose what `pcpu` runs now: after a block, or as a yield of the
    /// running vCPU (which goes to the back of the queue).
    fn pick_next(&mut self, pcpu: usize) -> Result<Decision, SchedError>;
    /// `v` stops. Returns the pCPU it ran on, which must `pick_next`.
    fn block(&mut self, v: VcpuRef, kind: BlockKind) -> Result<Option<usize>, SchedError>;
    /// `v` becomes runnable. Returns an idle pCPU that could run it now
    /// (send it an IPI).
    fn wake(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError>;
    /// cache-maint saw VM `vm` use set/way. Returns true when this pinned
    /// anything (the hardware domain under `hwdom_pin=auto`).
    fn report_set_way(&mut self, vm: u8) -> Result<bool, SchedError>;
    /// Pin `v` to `pcpu`. Returns the pCPU `v` runs on if that is another
    /// one: it must reschedule (its next tick does). Under `hwdom_pin=on`,
    /// refused for another VM's vCPU onto a reserved pCPU
    /// ([`SchedError::Reserved`]) and for a hardware-domain vCPU `k` onto a
    /// pCPU other than `k` ([`SchedError::HwdomFixed`]).
    fn pin(&mut self, v: VcpuRef, pcpu: usize) -> Result<Option<usize>, SchedError>;
    /// The vCPU `pcpu` runs.
    fn current(&self, pcpu: usize) -> Option<VcpuRef>;
    /// Where `v` is; `None` if it does not exist.
    fn state(&self, v: VcpuRef) -> Option<State>;
    /// Counters since boot.
    fn stats(&self) -> Stats;
}

/// `add_vm` refused: why, and the VM's capability back.
#[derive(Debug)]
pub struct Refused {
    pub error: SchedError,
    pub cap: SchedCap,
}

/// The scheduling engine, generic over the policy.
#[derive(Debug)]
pub struct Sched<P: Policy> {
    core: Core,
    policy: P,
    /// Each added VM's `SchedCap`, consumed by [`Scheduler::add_vm`].
    caps: [Option<SchedCap>; MAX_VMS],
}

impl<P: Policy> Sched<P> {
    /// A scheduler for `npcpus` pCPUs.
    pub fn new(policy: P, npcpus: usize, hwdom_pin: HwdomPin) -> Result<Self, SchedError> {
        if npcpus == 0 || npcpus > MAX_PCPUS {
            return Err(SchedError::PcpuCount(npcpus));
        }
        Ok(Sched {
            core: Core {
                npcpus,
                slots: [EMPTY; MAX_VCPUS],
                vms: [None; MAX_VMS],
                hwdom: None,
                hwdom_pin,
                reserved: 0,
                queue: Queue { items: [VcpuRef::new(0, 0); MAX_VCPUS], len: 0 },
                current: [None; MAX_PCPUS],
                added: 0,
                stats: Stats::default(),
            },
            policy,
            caps: [const { None }; MAX_VMS],
        })
    }

    /// Why `add_vm` must refuse, if it must; else the reserved pCPUs after it.
    fn check_add(&self, vm: u8, vcpus: u8, hwdom: bool) -> Result<u16, SchedError> {
        if vm as usize >= MAX_VMS {
            return Err(SchedError::NoSuchVm(vm));
        }
        if self.core.vms[vm as usize].is_some() {
            return Err(SchedError::VmExists(vm));
        }
        if vcpus == 0 || vcpus as usize > MAX_VCPUS_PER_VM {
            return Err(SchedError::VcpuCount(vcpus));
        }
        if hwdom && self.core.hwdom.is_some() {
            return Err(SchedError::SecondHwdom(vm));
        }
        self.check_reservation(vm, vcpus, hwdom)
    }

    fn add_checked(&mut self, vm: u8, cap: SchedCap, vcpus: u8, hwdom: bool, reserved: u16) {
        self.core.vms[vm as usize] = Some(vcpus);
        self.caps[vm as usize] = Some(cap);
        if hwdom {
            self.core.hwdom = Some(vm);
        }
        self.core.reserved = reserved;
        let own_pcpus = hwdom && self.core.hwdom_pin == HwdomPin::On;
        for k in 0..vcpus {
            let v = VcpuRef::new(vm, k);
            self.core.slots[v.slot()] = Slot { present: true, ..EMPTY };
            self.policy.added(v, self.core.added, self.core.npcpus);
            if own_pcpus {
                // vCPU k on pCPU k, which is reserved for it.
                self.set_pin(v, k as usize);
                self.core.stats.hwdom_pins += 1;
            } else {
                self.core.added += 1;
            }
        }
    }

    /// The capabilities of the VMs added so far, handed back (for tests
    /// that make many schedulers; the VMs stay, but no longer hold the right).
    pub fn take_caps(&mut self) -> impl Iterator<Item = SchedCap> + '_ {
        self.caps.iter_mut().filter_map(Option::take)
    }

    /// The shared state (read only).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The pin of `v`.
    pub fn pin_of(&self, v: VcpuRef) -> Option<usize> {
        self.slot(v).ok().and_then(|s| s.pin)
    }

    /// Migrations of one vCPU.
    pub fn migrations_of(&self, v: VcpuRef) -> u32 {
        self.slot(v).map_or(0, |s| s.migrations)
    }

    /// The pCPU `v` last ran on.
    pub fn last_pcpu(&self, v: VcpuRef) -> Option<usize> {
        self.slot(v).ok().and_then(|s| s.last)
    }

    /// The runnable vCPUs in queue order.
    pub fn queue(&self) -> &[VcpuRef] {
        self.core.queue.as_slice()
    }

    /// The pCPUs reserved for the hardware domain (`hwdom_pin=on`), bit n
    /// for pCPU n; 0 before it is added and under `auto` or `off`. For the
    /// kernel's boot log.
    pub fn reserved_pcpus(&self) -> u16 {
        self.core.reserved
    }

    /// Check the invariants that tie the queue, the vCPU states and the
    /// pCPUs together (for tests and debug builds).
    pub fn check(&self) -> Result<(), &'static str> {
        let c = &self.core;
        for (p, cur) in c.current.iter().enumerate() {
            if let Some(v) = cur {
                if p >= c.npcpus {
                    return Err("a pCPU beyond npcpus runs a vCPU");
                }
                if c.slots[v.slot()].state != State::Running(p) {
                    return Err("a pCPU runs a vCPU that is not running there");
                }
            }
        }
        let mut queued = [false; MAX_VCPUS];
        for v in c.queue.as_slice() {
            if queued[v.slot()] {
                return Err("a vCPU is queued twice");
            }
            queued[v.slot()] = true;
        }
        for (i, s) in c.slots.iter().enumerate() {
            let v = VcpuRef::of_slot(i);
            if !s.present {
                if queued[i] || c.current.contains(&Some(v)) {
                    return Err("an absent vCPU is scheduled");
                }
                continue;
            }
            match s.state {
                State::Running(p) if c.current.get(p) != Some(&Some(v)) => {
                    return Err("a running vCPU is not its pCPU's current")
                }
                State::Runnable if !queued[i] => return Err("a runnable vCPU is not queued"),
                State::Blocked | State::Running(_) if queued[i] => return Err("a queued vCPU is not runnable"),
                _ => {}
            }
        }
        // hwdom_pin=on: reserved pCPUs belong to the hardware domain alone.
        if c.reserved != 0 {
            let Some(hw) = c.hwdom else {
                return Err("pCPUs are reserved but there is no hardware domain");
            };
            if c.reserved as u32 != (1u32 << c.vms[hw as usize].unwrap_or(0)) - 1 {
                return Err("the reserved pCPUs are not 0..hwdom_vcpus");
            }
            for (p, cur) in c.current.iter().enumerate() {
                if let Some(v) = cur {
                    if !c.may_run_on(*v, p) {
                        return Err("a reserved pCPU runs a vCPU of another VM");
                    }
                }
            }
            for (i, s) in c.slots.iter().enumerate() {
                let v = VcpuRef::of_slot(i);
                if !s.present {
                    continue;
                }
                if v.vm == hw {
                    if s.pin != Some(v.vcpu as usize) || s.migrations != 0 {
                        return Err("a hardware-domain vCPU left its own pCPU");
                    }
                    continue;
                }
                if s.pin.is_some_and(|p| !c.may_run_on(v, p)) {
                    return Err("a vCPU of another VM is pinned to a reserved pCPU");
                }
                if self.policy.bound(c, v).is_some_and(|p| !c.may_run_on(v, p)) {
                    return Err("a vCPU of another VM is bound to a reserved pCPU");
                }
            }
        }
        Ok(())
    }

    fn slot(&self, v: VcpuRef) -> Result<&Slot, SchedError> {
        if (v.vm as usize) < MAX_VMS && (v.vcpu as usize) < MAX_VCPUS_PER_VM && self.core.slots[v.slot()].present {
            Ok(&self.core.slots[v.slot()])
        } else {
            Err(SchedError::NoSuchVcpu(v))
        }
    }

    fn check_pcpu(&self, pcpu: usize) -> Result<(), SchedError> {
        if pcpu < self.core.npcpus {
            Ok(())
        } else {
            Err(SchedError::NoSuchPcpu(pcpu))
        }
    }

    fn set_pin(&mut self, v: VcpuRef, pcpu: usize) {
        let s = &mut self.core.slots[v.slot()];
        s.pin = Some(pcpu);
        s.pin_on_next_run = false;
        self.policy.pinned(v, pcpu);
    }

    /// `v` (just taken from the queue) starts on `pcpu`.
    fn start(&mut self, v: VcpuRef, pcpu: usize) {
        let s = &mut self.core.slots[v.slot()];
        if s.last.is_some_and(|q| q != pcpu) {
            s.migrations += 1;
            self.core.stats.migrations += 1;
        }
        s.last = Some(pcpu);
        s.state = State::Running(pcpu);
        let pin_now = s.pin_on_next_run;
        self.core.current[pcpu] = Some(v);
        self.core.stats.switches += 1;
        self.policy.started(v, pcpu);
        if pin_now {
            self.set_pin(v, pcpu);
            self.core.stats.hwdom_pins += 1;
        }
    }

    /// Put the vCPU running on `pcpu` back at the tail of the queue.
    fn requeue_current(&mut self, pcpu: usize) -> Option<VcpuRef> {
        let v = self.core.current[pcpu].take()?;
        self.core.slots[v.slot()].state = State::Runnable;
        self.core.queue.push(v);
        Some(v)
    }

    /// May `v` start on (or stay on) `pcpu`: the policy says so and the
    /// pCPU is not reserved for the hardware domain unless `v` is its.
    fn may_run(&self, v: VcpuRef, pcpu: usize) -> bool {
        self.core.may_run_on(v, pcpu) && self.policy.eligible(&self.core, v, pcpu)
    }

    /// Take the first queued vCPU that may run on `pcpu`.
    fn take_eligible(&mut self, pcpu: usize) -> Option<VcpuRef> {
        let i = self.core.queue.as_slice().iter().position(|&v| self.may_run(v, pcpu))?;
        Some(self.core.queue.remove_at(i))
    }

    fn has_eligible(&self, pcpu: usize) -> bool {
        self.core.queue.as_slice().iter().any(|&v| self.may_run(v, pcpu))
    }

    /// `hwdom_pin=on`: may VM `vm` (`vcpus` vCPUs, the hardware domain if
    /// `hwdom`) be added, and what would be reserved then?
    fn check_reservation(&self, vm: u8, vcpus: u8, hwdom: bool) -> Result<u16, SchedError> {
        let c = &self.core;
        if c.hwdom_pin != HwdomPin::On {
            return Ok(0);
        }
        if !hwdom {
            if c.reserved != 0 && c.unreserved_pcpu(0).is_none() {
                return Err(SchedError::NoFreePcpu { vm, reserved: c.reserved });
            }
            return Ok(c.reserved);
        }
        if vcpus as usize > c.npcpus {
            return Err(SchedError::HwdomTooBig { vm, vcpus, npcpus: c.npcpus });
        }
        let reserved = ((1u32 << vcpus) - 1) as u16;
        // Added after other VMs: they must have a pCPU left, and none of
        // their vCPUs may be on one it takes.
        if vcpus as usize == c.npcpus && c.vms.iter().any(Option::is_some) {
            return Err(SchedError::NoFreePcpu { vm, reserved });
        }
        for (i, s) in c.slots.iter().enumerate() {
            let v = VcpuRef::of_slot(i);
            if !s.present {
                continue;
            }
            let running = match s.state {
                State::Running(p) => Some(p),
                _ => None,
            };
            let null_bound = if self.policy.kind() == SchedPolicy::Null { self.policy.bound(c, v) } else { None };
            for p in [running, s.pin, null_bound].into_iter().flatten() {
                if p < 16 && reserved & (1 << p) != 0 {
                    return Err(SchedError::Reserved { v, pcpu: p });
                }
            }
        }
        Ok(reserved)
    }

    /// Yield `pcpu`'s vCPU (if any) and start the first eligible one.
    fn switch(&mut self, pcpu: usize) -> Decision {
        let prev = self.requeue_current(pcpu);
        match self.take_eligible(pcpu) {
            Some(v) if prev == Some(v) => {
                // The same vCPU again: no switch happened.
                self.core.slots[v.slot()].state = State::Running(pcpu);
                self.core.current[pcpu] = Some(v);
                Decision::Keep
            }
            Some(v) => {
                self.start(v, pcpu);
                Decision::Run(v)
            }
            None => Decision::Idle,
        }
    }
}

impl<P: Policy> Scheduler for Sched<P> {
    fn add_vm(&mut self, vm: u8, cap: SchedCap, vcpus: u8, hwdom: bool) -> Result<(), Refused> {
        match self.check_add(vm, vcpus, hwdom) {
            Ok(reserved) => {
                self.add_checked(vm, cap, vcpus, hwdom, reserved);
                Ok(())
            }
            Err(error) => Err(Refused { error, cap }),
        }
    }

    fn tick(&mut self, pcpu: usize) -> Result<Decision, SchedError> {
        self.check_pcpu(pcpu)?;
        Ok(match self.core.current[pcpu] {
            // Pinned away from here since it started: move it now.
            Some(v) if !self.may_run(v, pcpu) => self.switch(pcpu),
            Some(_) if self.policy.time_slices() && self.has_eligible(pcpu) => self.switch(pcpu),
            Some(_) => Decision::Keep,
            None => match self.take_eligible(pcpu) {
                Some(v) => {
                    self.start(v, pcpu);
                    Decision::Run(v)
                }
                None => Decision::Keep,
            },
        })
    }

    fn pick_next(&mut self, pcpu: usize) -> Result<Decision, SchedError> {
        self.check_pcpu(pcpu)?;
        Ok(self.switch(pcpu))
    }

    fn block(&mut self, v: VcpuRef, kind: BlockKind) -> Result<Option<usize>, SchedError> {
        let state = self.slot(v)?.state;
        let freed = match state {
            State::Running(p) => {
                self.core.current[p] = None;
                Some(p)
            }
            State::Runnable => {
                self.core.queue.remove(v);
                None
            }
            State::Blocked => None,
        };
        self.core.slots[v.slot()].state = State::Blocked;
        self.policy.blocked(v, kind);
        Ok(freed)
    }

    fn wake(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        if self.slot(v)?.state != State::Blocked {
            return Ok(None);
        }
        self.core.slots[v.slot()].state = State::Runnable;
        self.core.queue.push(v);
        Ok((0..self.core.npcpus).find(|&p| self.core.current[p].is_none() && self.may_run(v, p)))
    }

    fn report_set_way(&mut self, vm: u8) -> Result<bool, SchedError> {
        let Some(n) = self.core.vms.get(vm as usize).copied().flatten() else {
            return Err(SchedError::NoSuchVm(vm));
        };
        self.core.stats.set_way_reports += 1;
        if self.core.hwdom != Some(vm) || self.core.hwdom_pin != HwdomPin::Auto {
            return Ok(false);
        }
        let mut changed = false;
        for k in 0..n {
            let v = VcpuRef::new(vm, k);
            let s = self.core.slots[v.slot()];
            if s.pin.is_some() || s.pin_on_next_run {
                continue;
            }
            let here = match s.state {
                State::Running(p) => Some(p),
                _ => s.last,
            };
            match here {
                Some(p) => {
                    self.set_pin(v, p);
                    self.core.stats.hwdom_pins += 1;
                }
                None => self.core.slots[v.slot()].pin_on_next_run = true,
            }
            changed = true;
        }
        Ok(changed)
    }

    fn pin(&mut self, v: VcpuRef, pcpu: usize) -> Result<Option<usize>, SchedError> {
        self.check_pcpu(pcpu)?;
        let state = self.slot(v)?.state;
        if !self.core.may_run_on(v, pcpu) {
            return Err(SchedError::Reserved { v, pcpu });
        }
        if self.core.hwdom_pin == HwdomPin::On && self.core.hwdom == Some(v.vm) && pcpu != v.vcpu as usize {
            return Err(SchedError::HwdomFixed(v));
        }
        self.set_pin(v, pcpu);
        Ok(match state {
            State::Running(q) if q != pcpu => Some(q),
            _ => None,
        })
    }

    fn current(&self, pcpu: usize) -> Option<VcpuRef> {
        self.core.current.get(pcpu).copied().flatten()
    }

    fn state(&self, v: VcpuRef) -> Option<State> {
        self.slot(v).ok().map(|s| s.state)
    }

    fn stats(&self) -> Stats {
        self.core.stats
    }
}

/// The scheduler chosen at boot by `sched=`.
#[derive(Debug)]
pub enum AnySched {
    /// `sched=rr`.
    Rr(Sched<RoundRobin>),
    /// `sched=pinned`.
    Pinned(Sched<Pinned>),
    /// `sched=null`.
    Null(Sched<Null>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            AnySched::Rr($s) => $e,
            AnySched::Pinned($s) => $e,
            AnySched::Null($s) => $e,
        }
    };
}

impl AnySched {
    /// The scheduler for `policy` on `npcpus` pCPUs.
    pub fn new(policy: SchedPolicy, npcpus: usize, hwdom_pin: HwdomPin) -> Result<Self, SchedError> {
        Ok(match policy {
            SchedPolicy::Rr => AnySched::Rr(Sched::new(RoundRobin, npcpus, hwdom_pin)?),
            SchedPolicy::Pinned => AnySched::Pinned(Sched::new(Pinned::default(), npcpus, hwdom_pin)?),
            SchedPolicy::Null => AnySched::Null(Sched::new(Null::default(), npcpus, hwdom_pin)?),
        })
    }

    /// Which policy runs.
    pub fn policy(&self) -> SchedPolicy {
        each!(self, s => s.policy.kind())
    }

    /// See [`Sched::pin_of`].
    pub fn pin_of(&self, v: VcpuRef) -> Option<usize> {
        each!(self, s => s.pin_of(v))
    }

    /// See [`Sched::last_pcpu`].
    pub fn last_pcpu(&self, v: VcpuRef) -> Option<usize> {
        each!(self, s => s.last_pcpu(v))
    }

    /// See [`Sched::migrations_of`].
    pub fn migrations_of(&self, v: VcpuRef) -> u32 {
        each!(self, s => s.migrations_of(v))
    }

    /// See [`Sched::queue`].
    pub fn queue(&self) -> &[VcpuRef] {
        each!(self, s => s.queue())
    }

    /// See [`Sched::reserved_pcpus`].
    pub fn reserved_pcpus(&self) -> u16 {
        each!(self, s => s.reserved_pcpus())
    }

    /// See [`Sched::check`].
    pub fn check(&self) -> Result<(), &'static str> {
        each!(self, s => s.check())
    }

    /// See [`Sched::take_caps`].
    pub fn take_caps(&mut self) -> impl Iterator<Item = SchedCap> + '_ {
        each!(self, s => s.caps.iter_mut().filter_map(Option::take))
    }
}

impl Scheduler for AnySched {
    fn add_vm(&mut self, vm: u8, cap: SchedCap, vcpus: u8, hwdom: bool) -> Result<(), Refused> {
        each!(self, s => s.add_vm(vm, cap, vcpus, hwdom))
    }

    fn tick(&mut self, pcpu: usize) -> Result<Decision, SchedError> {
        each!(self, s => s.tick(pcpu))
    }

    fn pick_next(&mut self, pcpu: usize) -> Result<Decision, SchedError> {
        each!(self, s => s.pick_next(pcpu))
    }

    fn block(&mut self, v: VcpuRef, kind: BlockKind) -> Result<Option<usize>, SchedError> {
        each!(self, s => s.block(v, kind))
    }

    fn wake(&mut self, v: VcpuRef) -> Result<Option<usize>, SchedError> {
        each!(self, s => s.wake(v))
    }

    fn report_set_way(&mut self, vm: u8) -> Result<bool, SchedError> {
        each!(self, s => s.report_set_way(vm))
    }

    fn pin(&mut self, v: VcpuRef, pcpu: usize) -> Result<Option<usize>, SchedError> {
        each!(self, s => s.pin(v, pcpu))
    }

    fn current(&self, pcpu: usize) -> Option<VcpuRef> {
        each!(self, s => s.current(pcpu))
    }

    fn state(&self, v: VcpuRef) -> Option<State> {
        each!(self, s => s.state(v))
    }

    fn stats(&self) -> Stats {
        each!(self, s => s.stats())
    }
}

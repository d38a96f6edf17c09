//! # capabilities: who may act on which VM, and how requests travel
//!
//! **Responsible for:**
//! - The capability types: [`Stage2Cap`] (edit one VM's stage-2 table),
//!   [`PodCap`] (draw frames from one VM's populate-on-demand pool),
//!   [`CacheCap`] (run cache maintenance on one VM's memory), [`SchedCap`]
//!   (control how one VM's vCPUs are scheduled) and [`VgicCap`] (raise
//!   virtual interrupts in one VM's vCPUs). Each names one [`VmId`].
//! - The only way to make them: the boot-time [`Granter`], which exists once.
//! - [`Channel`] and [`Endpoint`]: bounded, typed message queues between the
//!   kernel's dispatcher and the passive components.
//!
//! **Not responsible for:** deciding which VM gets which right (the kernel's
//! boot wiring does), the request and reply types (each component defines
//! its own), or locking (a channel is used from one context at a time; the
//! kernel wraps it in its own lock, or uses [`Channel::split`] for one
//! producer and one consumer on different cores).
//!
//! **Invariants:**
//! - A capability has no public constructor, no public field, and is neither
//!   `Clone` nor `Copy`. Outside this crate a capability can only be moved,
//!   borrowed or dropped. The compile-fail tests in `tests/ui` prove this.
//! - [`Granter::take`] returns `Some` at most once per boot (an `AtomicBool`
//!   guards it). Only the kernel's boot wiring calls it.
//! - The granter hands out each VM's capabilities at most once until they are
//!   all given back with [`Granter::revoke`] (VM teardown).
//! - A channel never drops a message: [`Channel::send`] on a full channel
//!   returns the message inside [`Full`].
//!
//! ## How components use capabilities
//! A component's per-VM state is created by *consuming* the matching
//! capability (for example `stage2_pager::Pager::new(Stage2Cap, ..)`). The
//! state then stands for the right: whoever holds `&mut` to VM 3's pager may
//! edit VM 3's table, and nobody can build a second pager for VM 3 because the
//! capability has moved. Where two per-VM objects meet at run time (the pod
//! of VM 3 asked to map through some pager), the component compares the VM
//! ids and answers [`WrongVm`] when they differ.
//!
//! ## Message flow, as it is today
//! ```text
//! guest traps to EL2
//!   -> kernel/trap decodes a typed Trap
//!   -> `dispatch` (kernel/dispatch) calls the owning component's
//!      method on the trapping pCPU, under the trapping VM's lock
//!   -> it applies the reply: resume, inject an abort, run one slice of a
//!      clean, block or reschedule
//! ```
//! [`Channel`] and [`Endpoint`] are tested here but not yet used by the
//! kernel: routing requests through them is issue 15. Every component
//! consumes its capability: the pager, the pod, cache-maint, the scheduler
//! (`add_vm`) and the vGIC (`Vgic::new`).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "testing"))]
extern crate std;

#[cfg(feature = "testing")]
pub mod testing;

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// Names a virtual machine. The value is also the VM's hardware VMID (the
/// tag its stage-2 TLB entries carry). A `VmId` is only a name: holding one
/// grants nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u16);

impl VmId {
    /// The VM called `id` (also its VMID).
    pub const fn new(id: u16) -> Self {
        VmId(id)
    }

    /// The VMID, as written to `VTTBR_EL2.VMID` and used by TLB maintenance.
    pub const fn vmid(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm{}", self.0)
    }
}

/// An operation was given an object or capability for another VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongVm {
    /// The VM the component state belongs to.
    pub expected: VmId,
    /// The VM the caller's object or capability names.
    pub got: VmId,
}

impl fmt::Display for WrongVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrong VM: state of {} given {}", self.expected, self.got)
    }
}

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Only [`Granter`] makes one. It is not `Clone`: there is one per VM.
        #[derive(Debug, PartialEq, Eq)]
        pub struct $name {
            vm: VmId,
        }

        impl $name {
            // Private: the granter is the only caller.
            const fn new(vm: VmId) -> Self {
                $name { vm }
            }

            /// The VM this capability names.
            pub const fn vm(&self) -> VmId {
                self.vm
            }

            /// `Ok` when this capability names `vm`, else [`WrongVm`].
            pub fn check(&self, vm: VmId) -> Result<(), WrongVm> {
                if self.vm == vm {
                    Ok(())
                } else {
                    Err(WrongVm { expected: vm, got: self.vm })
                }
            }
        }
    };
}

capability!(
    /// The right to edit one VM's stage-2 translation table.
    Stage2Cap
);
capability!(
    /// The right to draw frames from one VM's populate-on-demand pool.
    PodCap
);
capability!(
    /// The right to run cache maintenance on one VM's memory.
    CacheCap
);
capability!(
    /// The right to control the scheduling of one VM's vCPUs.
    SchedCap
);
capability!(
    /// The right to raise virtual interrupts in one VM's vCPUs.
    VgicCap
);

/// Every capability of one VM, as granted together at boot.
///
/// The fields are public so the kernel can hand each one to its component;
/// building a `VmCaps` from parts needs the (unforgeable) parts.
#[derive(Debug, PartialEq, Eq)]
pub struct VmCaps {
    /// Edit the VM's stage-2 table.
    pub stage2: Stage2Cap,
    /// Draw from the VM's PoD pool.
    pub pod: PodCap,
    /// Cache maintenance on the VM's memory.
    pub cache: CacheCap,
    /// Scheduler control for the VM.
    pub sched: SchedCap,
    /// Virtual interrupts of the VM.
    pub vgic: VgicCap,
}

impl VmCaps {
    /// The VM named by the stage-2 capability (all four agree when granted).
    pub fn vm(&self) -> VmId {
        self.stage2.vm()
    }

    fn all_name(&self, vm: VmId) -> bool {
        self.stage2.vm == vm && self.pod.vm == vm && self.cache.vm == vm && self.sched.vm == vm && self.vgic.vm == vm
    }
}

/// Why the granter refused.
#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The VM's capabilities are already out (granted and not revoked).
    AlreadyGranted(VmId),
    /// The VMID does not fit the 8 bits every supported CPU provides
    /// (ARMv7 and ARMv8.0 without FEAT_VMID16).
    VmidTooLarge(VmId),
    /// `revoke` was given capabilities that do not all name one VM; they are
    /// handed back unchanged.
    Mixed(VmCaps),
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::AlreadyGranted(vm) => write!(f, "capabilities of {vm} already granted"),
            GrantError::VmidTooLarge(vm) => {
                write!(f, "{vm}: VMID must be at most {}", Granter::MAX_VMID)
            }
            GrantError::Mixed(_) => write!(f, "revoke: capabilities name different VMs"),
        }
    }
}

static GRANTER_TAKEN: AtomicBool = AtomicBool::new(false);

/// The boot-time source of all capabilities. There is at most one per boot.
///
/// Only the kernel's boot wiring calls [`Granter::take`]; it grants each VM's
/// capabilities and hands them to the components. Dropping the granter ends
/// all granting for this boot.
#[derive(Debug)]
pub struct Granter {
    // One bit per VMID 0..=255: set while that VM's capabilities are out.
    granted: [u64; 4],
}

impl Granter {
    /// The largest VMID the granter hands out.
    pub const MAX_VMID: u16 = 255;

    /// The granter, the first time this is called in this boot (program
    /// run); `None` every later time.
    pub fn take() -> Option<Granter> {
        if GRANTER_TAKEN
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Some(Granter { granted: [0; 4] })
        } else {
            None
        }
    }

    fn slot(vm: VmId) -> Result<(usize, u64), GrantError> {
        if vm.0 > Self::MAX_VMID {
            return Err(GrantError::VmidTooLarge(vm));
        }
        Ok(((vm.0 / 64) as usize, 1u64 << (vm.0 % 64)))
    }

    /// All capabilities of `vm`. Refused while they are already out.
    pub fn grant_vm(&mut self, vm: VmId) -> Result<VmCaps, GrantError> {
        let (word, bit) = Self::slot(vm)?;
        if self.granted[word] & bit != 0 {
            return Err(GrantError::AlreadyGranted(vm));
        }
        self.granted[word] |= bit;
        Ok(VmCaps {
            stage2: Stage2Cap::new(vm),
            pod: PodCap::new(vm),
            cache: CacheCap::new(vm),
            sched: SchedCap::new(vm),
            vgic: VgicCap::new(vm),
        })
    }

    /// Whether `vm`'s capabilities are out.
    pub fn is_granted(&self, vm: VmId) -> bool {
        match Self::slot(vm) {
            Ok((word, bit)) => self.granted[word] & bit != 0,
            Err(_) => false,
        }
    }

    /// Take back every capability of one VM (after its teardown), so the VM
    /// id can be granted again. All four must name the same granted VM.
    pub fn revoke(&mut self, caps: VmCaps) -> Result<VmId, GrantError> {
        let vm = caps.vm();
        if !caps.all_name(vm) {
            return Err(GrantError::Mixed(caps));
        }
        // Capabilities are unique and only `grant_vm` makes them, so a
        // complete set always names a granted VM.
        let (word, bit) = Self::slot(vm)?;
        debug_assert!(self.granted[word] & bit != 0);
        self.granted[word] &= !bit;
        Ok(vm)
    }
}

/// A send found the channel full. The message is handed back, never dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<T>(pub T);

/// A bounded, typed message queue. It holds at most `N - 1` messages (the
/// heapless single-producer single-consumer ring keeps one slot free).
///
/// Used from one context at a time through `&mut`; [`Channel::split`] gives
/// a producer and a consumer half that may live on two cores.
pub struct Channel<T, const N: usize> {
    queue: heapless::spsc::Queue<T, N>,
}

impl<T, const N: usize> Channel<T, N> {
    /// An empty channel. `N` must be at least 2.
    pub const fn new() -> Self {
        Channel {
            queue: heapless::spsc::Queue::new(),
        }
    }

    /// Queue `msg`, or give it back in [`Full`] when no room is left.
    pub fn send(&mut self, msg: T) -> Result<(), Full<T>> {
        self.queue.enqueue(msg).map_err(Full)
    }

    /// The oldest message, if any.
    pub fn recv(&mut self) -> Option<T> {
        self.queue.dequeue()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// No message waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// No room for another message.
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// The most messages the channel holds (`N - 1`).
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// A sending half and a receiving half, for one producer and one consumer.
    pub fn split(&mut self) -> (Sender<'_, T>, Receiver<'_, T>) {
        let (p, c) = self.queue.split();
        (Sender { inner: p }, Receiver { inner: c })
    }
}

impl<T, const N: usize> Default for Channel<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

/// The sending half of a split [`Channel`].
pub struct Sender<'a, T> {
    inner: heapless::spsc::Producer<'a, T>,
}

impl<T> Sender<'_, T> {
    /// Queue `msg`, or give it back in [`Full`].
    pub fn send(&mut self, msg: T) -> Result<(), Full<T>> {
        self.inner.enqueue(msg).map_err(Full)
    }
}

/// The receiving half of a split [`Channel`].
pub struct Receiver<'a, T> {
    inner: heapless::spsc::Consumer<'a, T>,
}

impl<T> Receiver<'_, T> {
    /// The oldest message, if any.
    pub fn recv(&mut self) -> Option<T> {
        self.inner.dequeue()
    }
}

/// A request channel and a reply channel for one component.
///
/// The kernel sends requests; the component, when the kernel calls it,
/// answers them with [`Endpoint::serve`]; the kernel then reads the replies.
pub struct Endpoint<Req, Rep, const N: usize> {
    /// Kernel to component.
    pub requests: Channel<Req, N>,
    /// Component to kernel, in request order.
    pub replies: Channel<Rep, N>,
}

impl<Req, Rep, const N: usize> Endpoint<Req, Rep, N> {
    /// Both channels empty.
    pub const fn new() -> Self {
        Endpoint {
            requests: Channel::new(),
            replies: Channel::new(),
        }
    }

    /// Answer waiting requests with `handler`, in order, while the reply
    /// channel has room. A request is only taken off its queue when its reply
    /// has a place, so nothing is lost. Returns how many were answered.
    pub fn serve(&mut self, mut handler: impl FnMut(Req) -> Rep) -> usize {
        let mut served = 0;
        while !self.replies.is_full() {
            let Some(req) = self.requests.recv() else {
                break;
            };
            let sent = self.replies.send(handler(req));
            debug_assert!(sent.is_ok(), "room was checked above");
            served += 1;
        }
        served
    }
}

impl<Req, Rep, const N: usize> Default for Endpoint<Req, Rep, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, OnceLock};

    // One granter per test process: tests share it.
    fn granter() -> &'static Mutex<Granter> {
        static G: OnceLock<Mutex<Granter>> = OnceLock::new();
        G.get_or_init(|| Mutex::new(Granter::take().expect("first take")))
    }

    #[test]
    fn take_works_once() {
        let _ = granter();
        assert!(Granter::take().is_none());
        assert!(Granter::take().is_none());
    }

    #[test]
    fn grant_names_the_vm_and_only_once() {
        let mut g = granter().lock().unwrap();
        let vm = VmId::new(7);
        let caps = g.grant_vm(vm).unwrap();
        assert_eq!(caps.vm(), vm);
        assert_eq!(caps.stage2.vm(), vm);
        assert_eq!(caps.pod.vm(), vm);
        assert_eq!(caps.cache.vm(), vm);
        assert_eq!(caps.sched.vm(), vm);
        assert_eq!(caps.vgic.vm(), vm);
        assert_eq!(g.grant_vm(vm), Err(GrantError::AlreadyGranted(vm)));
        assert!(g.is_granted(vm));
        assert_eq!(g.revoke(caps), Ok(vm));
        assert!(!g.is_granted(vm));
        let again = g.grant_vm(vm).unwrap();
        g.revoke(again).unwrap();
    }

    #[test]
    fn vmid_range_is_eight_bits() {
        let mut g = granter().lock().unwrap();
        assert_eq!(
            g.grant_vm(VmId::new(256)),
            Err(GrantError::VmidTooLarge(VmId::new(256)))
        );
        let top = g.grant_vm(VmId::new(255)).unwrap();
        g.revoke(top).unwrap();
    }

    #[test]
    fn revoke_refuses_mixed_sets() {
        let mut g = granter().lock().unwrap();
        let VmCaps {
            stage2: s_a,
            pod: p_a,
            cache: c_a,
            sched: k_a,
            vgic: v_a,
        } = g.grant_vm(VmId::new(20)).unwrap();
        let VmCaps {
            stage2: s_b,
            pod: p_b,
            cache: c_b,
            sched: k_b,
            vgic: v_b,
        } = g.grant_vm(VmId::new(21)).unwrap();
        let mixed = VmCaps {
            stage2: s_a,
            pod: p_b,
            cache: c_a,
            sched: k_a,
            vgic: v_a,
        };
        let Err(GrantError::Mixed(back)) = g.revoke(mixed) else {
            panic!("mixed set accepted")
        };
        assert!(g.is_granted(VmId::new(20)) && g.is_granted(VmId::new(21)));
        let VmCaps {
            stage2: s_a,
            pod: p_b,
            cache: c_a,
            sched: k_a,
            vgic: v_a,
        } = back;
        let a = VmCaps {
            stage2: s_a,
            pod: p_a,
            cache: c_a,
            sched: k_a,
            vgic: v_a,
        };
        let b = VmCaps {
            stage2: s_b,
            pod: p_b,
            cache: c_b,
            sched: k_b,
            vgic: v_b,
        };
        assert_eq!(g.revoke(a), Ok(VmId::new(20)));
        assert_eq!(g.revoke(b), Ok(VmId::new(21)));
    }

    #[test]
    fn check_reports_wrong_vm() {
        let mut g = granter().lock().unwrap();
        let caps = g.grant_vm(VmId::new(30)).unwrap();
        assert_eq!(caps.pod.check(VmId::new(30)), Ok(()));
        assert_eq!(
            caps.pod.check(VmId::new(31)),
            Err(WrongVm {
                expected: VmId::new(31),
                got: VmId::new(30)
            })
        );
        g.revoke(caps).unwrap();
    }

    #[test]
    fn channel_gives_back_when_full() {
        let mut ch: Channel<u32, 4> = Channel::new();
        assert_eq!(ch.capacity(), 3);
        for i in 0..3 {
            ch.send(i).unwrap();
        }
        assert!(ch.is_full());
        assert_eq!(ch.send(99), Err(Full(99)));
        assert_eq!(ch.recv(), Some(0));
        ch.send(3).unwrap();
        assert_eq!(
            (ch.recv(), ch.recv(), ch.recv(), ch.recv()),
            (Some(1), Some(2), Some(3), None)
        );
        assert!(ch.is_empty());
    }

    #[test]
    fn split_halves_pass_messages() {
        let mut ch: Channel<&str, 3> = Channel::new();
        let (mut tx, mut rx) = ch.split();
        tx.send("a").unwrap();
        tx.send("b").unwrap();
        assert_eq!(tx.send("c"), Err(Full("c")));
        assert_eq!(rx.recv(), Some("a"));
        assert_eq!(rx.recv(), Some("b"));
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn endpoint_serves_in_order_and_keeps_unanswered_requests() {
        let mut ep: Endpoint<u32, u64, 4> = Endpoint::new();
        for i in 1..=3 {
            ep.requests.send(i).unwrap();
        }
        ep.replies.send(0).unwrap(); // one reply already waiting
        assert_eq!(ep.serve(|r| u64::from(r) * 10), 2);
        assert_eq!(ep.requests.len(), 1, "third request waits for room");
        assert_eq!(ep.replies.recv(), Some(0));
        assert_eq!(ep.serve(|r| u64::from(r) * 10), 1);
        let got: std::vec::Vec<u64> = core::iter::from_fn(|| ep.replies.recv()).collect();
        assert_eq!(got, [10, 20, 30]);
    }
}

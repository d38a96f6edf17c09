//! Host-only helpers for tests (feature `testing`, uses std). Never enabled
//! in the kernel.
//!
//! The real [`Granter`] can be taken once per process, so every test of a
//! process shares one: [`grant`] hands out the capabilities of any free VM
//! id and [`revoke`] gives them back. `*_cap` hands out one capability
//! alone (the rest wait in a stash) and `return_*_cap` gives it back; the
//! id is free again once all five are back.

use std::sync::{Mutex, OnceLock};
use std::vec::Vec;

use crate::{CacheCap, Granter, PodCap, SchedCap, Stage2Cap, VgicCap, VmCaps, VmId};

fn granter() -> std::sync::MutexGuard<'static, Granter> {
    static G: OnceLock<Mutex<Granter>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(Granter::take().expect("the test process's granter")))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The capabilities of a VM whose id is free in this test process.
pub fn grant() -> VmCaps {
    let mut g = granter();
    for id in 0..=Granter::MAX_VMID {
        if let Ok(caps) = g.grant_vm(VmId::new(id)) {
            return caps;
        }
    }
    panic!("all VMIDs are granted: a test does not revoke its capabilities");
}

/// Give a VM's capabilities back so its id can be granted again.
pub fn revoke(caps: VmCaps) {
    granter().revoke(caps).expect("revoke a complete set");
}

/// A VM's capabilities with some handed out.
#[derive(Default)]
struct Parts {
    stage2: Option<Stage2Cap>,
    pod: Option<PodCap>,
    cache: Option<CacheCap>,
    sched: Option<SchedCap>,
    vgic: Option<VgicCap>,
}

static STASH: Mutex<Vec<(VmId, Parts)>> = Mutex::new(Vec::new());

/// Grant a VM and keep all but the capability `take` picks.
fn one<C>(take: impl FnOnce(&mut Parts) -> Option<C>) -> C {
    let VmCaps { stage2, pod, cache, sched, vgic } = grant();
    let vm = stage2.vm();
    let mut parts = Parts { stage2: Some(stage2), pod: Some(pod), cache: Some(cache), sched: Some(sched), vgic: Some(vgic) };
    let c = take(&mut parts).expect("a granted part");
    STASH.lock().unwrap_or_else(|e| e.into_inner()).push((vm, parts));
    c
}

/// Put one capability of `vm` back; revoke the VM once all are back.
fn back(vm: VmId, put: impl FnOnce(&mut Parts)) {
    let whole = {
        let mut stash = STASH.lock().unwrap_or_else(|e| e.into_inner());
        let i = stash.iter().position(|(v, _)| *v == vm).expect("a capability handed out alone");
        put(&mut stash[i].1);
        let p = &stash[i].1;
        if p.stage2.is_some() && p.pod.is_some() && p.cache.is_some() && p.sched.is_some() && p.vgic.is_some() {
            Some(stash.swap_remove(i).1)
        } else {
            None
        }
    };
    if let Some(Parts { stage2: Some(stage2), pod: Some(pod), cache: Some(cache), sched: Some(sched), vgic: Some(vgic) }) = whole {
        revoke(VmCaps { stage2, pod, cache, sched, vgic });
    }
}

/// The `CacheCap` of a free VM id.
pub fn cache_cap() -> CacheCap {
    one(|p| p.cache.take())
}

/// Give back a `CacheCap` from [`cache_cap`].
pub fn return_cache_cap(cap: CacheCap) {
    back(cap.vm(), |p| p.cache = Some(cap));
}

/// The `SchedCap` of a free VM id.
pub fn sched_cap() -> SchedCap {
    one(|p| p.sched.take())
}

/// Give back a `SchedCap` from [`sched_cap`].
pub fn return_sched_cap(cap: SchedCap) {
    back(cap.vm(), |p| p.sched = Some(cap));
}

/// The `VgicCap` of a free VM id.
pub fn vgic_cap() -> VgicCap {
    one(|p| p.vgic.take())
}

/// Give back a `VgicCap` from [`vgic_cap`].
pub fn return_vgic_cap(cap: VgicCap) {
    back(cap.vm(), |p| p.vgic = Some(cap));
}

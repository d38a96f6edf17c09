// A component tries to duplicate a capability it was given.
use capabilities::{CacheCap, Granter, VmId};

fn keep_two(cap: &CacheCap) -> (CacheCap, CacheCap) {
    (cap.clone(), cap.clone())
}

fn main() {
    let mut g = Granter::take().unwrap();
    let caps = g.grant_vm(VmId::new(1)).unwrap();
    let _ = keep_two(&caps.cache);
}

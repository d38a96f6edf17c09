// A per-VM handle consumes its capability: a second handle for the same VM
// cannot be made from the same capability.
use capabilities::{Granter, Stage2Cap, VmId};

struct Pager {
    _cap: Stage2Cap,
}

fn main() {
    let mut g = Granter::take().unwrap();
    let caps = g.grant_vm(VmId::new(1)).unwrap();
    let _first = Pager { _cap: caps.stage2 };
    let _second = Pager { _cap: caps.stage2 };
}

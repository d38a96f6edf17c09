// A component tries to build a capability with a struct literal.
use capabilities::{Stage2Cap, VmId};

fn main() {
    let _forged = Stage2Cap { vm: VmId::new(1) };
}

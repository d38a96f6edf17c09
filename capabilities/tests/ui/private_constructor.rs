// A component tries the constructor the granter uses.
use capabilities::{PodCap, VmId};

fn main() {
    let _forged = PodCap::new(VmId::new(1));
}

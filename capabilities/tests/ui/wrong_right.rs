// The kernel wiring passes a pool capability where table edits are wanted.
use capabilities::{Granter, Stage2Cap, VmId};

fn edit_table(_cap: &Stage2Cap) {}

fn main() {
    let mut g = Granter::take().unwrap();
    let caps = g.grant_vm(VmId::new(1)).unwrap();
    edit_table(&caps.pod);
}

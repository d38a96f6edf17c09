// The kernel wiring hands the scheduler's capability to the vGIC.
use vgic::{Config, Vgic};

fn main() {
    let caps = capabilities::testing::grant();
    let _gic = Vgic::new(caps.sched, Config::new(1, 32));
}

// The kernel wiring hands the vGIC's capability to the scheduler.
use vcpu_sched::{AnySched, HwdomPin, SchedPolicy, Scheduler};

fn main() {
    let caps = capabilities::testing::grant();
    let mut s = AnySched::new(SchedPolicy::Rr, 1, HwdomPin::Off).unwrap();
    let _ = s.add_vm(0, caps.vgic, 1, false);
}

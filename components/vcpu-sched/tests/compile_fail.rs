//! Compile-fail proof against the real API: a VM is added to the scheduler
//! only with its `SchedCap`.

#[test]
fn add_vm_needs_the_sched_capability() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

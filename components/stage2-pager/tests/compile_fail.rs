//! Compile-fail proof against the real API: a pager is made only from the
//! VM's stage-2 capability, and only once per capability.

#[test]
fn pager_needs_its_own_capability() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

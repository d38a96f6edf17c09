//! Compile-fail proof against the real API: a vGIC is made only from its
//! VM's `VgicCap`.

#[test]
fn vgic_needs_its_own_capability() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

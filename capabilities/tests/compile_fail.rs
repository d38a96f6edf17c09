//! Compile-fail proofs: code outside `capabilities` cannot forge, copy or
//! mix up capabilities.

#[test]
fn capabilities_cannot_be_forged_or_mixed() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

//! Compile-fail cases of `cache_fn!`: each `tests/ui/*.rs` must fail to compile with
//! the message in its `.stderr`. Regenerate after a deliberate change with
//! `TRYBUILD=overwrite cargo test -p cacheable-dev --no-default-features --test ui`, and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

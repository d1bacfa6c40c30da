//! Compile bombs: modules whose shape would hold Cranelift for minutes (a million functions,
//! one huge function, thousands of locals, deep nesting) are refused before compiling, with
//! the limit named; the worst shape the limits still accept compiles (its time is printed
//! with `--nocapture`).

use std::time::Instant;

#[path = "support/bomb.rs"]
mod support;

use support::bomb;
use wasmnet_policy::{PolicyError, Runtime};

fn refused(bytes: &[u8]) -> String {
    let rt = Runtime::new(Default::default(), None).unwrap();
    match rt.load(bytes) {
        Err(PolicyError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {:?}", other.map(|m| m.size)),
    }
}

#[test]
fn a_million_functions_are_refused_before_compiling() {
    let why = refused(&bomb(1_000_000, 0, 0, 0));
    assert!(why.contains("functions, more than the 5000"), "{why}");
}

#[test]
fn many_locals_deep_nesting_and_huge_functions_are_refused() {
    let why = refused(&bomb(1, 5_000, 1, 10));
    assert!(why.contains("locals in one function"), "{why}");
    let why = refused(&bomb(1, 10, 1_000, 10));
    assert!(why.contains("nested blocks in one function"), "{why}");
    let why = refused(&bomb(1, 2, 10, 40_000));
    assert!(why.contains("bytes of code in one function"), "{why}");
    let why = refused(&bomb(40, 2, 10, 4_000));
    assert!(why.contains("bytes of code, more than"), "{why}");
    // What took 32 s to compile: 1,000 locals across 5,000 branches in one function.
    let why = refused(&bomb(1, 1_000, 1, 5_000));
    assert!(why.contains("locals × branches in one function"), "{why}");
    let why = refused(&bomb(20, 200, 32, 200));
    assert!(why.contains("locals × branches in all functions"), "{why}");
}

#[test]
fn the_worst_shape_the_limits_accept_compiles() {
    let bytes = support::worst_accepted();
    let rt = Runtime::new(Default::default(), None).unwrap();
    let start = Instant::now();
    let e = rt.load(&bytes).err().expect("it exports no policy");
    eprintln!(
        "worst accepted shape: {} bytes compiled in {:?}",
        bytes.len(),
        start.elapsed()
    );
    assert!(
        e.to_string().contains("does not export"),
        "compiled, then refused: {e}"
    );
}

/// Past the compile deadline (a backstop behind the static limits) the upload is refused with
/// the limit named.
#[test]
fn a_compile_past_its_deadline_is_refused() {
    let limits = wasmnet_policy::Limits {
        compile_time: std::time::Duration::from_millis(1),
        ..Default::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let e = rt.load(&support::worst_accepted()).err().expect("refused");
    assert!(
        e.to_string()
            .contains("compiling took longer than the limit of 1 ms"),
        "{e}"
    );
}

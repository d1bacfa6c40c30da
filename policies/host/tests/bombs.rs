//! Compile bombs: modules whose shape would hold Cranelift for minutes (a million functions,
//! one huge function, thousands of locals, deep nesting) are refused before compiling, with
//! the limit named; the worst shape the limits still accept compiles (its time is printed
//! with `--nocapture`).

use std::time::Instant;

use wasm_encoder::{
    CodeSection, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection,
    ValType,
};
use wasmnet_policy::{PolicyError, Runtime};

/// A component holding one core module of `functions` functions, each with `locals` i32
/// locals and `depth` nested loops around `work` local updates.
fn bomb(functions: u32, locals: u32, depth: u32, work: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..functions {
        funcs.function(0);
        let mut f = Function::new([(locals, ValType::I32)]);
        for _ in 0..depth {
            f.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty));
        }
        for i in 0..work {
            let (a, b) = (i % locals.max(1), (i * 7 + 3) % locals.max(1));
            if locals > 0 {
                f.instruction(&Instruction::LocalGet(a));
                f.instruction(&Instruction::LocalGet(b));
                f.instruction(&Instruction::I32Add);
                f.instruction(&Instruction::LocalTee(b));
                f.instruction(&Instruction::BrIf(i % depth.max(1)));
            }
        }
        for _ in 0..depth {
            f.instruction(&Instruction::End);
        }
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut m = Module::new();
    m.section(&types).section(&funcs).section(&code);
    let mut c = wasm_encoder::Component::new();
    c.section(&ModuleSection(&m));
    c.finish()
}

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
    // Nine functions each just under the weight limit: 200 locals, 32 nested loops, ~250
    // branches (a weight of ~50,000 each, ~450,000 in all).
    let bytes = bomb(9, 200, 32, 215);
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

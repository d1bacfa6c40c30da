//! Compile-bomb components of any shape (shared with the root crate's `policy_limits` bench).

use wasm_encoder::{
    CodeSection, Function, FunctionSection, Instruction, Module, ModuleSection, TypeSection,
    ValType,
};

/// A component holding one core module of `functions` functions, each with `locals` i32
/// locals and `depth` nested loops around `work` local updates.
pub fn bomb(functions: u32, locals: u32, depth: u32, work: u32) -> Vec<u8> {
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

/// The worst shape the static limits accept: nine functions each just under the weight
/// limit (200 locals, 32 nested loops, ~250 branches: ~50,000 each, ~450,000 in all).
pub fn worst_accepted() -> Vec<u8> {
    bomb(9, 200, 32, 215)
}

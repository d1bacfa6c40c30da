//! Static limits, read off a module before it is compiled: Cranelift's time and memory grow
//! faster than linearly with some shapes (one huge function, thousands of locals, deep
//! nesting; a million tiny functions), so a hostile module of a few hundred KiB could hold a
//! core for minutes. What these limits accept compiles in bounded time (`benches/policy.rs`
//! measures the worst); what they refuse is refused with the limit named, in milliseconds.

use wasmparser::{Operator, Parser, Payload};

/// What one module may hold, over all its core modules.
#[derive(Clone, Copy, Debug)]
pub struct StaticLimits {
    pub functions: u32,
    pub code_bytes: usize,
    pub function_bytes: usize,
    pub locals: u32,
    pub nesting: u32,
    pub data_bytes: usize,
    /// Locals times branch targets, in one function and in all (see [`Shape`]).
    pub function_weight: u64,
    pub weight: u64,
}

impl Default for StaticLimits {
    fn default() -> Self {
        // The shipped policies have at most 166 functions, 42 KiB of code, 5 KiB in the
        // largest function, 35 locals, 22 levels of nesting, a weight of 3,400 in one function
        // and 19,000 in all: these leave them (and much larger policies) room. Measured here,
        // the worst shapes they accept compile in under a second (tests/bombs.rs); one
        // function of 1,000 locals and 5,000 branches (58 KiB) took 32 s.
        StaticLimits {
            functions: 5_000,
            code_bytes: 1 << 20,
            function_bytes: 64 << 10,
            locals: 1_000,
            nesting: 64,
            data_bytes: 4 << 20,
            function_weight: 50_000,
            weight: 500_000,
        }
    }
}

/// What a module holds, as measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shape {
    pub functions: u32,
    pub code_bytes: usize,
    pub largest_function: usize,
    pub most_locals: u32,
    pub deepest_nesting: u32,
    pub data_bytes: usize,
    /// Per function, its locals times its branch targets (blocks, loops, ifs, branches):
    /// what the compiler's SSA construction and register allocation grow with. The largest
    /// in one function, and the sum over all.
    pub largest_weight: u64,
    pub weight: u64,
}

/// Measures `bytes` (a component or a core module), stopping at the first limit passed.
pub fn check(bytes: &[u8], l: &StaticLimits) -> Result<Shape, String> {
    let mut s = Shape::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a valid component: {e}"))? {
            Payload::FunctionSection(r) => s.functions = s.functions.saturating_add(r.count()),
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(|e| e.to_string())?;
                    s.data_bytes += d.data.len();
                }
            }
            Payload::CodeSectionEntry(body) => function(&body, l, &mut s)?,
            _ => {}
        }
        over(&s, l)?;
    }
    Ok(s)
}

fn function(
    body: &wasmparser::FunctionBody<'_>,
    l: &StaticLimits,
    s: &mut Shape,
) -> Result<(), String> {
    let size = body.range().len();
    s.code_bytes += size;
    s.largest_function = s.largest_function.max(size);
    over(s, l)?;
    let mut locals = 0u32;
    for local in body.get_locals_reader().map_err(|e| e.to_string())? {
        let (count, _) = local.map_err(|e| e.to_string())?;
        locals = locals.saturating_add(count);
    }
    s.most_locals = s.most_locals.max(locals);
    over(s, l)?;
    let (mut depth, mut branches) = (0u32, 0u64);
    let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !ops.eof() {
        match ops.read().map_err(|e| e.to_string())? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                branches += 1;
                s.deepest_nesting = s.deepest_nesting.max(depth);
                if depth > l.nesting {
                    return over(s, l);
                }
            }
            Operator::Br { .. } | Operator::BrIf { .. } | Operator::Else => branches += 1,
            Operator::BrTable { targets } => branches += 1 + targets.len() as u64,
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let weight = (locals as u64 + 1) * branches;
    s.largest_weight = s.largest_weight.max(weight);
    s.weight += weight;
    over(s, l)
}

/// The first limit `s` passes, named.
fn over(s: &Shape, l: &StaticLimits) -> Result<(), String> {
    let checks = [
        (s.functions as usize, l.functions as usize, "functions"),
        (s.code_bytes, l.code_bytes, "bytes of code"),
        (
            s.largest_function,
            l.function_bytes,
            "bytes of code in one function",
        ),
        (
            s.most_locals as usize,
            l.locals as usize,
            "locals in one function",
        ),
        (
            s.deepest_nesting as usize,
            l.nesting as usize,
            "nested blocks in one function",
        ),
        (s.data_bytes, l.data_bytes, "bytes of data segments"),
        (
            s.largest_weight as usize,
            l.function_weight as usize,
            "locals × branches in one function",
        ),
        (
            s.weight as usize,
            l.weight as usize,
            "locals × branches in all functions",
        ),
    ];
    match checks.iter().find(|(have, most, _)| have > most) {
        Some((have, most, what)) => Err(format!(
            "has {have} {what}, more than the {most} a policy may have"
        )),
        None => Ok(()),
    }
}

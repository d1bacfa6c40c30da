//! Loading and running policy components: one wasmtime engine with an epoch ticker, a module
//! compiled once (with its artifact cached on disk), an `InstancePre` to instantiate cheaply,
//! and one live instance per module reused across calls until a call fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::error::guest_text;
use crate::ir::{EndpointDecision, NetworkDecision, OutputLimits};
use crate::limits::StaticLimits;
use crate::versions::{Instance, Pre};
use crate::{wit, PolicyError, INTERFACE, VERSION, VERSIONS};

/// How often the epoch advances: the time limit is enforced to this granularity.
const TICK: Duration = Duration::from_millis(5);

/// What one call may use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub time: Duration,
    pub memory: usize,
    pub module_size: usize,
    /// What a module may hold, checked before it is compiled.
    pub statics: StaticLimits,
    /// The longest a compile may take: a backstop behind the static limits, which already
    /// keep the worst shape they accept near one second here.
    pub compile_time: Duration,
    pub output: OutputLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_millis(50),
            memory: 64 << 20,
            module_size: 8 << 20,
            statics: StaticLimits::default(),
            compile_time: Duration::from_secs(10),
            output: OutputLimits::default(),
        }
    }
}

/// The wasmtime engine policies run in, and the thread that makes time pass for them.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Host>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A store's data: only its limits (a policy gets no host state).
pub struct Host {
    limits: StoreLimits,
}

impl Runtime {
    /// `cache_dir`: where compiled artifacts are kept between runs (wasmnet's own state dir).
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> Result<Self, PolicyError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| PolicyError::Invalid(format!("{e:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })
            .map_err(|e| PolicyError::Invalid(format!("epoch thread: {e}")))?;
        if let Some(dir) = cache_dir {
            let _ = std::fs::create_dir_all(dir);
        }
        Ok(Runtime {
            linker: Linker::new(&engine),
            engine,
            limits,
            cache_dir: cache_dir.map(Path::to_path_buf),
            stop,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks and compiles a component: it must be a component, import nothing, and export
    /// `wasmnet:policy/policy` at a version compatible with this host's.
    pub fn load(&self, bytes: &[u8]) -> Result<Module, PolicyError> {
        if bytes.len() > self.limits.module_size {
            return Err(PolicyError::Invalid(format!(
                "module is {} bytes, at most {} are allowed",
                bytes.len(),
                self.limits.module_size
            )));
        }
        let sha256 = hex(&Sha256::digest(bytes));
        let component = self.compile(bytes, &sha256)?;
        let version = self.check_contract(&component)?;
        let pre = Pre::new(&self.linker, &component, &version).map_err(|e| {
            PolicyError::Invalid(guest_text(format!(
                "does not match {INTERFACE}@{version}: {e:#}"
            )))
        })?;
        Ok(Module {
            pre,
            component,
            engine: self.engine.clone(),
            limits: self.limits,
            sha256,
            size: bytes.len(),
            version,
            live: Mutex::new(None),
        })
    }

    /// Keeps a module's compiled artifact in the cache (for a module that was accepted and
    /// stored: nothing is cached before that, so refused uploads leave no file behind).
    pub fn keep(&self, m: &Module) {
        let Some(path) = self.cached(&m.sha256) else {
            return;
        };
        if path.exists() {
            return;
        }
        if let Ok(art) = m.component.serialize() {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, art).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }

    /// Removes a module's artifact (its policy was deleted).
    pub fn forget(&self, sha256: &str) {
        if let Some(path) = self.cached(sha256) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes every artifact but those of `keep` (at start: what deleted or refused
    /// modules left, say by an older version or a crash between the steps).
    pub fn prune(&self, keep: &[&str]) {
        let Some(dir) = &self.cache_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let sha = name.split('.').next().unwrap_or_default();
            if !keep.contains(&sha) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn cached(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}.cwasm")))
    }

    /// Compiles, or loads the artifact this host cached from the same bytes.
    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, PolicyError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(PolicyError::Invalid(
                "not a WebAssembly binary (no \\0asm header)".into(),
            ));
        }
        if bytes.get(4..8) != Some(&[0x0d, 0x00, 0x01, 0x00]) {
            return Err(PolicyError::Invalid(
                "a core WebAssembly module, not a component (build with wasm-component-ld)".into(),
            ));
        }
        crate::limits::check(bytes, &self.limits.statics)
            .map_err(|e| PolicyError::Invalid(guest_text(e)))?;
        if let Some(path) = self.cached(sha256).filter(|p| p.exists()) {
            // SAFETY: the file is one this process family wrote from `serialize` into
            // wasmnet's private state dir; wasmtime still checks version and config match.
            if let Ok(c) = unsafe { Component::deserialize_file(&self.engine, path) } {
                return Ok(c);
            }
        }
        self.compile_within_deadline(bytes)
    }

    /// Compiles on a thread of its own and waits at most `compile_time`. Cranelift cannot be
    /// interrupted: past the deadline the upload is refused and the thread finishes alone
    /// (bounded by the static limits), its memory returned when it does.
    fn compile_within_deadline(&self, bytes: &[u8]) -> Result<Component, PolicyError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, bytes) = (self.engine.clone(), bytes.to_vec());
        std::thread::Builder::new()
            .name("wasm-compile".into())
            .spawn(move || drop(tx.send(Component::new(&engine, &bytes))))
            .map_err(|e| PolicyError::Invalid(format!("starting the compiler: {e}")))?;
        match rx.recv_timeout(self.limits.compile_time) {
            Ok(compiled) => compiled.map_err(|e| {
                PolicyError::Invalid(guest_text(format!("not a valid component: {e:#}")))
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(PolicyError::Invalid(format!(
                "compiling took longer than the limit of {} ms",
                self.limits.compile_time.as_millis()
            ))),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PolicyError::Invalid(
                "the compiler stopped without an answer".into(),
            )),
        }
    }

    /// The contract version the component exports (one this host loads); else names the
    /// first import (a policy may have none) or the export that is missing.
    fn check_contract(&self, c: &Component) -> Result<String, PolicyError> {
        let ty = c.component_type();
        if let Some((name, _)) = ty.imports(&self.engine).next() {
            return Err(PolicyError::Invalid(guest_text(format!(
                "imports {name}: a policy may import nothing (no WASI, no host functions)"
            ))));
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let ours = |n: &str| {
            n.strip_prefix(INTERFACE)
                .and_then(|v| v.strip_prefix('@'))
                .map(str::to_string)
        };
        // wasmtime finds a semver-compatible export (`0.2.1` for `0.2.0`).
        let loadable = VERSIONS.iter().any(|v| {
            c.get_export_index(None, format!("{INTERFACE}@{v}"))
                .is_some()
        });
        if !loadable {
            let found = exports.iter().find_map(|n| ours(n));
            return Err(PolicyError::Invalid(guest_text(match found {
                Some(v) => format!(
                    "exports {INTERFACE}@{v}; this wasmnet loads {INTERFACE}@0.2.x and @0.1.x"
                ),
                None => {
                    let names: Vec<&str> = exports.iter().map(String::as_str).collect();
                    format!(
                        "does not export {INTERFACE}@{VERSION} (exports: {})",
                        if names.is_empty() {
                            "nothing".to_string()
                        } else {
                            names.join(", ")
                        }
                    )
                }
            })));
        }
        Ok(exports
            .iter()
            .find_map(|n| ours(n))
            .unwrap_or_else(|| VERSION.into()))
    }
}

/// A loaded policy, ready to call.
pub struct Module {
    pre: Pre<Host>,
    component: Component,
    engine: Engine,
    limits: Limits,
    pub sha256: String,
    pub size: usize,
    /// The package version the guest was built against (`0.2.0`, `0.1.1`, ...).
    pub version: String,
    live: Mutex<Option<(Store<Host>, Instance)>>,
}

impl Module {
    /// The decisions for these networks (whole view).
    pub fn evaluate(&self, networks: &[wit::Network]) -> Result<Vec<NetworkDecision>, PolicyError> {
        self.answer(
            "evaluate",
            |s, m| m.evaluate(s, networks),
            |out, raw| out.networks(raw, networks.len()),
        )
    }

    /// The groups and port decisions for one endpoint of `network`.
    pub fn classify(
        &self,
        endpoint: &wit::Endpoint,
        network: &wit::Network,
    ) -> Result<EndpointDecision, PolicyError> {
        self.answer(
            "classify",
            |s, m| m.classify(s, endpoint, network),
            |out, raw| out.endpoint(raw, endpoint.ports.len()),
        )
    }

    /// Calls `function`, then checks its answer: the guest's own `Err`, and an answer out of
    /// contract or over the output limits, are errors naming the function.
    fn answer<R, T>(
        &self,
        function: &'static str,
        call: impl Fn(&mut Store<Host>, &Instance) -> wasmtime::Result<Result<R, String>>,
        check: impl FnOnce(&OutputLimits, R) -> Result<T, String>,
    ) -> Result<T, PolicyError> {
        let raw = self
            .call(function, call)?
            .map_err(|m| PolicyError::Refused {
                function,
                message: guest_text(m),
            })?;
        check(&self.limits.output, raw).map_err(|reason| PolicyError::BadOutput {
            function,
            reason: guest_text(reason),
        })
    }

    /// Drops the live instance (its memory goes back): for a module no attachment calls.
    /// The next call, if any, instantiates afresh.
    pub fn release(&self) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether an instance is kept (and with it up to the memory limit).
    pub fn is_live(&self) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// `classify` from a fresh store and instance: what the first call, and the first after a
    /// failure, pays (for benchmarks).
    pub fn classify_fresh(
        &self,
        endpoint: &wit::Endpoint,
        network: &wit::Network,
    ) -> Result<EndpointDecision, PolicyError> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.classify(endpoint, network)
    }

    /// Runs `f` on the live instance (made on first use) within one time limit that covers
    /// instantiating (the start function) and the call. A failed call discards the store. A
    /// call that trapped on an instance kept from earlier calls is tried once more on a fresh
    /// one: what earlier calls left behind (a leak filling memory) must not fail every later
    /// call; a module that fails from a fresh instance too is refused with that error.
    fn call<R>(
        &self,
        function: &'static str,
        f: impl Fn(&mut Store<Host>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let reused = live.is_some();
        match self.call_once(&mut live, function, &f) {
            Err(PolicyError::Trap { .. }) if reused => self.call_once(&mut live, function, &f),
            done => done,
        }
    }

    fn call_once<R>(
        &self,
        live: &mut Option<(Store<Host>, Instance)>,
        function: &'static str,
        f: &impl Fn(&mut Store<Host>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        match live {
            Some((store, _)) => store.set_epoch_deadline(self.ticks()),
            // The deadline is set once, in `instantiate`: the start function and the call
            // share it.
            None => {
                let made = self
                    .instantiate()
                    .map_err(|e| self.failure(function, e).during_instantiation())?;
                *live = Some(made);
            }
        }
        let (store, instance) = live.as_mut().expect("instantiated above");
        f(store, instance).map_err(|e| {
            *live = None;
            self.failure(function, e)
        })
    }

    /// A fresh store and instance (what the first call, and every call after a failure, pays).
    fn instantiate(&self) -> wasmtime::Result<(Store<Host>, Instance)> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory)
            .memories(4)
            .tables(8)
            .table_elements(100_000)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, Host { limits });
        store.limiter(|h| &mut h.limits);
        store.set_epoch_deadline(self.ticks());
        let instance = self.pre.instantiate(&mut store)?;
        Ok((store, instance))
    }

    fn ticks(&self) -> u64 {
        (self.limits.time.as_millis() as u64)
            .div_ceil(TICK.as_millis() as u64)
            .max(1)
    }

    fn failure(&self, function: &'static str, e: wasmtime::Error) -> PolicyError {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyError::Timeout {
                function,
                ms: self.limits.time.as_millis() as u64,
            },
            Some(Trap::StackOverflow) => PolicyError::Trap {
                function,
                reason: "call stack exhausted (unbounded recursion?)".into(),
            },
            Some(Trap::UnreachableCodeReached) => PolicyError::Trap {
                function,
                reason: "unreachable instruction (a panic in the guest?)".into(),
            },
            Some(t) => PolicyError::Trap {
                function,
                reason: t.to_string(),
            },
            // The store limiter's refusal (memory, tables, instances) and instantiation errors.
            None => PolicyError::Trap {
                function,
                reason: guest_text(format!("{:#}", e.root_cause())),
            },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

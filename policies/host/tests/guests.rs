//! The runtime against real components: the shipped policies, and hostile or broken modules,
//! each refused at load or stopped with a clear error, after which the host keeps working.

use std::path::PathBuf;
use std::time::Instant;

use wasmnet_policy::ir::{PortDecision, Verdict};
use wasmnet_policy::{wit, PolicyError, Runtime};

fn wasm(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn runtime() -> Runtime {
    Runtime::new(Default::default(), None).unwrap()
}

fn label(k: &str, v: &str) -> wit::Label {
    wit::Label {
        key: k.into(),
        value: v.into(),
    }
}

fn network() -> wit::Network {
    wit::Network {
        id: "a".repeat(64),
        name: "front".into(),
        driver: "bridge".into(),
        internal: false,
        labels: vec![],
        options: vec![],
        subnets: vec!["10.1.0.0/24".into()],
    }
}

fn endpoint(labels: Vec<wit::Label>, ports: Vec<wit::PublishedPort>) -> wit::Endpoint {
    wit::Endpoint {
        id: "e".repeat(64),
        network_id: "a".repeat(64),
        sandbox_id: "s".repeat(64),
        sandbox_name: "web1".into(),
        interface: "eth0".into(),
        labels,
        ipv4: Some("10.1.0.2".into()),
        ipv6: None,
        mac: "02:42:0a:01:00:02".into(),
        ports,
    }
}

#[test]
fn shipped_policies_load_and_decide() {
    let rt = runtime();
    let docker = rt.load(&wasm("docker-default")).unwrap();
    assert_eq!(docker.version, "0.2.0");
    let d = docker.evaluate(&[network()]).unwrap();
    assert_eq!(d[0].default_internal, Some(Verdict::Accept));
    assert_eq!(d[0].masquerade, Some(true));
    let labels = rt.load(&wasm("label-isolation")).unwrap();
    let e = labels
        .classify(&endpoint(vec![label("tier", "web")], vec![]), &network())
        .unwrap();
    assert_eq!(e.groups, ["tier=web"]);
    let guard = rt.load(&wasm("port-guard")).unwrap();
    let port = |p| wit::PublishedPort {
        host_ip: None,
        host_port: p,
        container_port: 80,
        protocol: wit::Protocol::Tcp,
    };
    let e = guard
        .classify(&endpoint(vec![], vec![port(80), port(8080)]), &network())
        .unwrap();
    assert!(matches!(&e.ports[0], PortDecision::Refuse(why) if why.contains("80")));
    assert_eq!(e.ports[1], PortDecision::Honour);
}

#[test]
fn a_newer_minor_version_loads() {
    let m = runtime().load(&wasm("testdata/newer-minor")).unwrap();
    assert_eq!(m.version, "0.1.1");
    let e = m
        .classify(&endpoint(vec![label("tier", "db")], vec![]), &network())
        .unwrap();
    assert_eq!(e.groups, ["tier=db"]);
}

#[test]
fn a_guest_built_against_0_1_0_loads_and_decides_as_before() {
    let m = runtime().load(&wasm("testdata/v0-1-egress")).unwrap();
    assert_eq!(m.version, "0.1.0");
    let mut n = network();
    n.labels = vec![label("wasmnet.egress-allow", "192.0.2.0/24")];
    let d = m.evaluate(&[n]).unwrap();
    let rules: Vec<String> = d[0].rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "accept any -> any udp/53",
            "accept any -> any tcp/53",
            "accept any -> 192.0.2.0/24"
        ]
    );
    assert_eq!(d[0].default_egress, Some(Verdict::Drop));
    let e = m.classify(&endpoint(vec![], vec![]), &network()).unwrap();
    assert!(e.groups.is_empty());
}

#[test]
fn fqdn_egress_decides_names_and_bad_patterns_are_refused() {
    let m = runtime().load(&wasm("fqdn-egress")).unwrap();
    let mut n = network();
    n.labels = vec![label("wasmnet.egress-fqdn", "*.Example.com, api.test")];
    let d = m.evaluate(&[n]).unwrap();
    let rules: Vec<String> = d[0].rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rules,
        [
            "accept any -> fqdn *.example.com",
            "accept any -> fqdn api.test"
        ]
    );
    let mut bad = network();
    bad.labels = vec![label("wasmnet.egress-fqdn", "a.*.test")];
    let err = m.evaluate(&[bad]).unwrap_err().to_string();
    assert!(err.contains("a.*.test") && err.contains("front"), "{err}");
}

fn invalid(name: &str) -> String {
    match runtime().load(&wasm(name)) {
        Err(PolicyError::Invalid(m)) => m,
        Err(other) => panic!("{name}: unexpected {other}"),
        Ok(_) => panic!("{name} loaded"),
    }
}

#[test]
fn wrong_modules_are_refused_naming_why() {
    let other = invalid("testdata/wrong-version");
    assert!(other.contains("wasmnet:policy/policy@0.3.0"), "{other}");
    assert!(
        other.contains("loads wasmnet:policy/policy@0.2.x and @0.1.x"),
        "{other}"
    );
    assert!(invalid("testdata/wrong-interface").contains("other:thing/policy@0.1.0"));
    assert!(invalid("testdata/wasi-import").contains("imports wasi:random/random@0.2"));
    assert!(invalid("testdata/other-import").contains("imports evil:net/socket@0.1.0"));
    let rt = runtime();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    assert!(
        matches!(rt.load(&random), Err(PolicyError::Invalid(m)) if m.contains("not a WebAssembly binary"))
    );
    let core = b"\0asm\x01\0\0\0";
    assert!(
        matches!(rt.load(core), Err(PolicyError::Invalid(m)) if m.contains("core WebAssembly module"))
    );
    let big = vec![0u8; 9 << 20];
    assert!(matches!(rt.load(&big), Err(PolicyError::Invalid(m)) if m.contains("at most")));
}

/// Runs `evaluate` on a hostile module: it must fail, in bounded time, and the same module
/// must fail again (from a fresh store), while another module still works.
fn hostile(name: &str) -> PolicyError {
    let rt = runtime();
    let m = rt.load(&wasm(&format!("testdata/{name}"))).unwrap();
    let start = Instant::now();
    let err = m.evaluate(&[network()]).unwrap_err();
    assert!(
        start.elapsed().as_secs() < 5,
        "{name} took {:?}",
        start.elapsed()
    );
    m.evaluate(&[network()]).unwrap_err();
    let ok = rt.load(&wasm("docker-default")).unwrap();
    ok.evaluate(&[network()]).unwrap();
    err
}

#[test]
fn an_infinite_loop_times_out() {
    assert_eq!(
        hostile("loop"),
        PolicyError::Timeout {
            function: "evaluate",
            ms: 50
        }
    );
}

/// Stopped by the memory limit or, on a loaded machine where growing 64 MiB takes longer
/// than the call may, by the time limit: either way bounded, with a clear error.
fn out_of_memory_or_time(e: &PolicyError) -> bool {
    match e {
        PolicyError::Timeout { .. } => true,
        PolicyError::Trap { reason, .. } => reason.contains("memory"),
        _ => false,
    }
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let e = hostile("memory-bomb");
    assert!(out_of_memory_or_time(&e), "{e}");
}

#[test]
fn deep_recursion_exhausts_the_stack() {
    let e = hostile("recursion");
    assert!(
        matches!(&e, PolicyError::Trap { reason, .. } if reason.contains("call stack exhausted")),
        "{e}"
    );
}

#[test]
fn a_trap_is_an_error() {
    let e = hostile("trap");
    assert!(
        matches!(&e, PolicyError::Trap { reason, .. } if reason.contains("unreachable")),
        "{e}"
    );
}

#[test]
fn enormous_outputs_are_refused() {
    // A million rules: the time or the memory limit stops it, whichever comes first.
    let e = hostile("huge-output");
    assert!(out_of_memory_or_time(&e), "{e}");
    // 20,000 rules fit in memory but not in the output limit. With a generous time limit,
    // so that a loaded machine cannot turn the check into a timeout.
    let limits = wasmnet_policy::Limits {
        time: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let m = rt.load(&wasm("testdata/many-rules")).unwrap();
    let e = m.evaluate(&[network()]).unwrap_err();
    assert!(
        matches!(&e, PolicyError::BadOutput { reason, .. } if reason.contains("20000 rules")),
        "{e}"
    );
}

#[test]
fn a_module_that_traps_on_one_input_keeps_working_for_others() {
    let m = runtime().load(&wasm("testdata/trap-on-label")).unwrap();
    let boom = endpoint(vec![label("boom", "1")], vec![]);
    assert!(matches!(
        m.classify(&boom, &network()),
        Err(PolicyError::Trap { .. })
    ));
    m.classify(&endpoint(vec![], vec![]), &network()).unwrap();
}

#[test]
fn compiled_artifacts_are_cached() {
    let dir = std::env::temp_dir().join(format!("wasmnet-cache-{}", std::process::id()));
    let rt = Runtime::new(Default::default(), Some(&dir)).unwrap();
    let first = rt.load(&wasm("docker-default")).unwrap();
    let cached = dir.join(format!("{}.cwasm", first.sha256));
    assert!(
        !cached.exists(),
        "nothing is cached before the module is kept"
    );
    rt.keep(&first);
    assert!(cached.exists());
    let again = rt.load(&wasm("docker-default")).unwrap();
    again.evaluate(&[network()]).unwrap();
    rt.forget(&first.sha256);
    assert!(!cached.exists());
    rt.keep(&first);
    rt.prune(&[]);
    assert!(!cached.exists(), "pruned: no stored policy has it");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_slow_guest_runs_within_its_limit_and_is_stopped_past_it() {
    let rt = runtime();
    let slow = rt.load(&wasm("testdata/slow")).unwrap();
    let spin = |m: &str| slow.classify(&endpoint(vec![label("spin", m)], vec![]), &network());
    let started = Instant::now();
    assert!(spin("1").is_ok());
    eprintln!("one million steps: {:?}", started.elapsed());
    let e = spin("1000").unwrap_err();
    assert!(matches!(e, PolicyError::Timeout { .. }), "{e}");
    assert!(spin("0").is_ok(), "a fresh instance after the timeout");
}

#[test]
fn a_guests_text_reaches_no_log_raw() {
    let rt = runtime();
    let forger = rt.load(&wasm("testdata/forged-log")).unwrap();
    for e in [
        forger.evaluate(&[network()]).unwrap_err(),
        forger
            .classify(&endpoint(vec![], vec![]), &network())
            .unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(matches!(e, PolicyError::Refused { .. }), "{text}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(
            text.contains("refused\\n2026-12-01"),
            "escaped, not dropped: {text}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{text}");
    }
}

#[test]
fn every_shipped_module_is_well_within_the_static_limits() {
    let l = wasmnet_policy::limits::StaticLimits::default();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.extend(
        std::fs::read_dir(dir.join("testdata"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for p in names
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
    {
        let shape = wasmnet_policy::limits::check(&std::fs::read(p).unwrap(), &l)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("{}: {shape:?}", p.file_name().unwrap().to_string_lossy());
        assert!(
            shape.functions * 4 < l.functions && shape.most_locals * 4 < l.locals,
            "{shape:?}"
        );
        assert!(shape.largest_function * 4 < l.function_bytes, "{shape:?}");
    }
}

/// A classify that leaks 1 MiB per call fills a kept instance's 64 MiB after ~60 calls; the
/// call that traps is tried again on a fresh instance, so the policy stays usable.
#[test]
fn a_leaking_classify_keeps_working_on_a_fresh_instance() {
    let rt = runtime();
    let m = rt.load(&wasm("testdata/leaky-classify")).unwrap();
    for i in 0..200 {
        let d = m
            .classify(&endpoint(vec![label("tier", "web")], vec![]), &network())
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(d.groups, ["tier=web"], "call {i}");
    }
}

/// Instantiating (memories, start function) runs within the call's deadline, and a failure
/// there says so rather than blaming the call.
#[test]
fn a_failed_instantiation_is_named_as_such() {
    let limits = wasmnet_policy::Limits {
        memory: 64 << 10,
        ..Default::default()
    };
    let rt = Runtime::new(limits, None).unwrap();
    let m = rt.load(&wasm("docker-default")).unwrap();
    let e = m.evaluate(&[network()]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("instantiating the module for evaluate trapped"),
        "{e}"
    );
}

//! The committed components in `policies/dist` are what their sources build to. Wherever the
//! wasm32-unknown-unknown target is installed, this rebuilds every shipped policy and test guest
//! (`policies/build.sh`, into a scratch dir) and compares the bytes. Where the target cannot be
//! installed, the committed components are what the other tests run, and this says so.

use std::path::{Path, PathBuf};
use std::process::Command;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|e| e == "wasm") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn committed_components_match_their_sources() {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout).unwrap().trim());
    if !sysroot
        .join("lib/rustlib/wasm32-unknown-unknown/lib")
        .is_dir()
    {
        eprintln!("wasm32-unknown-unknown is not installed: not rebuilding policies/dist");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = root.join("target/policies-rebuild");
    let out = scratch.join("dist");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new("bash")
        .arg(root.join("policies/build.sh"))
        .arg(scratch.join("target"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "policies/build.sh failed");
    let committed = root.join("policies/dist");
    let want = files(&committed);
    assert_eq!(want.len(), 24, "6 policies and 18 test guests: {want:?}");
    for f in want {
        let rel = f.strip_prefix(&committed).unwrap();
        let built = std::fs::read(out.join(rel)).unwrap();
        assert!(
            built == std::fs::read(&f).unwrap(),
            "{} differs from what its source builds to; run policies/build.sh",
            rel.display()
        );
    }
}

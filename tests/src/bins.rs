//! Finding the workspace's binaries from a test or benchmark in this crate.
//!
//! `env!("CARGO_BIN_EXE_<name>")` only exists for binaries of the package under test, and a
//! binary-only crate cannot be a dependency. So: the binary lives in the same target directory
//! and profile as the running test executable (`<target>/<profile>/deps/<test>` ->
//! `<target>/<profile>/<bin>`). Once per process, [`binary`] runs `cargo build -p <package> --bin
//! <bin>` into that same target directory and profile (a no-op when up to date), so a
//! `cargo test -p ntp-lite-tests` never runs a stale binary. `$CARGO` (set by cargo for the
//! processes it runs) is used when present. Setting `NTP_LITE_BIN_DIR` skips the build and takes
//! the binaries from that directory instead (for installed builds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The path of binary `bin` of workspace package `package`, built if needed. Panics with the
/// build's output if it cannot be built: a test must not silently run without it.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let path = match std::env::var_os("NTP_LITE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir).join(bin),
        None => build(package, bin),
    };
    assert!(path.is_file(), "{} does not exist", path.display());
    built.insert(bin.to_owned(), path.clone());
    path
}

/// The ntpdate-lite binary.
pub fn ntpdate_lite() -> PathBuf {
    binary("ntpdate-lite", "ntpdate-lite")
}

/// (target dir, profile dir name) of the running executable, from `<target>/<profile>/deps/x`
/// or `<target>/<profile>/x`.
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a directory").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory")
        .to_owned();
    let target = dir.parent().expect("target directory").to_path_buf();
    (target, profile)
}

fn build(package: &str, bin: &str) -> PathBuf {
    let (target, profile_dir) = target_and_profile();
    // The "dev" and "test" profiles build into "debug".
    let profile = if profile_dir == "debug" {
        "dev"
    } else {
        &profile_dir
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.join(profile_dir).join(bin)
}

//! The command line: `check-config` on every shipped configuration, a bad one rejected with its
//! line number and exit status 2, `status`/`sources` finding the socket in `--config`, and the
//! hidden `generate` writing man pages and completions.

use std::path::Path;
use std::process::Command;

fn ntpd_lite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ntpd-lite"))
}

#[test]
fn every_shipped_config_passes_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = ntpd_lite()
                .arg("check-config")
                .arg(&path)
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The production config runs as a user that packaging creates; on a host without it
            // that must be the one complaint.
            let absent_user = configured_user(&path).filter(|user| !user_exists(user));
            match absent_user {
                Some(user) => {
                    assert_eq!(output.status.code(), Some(2), "{}", path.display());
                    assert!(
                        stderr.trim_end().ends_with(&format!(
                            "[daemon] user \"{user}\" does not exist; create it (useradd --system {user}) or change the configuration"
                        )) && stderr.lines().count() == 1,
                        "{}: {stderr}",
                        path.display()
                    );
                }
                None => assert!(output.status.success(), "{}: {stderr}", path.display()),
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no configs found in {}", dir.display());
}

#[test]
fn a_bad_config_names_its_line_and_exits_2() {
    let dir = tempfile_dir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:123\"]\n\n[local]\nstratum = 0\n",
    )
    .expect("write");
    let output = ntpd_lite()
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:5:"), "{stderr}");
    assert!(stderr.contains("stratum must be 1 to 15"), "{stderr}");
    // Running with it fails the same way, before anything starts.
    let output = ntpd_lite()
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn no_config_is_a_usage_error() {
    let output = ntpd_lite().output().expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

#[test]
fn status_and_sources_take_the_socket_from_the_configuration() {
    let dir = tempfile_dir();
    let socket = dir.join("absent.sock");
    let path = dir.join("with-socket.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:123\"]\n[control]\nsocket = \"{}\"\n",
            socket.display()
        ),
    )
    .expect("write");
    for command in ["status", "sources"] {
        let output = ntpd_lite()
            .args([command, "--config"])
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "no daemon there");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    }
    let bare = dir.join("no-socket.toml");
    std::fs::write(&bare, "[server]\nlisten = [\"127.0.0.1:123\"]\n").expect("write");
    let output = ntpd_lite()
        .args(["sources", "--config"])
        .arg(&bare)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no [control] socket"));
}

#[test]
fn generate_writes_man_pages_and_a_bash_completion() {
    let dir = tempfile_dir().join("generated");
    let man = ntpd_lite()
        .args(["generate", "man"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    let page = std::fs::read_to_string(dir.join("ntpd-lite.8")).expect("ntpd-lite.8");
    assert!(
        page.len() > 500 && page.contains("check\\-config"),
        "{page}"
    );
    let bash = ntpd_lite()
        .args(["generate", "completions", "bash"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(bash.status.success());
    let script = std::fs::read_to_string(dir.join("ntpd-lite.bash")).expect("ntpd-lite.bash");
    assert!(script.contains("check-config") && script.contains("sources"));
    // Hidden: not in --help.
    let help = ntpd_lite().arg("--help").output().expect("run");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("generate"));
}

/// The `[daemon] user` of the configuration at `path`, if it sets one.
fn configured_user(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).expect("read config");
    let table: toml::Table = text.parse().expect("TOML");
    Some(table.get("daemon")?.get("user")?.as_str()?.to_owned())
}

/// True if the password database knows `user` (`getent passwd`).
fn user_exists(user: &str) -> bool {
    Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("run getent")
        .status
        .success()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ntpd-lite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

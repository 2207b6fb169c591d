//! `ntpd-lite generate`: man pages (clap_mangen) and shell completions (clap_complete), both from
//! the clap definitions, so that they never disagree with `--help`. For packaging:
//! `ntpd-lite generate man DIR`, `ntpd-lite generate completions bash DIR`. The Debian package
//! (`cargo deb -p ntpd-lite`) ships the copies committed in `ntpd-lite/debian/`, which a test
//! keeps equal to what this writes.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use clap_complete::Shell;

/// What to write.
#[derive(Debug, Subcommand)]
pub enum Target {
    /// Man pages: ntpd-lite.8 and one per subcommand.
    Man {
        /// Directory to write them to (created if missing).
        dir: PathBuf,
    },
    /// A completion script for one shell.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: Shell,
        /// Directory to write it to (created if missing).
        dir: PathBuf,
    },
}

/// Writes what `target` asks for about `command` (the CLI's definition, handed down by the
/// crate root that owns it) and lists the files written.
pub fn run(target: &Target, command: clap::Command) -> ExitCode {
    let result = match target {
        Target::Man { dir } => man_pages(command, dir),
        Target::Completions { shell, dir } => {
            completions(command, *shell, dir).map(|file| vec![file])
        }
    };
    match result {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ntpd-lite: cannot generate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Section 8 (system administration) pages for the command and each visible subcommand.
pub fn man_pages(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let mut written = vec![page(command.clone(), dir)?];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        // After `build`, a subcommand's display name is `ntpd-lite-<name>`: the file name.
        written.push(page(sub.clone(), dir)?);
    }
    Ok(written)
}

fn page(command: clap::Command, dir: &Path) -> io::Result<PathBuf> {
    clap_mangen::Man::new(command)
        .section("8")
        .manual("System Manager's Manual")
        .generate_to(dir)
}

/// The completion script for `shell`.
pub fn completions(mut command: clap::Command, shell: Shell, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    clap_complete::generate_to(shell, &mut command, "ntpd-lite", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_bash_completions_describe_the_commands() {
        let dir = std::env::temp_dir().join(format!("ntpd-lite-generate-{}", std::process::id()));
        let pages = man_pages(crate::command(), &dir).expect("man pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        for want in ["ntpd-lite.8", "ntpd-lite-status.8", "ntpd-lite-sources.8"] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        let main = std::fs::read_to_string(dir.join("ntpd-lite.8")).expect("page");
        assert!(main.contains(".TH ntpd-lite 8") && main.contains("check\\-config"));
        let bash = std::fs::read_to_string(
            completions(crate::command(), Shell::Bash, &dir).expect("bash"),
        )
        .expect("script");
        assert!(bash.contains("check-config") && bash.contains("--log-level"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The man pages and completions that `cargo deb` packages are committed under `debian/`
    /// as generated here; `NTP_LITE_REGENERATE=1 cargo test -p ntpd-lite packaged` rewrites them.
    #[test]
    fn the_packaged_man_pages_and_completions_are_current() {
        let dir = std::env::temp_dir().join(format!("ntpd-lite-packaged-{}", std::process::id()));
        let man = man_pages(crate::command(), &dir.join("man")).expect("man pages");
        let scripts: Vec<PathBuf> = [Shell::Bash, Shell::Zsh, Shell::Fish]
            .into_iter()
            .map(|shell| completions(crate::command(), shell, &dir.join("completions")))
            .collect::<io::Result<_>>()
            .expect("completions");
        let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian");
        let regenerate = std::env::var_os("NTP_LITE_REGENERATE").is_some();
        for file in man.iter().chain(&scripts) {
            let kind = file
                .parent()
                .and_then(Path::file_name)
                .expect("man or completions");
            let name = file.file_name().expect("file name");
            let committed = packaged.join(kind).join(name);
            let fresh = std::fs::read(file).expect("generated");
            if regenerate {
                std::fs::create_dir_all(committed.parent().expect("dir")).expect("mkdir");
                std::fs::write(&committed, &fresh).expect("write");
            }
            assert!(
                std::fs::read(&committed).is_ok_and(|c| c == fresh),
                "{} is not what `ntpd-lite generate` writes now: run \
                 NTP_LITE_REGENERATE=1 cargo test -p ntpd-lite packaged",
                committed.display()
            );
        }
        // No page of a subcommand that is gone: the package takes every *.8 there.
        let pages: Vec<_> = man.iter().filter_map(|p| p.file_name()).collect();
        for entry in std::fs::read_dir(packaged.join("man")).expect("debian/man") {
            let name = entry.expect("entry").file_name();
            let ours = name.to_string_lossy().ends_with(".8");
            assert!(
                !ours || pages.contains(&name.as_os_str()),
                "debian/man/{name:?} is no page ntpd-lite writes now: delete it"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

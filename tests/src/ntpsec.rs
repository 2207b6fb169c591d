//! ntpsec's ntpd as a server, for interop. It only listens on port 123 and conflicts with chrony
//! as a Debian package, so `.ci/run` unpacks its .deb into a folder (`NTPSEC_ROOT`, default
//! `/opt/ntpsec`) and it runs only inside a network namespace of the test's own, without
//! CAP_SYS_TIME (`setpriv` drops it from the bounding and inheritable sets): its start-up tries
//! to write the kernel clock's PLL state, and the kernel refuses.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::netns::Netns;

/// A running ntpsec ntpd, killed when dropped.
#[derive(Debug)]
pub struct NtpsecNtpd {
    child: Child,
    dir: tempfile::TempDir,
}

impl NtpsecNtpd {
    /// The unpacked ntpd binary.
    pub fn binary() -> PathBuf {
        let root = std::env::var_os("NTPSEC_ROOT")
            .map_or_else(|| PathBuf::from("/opt/ntpsec"), PathBuf::from);
        root.join("usr/sbin/ntpd")
    }

    /// True if the unpacked ntpd is there.
    pub fn installed() -> bool {
        Self::binary().is_file()
    }

    /// ntpd in `netns` on 127.0.0.1:123, serving its own clock as an orphan parent at `stratum`
    /// (`tos orphan`, with no orphan wait), without CAP_SYS_TIME.
    pub fn orphan_server(netns: &Netns, stratum: u8) -> Self {
        Self::orphan_with(netns, stratum, "")
    }

    /// [`NtpsecNtpd::orphan_server`] with more `ntp.conf` lines (`peer ...`, `restrict ...`).
    pub fn orphan_with(netns: &Netns, stratum: u8, lines: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ntpsec-")
            .tempdir()
            .expect("temp dir");
        let conf = dir.path().join("ntp.conf");
        let text = format!(
            "tos orphan {stratum} orphanwait 1\nrestrict default kod limited nomodify noquery\nrestrict 127.0.0.1\nrestrict ::1\n{lines}"
        );
        std::fs::write(&conf, text).expect("write ntp.conf");
        let child = netns
            .command("setpriv")
            .args(["--inh-caps=-sys_time", "--bounding-set=-sys_time"])
            .arg(Self::binary())
            .arg("-n")
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(dir.path().join("ntpd.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ntpsec ntpd");
        std::thread::sleep(Duration::from_millis(200));
        Self { child, dir }
    }

    /// ntpd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ntpd.log")).unwrap_or_default()
    }
}

impl Drop for NtpsecNtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- ntpsec ntpd log -----\n{}\n-----", self.log());
        }
    }
}

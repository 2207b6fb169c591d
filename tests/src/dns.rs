//! A real DNS server for the tests: Debian's dnsmasq, started inside a network namespace of the
//! test's own, answering A and AAAA records from a hosts file that the test rewrites while daemons
//! run (dnsmasq rereads it on SIGHUP). The namespace's `/etc/netns/NAME/resolv.conf` points the
//! system resolver at it, so a daemon in the namespace resolves names exactly as in production
//! (getaddrinfo), and nothing reaches this machine's own resolver.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// Where Debian puts dnsmasq (package dnsmasq-base: no service, no configuration).
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq, ended by its pid when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// True if dnsmasq is installed.
    pub fn installed() -> bool {
        std::path::Path::new(DNSMASQ).is_file()
    }

    /// dnsmasq in `netns` on `listen`:53, authoritative for `records` (name, address) under `.test`
    /// and for nothing else (no upstream), and the namespace's resolver pointed at it. Waits until it
    /// answers the first record's name.
    pub fn start(netns: &Netns, listen: IpAddr, records: &[(&str, IpAddr)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dnsmasq-")
            .tempdir()
            .expect("temp dir");
        let dnsmasq = Self {
            child: netns
                .command(DNSMASQ)
                .arg("--keep-in-foreground")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                // Authoritative for .test: a name without an AAAA record answers "no data", not
                // "refused" (there is no upstream to ask).
                .arg("--local=/test/")
                .arg("--bind-interfaces")
                .arg(format!("--listen-address={listen}"))
                .arg("--port=53")
                .arg("--local-ttl=0")
                .arg("--user=root")
                .arg("--pid-file=")
                .arg("--log-queries")
                .arg(format!(
                    "--log-facility={}",
                    dir.path().join("log").display()
                ))
                .arg(format!(
                    "--addn-hosts={}",
                    dir.path().join("hosts").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq"),
            dir,
        };
        dnsmasq.write_records(records);
        netns.use_nameserver(listen);
        if let Some((name, _)) = records.first() {
            let count = records.iter().filter(|(n, _)| n == name).count();
            dnsmasq.wait_resolves(netns, name, count);
        }
        dnsmasq
    }

    fn hosts(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn write_records(&self, records: &[(&str, IpAddr)]) {
        let text: String = records
            .iter()
            .map(|(name, address)| format!("{address} {name}\n"))
            .collect();
        std::fs::write(self.hosts(), text).expect("write the hosts file");
    }

    /// Replaces the records: dnsmasq rereads its hosts file on SIGHUP.
    pub fn set_records(&self, records: &[(&str, IpAddr)]) {
        self.write_records(records);
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "SIGHUP to dnsmasq");
    }

    /// Waits until `name` resolves to `count` addresses through the namespace's resolver.
    pub fn wait_resolves(&self, netns: &Netns, name: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = netns
                .command("getent")
                .args(["ahosts", name])
                .output()
                .expect("run getent");
            let found: std::collections::BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect();
            if found.len() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not resolve to {count} addresses: {found:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The query log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Network namespaces of the test's own, with loopback up, for tools that only use port 123
//! (ntpdig has no port option; ntpsec's ntpd listens only on 123), and two of them joined into a
//! LAN of their own for broadcast and multicast (a real broadcast domain). Traffic never leaves
//! them.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// A network namespace of the test's own, with loopback up, deleted when dropped. Commands run
/// in it through `ip netns exec`.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace; `None` outside CI when this machine cannot (not root).
    pub fn create(tag: &str) -> Option<Self> {
        let name = format!("ntplite-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !crate::tools::require("ip netns (needs root and iproute2)", ok, tag) {
            return None;
        }
        let netns = Self { name };
        let up = netns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(
            up.is_ok_and(|s| s.success()),
            "bring loopback up in {}",
            netns.name
        );
        Some(netns)
    }

    /// What `ntpdig -t 1 127.0.0.1` prints inside the namespace, asked until it succeeds while
    /// `daemon` (serving on port 123 in here) starts up: at most 50 tries, 100 ms apart.
    pub fn ntpdig(&self, daemon: &mut crate::daemon::Daemon) -> String {
        for _ in 0..50 {
            daemon.assert_running();
            let run = self
                .command("ntpdig")
                .args(["-t", "1", "127.0.0.1"])
                .output()
                .expect("run ntpdig");
            if run.status.success() {
                return String::from_utf8_lossy(&run.stdout).into_owned();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("ntpdig got no answer in {}\n{}", self.name, daemon.log());
    }

    /// Runs `ip ARGS` inside the namespace; panics if it fails.
    pub fn ip(&self, args: &[&str]) {
        let output = self.command("ip").args(args).output().expect("run ip");
        assert!(
            output.status.success(),
            "ip {} in {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A UDP socket bound to `address` inside the namespace, for an in-process fake server that
    /// tools run in the namespace can reach. A short-lived thread enters the namespace to bind;
    /// the socket stays in the namespace it was made in, and no other thread moves.
    pub fn bind_udp(&self, address: SocketAddr) -> io::Result<UdpSocket> {
        let namespace = std::fs::File::open(Path::new("/run/netns").join(&self.name))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns gets an open descriptor of a network namespace and changes
                    // only the calling thread's namespace; this thread ends after the bind.
                    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    if entered != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    UdpSocket::bind(address)
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the binding thread panicked")))
        })
    }

    /// Points the system resolver of every command run in the namespace at `nameserver`:
    /// `/etc/netns/NAME/resolv.conf`, which `ip netns exec` mounts over `/etc/resolv.conf`
    /// (removed with the namespace).
    pub fn use_nameserver(&self, nameserver: std::net::IpAddr) {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:2\n"),
        )
        .expect("write resolv.conf");
    }

    fn etc_dir(&self) -> std::path::PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Two namespaces joined by a veth pair, `lan0` in each: host 0 is 10.77.0.1/24 and fd77::1/64,
/// host 1 is 10.77.0.2/24 and fd77::2/64, with the subnet's broadcast address 10.77.0.255. Both
/// are deleted when dropped.
#[derive(Debug)]
pub struct Lan {
    /// The two hosts.
    pub hosts: [Netns; 2],
}

impl Lan {
    /// The interface in each namespace.
    pub const INTERFACE: &str = "lan0";
    /// The subnet's broadcast address.
    pub const BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 255);

    /// Host `i`'s IPv4 address.
    pub fn v4(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, i as u8 + 1)
    }

    /// Host `i`'s IPv6 address.
    pub fn v6(i: usize) -> Ipv6Addr {
        Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, i as u16 + 1)
    }

    /// Creates the LAN; `None` outside CI when this machine cannot (not root).
    pub fn create(tag: &str) -> Option<Self> {
        let hosts = [
            Netns::create(&format!("{tag}-a"))?,
            Netns::create(&format!("{tag}-b"))?,
        ];
        hosts[0].ip(&[
            "link",
            "add",
            Self::INTERFACE,
            "type",
            "veth",
            "peer",
            "name",
            Self::INTERFACE,
            "netns",
            hosts[1].name(),
        ]);
        for (i, host) in hosts.iter().enumerate() {
            let v4 = format!("{}/24", Self::v4(i));
            let v6 = format!("{}/64", Self::v6(i));
            host.ip(&["addr", "add", &v4, "brd", "+", "dev", Self::INTERFACE]);
            host.ip(&["-6", "addr", "add", &v6, "dev", Self::INTERFACE, "nodad"]);
            host.ip(&["link", "set", Self::INTERFACE, "up"]);
        }
        Some(Self { hosts })
    }
}

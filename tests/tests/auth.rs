//! Symmetric keys (RFC 8573, and the legacy SHA-1 and MD5) over real UDP on loopback: chronyd
//! (always `-x`) synchronizes to our server with a key, our client to chronyd with a key, both
//! with AES128 and SHA1 (and MD5); a wrong key gets crypto-NAKs and no synchronization; and a
//! server that races each genuine signed reply with unsigned, NAK'd, altered and replayed ones
//! cannot move our clock, while every datagram is counted.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ntp_lite_tests::chrony::{Chronyd, ChronydClient};
use ntp_lite_tests::daemon::Daemon;
use ntp_lite_tests::fake_server::{FakeServer, reply};
use ntp_lite_tests::lab::{clock_error, wait_for, worst_error_over};
use ntp_lite_tests::tools::{self, free_udp_port};
use ntp_proto::auth::{DigestType, KeyId, Seal, SymmetricKey};
use ntp_proto::{NtpDuration, NtpTimestamp, Packet};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

const AES_HEX: &str = "00112233445566778899aabbccddeeff";
const SHA1_HEX: &str = "0123456789abcdef0123456789abcdef01234567";

/// The keys, as chrony and we both read them: ID, type, key.
const KEYS: &str = "# test keys\n\
                    1 AES128 HEX:00112233445566778899aabbccddeeff\n\
                    2 SHA1 HEX:0123456789abcdef0123456789abcdef01234567\n\
                    3 MD5 ASCII:legacy-md5\n";

/// A private directory with a keys file of `text`, mode 600.
fn keys_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("ntp-keys-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("ntp.keys");
    std::fs::write(&path, text).expect("write keys");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    (dir, path)
}

/// Our server from a local stratum-1 reference on 127.0.0.1, with `keys`.
fn keyed_server(name: &str, keys: &Path) -> (Daemon, SocketAddr) {
    let port = free_udp_port();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
         [keys]\nfile = \"{}\"\n[control]\nsocket = \"{{dir}}/control.sock\"\n",
        keys.display()
    );
    let mut daemon = Daemon::start(name, &config);
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    daemon.wait_serving(address);
    (daemon, address)
}

/// Our client of `server` with `key`, a virtual clock starting `offset` seconds off.
fn keyed_client(name: &str, keys: &Path, server: SocketAddr, key: u32, offset: f64) -> Daemon {
    let config = format!(
        "[clock]\nmode = \"virtual\"\ninitial-offset = {offset:?}\n[keys]\nfile = \"{}\"\n\
         [[source]]\naddress = \"{server}\"\nminpoll = -2\nmaxpoll = 0\niburst = true\nkey = {key}\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n",
        keys.display()
    );
    Daemon::start(name, &config)
}

fn server_counter(daemon: &Daemon, name: &str) -> u64 {
    daemon.status()["server"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("server.{name}"))
}

fn source(status: &Value) -> &Value {
    &status["sources"][0]
}

fn counter(status: &Value, name: &str) -> u64 {
    source(status)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// chronyd as a client of `server` with key `key` from `keys`.
fn chronyd_with_key(server: SocketAddr, keys: &Path, key: u32) -> Option<ChronydClient> {
    ChronydClient::start(&format!(
        "server {} port {} iburst minpoll -2 maxpoll 0 key {key}\nkeyfile {}\nport 0\n",
        server.ip(),
        server.port(),
        keys.display()
    ))
}

#[test]
fn chronyd_synchronizes_to_our_server_with_aes128_sha1_and_md5_keys() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd with keys") {
        return;
    }
    let (_keys_dir, keys) = keys_file(KEYS);
    let (daemon, server) = keyed_server("auth-server", &keys);
    for (key, name) in [(1, "AES128"), (2, "SHA1"), (3, "MD5")] {
        let before = server_counter(&daemon, "authenticated");
        let chronyd = chronyd_with_key(server, &keys, key).expect("chronyd is installed");
        let sources = chronyd.wait_sources(Duration::from_secs(30), |s| {
            s.iter().any(|s| s.state == '*')
        });
        let authdata = chronyd.authdata();
        let signed = server_counter(&daemon, "authenticated") - before;
        ntp_lite_tests::figures!(
            "chronyd with key {key} ({name}): sources {sources:?}; authdata {authdata:?}; our server signed {signed} responses"
        );
        assert!(
            sources
                .iter()
                .any(|s| s.state == '*' && s.address == "127.0.0.1"),
            "chronyd selected our server with key {key}: {sources:?}\n{}",
            chronyd.log()
        );
        assert!(
            authdata
                .iter()
                .any(|l| l.starts_with(&format!("127.0.0.1,SK,{key},"))),
            "chronyd authenticates our server with key {key}: {authdata:?}"
        );
        assert!(signed >= 1, "our server signed its answers");
    }
    assert_eq!(server_counter(&daemon, "crypto_naks"), 0);
}

#[test]
fn chronyd_with_a_wrong_key_gets_crypto_naks_and_never_selects_us() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd with keys") {
        return;
    }
    let (_ours_dir, ours) = keys_file(KEYS);
    let (mut daemon, server) = keyed_server("auth-wrong-key", &ours);
    // Key 1 with another secret, and key 9 that our server does not have.
    let (_theirs_dir, theirs) =
        keys_file("1 AES128 HEX:ffeeddccbbaa99887766554433221100\n9 SHA1 HEX:00\n");
    for key in [1, 9] {
        let before = server_counter(&daemon, "crypto_naks");
        let chronyd = chronyd_with_key(server, &theirs, key).expect("chronyd is installed");
        wait_for(&mut daemon, DEADLINE, "four crypto-NAKs", |s| {
            s["server"]["crypto_naks"].as_u64() >= Some(before + 4)
        });
        let sources = chronyd.sources();
        ntp_lite_tests::figures!(
            "chronyd with a wrong key {key}: our server sent {} crypto-NAKs; chronyc sources {sources:?}",
            server_counter(&daemon, "crypto_naks") - before
        );
        assert!(
            sources.iter().all(|s| s.state != '*' && s.reach == 0),
            "chronyd must not use unauthenticated answers: {sources:?}"
        );
    }
}

#[test]
fn our_client_synchronizes_to_chronyd_with_aes128_sha1_and_md5_keys() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd with keys") {
        return;
    }
    let (_keys_dir, keys) = keys_file(KEYS);
    let keyfile = format!("keyfile {}", keys.display());
    let chronyd = Chronyd::start_on(free_udp_port(), &[&keyfile]).expect("chronyd serves");
    for (key, name) in [(1, "AES128"), (2, "SHA1"), (3, "MD5")] {
        let mut client = keyed_client(&format!("auth-client-{key}"), &keys, chronyd.v4(), key, 0.3);
        let status = wait_for(&mut client, DEADLINE, "synchronized with a key", |s| {
            s["synchronized"] == true && counter(s, "accepted") >= 4
        });
        ntp_lite_tests::figures!(
            "our client with key {key} ({name}) to chronyd: accepted {}, rejected {}, clock error {:.6} s, key {}",
            counter(&status, "accepted"),
            counter(&status, "rejected"),
            clock_error(&status),
            source(&status)["key"]
        );
        assert_eq!(source(&status)["key"], key);
        assert_eq!(counter(&status, "rejected"), 0, "{status}");
        assert!(clock_error(&status).abs() < 0.01, "{status}");
    }
    // A key chronyd does not know: chronyd answers nothing we accept, so we never synchronize.
    let (_wrong_dir, wrong) = keys_file(&format!("1 AES128 HEX:{}\n", "ab".repeat(16)));
    let mut client = keyed_client("auth-client-wrong", &wrong, chronyd.v4(), 1, 0.3);
    let status = wait_for(&mut client, DEADLINE, "four requests sent", |s| {
        s["sources"][0]["sent"].as_u64() >= Some(4)
    });
    ntp_lite_tests::figures!(
        "our client with a wrong key to chronyd: sent {}, accepted {}, rejected {}",
        counter(&status, "sent"),
        counter(&status, "accepted"),
        counter(&status, "rejected")
    );
    assert_eq!(counter(&status, "accepted"), 0, "{status}");
    assert_eq!(status["synchronized"], false);
    drop(chronyd);
}

#[test]
fn a_chronyd_peer_and_ours_authenticate_each_other_with_a_key() {
    if !tools::require("chronyd", Chronyd::installed(), "chronyd peer with keys") {
        return;
    }
    let (_keys_dir, keys) = keys_file(KEYS);
    let ours: SocketAddr = format!("127.0.0.81:{}", free_udp_port())
        .parse()
        .expect("address");
    let theirs: SocketAddr = format!("127.0.0.82:{}", free_udp_port())
        .parse()
        .expect("address");
    let config = format!(
        "[server]\nlisten = [\"{ours}\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
         [keys]\nfile = \"{}\"\n[[peer]]\naddress = \"{theirs}\"\nminpoll = -2\nmaxpoll = 0\nkey = 1\n\
         [control]\nsocket = \"{{dir}}/control.sock\"\n",
        keys.display()
    );
    let mut daemon = Daemon::start("auth-peer", &config);
    daemon.wait_serving(ours);
    let chronyd = ChronydClient::start(&format!(
        "peer {} port {} key 1 minpoll -2 maxpoll 0\nport {}\nbindaddress {}\nlocal stratum 10\n\
         allow 127.0.0.0/8\nkeyfile {}\n",
        ours.ip(),
        ours.port(),
        theirs.port(),
        theirs.ip(),
        keys.display()
    ))
    .expect("chronyd is installed");
    // Both sit at a local stratum (ours 1, chronyd's 10), so ours follows chronyd and chronyd
    // sees the loop; what is tested is that each takes the other's signed packets: chronyd's
    // reach register fills only with packets that pass its authentication test.
    let sources = chronyd.wait_sources(Duration::from_secs(30), |s| {
        s.iter().any(|s| s.reach == 0o377)
    });
    let status = wait_for(
        &mut daemon,
        DEADLINE,
        "two signed packets from the peer",
        |s| counter(s, "accepted") >= 2,
    );
    let authdata = chronyd.authdata();
    ntp_lite_tests::figures!(
        "chronyd peer with key 1: sources {sources:?}; authdata {authdata:?}; our peer accepted {}, rejected {}, key {}; our server signed {}",
        counter(&status, "accepted"),
        counter(&status, "rejected"),
        source(&status)["key"],
        status["server"]["authenticated"]
    );
    assert!(
        sources
            .iter()
            .any(|s| s.address == "127.0.0.81" && s.reach == 0o377),
        "chronyd takes its peer's signed packets: {sources:?}\n{}",
        chronyd.log()
    );
    assert!(
        authdata.iter().any(|l| l.starts_with("127.0.0.81,SK,1,")),
        "{authdata:?}"
    );
    assert_eq!(source(&status)["key"], 1);
    assert_eq!(status["server"]["dropped"]["unauthenticated"], 0);
}

/// A server that answers each request with, in this order: an unsigned reply 1000 s ahead, a
/// crypto-NAK, a reply 1000 s ahead under another key, a signed reply with a bit flipped, the
/// previous genuine signed reply (a replay), and last the genuine signed reply.
fn racing_server(key: SymmetricKey) -> (FakeServer, std::sync::Arc<Mutex<u64>>) {
    let other = SymmetricKey::new(KeyId(2), DigestType::Sha1, b"other").expect("key");
    let previous = Mutex::new(None::<Vec<u8>>);
    let sent = std::sync::Arc::new(Mutex::new(0u64));
    let counted = std::sync::Arc::clone(&sent);
    let script = Box::new(move |request: &Packet, t2: NtpTimestamp| {
        let ahead = reply(request, t2, NtpDuration::from_seconds(1000)).serialize();
        let genuine = reply(request, t2, NtpDuration::ZERO).serialize();
        let mut flipped = Seal::Key(key).seal(genuine).to_vec();
        flipped[44] ^= 0x01;
        let mut out = vec![
            ahead.to_vec(),
            Seal::CryptoNak.seal(ahead).to_vec(),
            Seal::Key(other).seal(ahead).to_vec(),
            flipped,
        ];
        let signed = Seal::Key(key).seal(genuine).to_vec();
        if let Some(stale) = previous.lock().expect("lock").replace(signed.clone()) {
            out.push(stale);
        }
        out.push(signed);
        *counted.lock().expect("lock") += out.len() as u64;
        out
    });
    let server = FakeServer::start(IpAddr::from([127, 0, 0, 1]), script).expect("bind");
    (server, sent)
}

#[test]
fn unsigned_nakd_altered_and_replayed_replies_racing_the_signed_one_are_rejected_and_counted() {
    let (_keys_dir, keys) = keys_file(&format!("1 AES128 HEX:{AES_HEX}\n2 SHA1 HEX:{SHA1_HEX}\n"));
    let key =
        SymmetricKey::new(KeyId(1), DigestType::Aes128Cmac, &hex(AES_HEX)).expect("the AES key");
    let (server, sent) = racing_server(key);
    let mut client = keyed_client("auth-race", &keys, server.addr(), 1, 0.0);
    wait_for(
        &mut client,
        DEADLINE,
        "synchronized through the race",
        |s| s["synchronized"] == true && counter(s, "accepted") >= 8,
    );
    let worst = worst_error_over(&mut client, Duration::from_secs(2));
    let status = client.status();
    let (accepted, rejected, ignored) = (
        counter(&status, "accepted"),
        counter(&status, "rejected"),
        counter(&status, "ignored"),
    );
    ntp_lite_tests::figures!(
        "race: server sent {} datagrams; accepted {accepted}, rejected {rejected}, ignored {ignored}; worst clock error {worst:.6} s",
        *sent.lock().expect("lock")
    );
    assert!(worst < 0.001, "the clock moved: {worst} s");
    // Each genuine reply drew four forgeries (unsigned, NAK, other key, flipped bit), rejected,
    // and a replay, ignored or rejected.
    assert!(rejected >= 4 * accepted, "{status}");
    assert!(rejected + ignored >= 5 * accepted - 1, "{status}");
    assert_eq!(source(&status)["state"], "selected", "{status}");
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The keys in ntpsec 1.2's spelling, which we read too: ntpsec refuses chrony's `AES128` and
/// `HEX:`, and reads a key longer than 20 characters as hex.
const NTPSEC_KEYS: &str = "1 AES-128 00112233445566778899aabbccddeeff\n\
                           2 SHA1 0123456789abcdef0123456789abcdef01234567\n\
                           3 MD5 legacy-md5\n";

/// Our client synchronizes to ntpsec's ntpd with each kind of key, in a namespace of the test's
/// own (ntpsec's ntpd only uses port 123): ntpsec as an orphan stratum-5 server that trusts the
/// keys answers signed requests with signed replies.
#[test]
fn our_client_synchronizes_to_ntpsec_with_aes128_sha1_and_md5_keys() {
    use ntp_lite_tests::netns::Netns;
    use ntp_lite_tests::ntpsec::NtpsecNtpd;
    if !tools::require(
        "ntpsec ntpd (unpacked by .ci/run)",
        NtpsecNtpd::installed(),
        "ntpsec keys",
    ) {
        return;
    }
    let Some(netns) = Netns::create("ntpsec-keys") else {
        return;
    };
    let (_dir, keys) = keys_file(NTPSEC_KEYS);
    let lines = format!("keys {}\ntrustedkey 1 2 3\n", keys.display());
    let ntpd = NtpsecNtpd::orphan_with(&netns, 5, &lines);
    let server: SocketAddr = "127.0.0.1:123".parse().expect("address");
    for key in 1..=3 {
        let config = format!(
            "[clock]\nmode = \"virtual\"\ninitial-offset = 0.05\n[keys]\nfile = \"{}\"\n\
             [[source]]\naddress = \"{server}\"\nminpoll = -2\nmaxpoll = 0\niburst = true\nkey = {key}\n\
             [control]\nsocket = \"{{dir}}/control.sock\"\n",
            keys.display()
        );
        let mut client = Daemon::start_in(&format!("ntpsec-key-{key}"), &config, Some(&netns));
        let status = wait_for(
            &mut client,
            DEADLINE,
            "synchronized to ntpsec with a key",
            |s| s["synchronized"] == true && clock_error(s).abs() < 0.001,
        );
        ntp_lite_tests::figures!(
            "ntpsec 1.2 with key {key}: stratum {}, accepted {}, rejected {}, error {:+.1} us",
            status["stratum"],
            counter(&status, "accepted"),
            counter(&status, "rejected"),
            clock_error(&status) * 1e6
        );
        assert_eq!(status["stratum"], 6);
        assert_eq!(source(&status)["key"], key);
    }
    drop(ntpd);
}

/// ntpsec's ntpdig with `-k FILE -a ID` against our server (port 123, in a namespace of the
/// test's own): the right SHA1 and MD5 keys give the time; a wrong secret gives none. (ntpdig 1.2
/// cannot compute AES-CMAC: it crashes on such a key before sending, whatever the server.)
#[test]
fn ntpdig_queries_our_server_with_sha1_and_md5_keys_and_a_wrong_secret_fails() {
    use ntp_lite_tests::netns::Netns;
    if !tools::require(
        "ntpdig",
        tools::runs("ntpdig", &["--version"]),
        "ntpdig keys",
    ) {
        return;
    }
    let Some(netns) = Netns::create("ntpdig-keys") else {
        return;
    };
    let (_dir, keys) = keys_file(NTPSEC_KEYS);
    let (_wrong_dir, wrong) = keys_file("2 SHA1 ffffffffffffffffffffffffffffffffffffffff\n");
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:123\"]\n[local]\nstratum = 1\n[clock]\nmode = \"virtual\"\n\
         [keys]\nfile = \"{}\"\n[control]\nsocket = \"{{dir}}/control.sock\"\n",
        keys.display()
    );
    let mut daemon = Daemon::start_in("ntpdig-keys", &config, Some(&netns));
    netns.ntpdig(&mut daemon);
    let ntpdig = |file: &Path, key: &str| {
        netns
            .command("ntpdig")
            .args(["-t", "1", "-k"])
            .arg(file)
            .args(["-a", key, "127.0.0.1"])
            .output()
            .expect("run ntpdig")
    };
    for key in ["2", "3"] {
        let output = ntpdig(&keys, key);
        let line = String::from_utf8_lossy(&output.stdout);
        ntp_lite_tests::figures!("ntpdig -a {key}: {}", line.trim());
        assert!(output.status.success(), "key {key}: {line}");
        assert!(line.contains(" s1 "), "{line}");
    }
    let before = server_counter(&daemon, "crypto_naks");
    let output = ntpdig(&wrong, "2");
    assert!(
        !output.status.success(),
        "a wrong secret must not give the time"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).trim().is_empty(),
        "no time printed"
    );
    assert!(
        server_counter(&daemon, "crypto_naks") > before,
        "answered with a crypto-NAK"
    );
}

/// ntpdate-lite `-k FILE -a ID` signs its requests and uses only signed replies: with each right
/// key it gets the time from our keyed server; with a wrong secret the server answers with a
/// crypto-NAK, which is no time (exit 1); a keys file others can read is refused (exit 2).
#[test]
fn ntpdate_lite_queries_with_a_key_and_refuses_what_is_not_signed_with_it() {
    let (_dir, keys) = keys_file(KEYS);
    let (daemon, server) = keyed_server("ntpdate-keys", &keys);
    let query = |file: &Path, key: &str| {
        std::process::Command::new(ntp_lite_tests::bins::ntpdate_lite())
            .args(["--json", "-t", "1", "--port"])
            .arg(server.port().to_string())
            .arg("-k")
            .arg(file)
            .args(["-a", key])
            .arg(server.ip().to_string())
            .output()
            .expect("run ntpdate-lite")
    };
    let before = server_counter(&daemon, "authenticated");
    for key in ["1", "2", "3"] {
        let output = query(&keys, key);
        let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        ntp_lite_tests::figures!("ntpdate-lite -a {key}: offset {}", json["offset"]);
        assert!(output.status.success(), "key {key}: {json}");
        assert!(
            json["offset"].as_f64().is_some_and(|o| o.abs() < 0.01),
            "{json}"
        );
    }
    assert_eq!(server_counter(&daemon, "authenticated"), before + 3);
    let (_wrong_dir, wrong) = keys_file("1 AES128 HEX:ffffffffffffffffffffffffffffffff\n");
    let output = query(&wrong, "1");
    assert_eq!(output.status.code(), Some(1), "no time from a NAK");
    let (_open_dir, open) = keys_file(KEYS);
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let output = query(&open, "1");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

//! `nts-ke-bench`: NTS-KE handshakes per second against a server on loopback. Each thread runs
//! full exchanges back to back (TCP connect, TLS 1.3 handshake with ALPN ntske/1, request,
//! response with eight cookies, key export); only exchanges that give cookies count.
//!
//! Only 127.0.0.0/8 and ::1 are accepted as targets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "NTS-KE handshakes per second against a server on 127.0.0.0/8 or ::1")]
struct Args {
    /// The NTS-KE server, e.g. 127.0.0.1:4460 (loopback only; its certificate for that IP).
    #[arg(long)]
    server: SocketAddr,
    /// The CA certificate (PEM) that signed the server's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Seconds to run (1 to 60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// Client threads (1 to 16).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    threads: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.server.ip().to_canonical().is_loopback() {
        eprintln!("nts-ke-bench: {} is not a loopback address", args.server);
        return ExitCode::from(2);
    }
    let config = ntp_lite_tests::nts::client_config(&args.ca, ntp_proto::nts::ALPN);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let (done, failed, error) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|_| {
                let config = config.clone();
                scope.spawn(move || {
                    let (mut done, mut failed, mut error) = (0u64, 0u64, None);
                    while Instant::now() < end {
                        match ntp_lite_tests::nts::key_exchange(args.server, &config) {
                            Ok(outcome) if !outcome.cookies.is_empty() => done += 1,
                            Ok(_) => failed += 1,
                            Err(e) => {
                                failed += 1;
                                error = Some(e);
                            }
                        }
                    }
                    (done, failed, error)
                })
            })
            .collect();
        handles.into_iter().fold((0, 0, None), |(d, f, e), h| {
            let (done, failed, error) = h.join().unwrap_or((0, 0, None));
            (d + done, f + failed, e.or(error))
        })
    });
    let rate = done as f64 / args.seconds as f64;
    println!(
        "{{\"server\":\"{}\",\"handshakes\":{done},\"failed\":{failed},\"per_second\":{rate:.1},\"last_error\":{}}}",
        args.server,
        serde_json::to_string(&error).unwrap_or_default()
    );
    if done == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

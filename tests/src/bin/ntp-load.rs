//! `ntp-load`: a closed-loop NTP load generator for a server on loopback.
//!
//! Several sockets (source ports), each with a bounded window of requests in flight. Requests go
//! out in batches, each batch as one buffer that the kernel cuts into 48-byte datagrams (UDP GSO;
//! `--no-gso` sends them with sendmmsg instead), and replies come in with recvmmsg. The server
//! sees ordinary single datagrams either way; GSO only makes the generator cheaper, which matters
//! when it shares a small machine with the server it measures. Every request is a mode 3 v4
//! packet with a transmit timestamp unique to the run; a reply counts only if its origin names a
//! request still in flight (which it then closes, so duplicates count once) and it passes the
//! client checks. Requests unanswered after the timeout are counted lost and their slots reused.
//! Because the window is closed, the rate measured is what the server answers, not what the
//! kernel drops.
//!
//! Only 127.0.0.0/8 and ::1 are accepted as targets.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ntp_lite_tests::load::{self, MAX_WINDOW, NtsLoad, Report, Tally, Window};
use ntp_proto::NtpTimestamp;

/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;
/// Reply buffer: an NTS reply with one cookie plus room to see that a longer one is longer.
const REPLY_BUFFER: usize = 512;
/// Longest request: an NTS request with one cookie of at most 256 bytes.
const MAX_REQUEST: usize = 448;
/// With NTS, one reply in this many is authenticated by the generator (a failure counts it
/// invalid): enough to catch a server that does not authenticate, cheap enough not to make
/// the generator the bottleneck.
const VERIFY_EVERY: u64 = 8;
/// How often requests are checked for their timeout.
const EXPIRY_TICK: Duration = Duration::from_millis(10);
/// The UDP_SEGMENT socket option of linux/udp.h (not in the libc crate for glibc targets).
const UDP_SEGMENT: libc::c_int = 103;
/// The longest wait in poll(2) for a reply before looking at the clock again.
const IDLE_WAIT_MS: libc::c_int = 2;

#[derive(Debug, Parser)]
#[command(about = "Closed-loop NTP load generator for a server on 127.0.0.0/8 or ::1")]
struct Args {
    /// The server, e.g. 127.0.0.1:11123 (loopback only).
    #[arg(long)]
    server: SocketAddr,
    /// Seconds to measure, after the warm-up (1 to 60).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    seconds: u64,
    /// Sockets, each with its own source port (1 to 64).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    sockets: u64,
    /// Requests in flight per socket, at most. Keep sockets x window under what a server's
    /// receive buffer holds (about 270 datagrams at Linux's default 208 KiB) or it drops.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=MAX_WINDOW as u64))]
    window: u64,
    /// Generator threads; the sockets are shared out among them (1 to 8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
    threads: u64,
    /// Milliseconds after which an unanswered request counts as lost (1 to 2000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=2000))]
    timeout_ms: u64,
    /// Milliseconds of load before counting starts (0 to 5000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=5000))]
    warmup_ms: u64,
    /// Send each request with its own sendmmsg entry rather than each batch as one UDP GSO
    /// buffer: dearer for the generator; the datagrams are the same, but they reach the server
    /// spread over the system call rather than all at once.
    #[arg(long)]
    no_gso: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Send NTS requests (RFC 8915): take keys and a cookie from this NTS-KE server (loopback
    /// only, its certificate for the IP address) in one handshake first.
    #[arg(long, requires = "nts_ca")]
    nts_ke: Option<SocketAddr>,
    /// The CA certificate (PEM) that signed the NTS-KE server's certificate.
    #[arg(long)]
    nts_ca: Option<std::path::PathBuf>,
}

/// When a thread counts and when it stops.
#[derive(Debug, Clone, Copy)]
struct Plan {
    counting_from: Instant,
    end: Instant,
    timeout: Duration,
}

/// One socket connected to the server and its window of requests in flight.
#[derive(Debug)]
struct Flow {
    socket: UdpSocket,
    window: Window,
    /// True if the kernel splits one buffer of many requests into datagrams (UDP_SEGMENT).
    gso: bool,
    /// NTS requests instead of plain ones.
    nts: Option<NtsLoad>,
    /// Replies seen, for [`VERIFY_EVERY`].
    replies: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    for target in std::iter::once(args.server).chain(args.nts_ke) {
        if !target.ip().to_canonical().is_loopback() {
            eprintln!(
                "ntp-load: {target} is not a loopback address; only 127.0.0.0/8 and ::1 may be loaded"
            );
            return ExitCode::from(2);
        }
    }
    match run(&args) {
        Ok(report) if report.valid > 0 => {
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::SUCCESS
        }
        Ok(report) => {
            eprint!("{}", report.to_text());
            eprintln!("ntp-load: no valid reply from {}", args.server);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ntp-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Keys and a cookie from one NTS-KE exchange, if asked for.
fn nts_load(args: &Args) -> io::Result<Option<NtsLoad>> {
    let (Some(ke), Some(ca)) = (args.nts_ke, &args.nts_ca) else {
        return Ok(None);
    };
    let config = ntp_lite_tests::nts::client_config(ca, ntp_proto::nts::ALPN);
    let outcome = ntp_lite_tests::nts::key_exchange(ke, &config)
        .map_err(|e| io::Error::other(format!("NTS-KE with {ke}: {e}")))?;
    let cookie = outcome.cookies.first().cloned().unwrap_or_default();
    Ok(Some(NtsLoad::new(outcome.keys, cookie)))
}

fn run(args: &Args) -> io::Result<Report> {
    let nts = nts_load(args)?;
    let start = Instant::now();
    let mut flows = (0..args.sockets)
        .map(|_| {
            let flow = open_flow(args.server, args.window as usize, !args.no_gso, start);
            flow.map(|f| Flow {
                nts: nts.clone(),
                ..f
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let counting_from = start + Duration::from_millis(args.warmup_ms);
    let plan = Plan {
        counting_from,
        end: counting_from + Duration::from_secs(args.seconds),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let per_thread = flows.len().div_ceil(args.threads as usize);
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = flows
            .chunks_mut(per_thread)
            .map(|chunk| scope.spawn(move || drive(chunk, plan)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Vec<_>>()
    });
    let mut total = Tally::new(plan.timeout);
    for tally in &tallies {
        total.merge(tally);
    }
    let in_flight = flows.iter().map(|f| f.window.outstanding() as u64).sum();
    Ok(report(args, &total, in_flight))
}

fn report(args: &Args, total: &Tally, in_flight: u64) -> Report {
    let seconds = args.seconds as f64;
    Report {
        server: args.server.to_string(),
        seconds,
        sockets: args.sockets as usize,
        window: args.window as usize,
        threads: args.threads as usize,
        sent: total.sent,
        valid: total.valid,
        invalid: total.invalid,
        unmatched: total.unmatched,
        lost: total.lost,
        in_flight,
        errors: total.errors,
        replies_per_second: total.valid as f64 / seconds,
        cpu_seconds: own_cpu_seconds(),
        p50_us: total.latency.quantile_micros(0.5),
        p99_us: total.latency.quantile_micros(0.99),
    }
}

/// User plus system CPU time of this process so far (all threads), seconds.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) fills the rusage struct it is given; all-zero is a valid start value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn open_flow(server: SocketAddr, window: usize, gso: bool, now: Instant) -> io::Result<Flow> {
    let local: IpAddr = if server.is_ipv4() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    let socket = UdpSocket::bind((local, 0))?;
    socket.connect(server)?;
    socket.set_nonblocking(true)?;
    Ok(Flow {
        socket,
        window: Window::new(window, rand::random(), now),
        gso,
        nts: None,
        replies: 0,
    })
}

/// Asks the kernel to cut every buffer sent on `socket` into `size`-byte datagrams (UDP generic
/// segmentation offload, Linux 4.18): one pass through the stack for a whole batch of requests.
/// False if the kernel cannot.
fn enable_gso(socket: &UdpSocket, size: usize) -> bool {
    ntp_os::socket::set_option(socket, libc::SOL_UDP, UDP_SEGMENT, &(size as libc::c_int)).is_ok()
}

/// One thread's loop: fill every window, take every reply waiting, expire old requests, and
/// sleep in poll(2) only when nothing came back.
fn drive(flows: &mut [Flow], plan: Plan) -> Tally {
    let mut io = Batches::default();
    // All requests of a run are alike long: the GSO segment size is that length.
    let length = flows
        .first()
        .and_then(|f| f.nts.as_ref())
        .and_then(|n| n.request(NtpTimestamp::ZERO))
        .map_or(48, |r| r.len());
    io.length = length;
    for flow in flows.iter_mut() {
        flow.gso = flow.gso && enable_gso(&flow.socket, length);
    }
    let mut tally = Tally::new(plan.timeout);
    let mut counting = false;
    let mut next_expiry = Instant::now() + EXPIRY_TICK;
    let mut pollfds: Vec<libc::pollfd> = flows
        .iter()
        .map(|f| libc::pollfd {
            fd: f.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let now = Instant::now();
        if now >= plan.end {
            return tally;
        }
        if !counting && now >= plan.counting_from {
            // Steady state from here on: forget the warm-up.
            tally = Tally::new(plan.timeout);
            counting = true;
        }
        for flow in flows.iter_mut() {
            fill(flow, &mut io, now, &mut tally);
        }
        let mut replies = 0;
        for flow in flows.iter_mut() {
            replies += drain(flow, &mut io, &mut tally);
        }
        if now >= next_expiry {
            for flow in flows.iter_mut() {
                tally.lost += flow.window.expire(now, plan.timeout);
            }
            next_expiry = now + EXPIRY_TICK;
        }
        if replies == 0 {
            wait_readable(&mut pollfds);
        }
    }
}

/// Sends requests until the window of `flow` is full or the kernel pushes back.
fn fill(flow: &mut Flow, io: &mut Batches, now: Instant, tally: &mut Tally) {
    let fd = flow.socket.as_raw_fd();
    loop {
        let mut count = 0;
        while count < BATCH {
            let Some(stamp) = flow.window.open(now) else {
                break;
            };
            let at = count * io.length;
            let slot = &mut io.requests[at..at + io.length];
            match flow.nts.as_ref().and_then(|n| n.request(stamp)) {
                Some(sealed) => slot.copy_from_slice(&sealed),
                None => slot.copy_from_slice(&load::request(stamp)),
            }
            io.stamps[count] = stamp;
            count += 1;
        }
        if count == 0 {
            return;
        }
        let sent = match io.send(fd, count, flow.gso) {
            Ok(sent) => sent,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tally.errors += 1;
                }
                0
            }
        };
        tally.sent += sent as u64;
        // What the kernel did not take was never sent: give its slots back.
        for &stamp in &io.stamps[sent..count] {
            flow.window.close(stamp);
        }
        if sent < count {
            return;
        }
    }
}

/// Takes every reply waiting on `flow`'s socket; returns how many.
fn drain(flow: &mut Flow, io: &mut Batches, tally: &mut Tally) -> usize {
    let fd = flow.socket.as_raw_fd();
    let mut total = 0;
    loop {
        let count = match io.receive(fd) {
            Ok(count) => count,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tally.errors += 1;
                }
                return total;
            }
        };
        let now = Instant::now();
        for i in 0..count {
            let reply = io.reply(i);
            let mut verdict = load::check_reply(&mut flow.window, reply, now);
            if let (Some(nts), load::Verdict::Valid(_)) = (&flow.nts, verdict) {
                flow.replies += 1;
                let checked = flow.replies % VERIFY_EVERY == 0;
                if reply.len() <= 48 || (checked && !nts.authentic(reply)) {
                    verdict = load::Verdict::Invalid;
                }
            }
            tally.count(verdict);
        }
        total += count;
        if count < BATCH {
            return total;
        }
    }
}

/// Waits until a socket has a datagram, or a short while.
fn wait_readable(fds: &mut [libc::pollfd]) {
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structs for the duration of the call.
    // An error (EINTR) only means we look again sooner.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE_WAIT_MS);
    }
}

/// Buffers and headers for one batched send and one batched receive, reused for every call.
struct Batches {
    /// The requests of one batch, back to back, each `length` bytes.
    requests: Box<[u8]>,
    length: usize,
    stamps: [NtpTimestamp; BATCH],
    replies: Box<[[u8; REPLY_BUFFER]; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

impl Default for Batches {
    fn default() -> Self {
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes are valid
        // (null pointers, zero lengths).
        let (iovec, header) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Self {
            requests: vec![0; MAX_REQUEST * BATCH].into_boxed_slice(),
            length: 48,
            stamps: [NtpTimestamp::ZERO; BATCH],
            replies: Box::new([[0; REPLY_BUFFER]; BATCH]),
            iovecs: Box::new([iovec; BATCH]),
            headers: Box::new([header; BATCH]),
        }
    }
}

impl Batches {
    /// Points header `i` at `buffer` (no address: the socket is connected).
    fn point(&mut self, i: usize, buffer: *mut u8, len: usize) {
        self.iovecs[i] = libc::iovec {
            iov_base: buffer.cast(),
            iov_len: len,
        };
        let header = &mut self.headers[i];
        header.msg_hdr.msg_name = std::ptr::null_mut();
        header.msg_hdr.msg_namelen = 0;
        header.msg_hdr.msg_iov = &raw mut self.iovecs[i];
        header.msg_hdr.msg_iovlen = 1;
        header.msg_hdr.msg_control = std::ptr::null_mut();
        header.msg_hdr.msg_controllen = 0;
        header.msg_hdr.msg_flags = 0;
        header.msg_len = 0;
    }

    /// Sends `requests[..count]` without blocking, as one segmented buffer if `gso`; returns how
    /// many the kernel took.
    fn send(&mut self, fd: RawFd, count: usize, gso: bool) -> io::Result<usize> {
        if gso {
            let buffer = self.requests.as_mut_ptr();
            self.point(0, buffer, self.length * count);
            // SAFETY: header 0 points at an iovec over the first `count` requests, which are
            // contiguous in `self.requests` and outlive the call; the socket is connected.
            let n = unsafe {
                libc::sendmsg(fd, &raw const self.headers[0].msg_hdr, libc::MSG_DONTWAIT)
            };
            return usize::try_from(n)
                .map(|_| count)
                .map_err(|_| io::Error::last_os_error());
        }
        for i in 0..count {
            let buffer = self.requests[i * self.length..].as_mut_ptr();
            self.point(i, buffer, self.length);
        }
        // SAFETY: headers 0..count point at iovecs and request buffers owned by `self`, which
        // outlive the call; the socket is connected, so no address is needed.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Takes up to [`BATCH`] datagrams without blocking; returns how many.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            let buffer = self.replies[i].as_mut_ptr();
            self.point(i, buffer, REPLY_BUFFER);
        }
        // SAFETY: every header points at an iovec and a reply buffer owned by `self` with its
        // length, valid for the call; no timeout pointer.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// The `i`th datagram of the last receive.
    fn reply(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(REPLY_BUFFER);
        &self.replies[i][..len]
    }
}

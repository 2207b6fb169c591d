//! Prometheus metrics over HTTP (`[observability] metrics = "127.0.0.1:9975"`, `GET /metrics`).
//!
//! Values are read from `Shared` when scraped, through the same [`control::status`] that
//! `ntpd-lite status` prints, so the two always agree; nothing on the packet path changes. The
//! exposition format is `prometheus-client`'s OpenMetrics text encoder; HTTP is `hyper`'s HTTP/1
//! server on the daemon's tokio runtime (a task, no thread), which exists only when configured.
//!
//! Hostile local users: at most [`MAX_CONNECTIONS`] connections are open at once, and when that
//! many are, the oldest one still waiting for its request is closed for the new one (see
//! `accept`); headers must arrive within [`HEADER_TIMEOUT`] and a connection lasts at most
//! [`CONNECTION_TIMEOUT`]; accept errors (no descriptor left) pause the accept loop.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::accept::{Backoff, ConnectionTable, Ticket};
use crate::control::{self, Status};
use crate::state::{ServerTotals, Shared, SourceStatus};

/// Connections open at once; a new one closes the oldest that is still waiting for its request.
pub const MAX_CONNECTIONS: usize = 32;
/// Longest wait for a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The OpenMetrics text format, which Prometheus asks for and accepts.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What `ntpd_lite_source_state` can say, one series each.
const SOURCE_STATES: [&str; 5] = [
    "selected",
    "candidate",
    "falseticker",
    "unreachable",
    "rejected",
];

/// Binds the metrics address (before privileges are dropped).
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Answers scrapes until the task is aborted. `serving`: include the server counters.
pub async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>, serving: bool) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "metrics endpoint unusable"),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector { shared, serving }));
    let registry = Arc::new(registry);
    let mut connections = ConnectionTable::new("metrics", MAX_CONNECTIONS);
    let mut backoff = Backoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                backoff.failed("metrics", &e).await;
                continue;
            }
        };
        backoff.succeeded("metrics");
        let registry = Arc::clone(&registry);
        connections
            .spawn(move |ticket| answer(stream, registry, ticket))
            .await;
    }
}

async fn answer(stream: TcpStream, registry: Arc<Registry>, ticket: Ticket) {
    let service = service_fn(move |request: Request<Incoming>| {
        ticket.request_received();
        let response = respond(&request, &registry);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "metrics connection failed"),
        Err(_) => debug!("metrics connection timed out"),
    }
}

fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    match (readable, request.uri().path()) {
        (true, "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => reply(StatusCode::OK, OPENMETRICS, text),
                Err(_) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "encoding failed\n".to_owned(),
                ),
            }
        }
        (true, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the metrics are at /metrics\n".to_owned(),
        ),
        (false, _) => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".to_owned(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Reads the daemon's state on every scrape.
#[derive(Debug)]
struct Collector {
    shared: Arc<Shared>,
    serving: bool,
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let status = control::status(&self.shared);
        encode_system(&mut encoder, &status)?;
        encode_sources(&mut encoder, &status.sources)?;
        match &status.server {
            Some(server) if self.serving => encode_server(&mut encoder, server),
            _ => Ok(()),
        }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One gauge with a series per label set.
fn gauge_family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (L, f64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        metric.encode_family(&labels)?.encode_gauge(&value)?;
    }
    Ok(())
}

/// One gauge's name, help, unit and value.
type Row<'a, T> = (&'a str, &'a str, Option<&'a Unit>, T);
/// How a per-source gauge is read from a source.
type Read = fn(&SourceStatus) -> f64;

fn encode_system(e: &mut DescriptorEncoder<'_>, status: &Status) -> fmt::Result {
    let (seconds, ppm) = (Some(&Unit::Seconds), Unit::Other("ppm".to_owned()));
    let rows: [Row<'_, Option<f64>>; 9] = [
        (
            "ntpd_lite_synchronized",
            "1 when clients may synchronize to this daemon",
            None,
            Some(f64::from(u8::from(status.synchronized))),
        ),
        (
            "ntpd_lite_stratum",
            "Stratum served (16: unsynchronized)",
            None,
            Some(f64::from(status.stratum)),
        ),
        (
            "ntpd_lite_leap_indicator",
            "Leap indicator: 0 none, 1 insert, 2 delete, 3 unsynchronized",
            None,
            Some(f64::from(status.leap)),
        ),
        (
            "ntpd_lite_offset",
            "Last combined offset of the sources to this clock (source minus us)",
            seconds,
            status.offset,
        ),
        (
            "ntpd_lite_frequency",
            "Frequency correction applied to the clock",
            Some(&ppm),
            Some(status.frequency_ppm),
        ),
        (
            "ntpd_lite_root_delay",
            "Root delay served",
            seconds,
            Some(status.root_delay),
        ),
        (
            "ntpd_lite_root_dispersion",
            "Root dispersion served, aged to now",
            seconds,
            Some(status.root_dispersion),
        ),
        (
            "ntpd_lite_root_distance",
            "Root distance: root delay / 2 + root dispersion",
            seconds,
            Some(status.root_delay / 2.0 + status.root_dispersion),
        ),
        (
            "ntpd_lite_clock_error",
            "Virtual clock minus the system clock (0 for the others)",
            seconds,
            Some(status.clock.error),
        ),
    ];
    for (name, help, unit, value) in rows {
        if let Some(value) = value {
            gauge(e, name, help, unit, value)?;
        }
    }
    Ok(())
}

fn encode_sources(e: &mut DescriptorEncoder<'_>, sources: &[SourceStatus]) -> fmt::Result {
    let seconds = Some(&Unit::Seconds);
    let rows: [Row<'_, Read>; 6] = [
        (
            "ntpd_lite_source_reach",
            "Reach register (8 bits, newest poll lowest)",
            None,
            |s| f64::from(s.reach),
        ),
        (
            "ntpd_lite_source_stratum",
            "Stratum the source reports",
            None,
            |s| f64::from(s.stratum),
        ),
        (
            "ntpd_lite_source_poll",
            "Poll interval, log2 seconds",
            None,
            |s| f64::from(s.poll),
        ),
        (
            "ntpd_lite_source_offset",
            "Source offset (source minus us)",
            seconds,
            |s| s.offset,
        ),
        (
            "ntpd_lite_source_delay",
            "Round-trip delay to the source",
            seconds,
            |s| s.delay,
        ),
        ("ntpd_lite_source_jitter", "Source jitter", seconds, |s| {
            s.jitter
        }),
    ];
    for (name, help, unit, value) in rows {
        let series = sources
            .iter()
            .map(|s| ([("address", s.address.as_str())], value(s)));
        gauge_family(e, name, help, unit, series)?;
    }
    let states = sources.iter().flat_map(|s| {
        SOURCE_STATES.iter().map(move |&state| {
            let value = f64::from(u8::from(s.state == state));
            ([("address", s.address.as_str()), ("state", state)], value)
        })
    });
    let help = "1 for the source's state in the last selection round, else 0";
    gauge_family(e, "ntpd_lite_source_state", help, None, states)
}

fn encode_server(e: &mut DescriptorEncoder<'_>, server: &ServerTotals) -> fmt::Result {
    let limited = server.dropped.get("rate_limited").copied().unwrap_or(0) + server.kod_rate;
    let rows: [Row<'_, u64>; 6] = [
        (
            "ntpd_lite_server_received",
            "Datagrams received by the server",
            None,
            server.received,
        ),
        (
            "ntpd_lite_server_responses",
            "Responses sent, kiss-o'-death included",
            None,
            server.responses,
        ),
        (
            "ntpd_lite_server_send_errors",
            "Responses the kernel would not send",
            None,
            server.send_errors,
        ),
        (
            "ntpd_lite_server_rate_limited",
            "Requests over the rate limit: dropped or answered with KoD RATE (not distinct clients)",
            None,
            limited,
        ),
        (
            "ntpd_lite_server_authenticated",
            "Responses with a MAC under the request's symmetric key",
            None,
            server.authenticated,
        ),
        (
            "ntpd_lite_server_crypto_naks",
            "Crypto-NAKs sent: requests with an unknown key or a MAC that did not verify",
            None,
            server.crypto_naks,
        ),
    ];
    for (name, help, _, value) in rows {
        counter(e, name, help, value)?;
    }
    let kod = [("RATE", server.kod_rate), ("DENY", server.kod_deny)];
    let help = "Kiss-o'-death packets sent, by code";
    counter_family(e, "ntpd_lite_server_kod_sent", help, "code", kod)?;
    let dropped = server
        .dropped
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n));
    let help = "Requests dropped without an answer, by reason";
    counter_family(e, "ntpd_lite_server_dropped", help, "reason", dropped)
}

/// One counter with a series per value of `label`.
fn counter_family<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    series: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        metric
            .encode_family(&[(label, value)])?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ClockStatus;

    fn status() -> Status {
        let mut server = ServerTotals {
            received: 10,
            responses: 7,
            kod_rate: 2,
            ..ServerTotals::default()
        };
        server.dropped.insert("rate_limited".to_owned(), 3);
        Status {
            synchronized: true,
            stratum: 2,
            refid: "127.0.0.1".to_owned(),
            leap: 0,
            offset: Some(-0.000_25),
            frequency_ppm: 12.5,
            root_delay: 0.002,
            root_dispersion: 0.001,
            clock: ClockStatus {
                mode: "virtual".to_owned(),
                error: 0.0,
            },
            sources: vec![SourceStatus {
                address: "127.0.0.1:123".to_owned(),
                reach: 255,
                poll: 6,
                stratum: 1,
                offset: 0.000_1,
                delay: 0.000_2,
                jitter: 0.000_01,
                state: "selected".to_owned(),
                ..SourceStatus::default()
            }],
            leap_second: None,
            broadcast_strays: 0,
            server: Some(server),
        }
    }

    fn render(status: &Status) -> String {
        #[derive(Debug)]
        struct Fixed(Status);
        impl prometheus_client::collector::Collector for Fixed {
            fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
                encode_system(&mut e, &self.0)?;
                encode_sources(&mut e, &self.0.sources)?;
                encode_server(&mut e, self.0.server.as_ref().expect("server"))
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(status.clone())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn the_exposition_carries_system_source_and_server_values() {
        let text = render(&status());
        for line in [
            "ntpd_lite_synchronized 1.0",
            "ntpd_lite_stratum 2.0",
            "ntpd_lite_offset_seconds -0.00025",
            "ntpd_lite_frequency_ppm 12.5",
            "ntpd_lite_root_distance_seconds 0.002",
            "ntpd_lite_source_reach{address=\"127.0.0.1:123\"} 255.0",
            "ntpd_lite_source_state{address=\"127.0.0.1:123\",state=\"selected\"} 1.0",
            "ntpd_lite_source_state{address=\"127.0.0.1:123\",state=\"falseticker\"} 0.0",
            "ntpd_lite_server_received_total 10",
            "ntpd_lite_server_kod_sent_total{code=\"RATE\"} 2",
            "ntpd_lite_server_dropped_total{reason=\"rate_limited\"} 3",
            "ntpd_lite_server_rate_limited_total 5",
            "# UNIT ntpd_lite_offset_seconds seconds",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn no_offset_yet_means_no_offset_series() {
        let mut status = status();
        status.offset = None;
        assert!(!render(&status).contains("ntpd_lite_offset_seconds "));
    }
}

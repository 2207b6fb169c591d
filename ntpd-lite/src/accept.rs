//! Accepting local connections (the control socket, the metrics endpoint) so that hostile local
//! users can neither block them nor make the daemon spin: a table that caps how many
//! connections are open at once, and a back-off for accept errors. A leaf: it imports none of
//! the tasks that use it.
//!
//! When the table is full, the oldest connection that is still waiting for its request is
//! closed to make room. A real client (a scrape, `ntpd-lite status`) sends its whole request at
//! once and is answered in moments, so it is never the one waiting longest: connections that
//! are held open without finishing a request make room for it instead of keeping it out.
//! Refusing the newest instead, as before, let eight never-finished requests block every scrape.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

/// The first pause after an accept error; each further error in a row doubles it.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between accepts while they keep failing.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A connection's note to its table: whether it is still waiting for its request.
#[derive(Debug, Clone)]
pub struct Ticket(Arc<AtomicBool>);

impl Ticket {
    fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    /// The request is in hand: from now on the connection is only answered, never closed to
    /// make room.
    pub fn request_received(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What became of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// There was room.
    Admitted,
    /// The oldest connection still waiting for its request was closed to make room.
    ClosedOldest,
    /// Every open connection has its request in hand; the new one was closed.
    Refused,
}

/// The open connections of one listener, oldest first, at most `limit` of them.
#[derive(Debug)]
pub struct ConnectionTable {
    name: &'static str,
    limit: usize,
    open: VecDeque<(Ticket, AbortHandle)>,
}

impl ConnectionTable {
    /// A table for the listener called `name` (for the log) that keeps at most `limit` open.
    pub fn new(name: &'static str, limit: usize) -> Self {
        Self {
            name,
            limit: limit.max(1),
            open: VecDeque::new(),
        }
    }

    /// Starts `answer` for a new connection in a task of its own, making room first (see the
    /// module). `answer` gets the connection's [`Ticket`]; a refused connection's `answer` is
    /// dropped unstarted, which closes it.
    pub async fn spawn<F, Fut>(&mut self, answer: F) -> Admission
    where
        F: FnOnce(Ticket) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.open.len() >= self.limit {
            // Before choosing whom to close, let the connections run that have their request
            // waiting to be read: a real client, whose request came with its connection, is
            // then being answered, and safe from a crowd of new connections.
            tokio::task::yield_now().await;
        }
        let admission = self.make_room();
        match admission {
            Admission::Admitted => {}
            Admission::ClosedOldest => debug!(
                listener = self.name,
                limit = self.limit,
                "connection limit reached: closed the oldest connection still waiting for its request"
            ),
            Admission::Refused => {
                debug!(
                    listener = self.name,
                    limit = self.limit,
                    "connection limit reached and every connection is being answered: closed the new one"
                );
                return admission;
            }
        }
        let ticket = Ticket::new();
        let task = tokio::spawn(answer(ticket.clone()));
        self.open.push_back((ticket, task.abort_handle()));
        admission
    }

    /// Forgets finished connections; if the table is still full, closes the oldest one waiting.
    fn make_room(&mut self) -> Admission {
        self.open.retain(|(_, task)| !task.is_finished());
        if self.open.len() < self.limit {
            return Admission::Admitted;
        }
        match self.open.iter().position(|(ticket, _)| ticket.waiting()) {
            Some(oldest) => {
                if let Some((_, task)) = self.open.remove(oldest) {
                    task.abort();
                }
                Admission::ClosedOldest
            }
            None => Admission::Refused,
        }
    }

    /// Connections open now (finished ones may be counted until the next admission).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

/// Pauses an accept loop after errors, longer for each one in a row, so that a listener that
/// stays readable while accept fails (no descriptor left: EMFILE, ENFILE) is not retried in a
/// tight loop. Connections wait in the listen queue meanwhile. Warns at the start of a row of
/// errors, at most once per [`WARNING_INTERVAL`]: an attacker who frees and takes descriptors in
/// turn must not flood the log either.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    warned_this_row: bool,
    last_warning: Option<Instant>,
}

/// The least time between two warnings about accept errors.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);

impl Backoff {
    /// Counts one more error in a row; returns the pause before the next accept
    /// ([`FIRST_PAUSE`], doubling up to [`MAX_PAUSE`]) and whether to warn.
    pub fn next_pause(&mut self, now: Instant) -> (Duration, bool) {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let pause = FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE);
        let warn = self.failures == 1
            && self
                .last_warning
                .is_none_or(|last| now.duration_since(last) >= WARNING_INTERVAL);
        if warn {
            self.last_warning = Some(now);
            self.warned_this_row = true;
        }
        (pause, warn)
    }

    /// Logs `error` and waits before the next accept.
    pub async fn failed(&mut self, listener: &'static str, error: &io::Error) {
        let (pause, warn) = self.next_pause(Instant::now());
        if warn {
            warn!(
                listener,
                %error,
                max_pause_ms = MAX_PAUSE.as_millis(),
                "cannot accept connections; retrying with a growing pause (for \"Too many open \
                 files\", raise the descriptor limit, e.g. LimitNOFILE in the unit)"
            );
        } else {
            debug!(listener, %error, pause_ms = pause.as_millis(), "accept failed");
        }
        tokio::time::sleep(pause).await;
    }

    /// An accept worked: the next error starts a new row. Says so if this row was warned about.
    pub fn succeeded(&mut self, listener: &'static str) {
        if self.warned_this_row {
            info!(
                listener,
                failed = self.failures,
                "accepting connections again"
            );
        }
        self.failures = 0;
        self.warned_this_row = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_10_ms_to_at_most_1_s_and_a_success_resets_it() {
        let mut backoff = Backoff::default();
        let now = Instant::now();
        let pauses: Vec<u128> = (0..10)
            .map(|_| backoff.next_pause(now).0.as_millis())
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(backoff.next_pause(now).0, MAX_PAUSE, "no overflow");
        }
        backoff.succeeded("test");
        assert_eq!(backoff.next_pause(now).0, FIRST_PAUSE);
    }

    #[test]
    fn a_row_of_errors_is_warned_about_once_and_rows_at_most_once_a_minute() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let warnings = |backoff: &mut Backoff, at: Instant| {
            let warned = (0..5).filter(|_| backoff.next_pause(at).1).count();
            backoff.succeeded("test");
            warned
        };
        assert_eq!(warnings(&mut backoff, start), 1, "the first of a row");
        assert_eq!(warnings(&mut backoff, start + Duration::from_secs(1)), 0);
        assert_eq!(warnings(&mut backoff, start + Duration::from_secs(59)), 0);
        assert_eq!(warnings(&mut backoff, start + WARNING_INTERVAL), 1);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Spawns a connection that waits for ever, marked as having its request if `answered`;
    /// returns its admission and a flag set when its task is dropped (the connection closed).
    async fn open(table: &mut ConnectionTable, answered: bool) -> (Admission, Arc<AtomicBool>) {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let closed = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(Arc::clone(&closed));
        let admission = table
            .spawn(move |ticket| async move {
                let _guard = guard;
                if answered {
                    ticket.request_received();
                }
                std::future::pending::<()>().await;
            })
            .await;
        (admission, closed)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_full_table_closes_the_oldest_connection_still_waiting_for_its_request() {
        runtime().block_on(async {
            let mut table = ConnectionTable::new("test", 3);
            let (_, answering) = open(&mut table, true).await;
            let (_, oldest_waiting) = open(&mut table, false).await;
            let (_, younger_waiting) = open(&mut table, false).await;
            settle().await;
            let (admission, newest) = open(&mut table, false).await;
            settle().await;
            assert_eq!(admission, Admission::ClosedOldest);
            assert!(
                oldest_waiting.load(Ordering::Relaxed),
                "the oldest waiting one is closed"
            );
            assert!(
                !answering.load(Ordering::Relaxed),
                "one with its request is kept"
            );
            assert!(!younger_waiting.load(Ordering::Relaxed));
            assert!(!newest.load(Ordering::Relaxed));
            assert_eq!(table.len(), 3);
        });
    }

    #[test]
    fn when_every_connection_is_being_answered_the_new_one_is_refused() {
        runtime().block_on(async {
            let mut table = ConnectionTable::new("test", 2);
            let mut kept = Vec::new();
            for _ in 0..2 {
                kept.push(open(&mut table, true).await.1);
            }
            settle().await;
            let (admission, refused) = open(&mut table, false).await;
            assert_eq!(admission, Admission::Refused);
            assert!(refused.load(Ordering::Relaxed), "its task never started");
            assert!(kept.iter().all(|c| !c.load(Ordering::Relaxed)));
        });
    }

    #[test]
    fn finished_connections_free_their_place() {
        runtime().block_on(async {
            let mut table = ConnectionTable::new("test", 2);
            for _ in 0..10 {
                assert_eq!(table.spawn(|_| async {}).await, Admission::Admitted);
                settle().await;
            }
            assert!(table.len() <= 2);
        });
    }
}

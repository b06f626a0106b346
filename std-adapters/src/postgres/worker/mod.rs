//! The store's worker: one thread that owns the connection and replicates every key, so no
//! caller ever waits on the database. Its turn and round, drawn with the rest of the data
//! path, are in the project's `docs/ARCHITECTURE.md`; each file here holds one step.

mod budget;
mod connection;
mod keys;
mod mailbox;
mod manual;
mod reads;
mod recovery;
mod replication;
mod server_time;
mod sql;
mod statements;
mod writes;

use std::{
    collections::HashMap,
    sync::{Arc, mpsc::SyncSender},
    thread::JoinHandle,
    time::Duration,
};

use resilient_circuit::time::{Clock, Instant};
use tokio::{runtime::Runtime, sync::mpsc::UnboundedReceiver};

pub(crate) use mailbox::{Mailbox, Request};

use budget::StatementBudget;
use connection::Connection;
use keys::KeyState;
use recovery::Batches;
use server_time::ServerTime;
use statements::Conn;

use super::{DbSettings, PostgresStoreError, options::Options};
use crate::{BreakerKey, store::registry::Forget};

struct Worker {
    rt: Runtime,
    settings: DbSettings,
    options: Options,
    /// The store's clock, which its breakers read too.
    local_clock: Arc<dyn Clock + Send + Sync>,
    mailbox: Arc<Mailbox>,
    inbox: UnboundedReceiver<Request>,
    connection: Connection,
    keys: HashMap<BreakerKey, KeyState>,
    batches: Batches,
    time: ServerTime,
    last_poll: Instant,
    shutting_down: bool,
    /// Flushes waiting until everything is in the rows (their callers bound the wait).
    flushes: Vec<(SyncSender<bool>, std::time::Instant)>,
    budget: StatementBudget,
    /// The budget's timeline: real time, whatever clock the store's breakers read (a test's
    /// clock may stand still; the server's load may not).
    budget_origin: std::time::Instant,
    /// Keys whose last batch failed as a statement: each is written alone next, so one key's
    /// error does not hold back the others.
    write_alone: Vec<BreakerKey>,
    /// Forgets a key of the store's registry that nothing holds.
    forget: Forget,
}

/// Starts the worker thread; it says on `started` whether the store is usable.
pub(crate) fn spawn(
    settings: DbSettings,
    options: Options,
    local_clock: Arc<dyn Clock + Send + Sync>,
    mailbox: Arc<Mailbox>,
    inbox: UnboundedReceiver<Request>,
    forget: Forget,
    started: SyncSender<Result<(), PostgresStoreError>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("resilient-circuit-pg".to_owned())
        .spawn(move || {
            mailbox::mark_worker_thread();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = started.send(Err(PostgresStoreError::Connect(format!(
                        "cannot start the store's runtime: {e}"
                    ))));
                    return;
                }
            };
            let now = local_clock.now();
            let mut worker = Worker {
                rt,
                settings,
                connection: Connection::new(now, options.reconnect.0),
                options,
                local_clock,
                mailbox,
                inbox,
                keys: HashMap::new(),
                batches: Batches::new(now),
                time: ServerTime::new(Instant::ZERO, now),
                last_poll: now,
                shutting_down: false,
                flushes: Vec::new(),
                budget: StatementBudget::new(Instant::ZERO),
                budget_origin: std::time::Instant::now(),
                write_alone: Vec::new(),
                forget,
            };
            let outcome = worker.start();
            let ok = outcome.is_ok();
            let _ = started.send(outcome);
            // A start its caller gave up on ends here, its connection with it.
            if ok && worker.mailbox.store_alive() {
                worker.run();
            }
        })
}

impl Worker {
    fn local_now(&self) -> Instant {
        self.local_clock.now()
    }

    fn server_now(&self) -> Instant {
        self.time.estimate(self.local_now())
    }

    /// Real time, on the budget's timeline.
    fn budget_now(&self) -> Instant {
        let elapsed = self.budget_origin.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// Takes a statement from the budget; whether one may go now. For an answer a caller
    /// waits for (`waited_for`), from the reserve too, and once both are spent after waiting
    /// for one (at the sustained rate, a statement's worth: 12.5 ms), so it always goes.
    fn spend(&mut self, waited_for: bool) -> bool {
        loop {
            let now = self.budget_now();
            if self.budget.spend(now, waited_for) {
                return true;
            }
            if !waited_for {
                return false;
            }
            std::thread::sleep(self.budget.reserve_refilled_in());
        }
    }

    fn run(mut self) {
        loop {
            let wait = self.next_wake();
            let mut requests = Vec::new();
            let mut notified = Vec::new();
            let mut stream_ended = false;
            {
                let Worker {
                    rt,
                    inbox,
                    connection,
                    mailbox,
                    ..
                } = &mut self;
                let conn = &mut connection.conn;
                rt.block_on(async {
                    let notification = async {
                        match conn.as_mut() {
                            Some(conn) if !conn.notifications_ended => {
                                conn.notifications.recv().await
                            }
                            _ => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        request = inbox.recv() => requests.extend(request),
                        payload = notification => match payload {
                            Some(payload) => notified.push(payload),
                            None => stream_ended = true,
                        },
                        () = mailbox.wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                });
                while let Ok(request) = inbox.try_recv() {
                    requests.push(request);
                }
                if let Some(conn) = conn.as_mut() {
                    while let Ok(payload) = conn.notifications.try_recv() {
                        notified.push(payload);
                    }
                }
            }
            if stream_ended {
                self.notifications_ended();
            }
            self.turn(requests, notified);
            if self.shutting_down && self.nothing_left() {
                return;
            }
        }
    }

    /// The connection's notifications ended: the task that drives it stopped, which it does
    /// when the connection closes (the server ended it, or the link). Found out now with a round
    /// trip, not at the next statement (an idle store may send none for long): a failure is an
    /// outage, as any. A connection that still answers keeps working, its changes read by the
    /// polls.
    fn notifications_ended(&mut self) {
        if let Some(conn) = self.connection.conn.as_mut() {
            conn.notifications_ended = true;
        }
        if let Ok(server_now) = self.round_trip(async |conn: &Conn| conn.server_now().await) {
            self.synced(server_now);
        }
    }

    /// How long to sleep when nothing wakes the worker.
    fn next_wake(&self) -> Duration {
        let now = self.local_now();
        let poll = self
            .last_poll
            .saturating_add(self.options.max_staleness)
            .saturating_duration_since(now);
        let mut wait = self.options.sync_interval.min(poll);
        if let Some(owed) = self.budget.owed_in() {
            wait = wait.min(owed);
        }
        if let Some(attempt) = self.connection.attempt_in(now) {
            wait = wait.min(attempt);
        }
        if let Some(lasts) = self.connection.lasts_in(now) {
            wait = wait.min(lasts);
        }
        wait.max(Duration::from_millis(1))
    }

    /// Once the store is gone: no handle holds a key any more (this worker holds the last
    /// reference), and nothing is left to send (or nowhere to send it).
    fn nothing_left(&self) -> bool {
        self.keys.values().all(|key| {
            Arc::strong_count(&key.shared) <= 1
                && (key.unsent.is_empty() || !self.connection.is_up())
        })
    }

    fn turn(&mut self, requests: Vec<Request>, notified: Vec<String>) {
        if self.connection.attempt_due(self.local_now()) {
            self.reconnect();
        }
        self.outage_over();
        if self.connection.is_up() && self.batches.in_doubt.is_some() {
            let _ = self.resolve_doubt();
        }
        let mut loads = Vec::new();
        let mut manuals = Vec::new();
        let mut flushes = std::mem::take(&mut self.flushes);
        for request in requests {
            match request {
                Request::Load { key, shared, reply } => {
                    let now = self.local_now();
                    self.keys.insert(key.clone(), KeyState::new(shared, now));
                    loads.push((key, reply));
                }
                Request::Manual {
                    key,
                    manual,
                    ticket,
                    reply,
                } => manuals.push((key, manual, ticket, reply)),
                Request::Flush { reply, until } => flushes.push((reply, until)),
                Request::Shutdown { reply, until } => {
                    self.shutting_down = true;
                    flushes.push((reply, until));
                }
            }
        }
        for key in self.notified_keys(&notified) {
            if let Some(state) = self.keys.get_mut(&key) {
                state.stale = true;
            }
        }
        let flush = !flushes.is_empty();
        let waited_for = !loads.is_empty() || flush || !manuals.is_empty();
        self.budget.round_started();
        self.round(waited_for, flush, loads.iter().map(|(key, _)| key));
        for (_, reply) in loads {
            let _ = reply.send(());
        }
        for (key, manual, ticket, reply) in manuals {
            // A change whose caller gave up waiting (told it failed) is never applied.
            if ticket.take() {
                let _ = reply.send(self.manual(&key, manual, &ticket));
            }
        }
        let done = self.connection.is_up()
            && self.batches.in_doubt.is_none()
            && self
                .keys
                .values()
                .all(|key| key.unsent.is_empty() && !key.wants_probe);
        if done {
            for (reply, _) in flushes {
                let _ = reply.send(true);
            }
        } else {
            // Answered once done; a flush whose caller stopped waiting is dropped (so it no
            // longer makes every round a flush's).
            let now = std::time::Instant::now();
            flushes.retain(|(_, until)| now < *until);
            self.flushes = flushes;
        }
    }
}

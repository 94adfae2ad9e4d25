//! How changes reach every process, in and out of Postgres.
//!
//! - **Out.** A change this process makes is handed at once to the waiters and event streams
//!   here that watch it (from the row the statement returned: no read), then announced to the
//!   other replicas by one task that sends `NOTIFY` outside the changing statements, batching
//!   whatever accumulated while the previous one was sent. Notifying inside a statement would
//!   take Postgres's notification lock, which serialises every notifying commit and its WAL
//!   flush: that alone held the store to about 400 operations a second.
//! - **In.** One `LISTEN` connection per process. A payload from another process wakes the idle
//!   dispatcher (`q`), hands a changed operation's new state to the watchers here
//!   (`s<id> <version> <json>`: no read), reads again the watched ones among those changed too
//!   big to carry (`c<id>`, one query per batch), or ends their watches (`d<id>`). A process
//!   ignores its own payloads. Carrying the state matters with several replicas: each waiter
//!   would otherwise cost a read per change made elsewhere, and those reads were the largest
//!   cost of two replicas on one database.
//! - **Lost notifications** (a dropped connection, a Postgres restart) cost at most a second:
//!   everything watched here is read again once a second and after every reconnect, when the
//!   dispatcher is woken too (otherwise its own poll is the fallback).
//!
//! This file holds what they share ([`Fanout`]) and the changes made here; `notifier.rs` is
//! LISTEN/NOTIFY (out and in), `waiters.rs` the registry of the watches in this process.

mod notifier;
mod waiters;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, mpsc};

pub(super) use waiters::fetch;

use self::notifier::{announce, listen, resync_every};
use self::waiters::{Recent, Watched};
use crate::model::Operation;

/// How often everything watched here is read again, should a notification have been lost.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// One change to announce.
#[derive(Debug)]
pub(super) enum Event {
    /// Work was queued again (a retry, a lease given back or lost): wake idle dispatchers.
    Queued,
    /// An operation was submitted here: wake the others' idle dispatchers only if this
    /// process has not claimed it by the time the news goes out.
    Created(String),
    /// An operation's new state, and its version.
    Changed(Arc<State>),
    Deleted(String),
}

/// An operation and its version.
type State = (Operation, i64);

/// What the store, the notifier and the listener share.
pub(super) struct Fanout {
    /// `keel_operations_<schema>`: this schema's notification channel.
    channel: String,
    /// This process's mark on its payloads, so that it skips its own.
    origin: String,
    watched: Mutex<HashMap<String, Watched>>,
    recent: Mutex<Recent>,
    /// Operations submitted here and not changed since (not claimed yet), until announced.
    unclaimed: Mutex<HashSet<String>>,
    /// Pulsed when another process may have queued work.
    pub(super) work: Notify,
    outgoing: mpsc::UnboundedSender<Event>,
}

impl Fanout {
    /// Starts listening on `channel`, and the notifier and the resync behind it. The returned
    /// handle stops all three when aborted.
    /// `relaxed` sends the notifications: they need no WAL flush.
    pub(super) async fn start(
        pool: PgPool,
        relaxed: PgPool,
        channel: String,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), sqlx::Error> {
        let (outgoing, events) = mpsc::unbounded_channel();
        let fanout = Arc::new(Self {
            channel,
            origin: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            watched: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            unclaimed: Mutex::new(HashSet::new()),
            work: Notify::new(),
            outgoing,
        });
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&fanout.channel).await?;
        let tasks = tokio::spawn({
            let fanout = Arc::clone(&fanout);
            async move {
                let resync = tokio::spawn(resync_every(pool.clone(), Arc::clone(&fanout)));
                let notifier = tokio::spawn(announce(relaxed, Arc::clone(&fanout), events));
                listen(listener, pool, fanout).await;
                resync.abort();
                notifier.abort();
            }
        });
        Ok((fanout, tasks))
    }

    /// A change this process made: to its watchers here at once, to the others by notification.
    pub(super) fn changed(&self, operation: &Operation, version: i64) {
        lock(&self.unclaimed).remove(&operation.id);
        // One copy shared by the recent changes and the notifier.
        let state = Arc::new((operation.clone(), version));
        lock(&self.recent).note(&operation.id, Some(Arc::clone(&state)));
        if let Some(entry) = lock(&self.watched).get_mut(&operation.id) {
            entry.publish(operation.clone(), version);
        }
        let _ = self.outgoing.send(Event::Changed(state));
    }

    pub(super) fn deleted(&self, id: &str) {
        self.forgotten(id);
        let _ = self.outgoing.send(Event::Deleted(id.to_owned()));
    }

    /// An operation removed by retention: its watches here end, and nobody else is told. Its
    /// watchers had its terminal state long ago, and another replica's watches of it end at
    /// that replica's next resync, which finds it gone; announcing every purged row would
    /// cost as much as the purge.
    pub(super) fn forgotten(&self, id: &str) {
        lock(&self.recent).note(id, None);
        lock(&self.watched).remove(id);
    }

    /// Work was queued here: this process's executor knows; the others are told.
    pub(super) fn queued(&self) {
        let _ = self.outgoing.send(Event::Queued);
    }

    /// An operation created here: remembered, so a watch right after needs no read. The other
    /// replicas are woken for it only if this one has not claimed it within the notifier's
    /// linger: a replica that runs what it accepted hands the result to its waiter directly,
    /// and the others are not woken to race for work already taken. Work this replica cannot
    /// take at once (its slots are full, or it is scheduled) is announced as before.
    pub(super) fn created(&self, operation: &Operation, version: i64) {
        lock(&self.unclaimed).insert(operation.id.clone());
        lock(&self.recent).note(&operation.id, Some(Arc::new((operation.clone(), version))));
        let _ = self.outgoing.send(Event::Created(operation.id.clone()));
    }

    /// An operation created here and claimed by the same statement: remembered, so the watches
    /// its run and its submitter set up right after need no read. Nobody else is told: there is
    /// no work in it for another replica, and a watch set up there reads it.
    pub(super) fn started(&self, operation: &Operation, version: i64) {
        lock(&self.recent).note(&operation.id, Some(Arc::new((operation.clone(), version))));
    }
}

/// The guarded maps hold plain data that no panic can leave half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

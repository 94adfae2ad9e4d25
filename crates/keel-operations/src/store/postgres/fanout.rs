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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, mpsc, watch};

use super::classify;
use super::rows::{OPERATION_COLUMNS, operation_from_row};
use crate::model::Operation;
use crate::store::StoreError;

/// How often everything watched here is read again, should a notification have been lost.
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long the notifier waits for more changes before announcing a batch.
const ANNOUNCE_LINGER: Duration = Duration::from_millis(2);
/// Postgres refuses payloads of 8,000 bytes or more.
const PAYLOAD_LIMIT: usize = 7900;
/// How many recent changes [`Recent`] remembers for the watches being set up.
const RECENT_CHANGES: usize = 1024;

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

/// One operation someone in this process watches, and the version of the state they hold.
struct Watched {
    sender: watch::Sender<Operation>,
    version: i64,
}

/// The latest changes, numbered, with the state this process gave each (`None` for another
/// process's change, whose state is not known here). A watch set up for an operation changed
/// here just now starts from that state without reading it (a submission with `Prefer: wait`,
/// a run watching for a cancel), and a watch that did read can tell whether its operation
/// changed between its read and its registration.
/// An operation and its version.
type State = (Operation, i64);

#[derive(Default)]
struct Recent {
    count: u64,
    changes: VecDeque<(u64, String, Option<Arc<State>>)>,
}

impl Recent {
    fn note(&mut self, id: &str, state: Option<Arc<State>>) {
        self.count += 1;
        if self.changes.len() == RECENT_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back((self.count, id.to_owned(), state));
    }

    /// The state of `id` after its latest change, if that change was made here and remembered.
    fn latest(&self, id: &str) -> Option<Arc<State>> {
        self.changes.iter().rev().find(|(_, changed, _)| changed == id).and_then(|(_, _, state)| state.clone())
    }

    /// What became of `id` after change number `mark`.
    fn since(&self, mark: u64, id: &str) -> Since {
        if self.count - mark >= RECENT_CHANGES as u64 {
            return Since::Unknown;
        }
        let latest = self.changes.iter().rev().take_while(|(n, _, _)| *n > mark).find(|(_, changed, _)| changed == id);
        match latest {
            None => Since::Unchanged,
            Some((_, _, Some(state))) => Since::ChangedHere(Arc::clone(state)),
            Some((_, _, None)) => Since::Unknown,
        }
    }
}

enum Since {
    Unchanged,
    /// Changed by this process, to this state.
    ChangedHere(Arc<State>),
    /// Changed elsewhere, or too long ago to tell: read it.
    Unknown,
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

    /// A live view of `id`, fed by this process's changes and the others' notifications.
    pub(super) async fn watch(
        &self,
        pool: &PgPool,
        id: &str,
    ) -> Result<Option<watch::Receiver<Operation>>, StoreError> {
        if let Some(watched) = lock(&self.watched).get(id) {
            return Ok(Some(watched.sender.subscribe()));
        }
        let (mark, known) = {
            let recent = lock(&self.recent);
            (recent.count, recent.latest(id))
        };
        let (operation, version) = match known {
            Some(state) => State::clone(&state),
            None => match fetch(pool, id).await? {
                Some(state) => state,
                None => return Ok(None),
            },
        };
        let receiver = {
            // Entries nobody reads any more are dropped at the next resync, not here: a scan of
            // every watch for each new one would put it on the request path.
            let mut watched = lock(&self.watched);
            let entry = watched
                .entry(id.to_owned())
                .or_insert_with(|| Watched { sender: watch::channel(operation.clone()).0, version });
            entry.publish(operation, version);
            entry.sender.subscribe()
        };
        // A change between the read and the registration reached nobody here.
        let since = lock(&self.recent).since(mark, id);
        match since {
            Since::Unchanged => {}
            Since::ChangedHere(state) => {
                let (operation, version) = State::clone(&state);
                if let Some(entry) = lock(&self.watched).get_mut(id) {
                    entry.publish(operation, version);
                }
            }
            Since::Unknown => self.refresh(pool, &[id.to_owned()]).await?,
        }
        Ok(Some(receiver))
    }

    /// Reads the watched ones among `ids` again and hands them to their watchers; ends the
    /// watches of those that are gone.
    async fn refresh(&self, pool: &PgPool, ids: &[String]) -> Result<(), StoreError> {
        let ids: Vec<&String> = {
            let watched = lock(&self.watched);
            ids.iter().filter(|id| watched.contains_key(*id)).collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!("SELECT {OPERATION_COLUMNS} FROM keel_operations WHERE id = ANY($1)");
        let rows = sqlx::query(&sql).bind(&ids).fetch_all(pool).await.map_err(classify)?;
        let mut current = Vec::with_capacity(rows.len());
        for row in &rows {
            current.push(operation_from_row(row)?);
        }
        let mut watched = lock(&self.watched);
        for id in ids {
            if !current.iter().any(|(operation, _)| operation.id == *id) {
                watched.remove(id);
            }
        }
        for (operation, version) in current {
            if let Some(entry) = watched.get_mut(&operation.id) {
                entry.publish(operation, version);
            }
        }
        Ok(())
    }

    /// Reads everything watched here again.
    async fn resync(&self, pool: &PgPool) -> Result<(), StoreError> {
        let ids: Vec<String> = {
            let mut watched = lock(&self.watched);
            watched.retain(|_, entry| entry.sender.receiver_count() > 0);
            watched.keys().cloned().collect()
        };
        self.refresh(pool, &ids).await
    }

    /// After notifications may have been missed (a reconnect): queued work may be waiting, and
    /// what is watched may have changed. The once-a-second resync does not wake the dispatcher:
    /// its own poll (`operations.poll_interval_ms`) covers that.
    async fn missed(&self, pool: &PgPool) {
        self.work.notify_one();
        if let Err(error) = self.resync(pool).await {
            tracing::debug!(%error, "could not resynchronise watched operations");
        }
    }

    /// Acts on one payload of another process.
    async fn receive(&self, pool: &PgPool, payload: &str) {
        let Some((origin, items)) = payload.split_once('\n') else {
            return tracing::debug!(payload, "unknown notification");
        };
        if origin == self.origin {
            return;
        }
        let mut to_read = Vec::new();
        for item in items.split('\n') {
            let (event, rest) = item.split_at(item.len().min(1));
            match event {
                "q" => self.work.notify_one(),
                "s" => {
                    let Some((id, state)) = rest.split_once(' ') else {
                        tracing::debug!(item, "unknown notification item");
                        continue;
                    };
                    // Noted first: a watch being set up now reads the operation again.
                    lock(&self.recent).note(id, None);
                    if lock(&self.watched).contains_key(id) {
                        match parse_state(state) {
                            Some((operation, version)) => self.publish(operation, version),
                            None => to_read.push(id.to_owned()),
                        }
                    }
                }
                "c" => {
                    lock(&self.recent).note(rest, None);
                    to_read.push(rest.to_owned());
                }
                "d" => {
                    lock(&self.recent).note(rest, None);
                    lock(&self.watched).remove(rest);
                }
                _ => tracing::debug!(item, "unknown notification item"),
            }
        }
        if let Err(error) = self.refresh(pool, &to_read).await {
            tracing::warn!(%error, "could not refresh watched operations");
        }
    }

    /// Hands another process's change to the watchers of `operation` here, if any.
    fn publish(&self, operation: Operation, version: i64) {
        if let Some(entry) = lock(&self.watched).get_mut(&operation.id) {
            entry.publish(operation, version);
        }
    }
}

/// `<version> <json>`, as [`payloads`] writes it.
fn parse_state(text: &str) -> Option<State> {
    let (version, json) = text.split_once(' ')?;
    Some((serde_json::from_str(json).ok()?, version.parse().ok()?))
}

impl Watched {
    /// Hands `operation` to the watchers unless they hold a newer version already: reads that
    /// race each other may come back out of order.
    fn publish(&mut self, operation: Operation, version: i64) {
        if version < self.version {
            return;
        }
        self.version = version;
        self.sender.send_if_modified(|current| {
            let changed = *current != operation;
            *current = operation;
            changed
        });
    }
}

pub(super) async fn fetch(pool: &PgPool, id: &str) -> Result<Option<(Operation, i64)>, StoreError> {
    let sql = format!("SELECT {OPERATION_COLUMNS} FROM keel_operations WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(classify)?;
    row.map(|row| operation_from_row(&row)).transpose()
}

/// Sends the announcements, each batch in as few `NOTIFY`s as the payload limit allows.
async fn announce(pool: PgPool, fanout: Arc<Fanout>, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut batch = Vec::new();
    while events.recv_many(&mut batch, 1024).await > 0 {
        // A moment for the changes around this one to join it: one NOTIFY for many of them.
        tokio::time::sleep(ANNOUNCE_LINGER).await;
        while batch.len() < 4096 && events.recv_many(&mut batch, 1024).now_or_never().is_some_and(|n| n > 0) {}
        let still_queued = |id: &str| lock(&fanout.unclaimed).remove(id);
        for payload in payloads(&fanout.origin, batch.drain(..), still_queued) {
            let sent =
                sqlx::query("SELECT pg_notify($1, $2)").bind(&fanout.channel).bind(&payload).execute(&pool).await;
            if let Err(error) = sent {
                // The others will see the change at their next resync, within a second.
                tracing::warn!(error = %classify(error), "could not announce operation changes");
            }
        }
    }
}

/// Payloads under the size limit: the origin, then one item a line (serde_json's compact output
/// has no raw newline), each operation once, in its latest state. A state too big to carry is
/// sent as `c<id>`, and the listeners that watch it read it.
///
/// `still_queued(id)` says whether an operation created here is still unclaimed (and forgets it).
fn payloads(
    origin: &str,
    events: impl Iterator<Item = Event>,
    mut still_queued: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let mut queued = false;
    let mut latest: HashMap<String, Option<Arc<State>>> = HashMap::new();
    let mut order = Vec::new();
    for event in events {
        let (id, state) = match event {
            Event::Queued => {
                queued = true;
                continue;
            }
            Event::Created(id) => {
                queued |= still_queued(&id);
                continue;
            }
            Event::Changed(state) => (state.0.id.clone(), Some(state)),
            Event::Deleted(id) => (id, None),
        };
        match latest.get_mut(&id) {
            Some(slot) => {
                // A deletion is final; of two states, the newer one.
                let newer = match (&*slot, &state) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(held), Some(new)) => new.1 >= held.1,
                };
                if newer {
                    *slot = state;
                }
            }
            None => {
                order.push(id.clone());
                latest.insert(id, state);
            }
        }
    }
    let items =
        queued.then(|| "q".to_owned()).into_iter().chain(order.into_iter().map(|id| match latest.remove(&id) {
            Some(Some(state)) => {
                let (operation, version) = &*state;
                let item = serde_json::to_string(operation).map(|json| format!("s{id} {version} {json}"));
                item.ok()
                    .filter(|item| origin.len() + 1 + item.len() <= PAYLOAD_LIMIT)
                    .unwrap_or_else(|| format!("c{id}"))
            }
            _ => format!("d{id}"),
        }));
    let mut payloads = Vec::new();
    let mut current = String::new();
    for item in items {
        if !current.is_empty() && current.len() + 1 + item.len() > PAYLOAD_LIMIT {
            payloads.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(origin);
        }
        current.push('\n');
        current.push_str(&item);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

async fn listen(mut listener: PgListener, pool: PgPool, fanout: Arc<Fanout>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => fanout.receive(&pool, notification.payload()).await,
            // The connection was lost; the next call reconnects and listens again. What was
            // announced meanwhile is read again now.
            Ok(None) => {
                tracing::warn!("operation notifications: connection lost, reconnecting");
                fanout.missed(&pool).await;
            }
            Err(error) => {
                tracing::warn!(error = %classify(error), "operation notifications: listening failed; retrying in a second");
                tokio::time::sleep(RESYNC_INTERVAL).await;
                fanout.missed(&pool).await;
            }
        }
    }
}

async fn resync_every(pool: PgPool, fanout: Arc<Fanout>) {
    let mut ticks = tokio::time::interval(RESYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = fanout.resync(&pool).await {
            tracing::debug!(%error, "could not resynchronise watched operations");
        }
    }
}

/// The guarded maps hold plain data that no panic can leave half-changed.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(id: &str, input: serde_json::Value) -> Operation {
        // A fixed instant, with the microseconds Postgres keeps: two calls must build equal
        // operations, which the clock would not promise across a second's boundary.
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_000_000_123_456_000).unwrap();
        Operation {
            id: id.to_owned(),
            kind: "sleep".to_owned(),
            owner: std::sync::Arc::from("billing"),
            status: crate::model::Status::Running,
            done: false,
            input,
            progress: crate::model::Progress { percent: 40, message: Some("a, b\nc".to_owned()) },
            result: None,
            error: None,
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            deadline_at: now,
            attempt: 1,
            max_attempts: 3,
            not_before: None,
        }
    }

    fn changed(id: &str, version: i64) -> Event {
        Event::Changed(Arc::new((operation(id, serde_json::json!({ "ms": 0 })), version)))
    }

    /// The items of `payloads`, without their origin.
    fn items(payloads: &[String]) -> Vec<&str> {
        payloads.iter().flat_map(|p| p.strip_prefix("origin\n").expect("the origin first").split('\n')).collect()
    }

    #[test]
    fn payloads_stay_under_the_limit_and_carry_each_operation_once_in_its_latest_state() {
        let id = "0123456789abcdef0123456789abcdef";
        let events = (0..600).map(|n| changed(&format!("{id}{n:04}"), 2)).chain([Event::Queued, Event::Queued]);
        let events = events.chain([changed(&format!("{id}0000"), 3), changed(&format!("{id}0001"), 1)]);
        let sent = payloads("origin", events, |_| false);
        assert!(sent.len() > 1, "split");
        assert!(sent.iter().all(|p| p.len() < 8000));
        let items = items(&sent);
        assert_eq!(items.len(), 601, "600 changes and one wake-up, none repeated");
        assert_eq!(items.iter().filter(|item| **item == "q").count(), 1);
        let state = |n: &str| items.iter().find_map(|item| item.strip_prefix(&format!("s{id}{n} "))).unwrap();
        let (first, version) = parse_state(state("0000")).unwrap();
        assert_eq!((first, version), (operation(&format!("{id}0000"), serde_json::json!({ "ms": 0 })), 3), "the newer");
        assert_eq!(parse_state(state("0001")).unwrap().1, 2, "an older state never replaces a newer one");
    }

    #[test]
    fn a_submission_wakes_the_others_only_if_still_unclaimed_here() {
        let created = || [Event::Created("a".to_owned()), Event::Created("b".to_owned())].into_iter();
        assert!(payloads("origin", created(), |_| false).is_empty(), "both claimed here: nothing to say");
        assert_eq!(items(&payloads("origin", created(), |id| id == "b")), ["q"]);
        assert_eq!(items(&payloads("origin", [Event::Queued].into_iter(), |_| false)), ["q"], "requeued work always");
    }

    #[test]
    fn a_deletion_is_final_and_a_state_too_big_to_carry_is_read_instead() {
        let big = Event::Changed(Arc::new((operation("big", serde_json::json!("x".repeat(PAYLOAD_LIMIT))), 2)));
        let events = [changed("gone", 2), Event::Deleted("gone".to_owned()), changed("gone", 3), big];
        assert_eq!(items(&payloads("origin", events.into_iter(), |_| false)), ["dgone", "cbig"]);
    }

    #[test]
    fn recent_changes_tell_a_watch_what_it_missed() {
        let mut recent = Recent::default();
        recent.note("a", None);
        let mark = recent.count;
        assert!(matches!(recent.since(mark, "b"), Since::Unchanged));
        recent.note("b", None);
        assert!(matches!(recent.since(mark, "b"), Since::Unknown), "another process's change: read it");
        assert!(matches!(recent.since(mark, "a"), Since::Unchanged), "before the mark");
        assert!(recent.latest("b").is_none());
        for _ in 0..RECENT_CHANGES {
            recent.note("c", None);
        }
        assert!(matches!(recent.since(mark, "z"), Since::Unknown), "beyond memory: assume it changed");
    }
}

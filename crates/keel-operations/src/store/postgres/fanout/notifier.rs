//! LISTEN/NOTIFY: how changes made here reach the other replicas, and theirs reach this one.
//! One task sends this process's changes as batched `NOTIFY`s ([`announce`], [`payloads`]); one
//! `LISTEN` connection receives the others' ([`listen`], `Fanout::receive`); a resync once a
//! second covers what a lost notification would have said ([`resync_every`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use super::{Event, Fanout, RESYNC_INTERVAL, State, lock};
use crate::store::postgres::classify;

/// How long the notifier waits for more changes before announcing a batch.
const ANNOUNCE_LINGER: Duration = Duration::from_millis(2);
/// Postgres refuses payloads of 8,000 bytes or more.
const PAYLOAD_LIMIT: usize = 7900;

impl Fanout {
    /// After notifications may have been missed (a reconnect): queued work may be waiting, and
    /// what is watched may have changed. The once-a-second resync does not wake the dispatcher:
    /// its own poll (`operations.poll_interval_ms`) covers that.
    pub(super) async fn missed(&self, pool: &PgPool) {
        self.work.notify_one();
        if let Err(error) = self.resync(pool).await {
            tracing::debug!(%error, "could not resynchronise watched operations");
        }
    }

    /// Acts on one payload of another process.
    pub(super) async fn receive(&self, pool: &PgPool, payload: &str) {
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
}

/// `<version> <json>`, as [`payloads`] writes it.
fn parse_state(text: &str) -> Option<State> {
    let (version, json) = text.split_once(' ')?;
    Some((serde_json::from_str(json).ok()?, version.parse().ok()?))
}

/// Sends the announcements, each batch in as few `NOTIFY`s as the payload limit allows.
pub(super) async fn announce(pool: PgPool, fanout: Arc<Fanout>, mut events: mpsc::UnboundedReceiver<Event>) {
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

pub(super) async fn listen(mut listener: PgListener, pool: PgPool, fanout: Arc<Fanout>) {
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

pub(super) async fn resync_every(pool: PgPool, fanout: Arc<Fanout>) {
    let mut ticks = tokio::time::interval(RESYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = fanout.resync(&pool).await {
            tracing::debug!(%error, "could not resynchronise watched operations");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;

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
}

//! Operations' ends written in batches: one `UPDATE … FROM unnest(…)` for all the operations
//! that ended while the previous batch was being written.
//!
//! An end is a flushed commit, since a client is told the result. Written one statement each,
//! Postgres spent most of an end on the statement rather than the row: a round trip, a commit,
//! and the pool's check of the connection on its return. Ends that arrive together now share
//! all three; an end that arrives alone is written at once, as before.
//!
//! A batch waits for the one being written unless it is full: the ends that arrive meanwhile
//! join it. Up to four batches written side by side, as this module first did, each came out
//! about a quarter as big, and a statement costs Postgres nearly as much for one row as for
//! twenty (docs/performance.md has the figures). Full batches still go side by side, up to [`IN_FLIGHT`], so that under a burst one slow
//! statement does not hold back the rest.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::PgPool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::classify;
use super::fanout::Fanout;
use super::rows::{OPERATION_COLUMNS, operation_from_row};
use crate::model::{Operation, Outcome, Progress};
use crate::store::StoreError;

/// Batches being written at once.
const IN_FLIGHT: usize = 4;
/// Ends per statement at most.
const MAX_BATCH: usize = 64;

/// One operation's end, waiting for its batch.
pub(super) struct Ending {
    id: String,
    token: i64,
    status: &'static str,
    /// The result or the error, as JSON text.
    result: Option<String>,
    error: Option<String>,
    progress: Option<Progress>,
    reply: oneshot::Sender<Result<Operation, StoreError>>,
}

impl Ending {
    /// The end of the operation leased with `token`, and where its written state will arrive.
    pub(super) fn new(
        id: &str,
        token: i64,
        outcome: &Outcome,
        progress: Option<Progress>,
    ) -> Result<(Self, oneshot::Receiver<Result<Operation, StoreError>>), StoreError> {
        let text = |json: serde_json::Result<String>| json.map_err(|error| StoreError::Backend(Arc::new(error)));
        let (result, error) = match outcome {
            Outcome::Succeeded(value) => (Some(text(serde_json::to_string(value))?), None),
            Outcome::Failed(error) | Outcome::Cancelled(error) => (None, Some(text(serde_json::to_string(error))?)),
        };
        let (reply, written) = oneshot::channel();
        let status = outcome.status().as_str();
        Ok((Self { id: id.to_owned(), token, status, result, error, progress, reply }, written))
    }
}

/// Starts the writer; ends sent to the returned channel are written in batches. It stops by
/// itself once every sender is gone.
pub(super) fn start(pool: PgPool, fanout: Arc<Fanout>) -> mpsc::UnboundedSender<Ending> {
    let (endings, incoming) = mpsc::unbounded_channel();
    tokio::spawn(write_in_batches(pool, fanout, incoming));
    endings
}

async fn write_in_batches(pool: PgPool, fanout: Arc<Fanout>, mut incoming: mpsc::UnboundedReceiver<Ending>) {
    let mut writing = JoinSet::new();
    while let Some(batch) = next_batch(&mut incoming, &mut writing).await {
        while writing.len() >= IN_FLIGHT {
            writing.join_next().await;
        }
        let (pool, fanout) = (pool.clone(), Arc::clone(&fanout));
        writing.spawn(async move { write(&pool, &fanout, batch).await });
    }
    // The last ends are written before the writer goes: dropping the set would abort them.
    while writing.join_next().await.is_some() {}
}

/// The next batch: whatever has arrived, waiting for the first end; then, while a batch is
/// being written and this one is not full, whatever arrives until that write is done. `None`
/// once every sender is gone and nothing is left.
async fn next_batch(incoming: &mut mpsc::UnboundedReceiver<Ending>, writing: &mut JoinSet<()>) -> Option<Vec<Ending>> {
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            received = incoming.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return None;
                }
                break;
            }
            // Finished writes are collected while idle, so the set does not grow.
            Some(_) = writing.join_next() => {}
        }
    }
    while batch.len() < MAX_BATCH && !writing.is_empty() {
        let room = MAX_BATCH - batch.len();
        tokio::select! {
            biased;
            Some(_) = writing.join_next() => break,
            received = incoming.recv_many(&mut batch, room) => {
                if received == 0 {
                    break;
                }
            }
        }
    }
    Some(batch)
}

/// Writes `batch`, one end per operation in a statement: a second end of the same lease (which
/// only a confused caller sends) goes in the next statement, where it finds the lease gone.
async fn write(pool: &PgPool, fanout: &Fanout, batch: Vec<Ending>) {
    let mut rest = batch;
    while !rest.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<_>, Vec<_>) = rest.into_iter().partition(|ending| seen.insert(ending.id.clone()));
        write_once(pool, fanout, now).await;
        rest = later;
    }
}

async fn write_once(pool: &PgPool, fanout: &Fanout, batch: Vec<Ending>) {
    // Planned afresh for each batch (not a prepared statement: `persistent(false)`), from the
    // table's size now and the batch's own length. A plan cached while the table was small
    // kept scanning all of it, and one that could use the index of running operations scanned
    // that (it holds an entry for every operation that ran since the last vacuum), each far
    // slower than a primary-key lookup per row once the table had grown (docs/performance.md).
    // Hence also no `status = 'running'`: a held token implies it (a constraint
    // says so).
    let sql = format!(
        "UPDATE keel_operations SET status = f_status, result = f_result::json, error = f_error::json,
           finished_at = $1,
           progress_percent = CASE WHEN f_status = 'succeeded' THEN 100 ELSE coalesce(f_percent, progress_percent) END,
           progress_message = CASE WHEN f_percent IS NULL THEN progress_message ELSE f_message END,
           lease_token = NULL, lease_expires_at = NULL, version = version + 1
         FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::int2[], $8::text[])
           AS f(f_id, f_token, f_status, f_result, f_error, f_percent, f_message)
         WHERE id = f_id AND lease_token = f_token
         RETURNING {OPERATION_COLUMNS}"
    );
    let ids: Vec<&str> = batch.iter().map(|ending| ending.id.as_str()).collect();
    let written = sqlx::query(&sql)
        .persistent(false)
        .bind(OffsetDateTime::now_utc())
        .bind(&ids)
        .bind(batch.iter().map(|ending| ending.token).collect::<Vec<_>>())
        .bind(batch.iter().map(|ending| ending.status).collect::<Vec<_>>())
        .bind(batch.iter().map(|ending| ending.result.as_deref()).collect::<Vec<_>>())
        .bind(batch.iter().map(|ending| ending.error.as_deref()).collect::<Vec<_>>())
        .bind(batch.iter().map(|ending| ending.progress.as_ref().map(|p| i16::from(p.percent))).collect::<Vec<_>>())
        .bind(
            batch.iter().map(|ending| ending.progress.as_ref().and_then(|p| p.message.as_deref())).collect::<Vec<_>>(),
        )
        .fetch_all(pool)
        .await;
    let rows = match written {
        Ok(rows) => rows,
        Err(error) => {
            let error = classify(error);
            for ending in batch {
                let _ = ending.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    let mut ended: HashMap<String, Result<Operation, StoreError>> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let Ok(id) = row.try_get::<String, _>("id") else { continue };
        let operation = operation_from_row(row).map(|(operation, version)| {
            fanout.changed(&operation, version);
            operation
        });
        ended.insert(id, operation);
    }
    for ending in batch {
        // Not returned: the lease had been lost (a cancel, an expiry, another claim).
        let _ = ending.reply.send(ended.remove(&ending.id).unwrap_or(Err(StoreError::LeaseLost)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ending(id: &str) -> Ending {
        Ending::new(id, 1, &Outcome::Succeeded(serde_json::json!(1)), None).expect("an end").0
    }

    /// A write that lasts until the returned sender is used or dropped.
    fn writing_until_told() -> (JoinSet<()>, oneshot::Sender<()>) {
        let (done, told) = oneshot::channel::<()>();
        let mut writing = JoinSet::new();
        writing.spawn(async move {
            let _ = told.await;
        });
        (writing, done)
    }

    fn ids(batch: &[Ending]) -> Vec<&str> {
        batch.iter().map(|ending| ending.id.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_end_that_arrives_alone_is_written_at_once() {
        let (endings, mut incoming) = mpsc::unbounded_channel();
        endings.send(ending("a")).ok();
        let batch = next_batch(&mut incoming, &mut JoinSet::new()).await.expect("a batch");
        assert_eq!(ids(&batch), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn ends_that_arrive_while_a_batch_is_written_wait_for_it_and_go_together() {
        let (endings, mut incoming) = mpsc::unbounded_channel();
        let (mut writing, done) = writing_until_told();
        endings.send(ending("a")).ok();
        let batch = {
            let next = next_batch(&mut incoming, &mut writing);
            tokio::pin!(next);
            assert!(tokio::time::timeout(Duration::from_secs(1), &mut next).await.is_err(), "waits for the write");
            endings.send(ending("b")).ok();
            endings.send(ending("c")).ok();
            done.send(()).ok();
            next.await.expect("a batch")
        };
        assert_eq!(ids(&batch), ["a", "b", "c"]);
        assert!(writing.is_empty(), "the finished write is collected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_without_waiting() {
        let (endings, mut incoming) = mpsc::unbounded_channel();
        let (mut writing, _done) = writing_until_told();
        for n in 0..MAX_BATCH + 1 {
            endings.send(ending(&n.to_string())).ok();
        }
        let batch = next_batch(&mut incoming, &mut writing).await.expect("a batch");
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(writing.len(), 1, "still being written");
        let next = tokio::time::timeout(Duration::from_secs(1), next_batch(&mut incoming, &mut writing)).await;
        assert!(next.is_err(), "the one left over waits for the write");
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_ends_once_every_sender_is_gone_and_nothing_is_left() {
        let (endings, mut incoming) = mpsc::unbounded_channel();
        let (mut writing, _done) = writing_until_told();
        endings.send(ending("a")).ok();
        drop(endings);
        assert_eq!(ids(&next_batch(&mut incoming, &mut writing).await.expect("the last one")), ["a"]);
        assert!(next_batch(&mut incoming, &mut writing).await.is_none());
    }
}

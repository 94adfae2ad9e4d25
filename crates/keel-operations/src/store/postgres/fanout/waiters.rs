//! The registry of waiters: the operations watched in this process, each with the version of
//! the state its watchers hold, and the latest changes made here, so that a watch set up right
//! after a change needs no read and a watch that did read can tell what it missed.

use std::collections::VecDeque;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::watch;

use super::{Fanout, State, lock};
use crate::model::Operation;
use crate::store::StoreError;
use crate::store::postgres::classify;
use crate::store::postgres::rows::{OPERATION_COLUMNS, operation_from_row};

/// How many recent changes [`Recent`] remembers for the watches being set up.
const RECENT_CHANGES: usize = 1024;

/// One operation someone in this process watches, and the version of the state they hold.
pub(super) struct Watched {
    pub(super) sender: watch::Sender<Operation>,
    pub(super) version: i64,
}

/// The latest changes, numbered, with the state this process gave each (`None` for another
/// process's change, whose state is not known here). A watch set up for an operation changed
/// here just now starts from that state without reading it (a submission with `Prefer: wait`,
/// a run watching for a cancel), and a watch that did read can tell whether its operation
/// changed between its read and its registration.
#[derive(Default)]
pub(super) struct Recent {
    pub(super) count: u64,
    changes: VecDeque<(u64, String, Option<Arc<State>>)>,
}

impl Recent {
    pub(super) fn note(&mut self, id: &str, state: Option<Arc<State>>) {
        self.count += 1;
        if self.changes.len() == RECENT_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back((self.count, id.to_owned(), state));
    }

    /// The state of `id` after its latest change, if that change was made here and remembered.
    pub(super) fn latest(&self, id: &str) -> Option<Arc<State>> {
        self.changes.iter().rev().find(|(_, changed, _)| changed == id).and_then(|(_, _, state)| state.clone())
    }

    /// What became of `id` after change number `mark`.
    pub(super) fn since(&self, mark: u64, id: &str) -> Since {
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

pub(super) enum Since {
    Unchanged,
    /// Changed by this process, to this state.
    ChangedHere(Arc<State>),
    /// Changed elsewhere, or too long ago to tell: read it.
    Unknown,
}

impl Fanout {
    /// A live view of `id`, fed by this process's changes and the others' notifications.
    pub(in crate::store::postgres) async fn watch(
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
    pub(super) async fn refresh(&self, pool: &PgPool, ids: &[String]) -> Result<(), StoreError> {
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
    pub(super) async fn resync(&self, pool: &PgPool) -> Result<(), StoreError> {
        let ids: Vec<String> = {
            let mut watched = lock(&self.watched);
            watched.retain(|_, entry| entry.sender.receiver_count() > 0);
            watched.keys().cloned().collect()
        };
        self.refresh(pool, &ids).await
    }

    /// Hands another process's change to the watchers of `operation` here, if any.
    pub(super) fn publish(&self, operation: Operation, version: i64) {
        if let Some(entry) = lock(&self.watched).get_mut(&operation.id) {
            entry.publish(operation, version);
        }
    }
}

impl Watched {
    /// Hands `operation` to the watchers unless they hold a newer version already: reads that
    /// race each other may come back out of order.
    pub(super) fn publish(&mut self, operation: Operation, version: i64) {
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

pub(in crate::store::postgres) async fn fetch(pool: &PgPool, id: &str) -> Result<Option<(Operation, i64)>, StoreError> {
    let sql = format!("SELECT {OPERATION_COLUMNS} FROM keel_operations WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(classify)?;
    row.map(|row| operation_from_row(&row)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

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

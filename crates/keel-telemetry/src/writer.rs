//! Log output, written by a thread of its own in batches: tracing-subscriber's `MakeWriter` for
//! the `fmt` layer.
//!
//! A request logs a line; it must not wait for stdout (a full pipe, a stalled log shipper) and
//! should cost as little as possible. Each line is copied into a shared buffer and the request
//! goes on. A writer thread takes the whole buffer at once, writes it with one `write`, then
//! lingers for [`LINGER`] so that under load the next batch collects many lines: the thread
//! wakes a few hundred times a second however busy the server is, rather than once per line.
//! When it is idle the writer is woken by the first line, so a line on a quiet server appears at
//! once.
//!
//! tracing-appender's non-blocking writer does the same job with a channel and one `write` per
//! line; docs/performance.md compares the two.
//!
//! The buffer is bounded: past [`CAPACITY`] lines are dropped, counted, and the count is written
//! out as a warning line once the writer catches up. Dropping the [`WriterGuard`] writes what is
//! left and stops the thread, waiting at most [`EXIT_WAIT`]: a stalled stdout must not keep the
//! process from exiting.

use std::io::{self, Write};
use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The most log output held while the writer catches up.
pub const CAPACITY: usize = 8 * 1024 * 1024;
/// How long the writer waits after a batch before taking the next one.
pub const LINGER: Duration = Duration::from_millis(2);
/// How long exiting waits for the last lines to be written.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Where log lines go: cheap to clone, one per subscriber.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread once everything buffered is written.
#[must_use = "dropping the guard stops log output"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    exit_wait: Duration,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer for a first line, or to stop.
    wake: Condvar,
    /// Tells the guard the writer has written everything and stopped.
    stopped: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// The writer is waiting for a line, so the next one must wake it.
    writer_idle: bool,
    dropped: u64,
    closed: bool,
    finished: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves only bytes behind; they are still worth writing.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BatchWriter {
    /// Starts the writer thread, writing to `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> io::Result<(Self, WriterGuard)> {
        Self::spawn_with_exit_wait(out, EXIT_WAIT)
    }

    fn spawn_with_exit_wait(out: impl Write + Send + 'static, exit_wait: Duration) -> io::Result<(Self, WriterGuard)> {
        let shared = Arc::new(Shared { pending: Mutex::default(), wake: Condvar::new(), stopped: Condvar::new() });
        let writer = Arc::clone(&shared);
        let thread = thread::Builder::new().name("log-writer".to_owned()).spawn(move || {
            write_batches(&writer, out);
            writer.lock().finished = true;
            writer.stopped.notify_all();
        })?;
        Ok((Self { shared: Arc::clone(&shared) }, WriterGuard { shared, thread: Some(thread), exit_wait }))
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let (dropped, closed) = {
            let mut pending = shared.lock();
            while pending.lines.is_empty() && pending.dropped == 0 && !pending.closed {
                pending.writer_idle = true;
                pending = shared.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            pending.writer_idle = false;
            mem::swap(&mut pending.lines, &mut batch);
            (mem::take(&mut pending.dropped), pending.closed)
        };
        if dropped > 0 {
            // Written in the lines' own format would need the formatter here; a plain JSON
            // object reads well in both formats and is what a log collector expects.
            let _ = writeln!(
                batch,
                r#"{{"level":"WARN","message":"log lines dropped: output too slow","dropped":{dropped}}}"#
            );
        }
        // Nowhere left to report a failed log write; the next batch tries again.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closed {
            return;
        }
        thread::sleep(LINGER);
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let mut pending = self.shared.lock();
        pending.closed = true;
        self.shared.wake.notify_one();
        let (pending, wait) = self
            .shared
            .stopped
            .wait_timeout_while(pending, self.exit_wait, |pending| !pending.finished)
            .unwrap_or_else(PoisonError::into_inner);
        drop(pending);
        if wait.timed_out() {
            // The writer is stuck in a write; leave it to the process's exit.
            return;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn push(&self, line: &[u8]) {
        let wake = {
            let mut pending = self.lock();
            if pending.closed {
                return;
            }
            if pending.lines.len() + line.len() > CAPACITY {
                pending.dropped += 1;
                return;
            }
            pending.lines.extend_from_slice(line);
            mem::take(&mut pending.writer_idle)
        };
        if wake {
            self.wake.notify_one();
        }
    }
}

/// One line, as the `fmt` layer hands it over: in one `write_all`.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.shared.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { shared: &self.shared }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Sends every batch it is given down a channel.
    struct Batches(mpsc::Sender<Vec<u8>>);

    impl Write for Batches {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_on_an_idle_writer_is_written_without_waiting_for_more() {
        let (sender, batches) = mpsc::channel();
        let (writer, _guard) = BatchWriter::spawn(Batches(sender)).unwrap();
        writer.make_writer().write_all(b"one\n").unwrap();
        assert_eq!(batches.recv_timeout(Duration::from_secs(10)).unwrap(), b"one\n");
    }

    #[test]
    fn dropping_the_guard_writes_everything_buffered_in_order() {
        let (sender, batches) = mpsc::channel();
        let (writer, guard) = BatchWriter::spawn(Batches(sender)).unwrap();
        for n in 0..1000 {
            writer.make_writer().write_all(format!("{n}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let written: Vec<u8> = batches.try_iter().flatten().collect();
        let expected: String = (0..1000).map(|n| format!("{n}\n")).collect();
        assert_eq!(String::from_utf8(written).unwrap(), expected);
    }

    #[test]
    fn past_capacity_lines_are_dropped_and_counted() {
        let shared = Shared { pending: Mutex::default(), wake: Condvar::new(), stopped: Condvar::new() };
        let mut line = LineWriter { shared: &shared };
        let big = vec![b'x'; CAPACITY / 2];
        line.write_all(&big).unwrap();
        line.write_all(&big).unwrap();
        line.write_all(b"too much\n").unwrap();
        let pending = shared.lock();
        assert_eq!(pending.lines.len(), CAPACITY);
        assert_eq!(pending.dropped, 1);
    }

    /// An output whose writes never return, like a pipe nobody reads.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            loop {
                thread::park();
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_does_not_keep_the_guard_from_returning() {
        let (writer, guard) = BatchWriter::spawn_with_exit_wait(Stalled, Duration::from_millis(50)).unwrap();
        writer.make_writer().write_all(b"never written\n").unwrap();
        // Returns once the wait is over; were it to join the stuck thread, this test would hang.
        drop(guard);
        writer.make_writer().write_all(b"after exit: dropped quietly\n").unwrap();
    }

    #[test]
    fn the_drop_count_is_reported_once_the_writer_catches_up() {
        let (sender, batches) = mpsc::channel();
        let (writer, guard) = BatchWriter::spawn(Batches(sender)).unwrap();
        writer.shared.lock().dropped = 3;
        writer.shared.wake.notify_one();
        drop(guard);
        let written = String::from_utf8(batches.try_iter().flatten().collect()).unwrap();
        let report: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
        assert_eq!(report["dropped"], 3);
    }
}

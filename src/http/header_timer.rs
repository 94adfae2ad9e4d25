//! The timer behind the header read timeout: one per connection, armed once.
//!
//! hyper times the reading of each request head with the [`Timer`] it is given: it asks for a
//! new sleep when it starts waiting for a head and drops it as soon as the head is in. With
//! tokio's timer each of those sleeps is an allocation, a registration in the timer wheel and a
//! cancellation, paid on every request of a keep-alive connection: hyper-util's `TokioTimer`
//! does exactly that, and with it a `GET /` costs 357 more instructions (+2.1%) and 12% more CPU
//! time (`bench/alternatives/tokio-timer.patch` swaps it in; `bench/alternatives.py` measures
//! both).
//!
//! A [`HeaderTimer`] belongs to one connection. It owns a single tokio sleep, the alarm; each
//! sleep hyper asks for only notes its own deadline. The timeout is fixed, so deadlines only
//! move later: the alarm stays where it was set, and if it goes off before the deadline that
//! is current by then (the connection kept sending requests), it is set again for that
//! deadline. A busy connection touches the timer wheel once per timeout period instead of twice
//! per request; a connection that stalls mid-head is still cut off on time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// A connection's header read timer. Give each connection its own: the alarm wakes only the
/// task that last waited on it (so it is not `Clone`).
#[derive(Default)]
pub struct HeaderTimer {
    alarm: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl HeaderTimer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock, which tests can pause; outside tests it is `Instant::now()`.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeaderSleep { deadline: deadline.into(), alarm: Arc::clone(&self.alarm) })
    }
}

/// One wait for a request head: done when `deadline` has passed.
struct HeaderSleep {
    deadline: tokio::time::Instant,
    alarm: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Sleep for HeaderSleep {}

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // Only this connection's task takes the lock, so it is never contended.
        let mut alarm = self.alarm.lock().unwrap_or_else(PoisonError::into_inner);
        let alarm = alarm.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if deadline < alarm.deadline() {
            alarm.as_mut().reset(deadline);
        }
        loop {
            let set_for = alarm.deadline();
            match alarm.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if set_for >= deadline => return Poll::Ready(()),
                // It went off for an earlier head's deadline: set it for this one.
                Poll::Ready(()) => alarm.as_mut().reset(deadline),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// Whether `sleep` is done, polled once.
    fn is_done(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        let waker = std::task::Waker::noop();
        sleep.as_mut().poll(&mut Context::from_waker(waker)).is_ready()
    }

    /// A wait as hyper starts one: asked for, then polled once while the head is not in.
    fn started(timer: &HeaderTimer, timeout: Duration) -> Pin<Box<dyn Sleep>> {
        let mut sleep = timer.sleep(timeout);
        assert!(!is_done(&mut sleep), "done before its deadline");
        sleep
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline() {
        let mut sleep = started(&HeaderTimer::new(), Duration::from_millis(200));
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(!is_done(&mut sleep));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(is_done(&mut sleep));
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_wait_is_not_cut_short_by_an_earlier_one() {
        let timer = HeaderTimer::new();
        drop(started(&timer, Duration::from_millis(200)));
        // The next head is awaited 150 ms later: its deadline is 350 ms, the alarm set for 200.
        tokio::time::advance(Duration::from_millis(150)).await;
        let mut second = started(&timer, Duration::from_millis(200));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!is_done(&mut second), "ended at the first wait's deadline");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(is_done(&mut second));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_alarm_forward() {
        let timer = HeaderTimer::new();
        drop(started(&timer, Duration::from_secs(60)));
        let mut short = started(&timer, Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(is_done(&mut short));
    }

    #[tokio::test(start_paused = true)]
    async fn the_waiting_task_is_woken_at_the_deadline() {
        let timer = HeaderTimer::new();
        drop(started(&timer, Duration::from_millis(100)));
        let mut sleep = timer.sleep(Duration::from_millis(300));
        let begun = tokio::time::Instant::now();
        // Awaited for real: only a wake from the alarm finishes this.
        poll_fn(|cx| sleep.as_mut().poll(cx)).await;
        assert_eq!(begun.elapsed(), Duration::from_millis(300));
    }
}

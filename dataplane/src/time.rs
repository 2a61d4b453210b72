//! Deadlines on the shard: race a future against a glommio timer.
//!
//! [`within`] is a small future of its own rather than an `async fn` around
//! `future::or`: an `async fn` keeps its argument and the future it awaits in two
//! slots, and every connection that waits with a deadline holds that state for as
//! long as it waits (an idle keep-alive connection, a tunnel).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use glommio::timer::Timer;

pin_project_lite::pin_project! {
    /// `fut`, or `None` once `dur` has passed. The timer is made only when `fut`
    /// is not ready at once (a read that completes at once costs no timer).
    pub struct Within<F> {
        #[pin]
        fut: F,
        dur: Duration,
        timer: Option<Timer>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let dur = *this.dur;
        let timer = this.timer.get_or_insert_with(|| Timer::new(dur));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Run `fut` for at most `dur`; `None` when the time ran out first.
pub fn within<F: Future>(dur: Duration, fut: F) -> Within<F> {
    Within {
        fut,
        dur,
        timer: None,
    }
}

/// Run `fut` until `deadline` at the latest.
pub fn until<F: Future>(deadline: Instant, fut: F) -> Within<F> {
    within(deadline.saturating_duration_since(Instant::now()), fut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};

    #[test]
    fn ready_first_wins_and_time_runs_out() {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(256 * 1024)
            .spawn(|| async {
                assert_eq!(within(Duration::from_secs(5), async { 7 }).await, Some(7));
                let never = futures_lite::future::pending::<()>();
                let started = Instant::now();
                assert_eq!(within(Duration::from_millis(30), never).await, None);
                assert!(started.elapsed() >= Duration::from_millis(30));
                let slow = glommio::timer::sleep(Duration::from_millis(10));
                assert_eq!(
                    until(Instant::now() + Duration::from_secs(5), slow).await,
                    Some(())
                );
                // A deadline in the past: only a future ready at once gets through.
                let past = Instant::now() - Duration::from_secs(1);
                assert_eq!(until(past, async { 1 }).await, Some(1));
                assert_eq!(
                    until(past, futures_lite::future::pending::<u8>()).await,
                    None
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

//! Deadlines on the shard: race a future against a glommio timer.

use std::future::Future;
use std::time::{Duration, Instant};

/// Run `fut` for at most `dur`; `None` when the time ran out first.
pub async fn within<T>(dur: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(dur).await;
        None
    })
    .await
}

/// Run `fut` until `deadline` at the latest.
pub async fn until<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    within(deadline.saturating_duration_since(Instant::now()), fut).await
}

//! The reaper: deletes the links teardowns retired (see `kernel::links::retire`), many in one
//! request, shortly after they were retired. Its work is never on an operation's path: the
//! endpoint was unreachable from the moment it was retired.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Engine;

/// How long the reaper waits after the first retirement, so that those right after it (a
/// sandbox's endpoints, a burst of disconnects) go in the same request.
const BATCH: Duration = Duration::from_millis(20);

impl Engine {
    /// Asks the reaper to delete what was retired.
    pub(super) fn reap_soon(&self) {
        self.reaper.notify_one();
    }

    /// Deletes what was retired, now.
    pub(super) async fn reap_now(&self) {
        let t = std::time::Instant::now();
        if let Err(e) = self.drivers.kernel().reap_retired().await {
            tracing::warn!(error = %e, "deleting retired links");
        }
        tracing::debug!(took = ?t.elapsed(), "retired links deleted");
    }
}

pub(super) fn spawn_reaper(engine: &Arc<Engine>) {
    let weak: Weak<Engine> = Arc::downgrade(engine);
    let notify = engine.reaper.clone();
    tokio::spawn(async move {
        loop {
            notify.notified().await;
            tokio::time::sleep(BATCH).await;
            let Some(engine) = weak.upgrade() else { return };
            engine.reap_now().await;
        }
    });
}

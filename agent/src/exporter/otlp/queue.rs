//! The bounded queue between `submit` (the pipeline loop, which must never
//! wait on the network) and the sending task.
//!
//! A `VecDeque` behind a std `Mutex`: the lock is held for a push or a pop
//! only, never across an `.await`, so a blocking mutex is cheaper than an
//! async one. When the queue is full the *oldest* batch goes: under an
//! outage the freshest data is the most useful once the backend is back.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::exporter::{ExportBatch, ExporterMetrics};

pub(crate) struct BatchQueue {
    state: Mutex<State>,
    /// Wakes the (single) consumer. `notify_one` stores a permit when nobody
    /// waits, so a push between the consumer's check and its `.await` is not
    /// lost.
    ready: Notify,
    capacity: usize,
    metrics: ExporterMetrics,
}

struct State {
    items: VecDeque<ExportBatch>,
    closed: bool,
}

/// What [`BatchQueue::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued, and the oldest batch was dropped to make room.
    DroppedOldest,
    /// The queue is closed (shutting down): the batch was not taken.
    Closed,
}

impl BatchQueue {
    pub(crate) fn new(capacity: usize, metrics: ExporterMetrics) -> Self {
        let capacity = capacity.max(1);
        metrics.queue_length.set(0.0);
        BatchQueue {
            state: Mutex::new(State {
                // Grows on demand: a large queue_size costs nothing until used.
                items: VecDeque::with_capacity(capacity.min(16)),
                closed: false,
            }),
            ready: Notify::new(),
            capacity,
            metrics,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the deque inconsistent
        // (push/pop are single calls), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a batch without waiting; counts what it drops in `dropped`.
    pub(crate) fn push(&self, batch: ExportBatch) -> Pushed {
        let outcome = {
            let mut s = self.lock();
            if s.closed {
                return Pushed::Closed;
            }
            let outcome = if s.items.len() >= self.capacity {
                s.items.pop_front();
                Pushed::DroppedOldest
            } else {
                Pushed::Queued
            };
            s.items.push_back(batch);
            // Set under the lock so the gauge never shows a stale length
            // that a concurrent pop already replaced.
            self.metrics.queue_length.set(s.items.len() as f64);
            outcome
        };
        if outcome == Pushed::DroppedOldest {
            self.metrics.dropped.inc();
        }
        self.ready.notify_one();
        outcome
    }

    /// The next batch; waits while the queue is empty and open. `None` once
    /// it is closed and empty. Only one task may call this.
    ///
    /// Sets `in_flight` under the lock, so that someone emptying the queue
    /// with [`take_all`](Self::take_all) and then checking `in_flight` sees
    /// every batch exactly once: either still queued or in flight.
    pub(crate) async fn pop(&self, in_flight: &AtomicBool) -> Option<ExportBatch> {
        loop {
            {
                let mut s = self.lock();
                if let Some(batch) = s.items.pop_front() {
                    in_flight.store(true, Ordering::Release);
                    self.metrics.queue_length.set(s.items.len() as f64);
                    return Some(batch);
                }
                if s.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Refuse further pushes and wake the consumer so that it can drain
    /// what is left and then see the end.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Take every queued batch out (for counting them as dropped).
    pub(crate) fn take_all(&self) -> usize {
        let mut s = self.lock();
        let n = s.items.len();
        s.items.clear();
        self.metrics.queue_length.set(0.0);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::BuildContext;
    use phoenix_processors::model::Batch;
    use phoenix_telemetry::registry::Registry;
    use std::sync::Arc;

    fn metrics() -> ExporterMetrics {
        ExporterMetrics::new(&BuildContext {
            id: "otlp_grpc/test".into(),
            registry: Registry::new(),
        })
    }

    fn batch(t: u64) -> ExportBatch {
        Arc::new(Batch {
            time_unix_nano: t,
            ..Batch::default()
        })
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_counts_it() {
        let m = metrics();
        let q = BatchQueue::new(2, m.clone());
        assert_eq!(q.push(batch(1)), Pushed::Queued);
        assert_eq!(q.push(batch(2)), Pushed::Queued);
        assert_eq!(q.push(batch(3)), Pushed::DroppedOldest);
        assert_eq!(m.dropped.get(), 1);
        assert_eq!(m.queue_length.get(), 2.0);
        let in_flight = AtomicBool::new(false);
        assert_eq!(q.pop(&in_flight).await.unwrap().time_unix_nano, 2);
        assert!(in_flight.load(Ordering::Relaxed));
        assert_eq!(q.pop(&in_flight).await.unwrap().time_unix_nano, 3);
        assert_eq!(m.queue_length.get(), 0.0);
    }

    #[tokio::test]
    async fn close_lets_the_consumer_drain_then_ends() {
        let q = Arc::new(BatchQueue::new(4, metrics()));
        q.push(batch(1));
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let in_flight = AtomicBool::new(false);
                while let Some(b) = q.pop(&in_flight).await {
                    seen.push(b.time_unix_nano);
                }
                seen
            })
        };
        tokio::task::yield_now().await;
        q.push(batch(2));
        q.close();
        assert_eq!(q.push(batch(3)), Pushed::Closed);
        assert_eq!(consumer.await.unwrap(), vec![1, 2]);
    }
}

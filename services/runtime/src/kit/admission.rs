//! Admission, an operation's concurrency limit: at most `running` requests work at once; at
//! most `queued` more wait, each for at most `wait_limit`. Anything beyond is refused at once
//! with `Overloaded`: a saturated worker never queues without bound (memory) or keeps a
//! requester waiting without an answer.

use ozone_bus_schemas::operation::Refusal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    pub running: usize,
    pub queued: usize,
    waiting: AtomicUsize,
    pub wait_limit: Duration,
}

/// A held slot; the work it admits runs until it is dropped.
pub type Slot = OwnedSemaphorePermit;

impl Admission {
    pub fn new(running: usize, queued: usize, wait_limit: Duration) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(running.max(1))),
            running: running.max(1),
            queued,
            waiting: AtomicUsize::new(0),
            wait_limit,
        }
    }

    fn overloaded(&self, detail: String) -> Refusal {
        Refusal::Overloaded {
            detail,
            retry_after_ms: 250,
        }
    }

    /// A slot now if one is free; `Err` if the queue is full too. Otherwise waits (up to the
    /// wait limit), calling `tick` every `every` (the requester hears `Alive`).
    pub async fn enter<F, Fut>(&self, every: Duration, mut tick: F) -> Result<Slot, Refusal>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let prior = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = Leave(&self.waiting);
        if prior >= self.queued {
            return Err(self.overloaded(format!(
                "{} running and {} queued on this worker (limits {} and {})",
                self.running, prior, self.running, self.queued
            )));
        }
        let deadline = tokio::time::Instant::now() + self.wait_limit;
        let acquire = self.slots.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                slot = &mut acquire => {
                    return slot.map_err(|_| Refusal::Internal("worker stopping".into()));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(self.overloaded(format!(
                        "waited the limit of {:?} for a free slot", self.wait_limit
                    )));
                }
                _ = tokio::time::sleep(every) => tick().await,
            }
        }
    }

    /// Requests working now.
    pub fn busy(&self) -> usize {
        self.running - self.slots.available_permits()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_running_and_queued_is_refused_at_once() {
        let a = Arc::new(Admission::new(1, 1, Duration::from_secs(5)));
        let held = a.enter(Duration::from_millis(10), || async {}).await;
        assert!(held.is_ok());
        let a2 = a.clone();
        let waiter =
            tokio::spawn(async move { a2.enter(Duration::from_millis(10), || async {}).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(a.waiting(), 1);
        let third = a.enter(Duration::from_millis(10), || async {}).await;
        assert!(matches!(third, Err(Refusal::Overloaded { .. })));
        drop(held);
        assert!(matches!(waiter.await, Ok(Ok(_))));
        assert_eq!(a.waiting(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_the_wait_limit() {
        let a = Admission::new(1, 4, Duration::from_millis(100));
        let _held = a.enter(Duration::from_millis(10), || async {}).await;
        let mut ticks = 0;
        let r = a
            .enter(Duration::from_millis(20), || {
                ticks += 1;
                async {}
            })
            .await;
        assert!(matches!(r, Err(Refusal::Overloaded { .. })));
        assert!(ticks >= 2, "{ticks}");
    }
}

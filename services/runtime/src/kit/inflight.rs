//! The streamed requests a worker is working on, as its control subject sees them: who asked
//! (only they may cancel or keep alive), the cancel flag the handler watches, and when the
//! requester last said it still listens.
//!
//! Keyed by requester and request id, so one caller's id can never cancel or replace
//! another's run. A request retried with the same id (its requester stopped listening to the
//! first run) cancels the run still going here.

use ozone_bus_schemas::operation::Control;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Key = (Arc<str>, String);

#[derive(Debug)]
struct Entry {
    cancel: Arc<AtomicBool>,
    last_keepalive: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    table: Mutex<HashMap<Key, Entry>>,
}

/// One run in the table; dropping it (however the handler ends) removes it.
#[derive(Debug)]
pub(crate) struct Running {
    table: Arc<InFlight>,
    key: Key,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl InFlight {
    /// Records a new run of `request_id` for `requester`, cancelling an earlier one.
    pub(crate) fn start(self: &Arc<Self>, requester: Arc<str>, request_id: &str) -> Running {
        let key = (requester, request_id.to_string());
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut t) = self.table.lock() {
            let entry = Entry {
                cancel: cancel.clone(),
                last_keepalive: Instant::now(),
            };
            if let Some(previous) = t.insert(key.clone(), entry) {
                previous.cancel.store(true, Ordering::Relaxed);
            }
        }
        Running {
            table: self.clone(),
            key,
            cancel,
        }
    }

    /// Applies a control message from its authenticated `sender`; ids it did not ask for are
    /// ignored.
    pub(crate) fn control(&self, sender: &str, c: Control) {
        let Ok(mut t) = self.table.lock() else {
            return;
        };
        let sender: Arc<str> = sender.into();
        match c {
            Control::Cancel { request_id } => {
                if let Some(e) = t.get_mut(&(sender, request_id)) {
                    e.cancel.store(true, Ordering::Relaxed);
                }
            }
            Control::Keepalive { request_ids } => {
                let now = Instant::now();
                for id in request_ids {
                    if let Some(e) = t.get_mut(&(sender.clone(), id)) {
                        e.last_keepalive = now;
                    }
                }
            }
        }
    }

    /// Cancels the runs whose requester has been silent longer than `limit` (it went away);
    /// returns the ids newly cancelled.
    pub(crate) fn cancel_abandoned(&self, limit: Duration) -> Vec<String> {
        let Ok(t) = self.table.lock() else {
            return Vec::new();
        };
        t.iter()
            .filter(|(_, e)| e.last_keepalive.elapsed() > limit)
            .filter(|(_, e)| !e.cancel.swap(true, Ordering::Relaxed))
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.table.lock() {
            // Only this run's entry: a retry with the same id may have replaced it.
            if t.get(&self.key)
                .is_some_and(|e| Arc::ptr_eq(&e.cancel, &self.cancel))
            {
                t.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancelled(r: &Running) -> bool {
        r.cancel.load(Ordering::Relaxed)
    }

    #[test]
    fn only_the_requester_cancels_its_request() {
        let t = Arc::new(InFlight::default());
        let run = t.start("forge".into(), "r1");
        t.control(
            "scribe",
            Control::Cancel {
                request_id: "r1".into(),
            },
        );
        assert!(!cancelled(&run));
        t.control(
            "forge",
            Control::Cancel {
                request_id: "r1".into(),
            },
        );
        assert!(cancelled(&run));
    }

    #[test]
    fn a_retry_cancels_the_first_run_and_survives_its_end() {
        let t = Arc::new(InFlight::default());
        let first = t.start("forge".into(), "r1");
        let retry = t.start("forge".into(), "r1");
        assert!(cancelled(&first) && !cancelled(&retry));
        drop(first);
        assert_eq!(t.len(), 1, "the retry's entry stays");
        drop(retry);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn another_callers_same_id_is_a_different_request() {
        let t = Arc::new(InFlight::default());
        let mine = t.start("forge".into(), "r1");
        let theirs = t.start("scribe".into(), "r1");
        assert!(!cancelled(&mine) && !cancelled(&theirs));
    }

    #[test]
    fn silence_cancels_and_keepalives_prevent_it() {
        let t = Arc::new(InFlight::default());
        let quiet = t.start("forge".into(), "quiet");
        let kept = t.start("forge".into(), "kept");
        std::thread::sleep(Duration::from_millis(30));
        t.control(
            "forge",
            Control::Keepalive {
                request_ids: vec!["kept".into()],
            },
        );
        let gone = t.cancel_abandoned(Duration::from_millis(20));
        assert_eq!(gone, vec!["quiet".to_string()]);
        assert!(cancelled(&quiet) && !cancelled(&kept));
        assert!(t.cancel_abandoned(Duration::from_millis(20)).is_empty());
    }
}

//! What the kit counts per operation, for `$SRV.STATS`: requests taken, answered with a
//! result, refused by the kit (size, caller, shape, request id, admission), failed in the
//! handler. Shown under `operation` in each endpoint's `data`, beside the component's own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Answered,
    Refused,
    Failed,
}

impl Counters {
    pub(crate) fn took(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Answered => &self.answered,
            Outcome::Refused => &self.refused,
            Outcome::Failed => &self.failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "answered": self.answered.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// Every served operation's counters, by endpoint name (its subject).
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry(Arc<Mutex<BTreeMap<String, Arc<Counters>>>>);

impl Registry {
    pub(crate) fn add(&self, endpoint: &str) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        if let Ok(mut m) = self.0.lock() {
            m.insert(endpoint.to_string(), counters.clone());
        }
        counters
    }

    /// `component`'s data for `endpoint` with the operation's counters added (an object is
    /// extended; anything else is kept under `component`).
    pub(crate) fn data(&self, endpoint: &str, component: serde_json::Value) -> serde_json::Value {
        let counters = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(endpoint).map(|c| c.snapshot()));
        let Some(counters) = counters else {
            return component;
        };
        match component {
            serde_json::Value::Object(mut o) => {
                o.insert("operation".into(), counters);
                serde_json::Value::Object(o)
            }
            serde_json::Value::Null => serde_json::json!({ "operation": counters }),
            other => serde_json::json!({ "operation": counters, "component": other }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_join_the_components_data_per_endpoint() {
        let r = Registry::default();
        let c = r.add("spark.generate");
        c.took();
        c.took();
        c.ended(Outcome::Answered);
        c.ended(Outcome::Refused);
        let data = r.data("spark.generate", serde_json::json!({ "load": 1 }));
        assert_eq!(data["load"], 1);
        assert_eq!(data["operation"]["requests"], 2);
        assert_eq!(data["operation"]["answered"], 1);
        assert_eq!(data["operation"]["refused"], 1);
        assert_eq!(
            r.data("spark.other", serde_json::Value::Null),
            serde_json::Value::Null
        );
    }
}

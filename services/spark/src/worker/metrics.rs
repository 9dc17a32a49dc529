//! What a worker reports in its micro-service stats (`$SRV.STATS.spark`, endpoint `data`):
//! tokens/s, time to first token, queue wait, batch sizes, and its load.

use std::sync::Mutex;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Totals {
    pub generations: u64,
    pub completion_tokens: u64,
    pub prompt_tokens: u64,
    /// Tokens after the first of each generation (the ones `decode_seconds` produced).
    pub decode_tokens: u64,
    pub decode_seconds: f64,
    pub first_token_ms_sum: f64,
    pub queue_wait_ms_sum: f64,
    pub cancelled: u64,
    pub embed_requests: u64,
    pub embed_texts: u64,
    pub embed_batches: u64,
    pub embed_queue_wait_ms_sum: f64,
    pub overloaded: u64,
    pub failed: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    totals: Mutex<Totals>,
}

impl Metrics {
    pub fn update(&self, f: impl FnOnce(&mut Totals)) {
        if let Ok(mut t) = self.totals.lock() {
            f(&mut t);
        }
    }

    pub fn snapshot(&self) -> Totals {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// The derived figures an operator reads.
pub fn summary(t: &Totals, load: serde_json::Value) -> serde_json::Value {
    let per = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };
    serde_json::json!({
        "tokens_per_s": if t.decode_seconds > 0.0 { t.decode_tokens as f64 / t.decode_seconds } else { 0.0 },
        "time_to_first_token_ms_avg": per(t.first_token_ms_sum, t.generations),
        "queue_wait_ms_avg": per(t.queue_wait_ms_sum, t.generations),
        "embed_queue_wait_ms_avg": per(t.embed_queue_wait_ms_sum, t.embed_requests),
        "embed_texts_per_batch_avg": per(t.embed_texts as f64, t.embed_batches),
        "load": load,
        "totals": t,
    })
}

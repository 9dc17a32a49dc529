//! SPARK's extra local workers, kept by the supervisor like every component process.
//!
//! `ozone spark scale N` writes what it wants ([`ScaleRequest`], in `run/spark-scale.json`)
//! and signals the supervisor (SIGUSR2); the supervisor runs workers `spark-2` … `spark-N`
//! beside the component's own process, each restarted with the same backoff and give-up rule,
//! recorded in `run/components.json`, and stopped with SPARK's phase. A worker killed is
//! started again; one scaled away is stopped and forgotten.

use crate::supervisor::{forget, keep_running, Controls, Proc, States};
use ozone_bus_schemas::Component;
use ozone_security::Home;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What `ozone spark scale` asks of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// Workers in all on this host, the component's own process included (at least 1).
    pub workers: usize,
    /// Compute threads of each worker this request starts (`None`: the worker's default).
    pub threads: Option<usize>,
}

pub fn request_file(home: &Home) -> PathBuf {
    home.run().join("spark-scale.json")
}

/// Writes the request where the supervisor reads it (replacing the file in one rename, so the
/// supervisor never reads half of it).
pub fn write_request(home: &Home, request: &ScaleRequest) -> anyhow::Result<()> {
    let path = request_file(home);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(request)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn read_request(home: &Home) -> Option<ScaleRequest> {
    let bytes = std::fs::read(request_file(home)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("{}: {e}; ignored", request_file(home).display());
            None
        }
    }
}

/// The name of the `n`th SPARK worker on this host (`n` ≥ 2; the first is the component's own
/// process, named `spark`).
pub fn worker_name(n: usize) -> String {
    format!("spark-{n}")
}

/// One extra worker being kept.
struct Kept {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps the extra workers the latest request asks for until `stop` turns true; `asked`
/// changes on each SIGUSR2.
pub(crate) async fn keep(
    home: Home,
    states: States,
    mut stop: watch::Receiver<bool>,
    mut asked: watch::Receiver<u64>,
    retry: watch::Receiver<u64>,
) {
    // A request left by an earlier supervisor is not this one's to follow: an `ozone up` starts
    // with one worker, as the operator would expect after `ozone down`.
    let _ = std::fs::remove_file(request_file(&home));
    let mut kept: Vec<Kept> = Vec::new();
    loop {
        tokio::select! {
            changed = asked.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        let Some(request) = read_request(&home) else {
            continue;
        };
        let extra = request.workers.saturating_sub(1);
        while kept.len() > extra {
            if let Some(k) = kept.pop() {
                stop_one(&home, &states, k).await;
            }
        }
        while kept.len() < extra {
            let name = worker_name(kept.len() + 2);
            let (stop_tx, stop_rx) = watch::channel(false);
            let proc = Proc {
                component: Component::Spark,
                name: name.clone(),
                env: request
                    .threads
                    .map(|t| vec![("OZONE_SPARK_THREADS", t.to_string())])
                    .unwrap_or_default(),
            };
            let controls = Controls {
                stop: stop_rx,
                retry: retry.clone(),
            };
            // No announcer: one worker of several dying does not make SPARK unavailable.
            let task = tokio::spawn(keep_running(
                home.clone(),
                proc,
                None,
                states.clone(),
                controls,
            ));
            kept.push(Kept {
                name,
                stop: stop_tx,
                task,
            });
        }
    }
    while let Some(k) = kept.pop() {
        stop_one(&home, &states, k).await;
    }
    let _ = std::fs::remove_file(request_file(&home));
}

async fn stop_one(home: &Home, states: &States, k: Kept) {
    let _ = k.stop.send(true);
    let _ = k.task.await;
    forget(home, states, &k.name);
}

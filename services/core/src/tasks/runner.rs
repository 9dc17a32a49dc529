//! Runs one task: starts every step whose dependencies have finished (in parallel), retries
//! failed attempts with backoff, waits for approvals, and writes the record at every
//! transition. The runner is the only writer of its task's record; callers reach it through
//! [`Control`] messages.

use super::record::TaskRecord;
use super::step::{Attempt, Caller};
use super::store::TaskStore;
use ozone_bus_schemas::core::{StepState, TaskState};
use ozone_methodology::templates::Templates;
use ozone_methodology::OnFail;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// A step's attempt may take this long unless its `timeout` says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// What a caller asks of a running task.
#[derive(Debug)]
pub enum Control {
    Cancel {
        by: String,
    },
    Approve {
        step: String,
        by: String,
        done: oneshot::Sender<bool>,
    },
}

/// What the runner needs from the core.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub caller: Caller,
    pub store: TaskStore,
    pub templates: Arc<Templates>,
}

fn now_ms() -> u64 {
    ozone_nats::bus::now_ms()
}

fn duration(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(default)
}

/// What a finished attempt says.
struct Finished {
    step: usize,
    result: Result<serde_json::Value, String>,
}

/// Runs `record` to its end (or until the core stops), then returns.
pub async fn run(rt: Runtime, mut record: TaskRecord, mut control: mpsc::Receiver<Control>) {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut running: JoinSet<Finished> = JoinSet::new();
    loop {
        if !record.view.state.is_finished() {
            start_ready_steps(&rt, &mut record, &mut running, &cancel_rx);
            if all_done(&record) {
                finish(&rt, &mut record);
            }
        }
        // Every transition is written, the last one (finished, failed, cancelled) included.
        save(&rt, &record).await;
        if record.view.state.is_finished() {
            break;
        }
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(done) = done {
                    settle(&mut record, done, &mut running, &cancel_rx, &rt);
                }
            }
            msg = control.recv() => match msg {
                Some(Control::Cancel { by }) => {
                    let _ = cancel_tx.send(true);
                    cancel(&mut record, &by);
                    // Running steps see the flag (a generation is cancelled at SPARK); give
                    // them a moment, then stop waiting.
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while running.join_next().await.is_some() {}
                    })
                    .await;
                    running.abort_all();
                }
                Some(Control::Approve { step, by, done }) => {
                    let approved = approve(&mut record, &step, &by);
                    let _ = done.send(approved);
                }
                // The core is stopping: the record says where the task is; the next core
                // resumes it.
                None => {
                    running.abort_all();
                    return;
                }
            },
        }
    }
    // Whatever still runs (a failed task's parallel branches) stops now.
    let _ = cancel_tx.send(true);
    let state = format!("{:?}", record.view.state).to_lowercase();
    tracing::info!(task = %record.view.id, %state, "task finished");
    rt.caller
        .bus
        .audit(ozone_bus_schemas::AuditKind::TaskFinished {
            task_id: record.view.id.clone(),
            state,
            detail: record.view.error.clone(),
        });
}

async fn save(rt: &Runtime, record: &TaskRecord) {
    if let Err(e) = rt.store.put(record).await {
        tracing::error!(task = %record.view.id, "cannot save the task's state: {e}");
    }
}

/// Starts every pending step whose dependencies let it run (or skips it, or parks it for
/// approval).
fn start_ready_steps(
    rt: &Runtime,
    record: &mut TaskRecord,
    running: &mut JoinSet<Finished>,
    cancel: &watch::Receiver<bool>,
) {
    let mut waiting = false;
    for i in 0..record.methodology.steps.len() {
        let state = record.view.steps[i].state;
        if state == StepState::WaitingForApproval {
            waiting = true;
        }
        if state != StepState::Pending {
            continue;
        }
        let step = &record.methodology.steps[i];
        let ready = step.depends_on.iter().all(|d| {
            record
                .view
                .steps
                .iter()
                .any(|s| &s.id == d && s.state.lets_dependents_run())
        });
        if !ready {
            continue;
        }
        if let Some(when) = &step.when {
            match rt.templates.condition(when, &record.context()) {
                Ok(true) => {}
                Ok(false) => {
                    let s = &mut record.view.steps[i];
                    s.state = StepState::Skipped;
                    s.finished_at_ms = Some(now_ms());
                    continue;
                }
                Err(e) => {
                    fail(record, i, format!("when: {e}"));
                    return;
                }
            }
        }
        if step.requires_approval && record.view.steps[i].approved_by.is_none() {
            record.view.steps[i].state = StepState::WaitingForApproval;
            waiting = true;
            continue;
        }
        launch(rt, record, i, running, cancel, Duration::ZERO);
    }
    record.view.state = if waiting && running.is_empty() {
        TaskState::WaitingForApproval
    } else {
        TaskState::Running
    };
}

/// Starts attempt `attempts + 1` of step `i`, after `delay`.
fn launch(
    rt: &Runtime,
    record: &mut TaskRecord,
    i: usize,
    running: &mut JoinSet<Finished>,
    cancel: &watch::Receiver<bool>,
    delay: Duration,
) {
    let context = record.context();
    let view = &mut record.view.steps[i];
    view.attempts += 1;
    view.state = if delay.is_zero() {
        StepState::Running
    } else {
        StepState::Retrying
    };
    view.started_at_ms.get_or_insert(now_ms());
    let step = record.methodology.steps[i].clone();
    let (attempt, task_id) = (view.attempts, record.view.id.clone());
    let principles = record.methodology.principles.clone();
    let (caller, templates, cancel) = (rt.caller.clone(), rt.templates.clone(), cancel.clone());
    running.spawn(async move {
        tokio::time::sleep(delay).await;
        let timeout = duration(step.timeout.as_deref(), DEFAULT_STEP_TIMEOUT);
        let a = Attempt {
            task_id: &task_id,
            step: &step,
            attempt,
            context,
            principles: &principles,
            cancel,
            timeout,
        };
        let result = match tokio::time::timeout(timeout, a.run(&caller, &templates)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {} (attempt {attempt})",
                humantime::format_duration(timeout)
            )),
        };
        Finished { step: i, result }
    });
}

/// Records a finished attempt: success, a retry after backoff, or the step's (and the
/// task's) failure.
fn settle(
    record: &mut TaskRecord,
    done: Finished,
    running: &mut JoinSet<Finished>,
    cancel: &watch::Receiver<bool>,
    rt: &Runtime,
) {
    let i = done.step;
    if *cancel.borrow() {
        return;
    }
    match done.result {
        Ok(output) => {
            let s = &mut record.view.steps[i];
            s.state = StepState::Succeeded;
            s.output = Some(output);
            s.error = None;
            s.finished_at_ms = Some(now_ms());
        }
        Err(e) => {
            let step = &record.methodology.steps[i];
            let check_failed = e.starts_with("check:");
            let retryable = !check_failed
                || step
                    .check
                    .as_ref()
                    .is_some_and(|c| c.on_fail == OnFail::Retry);
            let attempts = step.retry.as_ref().map(|r| r.attempts).unwrap_or(1);
            let s = &record.view.steps[i];
            if retryable && s.attempts < attempts {
                let base = duration(
                    step.retry.as_ref().map(|r| r.backoff.as_str()),
                    Duration::from_secs(1),
                );
                let delay = base.saturating_mul(1 << (s.attempts - 1).min(16));
                tracing::info!(task = %record.view.id, step = %s.id, attempt = s.attempts, "attempt failed, retrying in {delay:?}: {e}");
                record.view.steps[i].error = Some(e);
                launch(rt, record, i, running, cancel, delay);
            } else {
                fail(record, i, e);
            }
        }
    }
}

/// Step `i` failed for good: so does the task.
fn fail(record: &mut TaskRecord, i: usize, error: String) {
    let now = now_ms();
    let s = &mut record.view.steps[i];
    s.state = StepState::Failed;
    s.finished_at_ms = Some(now);
    record.view.error = Some(format!("step {} failed: {error}", s.id));
    s.error = Some(error);
    record.view.state = TaskState::Failed;
    record.view.finished_at_ms = Some(now);
}

fn all_done(record: &TaskRecord) -> bool {
    !record.view.state.is_finished()
        && record
            .view
            .steps
            .iter()
            .all(|s| s.state.lets_dependents_run())
}

/// Every step finished: the outputs are rendered and the task succeeds (or fails, when an
/// output does not render).
fn finish(rt: &Runtime, record: &mut TaskRecord) {
    let context = record.context();
    let mut outputs = std::collections::BTreeMap::new();
    for (name, template) in &record.methodology.outputs {
        match rt.templates.render_text(template, &context) {
            Ok(v) => {
                outputs.insert(name.clone(), v);
            }
            Err(e) => {
                record.view.state = TaskState::Failed;
                record.view.error = Some(format!("output {name}: {e}"));
                record.view.finished_at_ms = Some(now_ms());
                return;
            }
        }
    }
    record.view.outputs = Some(outputs);
    record.view.state = TaskState::Succeeded;
    record.view.finished_at_ms = Some(now_ms());
}

fn cancel(record: &mut TaskRecord, by: &str) {
    let now = now_ms();
    for s in &mut record.view.steps {
        if !matches!(
            s.state,
            StepState::Succeeded | StepState::Skipped | StepState::Failed
        ) {
            s.state = StepState::Cancelled;
            s.finished_at_ms = Some(now);
        }
    }
    record.view.state = TaskState::Cancelled;
    record.view.error = Some(format!("cancelled by {by}"));
    record.view.finished_at_ms = Some(now);
}

fn approve(record: &mut TaskRecord, step: &str, by: &str) -> bool {
    match record
        .view
        .steps
        .iter_mut()
        .find(|s| s.id == step && s.state == StepState::WaitingForApproval)
    {
        Some(s) => {
            s.approved_by = Some(by.to_string());
            s.state = StepState::Pending;
            true
        }
        None => false,
    }
}

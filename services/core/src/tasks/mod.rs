//! Tasks: a registered methodology run over the bus, durably (docs/tasks.md).
//!
//! `ozone-studio.task.submit` checks the inputs against the methodology ZSEI holds, writes the
//! task's record and starts its runner ([`runner`]); `get` and `list` read the store;
//! `cancel` and `approve` go to the runner, the only writer of its task's record. A core that
//! starts resumes every unfinished task it finds in the store.

pub mod record;
pub mod runner;
pub mod step;
pub mod store;
mod submit;

use futures::future::BoxFuture;
use ozone_bus_schemas::core::{
    ApproveReply, ApproveRequest, ApproveStep, CancelReply, CancelTask, CoreError, GetTask,
    GetTaskReply, ListTasks, ListTasksReply, ListTasksRequest, Submit, SubmitReply, SubmitRequest,
    TaskRef, TaskSummary,
};
use ozone_methodology::templates::Templates;
use ozone_service::kit::{handler_fn, Kit};
use ozone_service::{Capability, Serving};
use ozone_spark_client::SparkClient;
use record::TaskRecord;
use runner::{Control, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use step::Caller;
use store::TaskStore;
use tokio::sync::{mpsc, oneshot};

/// The most tasks one core runs at once; more are refused with `Overloaded`.
pub const MAX_RUNNING_TASKS: usize = 64;

/// The tasks this core runs: each one's control channel.
#[derive(Debug, Clone)]
pub struct Tasks {
    rt: Runtime,
    running: Arc<Mutex<HashMap<String, mpsc::Sender<Control>>>>,
}

impl Tasks {
    fn running(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn control(&self, task_id: &str) -> Option<mpsc::Sender<Control>> {
        self.running.lock().ok()?.get(task_id).cloned()
    }

    /// Starts the runner of `record`; it leaves the table when it ends.
    fn spawn(&self, record: TaskRecord) -> tokio::task::JoinHandle<()> {
        let (tx, rx) = mpsc::channel(16);
        let id = record.view.id.clone();
        if let Ok(mut r) = self.running.lock() {
            r.insert(id.clone(), tx);
        }
        let (rt, running) = (self.rt.clone(), self.running.clone());
        tokio::spawn(async move {
            runner::run(rt, record, rx).await;
            if let Ok(mut r) = running.lock() {
                r.remove(&id);
            }
        })
    }

    async fn get(&self, task_id: &str) -> Result<TaskRecord, CoreError> {
        self.rt
            .store
            .get(task_id)
            .await?
            .ok_or_else(|| CoreError::NoSuchTask {
                task_id: task_id.to_string(),
            })
    }
}

/// The core's task capability.
#[derive(Debug, Default)]
pub struct TaskCapability;

impl Capability for TaskCapability {
    fn start<'a>(
        self: Box<Self>,
        serving: Serving<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Vec<tokio::task::JoinHandle<()>>>> {
        Box::pin(start(serving))
    }
}

/// Opens the store, resumes unfinished tasks, serves the operations; also used by the core's
/// combined capability.
pub async fn start(serving: Serving<'_>) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let bus = serving.bus.clone();
    let store = TaskStore::open(&bus.connection().client).await?;
    let tasks = Tasks {
        rt: Runtime {
            caller: Caller {
                bus: bus.clone(),
                spark: SparkClient::new(bus.clone()),
            },
            store: store.clone(),
            templates: Arc::new(Templates::new()),
        },
        running: Arc::default(),
    };
    let mut handles = Vec::new();
    for mut record in store.all().await? {
        if record.view.state.is_finished() {
            continue;
        }
        record.prepare_resume();
        tracing::info!(task = %record.view.id, methodology = %record.view.methodology, "resuming task");
        handles.push(tasks.spawn(record));
    }
    let mut kit = Kit::new(&serving);
    serve(&mut kit, &tasks).await?;
    handles.extend(kit.into_tasks());
    Ok(handles)
}

async fn serve(kit: &mut Kit<'_>, tasks: &Tasks) -> anyhow::Result<()> {
    let t = tasks.clone();
    kit.serve::<Submit, _>(handler_fn(move |req: SubmitRequest, caller: Arc<str>| {
        let t = t.clone();
        async move {
            if t.running() >= MAX_RUNNING_TASKS {
                return Err(CoreError::Overloaded {
                    running: t.running(),
                });
            }
            let record = submit::prepare(&t.rt.caller.bus, req, &caller).await?;
            t.rt.store.put(&record).await?;
            let task_id = record.view.id.clone();
            tracing::info!(task = %task_id, methodology = %record.view.methodology, by = %caller, "task submitted");
            t.rt.caller.bus.audit(ozone_bus_schemas::AuditKind::TaskSubmitted {
                task_id: task_id.clone(),
                methodology: record.view.methodology.clone(),
                version: record.view.version.clone(),
                by: caller.to_string(),
            });
            t.spawn(record);
            Ok(SubmitReply::Submitted { task_id })
        }
    }))
    .await?;

    let t = tasks.clone();
    kit.serve::<GetTask, _>(handler_fn(move |req: TaskRef, _| {
        let t = t.clone();
        async move { Ok(GetTaskReply::Found(t.get(&req.task_id).await?.view)) }
    }))
    .await?;

    let t = tasks.clone();
    kit.serve::<ListTasks, _>(handler_fn(move |_: ListTasksRequest, _| {
        let t = t.clone();
        async move {
            let mut all: Vec<TaskSummary> =
                t.rt.store
                    .all()
                    .await?
                    .into_iter()
                    .map(|r| TaskSummary {
                        id: r.view.id,
                        methodology: r.view.methodology,
                        version: r.view.version,
                        state: r.view.state,
                        submitted_by: r.view.submitted_by,
                        submitted_at_ms: r.view.submitted_at_ms,
                    })
                    .collect();
            all.sort_by_key(|t| std::cmp::Reverse(t.submitted_at_ms));
            Ok(ListTasksReply::Listed(all))
        }
    }))
    .await?;

    let t = tasks.clone();
    kit.serve::<CancelTask, _>(handler_fn(move |req: TaskRef, caller: Arc<str>| {
        let t = t.clone();
        async move {
            if let Some(control) = t.control(&req.task_id) {
                let _ = control
                    .send(Control::Cancel {
                        by: caller.to_string(),
                    })
                    .await;
                // The runner writes the cancelled state before it stops.
                for _ in 0..100 {
                    if t.control(&req.task_id).is_none() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            let state = t.get(&req.task_id).await?.view.state;
            Ok(CancelReply::Cancelled { state })
        }
    }))
    .await?;

    let t = tasks.clone();
    kit.serve::<ApproveStep, _>(handler_fn(move |req: ApproveRequest, caller: Arc<str>| {
        let t = t.clone();
        async move {
            let nothing = || CoreError::NothingToApprove {
                task_id: req.task_id.clone(),
                step: req.step.clone(),
            };
            let control = t.control(&req.task_id).ok_or_else(nothing)?;
            let (done, answer) = oneshot::channel();
            let _ = control
                .send(Control::Approve {
                    step: req.step.clone(),
                    by: caller.to_string(),
                    done,
                })
                .await;
            if answer.await.unwrap_or(false) {
                tracing::info!(task = %req.task_id, step = %req.step, by = %caller, "step approved");
                t.rt.caller.bus.audit(ozone_bus_schemas::AuditKind::StepApproved {
                    task_id: req.task_id.clone(),
                    step: req.step.clone(),
                    by: caller.to_string(),
                });
                Ok(ApproveReply::Approved)
            } else {
                Err(nothing())
            }
        }
    }))
    .await?;
    Ok(())
}

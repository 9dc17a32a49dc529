//! The durable task state: one JSON record per task in the `ozone-tasks` bucket, rewritten at
//! every transition, so a core that restarts knows every step that finished (with its output)
//! and every task to resume.

use super::record::TaskRecord;
use async_nats::jetstream::kv;
use ozone_bus_schemas::core::CoreError;
use ozone_bus_schemas::streams::{bucket_subjects, TASK_BUCKET, TASK_STREAM};
use ozone_nats::buckets::TASK_BUCKET_SPEC;

#[derive(Clone)]
pub struct TaskStore {
    store: kv::Store,
    client: async_nats::Client,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskStore({TASK_BUCKET})")
    }
}

fn unavailable(e: impl std::fmt::Display) -> CoreError {
    CoreError::Unavailable {
        detail: format!("task store: {e}"),
    }
}

impl TaskStore {
    pub async fn open(client: &async_nats::Client) -> Result<TaskStore, CoreError> {
        let store = TASK_BUCKET_SPEC.open(client).await.map_err(unavailable)?;
        Ok(TaskStore {
            store,
            client: client.clone(),
        })
    }

    /// Writes a task's record (the whole record: a reader never sees half a transition).
    pub async fn put(&self, record: &TaskRecord) -> Result<(), CoreError> {
        let value = serde_json::to_vec(record).map_err(unavailable)?;
        let limit = usize::try_from(TASK_BUCKET_SPEC.max_value_bytes).unwrap_or(usize::MAX);
        if value.len() + 512 > limit {
            return Err(CoreError::Unavailable {
                detail: format!(
                    "task {} holds {} bytes of state, more than a task may ({limit})",
                    record.view.id,
                    value.len()
                ),
            });
        }
        self.store
            .put(&record.view.id, value.into())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn get(&self, task_id: &str) -> Result<Option<TaskRecord>, CoreError> {
        // An id that cannot be a key names no task.
        let Ok(entry) = self.store.get(task_id).await else {
            return Ok(None);
        };
        entry
            .map(|v| serde_json::from_slice(&v).map_err(unavailable))
            .transpose()
    }

    /// Every task held, in no particular order.
    pub async fn all(&self) -> Result<Vec<TaskRecord>, CoreError> {
        let stored = ozone_nats::stored::last_per_subject(
            &self.client,
            TASK_STREAM,
            &bucket_subjects(TASK_BUCKET),
        )
        .await
        .map_err(unavailable)?;
        Ok(stored
            .iter()
            .filter(|s| !s.is_delete_marker())
            .filter_map(|s| match serde_json::from_slice(&s.payload) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(subject = %s.subject, "unreadable task record skipped: {e}");
                    None
                }
            })
            .collect())
    }
}

//! The retained phase stream (`OZONE_PHASE`): the last state each component announced, so a
//! component that joins late learns where the others stand without waiting for their next
//! heartbeat. Members read it by batch direct get (`stored.rs`), never through a consumer.

use crate::bus::BoxError;
use crate::stored::{last_per_subject, Stored, StoredError};
use async_nats::jetstream::{self, stream};
use ozone_bus_schemas::phase::PHASE_STREAM;
use ozone_bus_schemas::Subject;

#[derive(Debug, thiserror::Error)]
pub enum PhaseStreamError {
    #[error("phase stream {PHASE_STREAM}: {detail}")]
    Open {
        #[source]
        detail: BoxError,
    },
    #[error("phase stream {PHASE_STREAM} lacks direct gets and cannot be updated: {detail}")]
    Update {
        #[source]
        detail: BoxError,
    },
}

/// The stream's configuration: one message per subject, file storage, direct gets.
pub fn config() -> stream::Config {
    stream::Config {
        name: PHASE_STREAM.into(),
        description: Some("OZONE STUDIO: the last state of each component".into()),
        subjects: vec![
            Subject::phase_all().to_string(),
            Subject::phase_transitions().to_string(),
        ],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the stream if absent. One created before members read it by direct get is used as
/// it is and reported: only the core may update it ([`update`], run by `ozone up`).
pub async fn ensure(client: &async_nats::Client) -> Result<(), PhaseStreamError> {
    let js = jetstream::new(client.clone());
    let mut s = js
        .get_or_create_stream(config())
        .await
        .map_err(|e| PhaseStreamError::Open { detail: e.into() })?;
    let info = s
        .info()
        .await
        .map_err(|e| PhaseStreamError::Open { detail: e.into() })?;
    if !info.config.allow_direct {
        tracing::warn!(
            "phase stream {PHASE_STREAM} has no direct gets: retained states are not read \
             until `ozone up` updates it"
        );
    }
    Ok(())
}

/// Brings a stream created before direct gets to them (creating it when absent); returns
/// whether it changed anything. Only the core may.
pub async fn update(client: &async_nats::Client) -> Result<bool, PhaseStreamError> {
    ensure(client).await?;
    let js = jetstream::new(client.clone());
    let mut s = js
        .get_stream(PHASE_STREAM)
        .await
        .map_err(|e| PhaseStreamError::Open { detail: e.into() })?;
    let have = s
        .info()
        .await
        .map_err(|e| PhaseStreamError::Open { detail: e.into() })?
        .config
        .clone();
    if have.allow_direct {
        return Ok(false);
    }
    js.update_stream(stream::Config {
        allow_direct: true,
        ..have
    })
    .await
    .map_err(|e| PhaseStreamError::Update { detail: e.into() })?;
    Ok(true)
}

/// The last retained event of every component, oldest first (sealed as published).
pub async fn retained(client: &async_nats::Client) -> Result<Vec<Stored>, StoredError> {
    last_per_subject(client, PHASE_STREAM, Subject::phase_all().as_str()).await
}

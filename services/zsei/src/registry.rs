//! The methodology registry: every version of every methodology in the JetStream key-value
//! bucket `ozone-methodologies`, under `<name>.<version>`, as a JSON [`MethodologyRecord`].
//!
//! A version, once stored, keeps its document: registering the same document again is a
//! no-op, another document under the same version is refused. Deprecating rewrites the
//! record (compare-and-set on its revision) with `deprecated` set. Nothing is ever deleted
//! (the bucket denies it). The default version of a name is its highest non-deprecated one.

use async_nats::jetstream::kv;
use ozone_bus_schemas::streams::{bucket_subjects, METHODOLOGY_BUCKET, METHODOLOGY_STREAM};
use ozone_bus_schemas::zsei::{
    DocumentFormat, FieldProblem, MethodologyRecord, MethodologySummary, ZseiError,
};
use ozone_methodology::Methodology;
use ozone_nats::buckets::METHODOLOGY_BUCKET_SPEC;

/// The registry over its bucket.
#[derive(Clone)]
pub struct Registry {
    store: kv::Store,
    client: async_nats::Client,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({METHODOLOGY_BUCKET})")
    }
}

fn store_err(e: impl std::fmt::Display) -> ZseiError {
    ZseiError::Store {
        detail: e.to_string(),
    }
}

fn key(name: &str, version: &str) -> String {
    format!("{name}.{version}")
}

impl Registry {
    /// Opens the bucket, creating it hardened when absent.
    pub async fn open(client: &async_nats::Client) -> Result<Registry, ZseiError> {
        let store = METHODOLOGY_BUCKET_SPEC
            .open(client)
            .await
            .map_err(store_err)?;
        Ok(Registry {
            store,
            client: client.clone(),
        })
    }

    /// Validates and stores a document; returns the stored record.
    pub async fn register(
        &self,
        format: DocumentFormat,
        document: &str,
        registered_by: &str,
        now_ms: u64,
    ) -> Result<MethodologyRecord, ZseiError> {
        let m = ozone_methodology::parse_valid(document, format).map_err(|problems| {
            ZseiError::InvalidMethodology {
                problems: problems
                    .0
                    .into_iter()
                    .map(|p| FieldProblem {
                        field: p.field,
                        problem: p.problem,
                    })
                    .collect(),
            }
        })?;
        // Stored as canonical JSON whatever it was written in: one document per version.
        let canonical = serde_json::to_string(&m).map_err(store_err)?;
        let record = MethodologyRecord {
            name: m.name.clone(),
            version: m.version.clone(),
            document: canonical,
            deprecated: false,
            registered_by: registered_by.to_string(),
            registered_at_ms: now_ms,
        };
        let value = serde_json::to_vec(&record).map_err(store_err)?;
        match self
            .store
            .create(key(&m.name, &m.version), value.into())
            .await
        {
            Ok(_) => Ok(record),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let existing = self.get(&m.name, Some(&m.version)).await?;
                if existing.document == record.document {
                    Ok(existing)
                } else {
                    Err(ZseiError::VersionTaken {
                        name: m.name,
                        version: m.version,
                    })
                }
            }
            Err(e) => Err(store_err(e)),
        }
    }

    /// One version, or the default one.
    pub async fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<MethodologyRecord, ZseiError> {
        let not_found = || ZseiError::NotFound {
            name: name.to_string(),
            version: version.map(str::to_string),
        };
        let version = match version {
            Some(v) => v.to_string(),
            None => self
                .all()
                .await?
                .into_iter()
                .find(|s| s.name == name && s.default)
                .map(|s| s.version)
                .ok_or_else(not_found)?,
        };
        Ok(self.entry(name, &version).await?.ok_or_else(not_found)?.0)
    }

    async fn entry(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<(MethodologyRecord, u64)>, ZseiError> {
        // A name or version that cannot be a key names nothing stored.
        let Ok(Some(e)) = self.store.entry(key(name, version)).await.map_err(|e| {
            tracing::debug!("{e}");
        }) else {
            return Ok(None);
        };
        if e.operation != kv::Operation::Put {
            return Ok(None);
        }
        let record = serde_json::from_slice(&e.value).map_err(store_err)?;
        Ok(Some((record, e.revision)))
    }

    /// Every stored version, sorted by name then version, with each name's default marked.
    pub async fn all(&self) -> Result<Vec<MethodologySummary>, ZseiError> {
        let stored = ozone_nats::stored::last_per_subject(
            &self.client,
            METHODOLOGY_STREAM,
            &bucket_subjects(METHODOLOGY_BUCKET),
        )
        .await
        .map_err(store_err)?;
        let mut out: Vec<(semver::Version, MethodologySummary)> = Vec::new();
        for s in stored.iter().filter(|s| !s.is_delete_marker()) {
            let record: MethodologyRecord = match serde_json::from_slice(&s.payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(subject = %s.subject, "unreadable registry entry skipped: {e}");
                    continue;
                }
            };
            let (Ok(version), Ok(m)) = (
                semver::Version::parse(&record.version),
                serde_json::from_str::<Methodology>(&record.document),
            ) else {
                tracing::warn!(subject = %s.subject, "unreadable registry entry skipped");
                continue;
            };
            out.push((
                version,
                MethodologySummary {
                    name: record.name,
                    version: record.version,
                    description: m.description,
                    tags: m.tags,
                    deprecated: record.deprecated,
                    default: false,
                },
            ));
        }
        out.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0)));
        // The highest non-deprecated version of each name is its default.
        let mut i = out.len();
        let mut seen: Option<String> = None;
        while i > 0 {
            i -= 1;
            let (_, s) = &mut out[i];
            if seen.as_deref() != Some(s.name.as_str()) && !s.deprecated {
                s.default = true;
                seen = Some(s.name.clone());
            }
        }
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    /// Marks a version deprecated (idempotent).
    pub async fn deprecate(&self, name: &str, version: &str) -> Result<(), ZseiError> {
        let (mut record, revision) =
            self.entry(name, version)
                .await?
                .ok_or_else(|| ZseiError::NotFound {
                    name: name.to_string(),
                    version: Some(version.to_string()),
                })?;
        if record.deprecated {
            return Ok(());
        }
        record.deprecated = true;
        let value = serde_json::to_vec(&record).map_err(store_err)?;
        self.store
            .update(key(name, version), value.into(), revision)
            .await
            .map_err(store_err)?;
        Ok(())
    }
}

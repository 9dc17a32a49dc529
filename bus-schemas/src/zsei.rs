//! ZSEI's operations: the methodology registry (`zsei.methodology.*`).
//!
//! A methodology travels as its document's text (JSON or TOML, `docs/methodologies.md`):
//! ZSEI parses and validates it itself, so a refusal can name the field at fault instead of
//! being a decoding error of the whole message.

use crate::operation::{Limits, Operation, OperationSpec, Refusal, ReplyKind};
use crate::table::Party;
use crate::Component;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const METHODOLOGY_REGISTER: &str = "methodology.register";
pub const METHODOLOGY_GET: &str = "methodology.get";
pub const METHODOLOGY_LIST: &str = "methodology.list";
pub const METHODOLOGY_DEPRECATE: &str = "methodology.deprecate";

/// The largest methodology document accepted, in bytes of text.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// How a methodology document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentFormat {
    Json,
    Toml,
}

/// `zsei.methodology.register`: a new methodology, or a new version of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterRequest {
    pub format: DocumentFormat,
    pub document: String,
}

/// A stored methodology version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MethodologyRecord {
    pub name: String,
    pub version: String,
    /// The validated document, as canonical JSON (the format the registry stores).
    pub document: String,
    pub deprecated: bool,
    /// Who registered it (the authenticated sender's key-directory name).
    pub registered_by: String,
    /// When, in Unix milliseconds.
    pub registered_at_ms: u64,
}

/// One line of `zsei.methodology.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MethodologySummary {
    pub name: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
    pub deprecated: bool,
    /// The version a request naming only the methodology gets: its newest non-deprecated one.
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegisterReply {
    /// Stored (or already stored with exactly this document: registering is idempotent).
    Registered {
        name: String,
        version: String,
    },
    Failed(ZseiError),
}

/// `zsei.methodology.get`: one version, or without `version` the default one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetRequest {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GetReply {
    Found(MethodologyRecord),
    Failed(ZseiError),
}

/// `zsei.methodology.list`: every version of every methodology.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ListRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListReply {
    Listed(Vec<MethodologySummary>),
    Failed(ZseiError),
}

/// `zsei.methodology.deprecate`: a version stays readable by version but is no longer the
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeprecateRequest {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeprecateReply {
    Deprecated { name: String, version: String },
    Failed(ZseiError),
}

/// One thing wrong with a methodology document, named by its field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// Why ZSEI refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ZseiError {
    /// The document is not a valid methodology: each problem names its field
    /// (`steps[2].call`).
    #[error("invalid methodology: {}", problems.iter().map(|p| format!("{}: {}", p.field, p.problem)).collect::<Vec<_>>().join("; "))]
    InvalidMethodology { problems: Vec<FieldProblem> },
    #[error("no methodology {name}{}", version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default())]
    NotFound {
        name: String,
        version: Option<String>,
    },
    /// This name and version hold another document; a change needs a new version.
    #[error("{name} {version} is registered with another document; register a new version")]
    VersionTaken { name: String, version: String },
    /// The request itself (not the document) was refused: too large, malformed, not allowed.
    #[error("{detail}")]
    Invalid { detail: String },
    #[error("the registry cannot be read or written: {detail}")]
    Store { detail: String },
}

impl From<Refusal> for ZseiError {
    fn from(r: Refusal) -> ZseiError {
        ZseiError::Invalid {
            detail: r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are maps tagged by `kind` (no newtype variants, which a tagged encoding cannot
    /// carry): each one encodes.
    #[test]
    fn every_error_encodes() {
        let s = || "x".to_string();
        for e in [
            ZseiError::InvalidMethodology {
                problems: vec![FieldProblem {
                    field: s(),
                    problem: s(),
                }],
            },
            ZseiError::NotFound {
                name: s(),
                version: None,
            },
            ZseiError::VersionTaken {
                name: s(),
                version: s(),
            },
            ZseiError::Invalid { detail: s() },
            ZseiError::Store { detail: s() },
        ] {
            let reply = GetReply::Failed(e.clone());
            let bytes = rmp_serde::to_vec_named(&reply).unwrap_or_default();
            let back: Result<GetReply, _> = rmp_serde::from_slice(&bytes);
            assert_eq!(back.ok(), Some(reply), "{e:?}");
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Register;

impl Operation for Register {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Zsei,
        name: METHODOLOGY_REGISTER,
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            // The document plus the envelope and the request's own fields.
            max_request_bytes: MAX_DOCUMENT_BYTES + 4 * 1024,
        },
        doc: "Validates a methodology document and stores it as a new version.",
    };
    type Request = RegisterRequest;
    type Reply = RegisterReply;
    type Error = ZseiError;

    fn failed(e: ZseiError) -> Option<RegisterReply> {
        Some(RegisterReply::Failed(e))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Get;

impl Operation for Get {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Zsei,
        name: METHODOLOGY_GET,
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 4 * 1024,
        },
        doc: "One stored methodology version (the default one when no version is named).",
    };
    type Request = GetRequest;
    type Reply = GetReply;
    type Error = ZseiError;

    fn failed(e: ZseiError) -> Option<GetReply> {
        Some(GetReply::Failed(e))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct List;

impl Operation for List {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Zsei,
        name: METHODOLOGY_LIST,
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 4 * 1024,
        },
        doc: "Every stored methodology version, with which one is each name's default.",
    };
    type Request = ListRequest;
    type Reply = ListReply;
    type Error = ZseiError;

    fn failed(e: ZseiError) -> Option<ListReply> {
        Some(ListReply::Failed(e))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Deprecate;

impl Operation for Deprecate {
    const SPEC: OperationSpec = OperationSpec {
        component: Component::Zsei,
        name: METHODOLOGY_DEPRECATE,
        reply: ReplyKind::One,
        callers: Party::Callers,
        limits: Limits {
            max_request_bytes: 4 * 1024,
        },
        doc: "Marks a version deprecated: still readable by version, no longer the default.",
    };
    type Request = DeprecateRequest;
    type Reply = DeprecateReply;
    type Error = ZseiError;

    fn failed(e: ZseiError) -> Option<DeprecateReply> {
        Some(DeprecateReply::Failed(e))
    }
}

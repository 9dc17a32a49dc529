//! `zsei.md`: ZSEI's methodology registry operations.

use super::spark::spec_row;
use super::{header, Message};
use crate::operation::Operation;
use crate::zsei::{
    Deprecate, DeprecateReply, DeprecateRequest, DocumentFormat, FieldProblem, Get, GetReply,
    GetRequest, List, ListReply, ListRequest, MethodologyRecord, MethodologySummary, Register,
    RegisterReply, RegisterRequest, ZseiError, MAX_DOCUMENT_BYTES,
};
use std::fmt::Write;

fn record() -> MethodologyRecord {
    MethodologyRecord {
        name: "echo".into(),
        version: "1.0.0".into(),
        document: r#"{"name":"echo","version":"1.0.0","description":"Say it back.","tags":[],"principles":[],"inputs":{"text":{"type":"text","required":null,"default":null,"description":""}},"steps":[{"id":"say","call":"spark.generate","with":{"prompt":{"raw":"{{ inputs.text }}"}},"depends_on":[],"when":null,"timeout":null,"retry":null,"check":null,"requires_approval":false,"side_effects":false}],"outputs":{"text":"{{ steps.say.output.text }}"}}"#.into(),
        deprecated: false,
        registered_by: "urn:ozone:operator:console".into(),
        registered_at_ms: 1_764_000_000_000,
    }
}

fn register() -> String {
    let mut out = Message {
        name: "RegisterRequest",
        subject: "zsei.methodology.register",
        about: "The document as text, JSON or TOML (docs/methodologies.md); ZSEI parses and \
                validates it itself, so each problem can name its field.",
    }
    .render(&[(
        "",
        RegisterRequest {
            format: DocumentFormat::Toml,
            document: "name = \"echo\"\nversion = \"1.0.0\"\n…".into(),
        },
    )]);
    out.push_str(
        &Message {
            name: "RegisterReply",
            subject: "the requester's inbox",
            about: "`registered`, also when exactly this document is already stored under its \
                    version; or `failed`.",
        }
        .render(&[
            (
                "registered",
                RegisterReply::Registered {
                    name: "echo".into(),
                    version: "1.0.0".into(),
                },
            ),
            (
                "refused, every problem with its field",
                RegisterReply::Failed(ZseiError::InvalidMethodology {
                    problems: vec![FieldProblem {
                        field: "steps[1].call".into(),
                        problem: "no component offers `spark.teleport` (…)".into(),
                    }],
                }),
            ),
        ]),
    );
    out
}

fn get() -> String {
    let mut out = Message {
        name: "GetRequest",
        subject: "zsei.methodology.get",
        about: "Without `version`, the name's default version (its highest non-deprecated one).",
    }
    .render(&[(
        "",
        GetRequest {
            name: "echo".into(),
            version: None,
        },
    )]);
    out.push_str(
        &Message {
            name: "GetReply",
            subject: "the requester's inbox",
            about: "The stored record: the document as canonical JSON text.",
        }
        .render(&[
            ("found", GetReply::Found(record())),
            (
                "not found",
                GetReply::Failed(ZseiError::NotFound {
                    name: "echo".into(),
                    version: Some("9.0.0".into()),
                }),
            ),
        ]),
    );
    out
}

fn list() -> String {
    let mut out = Message {
        name: "ListRequest",
        subject: "zsei.methodology.list",
        about: "An empty map.",
    }
    .render(&[("", ListRequest {})]);
    out.push_str(
        &Message {
            name: "ListReply",
            subject: "the requester's inbox",
            about: "Every stored version, by name then version.",
        }
        .render(&[(
            "",
            ListReply::Listed(vec![MethodologySummary {
                name: "echo".into(),
                version: "1.0.0".into(),
                description: "Say it back.".into(),
                tags: vec![],
                deprecated: false,
                default: true,
            }]),
        )]),
    );
    out
}

fn deprecate() -> String {
    let mut out = Message {
        name: "DeprecateRequest",
        subject: "zsei.methodology.deprecate",
        about: "Idempotent.",
    }
    .render(&[(
        "",
        DeprecateRequest {
            name: "echo".into(),
            version: "1.0.0".into(),
        },
    )]);
    out.push_str(
        &Message {
            name: "DeprecateReply",
            subject: "the requester's inbox",
            about: "",
        }
        .render(&[(
            "",
            DeprecateReply::Deprecated {
                name: "echo".into(),
                version: "1.0.0".into(),
            },
        )]),
    );
    out
}

pub(super) fn page() -> String {
    let mut out = header(
        "ZSEI messages",
        "The methodology registry (docs/methodologies.md). Callers: the components whose \
         `calls` include ZSEI, and operators (docs/subjects.md). Each answer is one reply on \
         the requester's inbox.",
    );
    out.push_str(
        "\n## Operations\n\n| subject | answer | largest request | what it does |\n|---|---|---|---|\n",
    );
    for spec in [Register::SPEC, Get::SPEC, List::SPEC, Deprecate::SPEC] {
        spec_row(&mut out, &spec);
    }
    let _ = write!(
        out,
        "\nA document is at most {MAX_DOCUMENT_BYTES} bytes. Errors are maps tagged by `kind`: \
         `invalid_methodology` (with `problems`), `not_found`, `version_taken`, `invalid` (the \
         request itself), `store`.\n\n"
    );
    out.push_str("## `zsei.methodology.register`\n\n");
    out.push_str(&register());
    out.push_str("## `zsei.methodology.get`\n\n");
    out.push_str(&get());
    out.push_str("## `zsei.methodology.list`\n\n");
    out.push_str(&list());
    out.push_str("## `zsei.methodology.deprecate`\n\n");
    out.push_str(&deprecate());
    out
}

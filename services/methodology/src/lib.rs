//! The methodology format (docs/methodologies.md): a named, versioned program of steps, each a
//! call to a component operation, run by the OZONE STUDIO core and stored by ZSEI.
//!
//! - [`format`]: the document's types, from which `methodologies/methodology.schema.json` is
//!   generated ([`schema`]).
//! - [`parse`]: JSON or TOML text to a [`Methodology`], naming the field that does not parse.
//! - [`validate`]: everything registration refuses (names, versions, inputs, unknown or
//!   forbidden calls, cycles, undefined references, template errors), each naming its field.
//! - [`graph`]: the steps' dependency graph (cycles named, the order steps may start in).
//! - [`templates`]: the template engine (minijinja) in which `with`, `when` and `outputs` are
//!   written; input values are data, never templates.

pub mod format;
pub mod graph;
pub mod problem;
pub mod schema;
pub mod templates;
mod validate;

pub use format::{Check, Input, InputType, Methodology, OnFail, Retry, Step};
pub use problem::{Problem, Problems};
pub use validate::validate;

use ozone_bus_schemas::zsei::DocumentFormat;

/// Parses a document; a syntax error or a field of the wrong shape is named by its path.
pub fn parse(text: &str, format: DocumentFormat) -> Result<Methodology, Problem> {
    match format {
        DocumentFormat::Json => {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                Problem::new(field_or_document(&field), e.into_inner().to_string())
            })
        }
        DocumentFormat::Toml => {
            let de = toml::Deserializer::parse(text)
                .map_err(|e| Problem::new("document", e.message().to_string()))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let field = e.path().to_string();
                Problem::new(
                    field_or_document(&field),
                    e.into_inner().message().to_string(),
                )
            })
        }
    }
}

/// Parses and validates: what registration and `ozone methodology validate` run.
pub fn parse_valid(text: &str, format: DocumentFormat) -> Result<Methodology, Problems> {
    let m = parse(text, format).map_err(|p| Problems(vec![p]))?;
    validate(&m)?;
    Ok(m)
}

/// The format a file name implies (`.json`, `.toml`).
pub fn format_of(path: &std::path::Path) -> Option<DocumentFormat> {
    match path.extension()?.to_str()? {
        "json" => Some(DocumentFormat::Json),
        "toml" => Some(DocumentFormat::Toml),
        _ => None,
    }
}

fn field_or_document(path: &str) -> &str {
    // serde_path_to_error writes `.` for the root and `?` where it cannot tell.
    if path.is_empty() || path == "." || path == "?" {
        "document"
    } else {
        path
    }
}

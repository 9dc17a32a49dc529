//! The message reference (`docs/messages/`), generated from the message types themselves:
//! for each message, its subject, who sends it, an example value encoded exactly as the bus
//! encodes it (MessagePack, hex) with its JSON rendering, and the type's JSON Schema. `ozone
//! schema docs` writes the pages; a unit test fails when a committed page is stale, so the
//! reference cannot drift from the code.

mod audit;
mod index;
mod lifecycle;
mod spark;
mod zsei;

use schemars::JsonSchema;
use serde::Serialize;
use std::fmt::Write;

/// One generated file under `docs/messages/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The file name, e.g. `spark.md`.
    pub file: &'static str,
    pub text: String,
}

/// Every page of the reference.
pub fn pages() -> Vec<Page> {
    vec![
        Page {
            file: "README.md",
            text: index::page(),
        },
        Page {
            file: "lifecycle.md",
            text: lifecycle::page(),
        },
        Page {
            file: "spark.md",
            text: spark::page(),
        },
        Page {
            file: "zsei.md",
            text: zsei::page(),
        },
        Page {
            file: "audit.md",
            text: audit::page(),
        },
    ]
}

const GENERATED: &str =
    "Generated from the Rust types in `bus-schemas/` by `ozone schema docs`; do not edit.";

/// A page's title and opening paragraph.
fn header(title: &str, intro: &str) -> String {
    format!("# {title}\n\n{GENERATED} Encoding rules and the envelope: [README.md](README.md).\n\n{intro}\n")
}

/// The payload bytes the bus seals for `value`: MessagePack, structs as maps with field names.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// `bytes` as lowercase hex, 32 bytes to a line.
fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One example: its MessagePack bytes and its JSON rendering.
fn example<T: Serialize>(caption: &str, value: &T) -> String {
    let bytes = encode(value);
    let json = serde_json::to_string_pretty(value).unwrap_or_default();
    format!(
        "{caption} — MessagePack, {} bytes:\n\n```\n{}\n```\n\nthe same value as JSON:\n\n```json\n{json}\n```\n\n",
        bytes.len(),
        hex_lines(&bytes)
    )
}

/// The type's JSON Schema (draft 2020-12), folded.
fn schema<T: JsonSchema>() -> String {
    let schema = schemars::schema_for!(T);
    let json = serde_json::to_string_pretty(&schema).unwrap_or_default();
    format!(
        "<details><summary>JSON Schema of <code>{}</code></summary>\n\n```json\n{json}\n```\n\n</details>\n\n",
        T::schema_name()
    )
}

/// A message: heading, what it is for, its examples and its schema.
struct Message<'a> {
    name: &'a str,
    subject: &'a str,
    about: &'a str,
}

impl Message<'_> {
    fn render<T: Serialize + JsonSchema>(&self, examples: &[(&str, T)]) -> String {
        let mut out = String::new();
        // A subject in code type; a description ("the requester's inbox") as prose.
        let on = if self.subject.contains(' ') {
            self.subject.to_string()
        } else {
            format!("`{}`", self.subject)
        };
        let _ = write!(out, "### `{}` on {on}\n\n{}\n\n", self.name, self.about);
        for (caption, value) in examples {
            out.push_str(&example(caption, value));
        }
        out.push_str(&schema::<T>());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(file: &str) -> Option<&'static str> {
        match file {
            "README.md" => Some(include_str!("../../../docs/messages/README.md")),
            "lifecycle.md" => Some(include_str!("../../../docs/messages/lifecycle.md")),
            "spark.md" => Some(include_str!("../../../docs/messages/spark.md")),
            "zsei.md" => Some(include_str!("../../../docs/messages/zsei.md")),
            "audit.md" => Some(include_str!("../../../docs/messages/audit.md")),
            _ => None,
        }
    }

    #[test]
    fn the_committed_reference_is_current() {
        for page in pages() {
            assert_eq!(
                committed(page.file),
                Some(page.text.as_str()),
                "docs/messages/{} is stale: run `ozone schema docs`",
                page.file
            );
        }
    }

    #[test]
    fn examples_are_what_the_bus_sends() {
        // A struct is a map keyed by field name (a client may rely on names, not order).
        let ping = crate::phase::Ping {
            from: "bridge".into(),
        };
        let bytes = encode(&ping);
        assert_eq!(bytes[0], 0x81, "a one-entry map");
        assert_eq!(&bytes[1..6], b"\xa4from");
    }
}

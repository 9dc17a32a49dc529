//! The JSON Schema of the methodology format, generated from [`crate::Methodology`] and
//! committed as `methodologies/methodology.schema.json` (a test fails when it is stale), so
//! editors and other tools check documents exactly as the registry parses them.

/// The schema, pretty-printed with a final newline.
pub fn json() -> String {
    let mut schema = schemars::schema_for!(crate::Methodology);
    schema.insert(
        "$id".into(),
        "https://ozone-studio.local/methodology.schema.json".into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Where the committed copy lives, relative to the workspace root.
pub const COMMITTED: &str = "methodologies/methodology.schema.json";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn the_committed_schema_is_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let committed = std::fs::read_to_string(root.join(super::COMMITTED)).unwrap_or_default();
        assert!(
            committed == super::json(),
            "{} is stale: run `ozone schema docs`",
            super::COMMITTED
        );
    }
}

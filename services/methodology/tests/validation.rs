//! What registration refuses, each with the field at fault; and the shipped methodologies,
//! which must pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::zsei::DocumentFormat;
use ozone_methodology::{parse, parse_valid, Problems};
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "name": "demo",
        "version": "1.0.0",
        "description": "A demonstration.",
        "inputs": { "text": { "type": "text" } },
        "steps": [
            { "id": "outline", "call": "spark.generate",
              "with": { "prompt": { "raw": "Outline: {{ inputs.text }}" } } },
            { "id": "summary", "call": "spark.generate", "depends_on": ["outline"],
              "with": { "prompt": { "raw": "{{ steps.outline.output.text }}" } } }
        ],
        "outputs": { "summary": "{{ steps.summary.output.text }}" }
    })
}

fn problems(doc: &serde_json::Value) -> Problems {
    parse_valid(&doc.to_string(), DocumentFormat::Json).unwrap_err()
}

/// The one problem of `doc`, as "field: problem".
fn only_problem(doc: &serde_json::Value) -> String {
    let p = problems(doc);
    assert_eq!(p.0.len(), 1, "{p}");
    p.0[0].to_string()
}

#[test]
fn the_base_document_and_the_shipped_methodologies_are_valid() {
    parse_valid(&base().to_string(), DocumentFormat::Json).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../methodologies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(format) = ozone_methodology::format_of(&path) else {
            continue;
        };
        if path.to_string_lossy().ends_with(".schema.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let m = parse_valid(&text, format).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(m.name.as_str()),
            "a shipped methodology's file is named after it"
        );
        n += 1;
    }
    assert!(n >= 2, "{n} methodologies shipped");
}

#[test]
fn a_cycle_is_refused_naming_its_steps() {
    let mut doc = base();
    doc["steps"][0]["depends_on"] = json!(["summary"]);
    let p = only_problem(&doc);
    assert!(p.starts_with("steps: "), "{p}");
    assert!(p.contains("outline → summary → outline"), "{p}");
}

#[test]
fn an_unknown_capability_is_refused() {
    let mut doc = base();
    doc["steps"][1]["call"] = json!("spark.teleport");
    let p = only_problem(&doc);
    assert!(
        p.starts_with("steps[1].call: no component offers `spark.teleport`"),
        "{p}"
    );
}

#[test]
fn undefined_references_are_refused() {
    let mut doc = base();
    doc["steps"][0]["with"]["prompt"]["raw"] = json!("{{ inputs.missing }}");
    let p = only_problem(&doc);
    assert!(p.starts_with("steps[0].with.prompt: "), "{p}");
    assert!(p.contains("no input `missing`"), "{p}");

    // A step's output read before it surely finished.
    let mut doc = base();
    doc["steps"][1]["depends_on"] = json!([]);
    let p = only_problem(&doc);
    assert!(
        p.contains("`steps.outline.output.text`") && p.contains("depends_on"),
        "{p}"
    );

    let mut doc = base();
    doc["steps"][1]["depends_on"] = json!(["ghost"]);
    let p = problems(&doc).to_string();
    assert!(
        p.contains("steps[1].depends_on[0]: no step has id `ghost`"),
        "{p}"
    );

    let mut doc = base();
    doc["outputs"]["summary"] = json!("{{ secrets.key }}");
    let p = only_problem(&doc);
    assert!(
        p.starts_with("outputs.summary: `secrets.key`: unknown name"),
        "{p}"
    );
}

#[test]
fn a_template_error_is_refused_naming_the_field() {
    let mut doc = base();
    doc["steps"][0]["with"]["prompt"]["raw"] = json!("Outline: {{ inputs.text ");
    let p = only_problem(&doc);
    assert!(p.starts_with("steps[0].with.prompt: template error"), "{p}");
    let mut doc = base();
    doc["steps"][1]["when"] = json!("steps.outline.output.text ==");
    let p = only_problem(&doc);
    assert!(p.starts_with("steps[1].when: template error"), "{p}");
}

#[test]
fn a_malformed_document_is_refused_naming_the_field() {
    let p = parse("{ \"name\": \"demo\", ", DocumentFormat::Json).unwrap_err();
    assert_eq!(p.field, "document");
    let mut doc = base();
    doc["steps"][1]["cal"] = json!("spark.generate");
    let p = parse(&doc.to_string(), DocumentFormat::Json).unwrap_err();
    assert_eq!(p.field, "steps[1].cal", "{p}");
    assert!(p.problem.contains("unknown field `cal`"), "{p}");
    let mut doc = base();
    doc["steps"][0]["retry"] = json!({ "attempts": "three" });
    let p = parse(&doc.to_string(), DocumentFormat::Json).unwrap_err();
    assert_eq!(p.field, "steps[0].retry.attempts", "{p}");
    let p = parse("name = \"x\"\nversion = 1\n", DocumentFormat::Toml).unwrap_err();
    assert_eq!(p.field, "version", "{p}");
}

#[test]
fn fields_are_checked_one_by_one() {
    let mut doc = base();
    doc["name"] = json!("Demo Methodology");
    doc["version"] = json!("1.0");
    doc["inputs"]["n"] = json!({ "type": "number", "default": "ten" });
    doc["steps"][0]["timeout"] = json!("soon");
    doc["steps"][0]["retry"] = json!({ "attempts": 0 });
    doc["steps"][1]["check"] = json!({ "regex": "([", "on_fail": "retry" });
    let p = problems(&doc);
    let fields: Vec<&str> = p.0.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "name",
            "version",
            "inputs.n.default",
            "steps[0].timeout",
            "steps[0].retry.attempts",
            "steps[1].check.regex",
            "steps[1].check.on_fail",
        ],
        "{p}"
    );
}

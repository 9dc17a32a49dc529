//! Invariants of the source tree that ARCHITECTURE.md promises, checked by reading the code.
//!
//! "No crate outside `bus-schemas` spells a subject": every subject is built by a
//! constructor of `bus_schemas::Subject`, so the subject table stays the single source of
//! permissions, recipients and docs. A string literal in non-test code that starts like a
//! subject (`spark.`, `ecosystem.`, `$JS.`, `_INBOX.`…) is a second spelling.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::Component;
use std::path::{Path, PathBuf};

/// Subject roots besides the component tokens.
const ROOTS: [&str; 7] = [
    "$JS.",
    "$KV.",
    "$SRV.",
    "$O.",
    "_INBOX.",
    "ecosystem.",
    "audit.",
];

/// Endings that make a literal a file name (`spark.log`, `ecosystem.env`), not a subject.
const FILE_ENDINGS: [&str; 9] = [
    ".log", ".env", ".toml", ".json", ".key", ".pem", ".crt", ".target", ".service",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The `.rs` files under `dir`, skipping test, fuzz and build directories.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "fuzz" | "target" | "benches") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The string literals of one line (a plain scan: enough for this code base's style).
fn literals(line: &str) -> Vec<&str> {
    let code = line.split("//").next().unwrap_or("");
    code.split('"').skip(1).step_by(2).collect()
}

fn spells_a_subject(literal: &str) -> bool {
    let mut roots: Vec<String> = ROOTS.iter().map(|r| r.to_string()).collect();
    roots.extend(Component::ALL.iter().map(|c| format!("{}.", c.token())));
    roots.iter().any(|r| literal.starts_with(r.as_str()))
        && !FILE_ENDINGS.iter().any(|e| literal.ends_with(e))
        && !literal.contains(' ')
}

/// `(file:line, literal)` for every subject spelled in the non-test code under `crate_dir`.
fn spelled_subjects(crate_dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    sources(crate_dir, &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            for lit in literals(line).into_iter().filter(|l| spells_a_subject(l)) {
                found.push((format!("{}:{}", file.display(), n + 1), lit.to_string()));
            }
        }
    }
    found
}

#[test]
fn the_scan_finds_a_spelled_subject() {
    assert_eq!(
        literals(r#"client.publish("spark.bench", x); // "audit.x""#),
        vec!["spark.bench"]
    );
    assert!(spells_a_subject("spark.bench"));
    assert!(spells_a_subject("$JS.API.STREAM.INFO.OZONE_PHASE"));
    assert!(spells_a_subject("ozone-studio.phase"));
    assert!(!spells_a_subject("spark.log"));
    assert!(!spells_a_subject("sparkle.x"));
    assert!(!spells_a_subject("ecosystem.env"));
}

#[test]
fn no_crate_outside_bus_schemas_spells_a_subject() {
    let root = workspace();
    let mut found = Vec::new();
    for dir in ["bootstrap", "nats", "security", "services", "tests/src"] {
        found.extend(spelled_subjects(&root.join(dir)));
    }
    assert!(
        found.is_empty(),
        "subjects spelled outside bus-schemas (use a bus_schemas::Subject constructor):\n{}",
        found
            .iter()
            .map(|(at, lit)| format!("  {at}: \"{lit}\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The scan reaches the code it guards: bus-schemas itself spells subjects.
    assert!(!spelled_subjects(&root.join("bus-schemas/src")).is_empty());
}

/// The `ozone` command's shared modules (everything outside `bootstrap/src/cmd/`, but the
/// argument parser and `main`) that name a command module: each would be an import cycle
/// waiting to happen, since commands use the shared modules.
fn shared_modules_using_commands() -> Vec<String> {
    let src = workspace().join("bootstrap/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files
        .into_iter()
        .filter(|f| !f.starts_with(src.join("cmd")))
        .filter(|f| !f.ends_with("main.rs") && !f.ends_with("cli.rs"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains("crate::cmd")
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn the_commands_shared_modules_do_not_use_commands() {
    let offenders = shared_modules_using_commands();
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// Every connection the `ozone` command makes goes through `connect.rs`.
#[test]
fn the_command_connects_in_one_place() {
    let src = workspace().join("bootstrap/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let copies: Vec<String> = files
        .into_iter()
        .filter(|f| !f.ends_with("connect.rs"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains("ozone_nats::connect(")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(copies.is_empty(), "{copies:#?}");
}

/// The `ozone` command joins the bus (key ring, key entry, sealed messages) only as the
/// console operator (`connect::cli_bus`), never under a component's name — except the
/// supervisor's announcer, which speaks for its own child processes, and the SPARK benchmark,
/// which plays BRIDGE in a scratch home of its own.
#[test]
fn the_command_joins_the_bus_as_the_operator() {
    let src = workspace().join("bootstrap/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let allowed = ["connect.rs", "supervisor/mod.rs", "cmd/bench_spark.rs"];
    let joins: Vec<String> = files
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.contains("Bus::start(") || text.contains("Bus::start_announcer(")
        })
        .filter(|f| !allowed.iter().any(|a| f.ends_with(a)))
        .map(|f| f.display().to_string())
        .collect();
    assert!(joins.is_empty(), "{joins:#?}");
    let connect = std::fs::read_to_string(src.join("connect.rs")).unwrap();
    let cli_bus = connect
        .split("pub async fn cli_bus")
        .nth(1)
        .expect("connect.rs defines cli_bus");
    let body = cli_bus.split("\n}\n").next().unwrap_or_default();
    assert!(body.contains("console_operator()"), "{body}");
    assert!(!body.contains("Identity::component"), "{body}");
}

/// The `ozone` command links no model code: SPARK's engine (candle) stays in `ozone-spark`,
/// which the CLI runs for model files and the benchmark's baseline.
#[test]
fn the_command_links_no_model_code() {
    let manifest = std::fs::read_to_string(workspace().join("bootstrap/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("ozone-spark ")
                || l.starts_with("ozone-spark=")
                || l.starts_with("candle")
        })
        .collect();
    assert!(deps.is_empty(), "{deps:?}");
}

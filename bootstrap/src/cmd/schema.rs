//! `ozone schema docs`: writes (or with `--check`, compares) the references generated from
//! the code — the subject table and, in `messages/` beside it, the message reference; and,
//! in `methodologies/` beside the docs folder, the methodology format's JSON Schema.

use std::path::{Path, PathBuf};

/// Writes or checks every generated file; returns how many were stale.
pub fn docs(subjects: &Path, check: bool) -> anyhow::Result<usize> {
    let docs_dir = subjects.parent().unwrap_or(Path::new("."));
    let messages_dir = docs_dir.join("messages");
    let mut files: Vec<(PathBuf, String)> =
        vec![(subjects.to_path_buf(), ozone_bus_schemas::table::markdown())];
    files.extend(
        ozone_bus_schemas::reference::pages()
            .into_iter()
            .map(|p| (messages_dir.join(p.file), p.text)),
    );
    let root = docs_dir.parent().unwrap_or(Path::new("."));
    files.push((
        root.join(ozone_methodology::schema::COMMITTED),
        ozone_methodology::schema::json(),
    ));
    let mut stale = 0;
    for (path, text) in files {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            println!("{} is up to date", path.display());
            continue;
        }
        stale += 1;
        if check {
            eprintln!("{} is out of date: run `ozone schema docs`", path.display());
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, text)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(stale)
}

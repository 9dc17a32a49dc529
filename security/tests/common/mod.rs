//! Shared test helpers.

/// A published test-vector file from `security/tests/vectors/` (copied from their published
/// sources, see `PROVENANCE.md` there; `$OZONE_TESTDATA_DIR` points elsewhere). Missing
/// vectors fail the test: they are never skipped.
pub fn vectors(name: &str) -> serde_json::Value {
    let dir = std::env::var_os("OZONE_TESTDATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors"));
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; the crypto test vectors live in security/tests/vectors (or set OZONE_TESTDATA_DIR)", path.display())
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

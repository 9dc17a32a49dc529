//! Discovery: every GGUF file and every safetensors model folder (with its `config.json`) in
//! the models folder, described from its own metadata.

use anyhow::Context;
use candle_core::quantized::gguf_file;
use ozone_bus_schemas::spark::{ModelInfo, ModelKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model found on disk and where it lives.
#[derive(Debug, Clone)]
pub struct DiscoveredModel {
    pub info: ModelInfo,
    pub path: PathBuf,
}

/// Every model in `dir`, sorted by name. Files that cannot be read are reported in the log
/// and skipped: one broken file must not hide the others.
pub fn discover(dir: &Path) -> Vec<DiscoveredModel> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden {
            continue;
        }
        let found = if path.extension().is_some_and(|e| e == "gguf") {
            describe_gguf(&path).map(Some)
        } else if path.join("config.json").is_file() {
            describe_safetensors(&path)
        } else {
            Ok(None)
        };
        match found {
            Ok(Some(m)) => out.push(m),
            Ok(None) => {}
            Err(e) => tracing::warn!("skipping {}: {e:#}", path.display()),
        }
    }
    out.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    out
}

fn name_of(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    file.strip_suffix(".gguf").unwrap_or(&file).to_string()
}

fn describe_gguf(path: &Path) -> anyhow::Result<DiscoveredModel> {
    let mut f = std::fs::File::open(path)?;
    let content = super::read_gguf(&mut f).context("not a readable GGUF file")?;
    let meta = |k: &str| content.metadata.get(k);
    let architecture = meta("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "unknown".into());
    let context_length = meta(&format!("{architecture}.context_length"))
        .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
        .unwrap_or(0);
    let parameters: u64 = content
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64)
        .sum();
    // The quantisation is the commonest type of the 2-D (matrix) tensors.
    let mut types: HashMap<String, usize> = HashMap::new();
    for t in content
        .tensor_infos
        .values()
        .filter(|t| t.shape.rank() == 2)
    {
        *types.entry(format!("{:?}", t.ggml_dtype)).or_default() += 1;
    }
    let quantization = types
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_else(|| "unknown".into());
    let has_tokenizer = meta("tokenizer.ggml.tokens").is_some();
    let size_bytes = std::fs::metadata(path)?.len();
    let complete = complete(path, size_bytes, gguf_data_end(&content));
    Ok(DiscoveredModel {
        info: ModelInfo {
            name: name_of(path),
            kind: ModelKind::Generation,
            format: "gguf".into(),
            served: complete && has_tokenizer && SERVED_GGUF.contains(&architecture.as_str()),
            architecture,
            parameters,
            quantization,
            context_length,
            file: path.display().to_string(),
            size_bytes,
        },
        path: path.to_path_buf(),
    })
}

/// Where a GGUF file's tensor data ends: the data section's start plus the furthest tensor's
/// offset and size.
fn gguf_data_end(content: &gguf_file::Content) -> u64 {
    let furthest = content
        .tensor_infos
        .values()
        .map(|t| {
            let blocks = t.shape.elem_count() / t.ggml_dtype.block_size();
            t.offset + (blocks * t.ggml_dtype.type_size()) as u64
        })
        .max()
        .unwrap_or(0);
    content.tensor_data_offset + furthest
}

/// Whether a weights file holds all the data its header describes. A file cut short (a copy
/// or download that stopped) is listed but never served: loading it would fail deep inside
/// the engine, or worse, read past what is there.
fn complete(path: &Path, size: u64, needed: u64) -> bool {
    if size < needed {
        tracing::warn!(
            "{}: truncated ({size} bytes, its header describes {needed}); not served",
            path.display()
        );
    }
    size >= needed
}

/// Architectures the generation engine loads (candle's quantized llama covers these).
const SERVED_GGUF: &[&str] = &["llama"];

#[derive(serde::Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    max_position_embeddings: Option<u64>,
}

#[derive(serde::Deserialize)]
struct TensorHeader {
    dtype: String,
    shape: Vec<u64>,
    /// Start and end of the tensor's bytes after the header.
    data_offsets: [u64; 2],
}

fn describe_safetensors(dir: &Path) -> anyhow::Result<Option<DiscoveredModel>> {
    let config: HfConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
        .context("config.json is not a model configuration")?;
    let Some(weights) = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
    else {
        return Ok(None);
    };
    // A safetensors file starts with an 8-byte little-endian header length and a JSON header.
    use std::io::Read;
    let mut f = std::fs::File::open(&weights)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    anyhow::ensure!(len < 100 << 20, "safetensors header of {len} bytes");
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header)?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)?;
    let mut parameters = 0u64;
    let mut data_end = 0u64;
    let mut dtypes: HashMap<String, usize> = HashMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let t: TensorHeader = serde_json::from_value(v)?;
        parameters += t.shape.iter().product::<u64>();
        data_end = data_end.max(t.data_offsets[1]);
        *dtypes.entry(t.dtype).or_default() += 1;
    }
    let architecture = config
        .model_type
        .or_else(|| config.architectures.and_then(|a| a.into_iter().next()))
        .unwrap_or_else(|| "unknown".into());
    let embedding = architecture == "bert";
    let size_bytes = std::fs::metadata(&weights)?.len();
    let complete = complete(&weights, size_bytes, 8 + len + data_end);
    Ok(Some(DiscoveredModel {
        info: ModelInfo {
            name: dir.file_name().unwrap_or_default().to_string_lossy().into(),
            kind: if embedding {
                ModelKind::Embedding
            } else {
                ModelKind::Generation
            },
            format: "safetensors".into(),
            served: complete && embedding && dir.join("tokenizer.json").is_file(),
            architecture,
            parameters,
            quantization: dtypes
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(t, _)| t)
                .unwrap_or_default(),
            context_length: config.max_position_embeddings.unwrap_or(0),
            file: weights.display().to_string(),
            size_bytes,
        },
        path: dir.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_folders_are_described_and_broken_files_skipped() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("broken.gguf"), b"GGUF but not really")?;
        std::fs::create_dir(dir.path().join(".sources"))?;
        let tiny = dir.path().join("tiny-bert");
        std::fs::create_dir(&tiny)?;
        std::fs::write(
            tiny.join("config.json"),
            r#"{"model_type": "bert", "max_position_embeddings": 512}"#,
        )?;
        // A safetensors file: header length, JSON header, 2×3 f32 of data.
        let header = br#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0u8; 24]);
        std::fs::write(tiny.join("model.safetensors"), file)?;

        let found = discover(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        let m = &found[0].info;
        assert_eq!(m.name, "tiny-bert");
        assert_eq!(m.kind, ModelKind::Embedding);
        assert_eq!((m.parameters, m.quantization.as_str()), (6, "F32"));
        assert_eq!(m.context_length, 512);
        assert!(!m.served, "no tokenizer.json: listed, not served");
        Ok(())
    }

    /// A GGUF the engine could serve: llama architecture, a vocabulary, one tensor.
    fn write_tiny_gguf(path: &Path) -> anyhow::Result<()> {
        use candle_core::quantized::QTensor;
        let arch = gguf_file::Value::String("llama".into());
        let tokens = gguf_file::Value::Array(vec![gguf_file::Value::String("a".into())]);
        let weights = candle_core::Tensor::zeros(
            (4, 32),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )?;
        let q = QTensor::quantize(&weights, candle_core::quantized::GgmlDType::Q8_0)?;
        let mut f = std::fs::File::create(path)?;
        gguf_file::write(
            &mut f,
            &[
                ("general.architecture", &arch),
                ("tokenizer.ggml.tokens", &tokens),
            ],
            &[("w", &q)],
        )?;
        Ok(())
    }

    #[test]
    fn finding_16_a_truncated_model_is_listed_but_not_served() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let whole = dir.path().join("whole.gguf");
        write_tiny_gguf(&whole)?;
        let cut = dir.path().join("cut.gguf");
        let bytes = std::fs::read(&whole)?;
        // Cut into the tensor data (the writer pads the end to its alignment, up to 31 bytes).
        std::fs::write(&cut, &bytes[..bytes.len() - 40])?;
        let found = discover(dir.path());
        let served = |name: &str| {
            found
                .iter()
                .find(|m| m.info.name == name)
                .map(|m| m.info.served)
        };
        assert_eq!(served("whole"), Some(true), "{found:?}");
        assert_eq!(served("cut"), Some(false), "{found:?}");

        // The same for a safetensors embedding model cut short.
        let bert = dir.path().join("bert");
        std::fs::create_dir(&bert)?;
        std::fs::write(bert.join("config.json"), r#"{"model_type": "bert"}"#)?;
        std::fs::write(bert.join("tokenizer.json"), "{}")?;
        let header = br#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0u8; 20]);
        std::fs::write(bert.join("model.safetensors"), file)?;
        let found = discover(dir.path());
        let bert = found.iter().find(|m| m.info.name == "bert");
        assert_eq!(bert.map(|m| m.info.served), Some(false), "{found:?}");
        Ok(())
    }

    #[test]
    fn finding_16_a_gguf_cut_inside_its_header_is_refused_in_one_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let whole = dir.path().join("whole.gguf");
        write_tiny_gguf(&whole)?;
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &std::fs::read(&whole)?[..40])?;
        // What the operator would have set to debug something else: candle then captures a
        // backtrace for this error and prints it with the message (35 frames in a release
        // build).
        std::env::set_var("RUST_BACKTRACE", "1");
        let e = describe_gguf(&cut).expect_err("a cut header was read");
        let text = format!("{e:#}");
        assert!(text.starts_with("not a readable GGUF file: "), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        // Whatever the process decided about backtraces earlier: a captured one is dropped.
        let with = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("cut".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(crate::models::without_backtrace(with).to_string(), "cut");
        Ok(())
    }
}

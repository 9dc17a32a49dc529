//! `ozone-spark baseline`: the models called in this process, no bus — what `ozone bench
//! spark` compares the bus with. It loads the served generation and embedding models on the
//! device a worker would pick, says `{"device": …}`, then answers each stdin line:
//! `decode <tokens>` → `{"tok_s": …}` (decode speed after the first token, the request
//! `ozone_spark_client::bench_request` builds, as the bus rounds use) and `embed <count>` →
//! `{"p50_ms": …}` (one sentence at a time).

use crate::engine::{compute_device, device_label, Embedder, TextModel};
use crate::models::discover;
use anyhow::Context;
use ozone_bus_schemas::spark::ModelKind;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

pub fn run(models: &Path) -> anyhow::Result<()> {
    let found = discover(models);
    let pick = |kind| {
        found
            .iter()
            .find(|m| m.info.served && m.info.kind == kind)
            .with_context(|| format!("no {kind:?} model in {}", models.display()))
    };
    let (text, embed) = (pick(ModelKind::Generation)?, pick(ModelKind::Embedding)?);
    let device = compute_device()?;
    let model = TextModel::load(&text.path, &text.info.name, &device)?;
    let embedder = Embedder::load(&embed.path, &embed.info.name, &device)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({ "device": device_label(&device) })
    )?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["decode", tokens] => serde_json::json!({ "tok_s": decode(&model, tokens.parse()?)? }),
            ["embed", count] => {
                serde_json::json!({ "p50_ms": embed_p50(&embedder, count.parse()?)? })
            }
            _ => anyhow::bail!("unknown baseline command {line:?}"),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

/// Decode tokens/s after the first token.
fn decode(model: &TextModel, tokens: u32) -> anyhow::Result<f64> {
    let req = ozone_spark_client::bench_request(tokens);
    let prompt = model
        .encode_prompt(&req.prompt)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut first_at = None;
    let g = model
        .generate(&req, &prompt, &AtomicBool::new(false), &mut |_| {
            first_at.get_or_insert_with(Instant::now);
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = first_at.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
    Ok(f64::from(g.completion_tokens.saturating_sub(1)) / secs.max(1e-9))
}

/// Median latency of embedding one sentence, `count` times.
fn embed_p50(embedder: &Embedder, count: usize) -> anyhow::Result<f64> {
    let mut lat = Vec::with_capacity(count);
    for i in 0..count {
        let t = Instant::now();
        embedder.embed(&[format!("a short sentence to embed, number {i}")])?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat.get(lat.len() / 2).copied().unwrap_or(0.0))
}

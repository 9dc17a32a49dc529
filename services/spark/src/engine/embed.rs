//! Sentence embeddings with a BERT-family safetensors model (all-MiniLM-L6-v2): mean pooling
//! over the attention mask, then L2 normalisation, as sentence-transformers does.

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

pub struct Embedder {
    pub name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    pub dimensions: usize,
    pub max_tokens: usize,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedder({}, {} dimensions)", self.name, self.dimensions)
    }
}

impl Embedder {
    pub fn load(dir: &Path, name: &str, device: &Device) -> anyhow::Result<Embedder> {
        let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)
            .context("config.json is not a BERT configuration")?;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .with_context(|| format!("cannot read {}/model.safetensors", dir.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)?;
        let model = BertModel::load(vb, &config)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("cannot read tokenizer.json: {e}"))?;
        // The shipped tokenizer pads to 128; pad each batch to its longest text instead, and
        // truncate at the model's position limit (all-MiniLM-L6-v2 was trained on 256).
        let max_tokens = config.max_position_embeddings.min(256);
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Embedder {
            name: name.to_string(),
            model,
            tokenizer,
            dimensions: config.hidden_size,
            max_tokens,
            device: device.clone(),
        })
    }

    /// One vector per text (norm 1), and the number of tokens that went through the model.
    pub fn embed(&self, texts: &[String]) -> anyhow::Result<(Vec<Vec<f32>>, usize)> {
        if texts.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("cannot tokenise: {e}"))?;
        let rows = encodings.len();
        let cols = encodings.first().map(|e| e.len()).unwrap_or(0);
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings.iter().flat_map(|e| f(e).to_vec()).collect()
        };
        let ids = Tensor::from_vec(flat(&|e| e.get_ids()), (rows, cols), &self.device)?;
        let types = Tensor::from_vec(flat(&|e| e.get_type_ids()), (rows, cols), &self.device)?;
        let mask_u32 = flat(&|e| e.get_attention_mask());
        let tokens = mask_u32.iter().filter(|&&m| m == 1).count();
        let mask = Tensor::from_vec(mask_u32, (rows, cols), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?;
        Ok((unit.to_vec2::<f32>()?, tokens))
    }
}

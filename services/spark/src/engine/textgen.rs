//! Text generation with a quantized llama-family GGUF (SmolLM2 and its relatives).

use super::stop::{Scan, StopScanner};
use super::template::ChatTemplate;
use anyhow::Context;
use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use ozone_bus_schemas::spark::{FinishReason, GenerateRequest, Prompt, SparkError};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

/// A loaded generation model. Requests share the weights; each clones the (cheap, reference
/// counted) model to get its own KV cache.
#[derive(Debug)]
pub struct TextModel {
    pub name: String,
    base: ModelWeights,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// Tokens that end the assistant's turn.
    end_ids: Vec<u32>,
    /// Positions the model can attend to (its own context, capped by candle's rope table).
    pub context: usize,
    device: Device,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub finish_reason: FinishReason,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Seconds from the start of `generate` to the first token.
    pub first_token_s: f64,
    /// Seconds of decoding after the first token.
    pub decode_s: f64,
}

/// What `generate` tells its caller after each token.
#[derive(Debug)]
pub enum Step<'a> {
    /// A piece of text to stream (never empty).
    Piece(&'a str),
    /// Still working (prefill or held-back text): nothing to stream yet.
    Working,
}

fn meta_string(ct: &gguf_file::Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok().cloned())
}

fn meta_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl TextModel {
    pub fn load(path: &Path, name: &str, device: &Device) -> anyhow::Result<TextModel> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let ct = crate::models::read_gguf(&mut file)
            .with_context(|| format!("{} is not a GGUF file", path.display()))?;
        let mut tokenizer = Tokenizer::from_gguf(&ct)
            .with_context(|| format!("{}: no usable tokenizer in its metadata", path.display()))?;
        if meta_string(&ct, "tokenizer.ggml.pre").as_deref() == Some("smollm") {
            // candle does not know SmolLM's pre-tokenizer and falls back to GPT-2's, which
            // adds a leading space and splits the chat template wrongly. This is the one in
            // SmolLM2's own tokenizer.json.
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        let tokens: Vec<String> = ct
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| {
                v.iter()
                    .filter_map(|t| t.to_string().ok().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let token_text = |id: Option<u32>| {
            id.and_then(|i| tokens.get(i as usize).cloned())
                .unwrap_or_default()
        };
        let eos_id = meta_u32(&ct, "tokenizer.ggml.eos_token_id");
        let bos = token_text(meta_u32(&ct, "tokenizer.ggml.bos_token_id"));
        let eos = token_text(eos_id);
        let mut end_ids: Vec<u32> = eos_id.into_iter().collect();
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_to_id(t) {
                end_ids.push(id);
            }
        }
        let template = meta_string(&ct, "tokenizer.chat_template")
            .map(|src| ChatTemplate::new(src, bos, eos))
            .transpose()?;
        let arch = meta_string(&ct, "general.architecture").unwrap_or_default();
        let context = meta_u32(&ct, &format!("{arch}.context_length"))
            .map(|c| c as usize)
            .unwrap_or(MAX_SEQ_LEN)
            .min(MAX_SEQ_LEN);
        let base = ModelWeights::from_gguf(ct, &mut file, device)
            .with_context(|| format!("cannot load the weights of {}", path.display()))?;
        Ok(TextModel {
            name: name.to_string(),
            base,
            tokenizer,
            template,
            end_ids,
            context,
            device: device.clone(),
        })
    }

    /// The prompt's tokens (chat rendered with the model's template).
    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, SparkError> {
        let text = match prompt {
            Prompt::Raw(t) => t.clone(),
            Prompt::Chat(messages) => {
                let Some(t) = &self.template else {
                    return Err(SparkError::Invalid(format!(
                        "{} has no chat template; send a raw prompt",
                        self.name
                    )));
                };
                t.render(messages)
                    .map_err(|e| SparkError::Invalid(format!("{e:#}")))?
            }
        };
        if text.trim().is_empty() {
            return Err(SparkError::Invalid("the prompt is empty".into()));
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| SparkError::Invalid(format!("cannot tokenise the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, SparkError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| SparkError::Internal(format!("cannot decode tokens: {e}")))
    }

    /// Generates from `prompt` (already encoded and checked against the context), calling
    /// `on_step` after the prefill and after every token; stops when `cancel` is set.
    pub fn generate(
        &self,
        req: &GenerateRequest,
        prompt: &[u32],
        cancel: &AtomicBool,
        on_step: &mut dyn FnMut(Step<'_>),
    ) -> Result<Generation, SparkError> {
        let internal = |e: candle_core::Error| SparkError::Internal(e.to_string());
        if prompt.len() >= self.context {
            return Err(SparkError::PromptTooLong {
                tokens: prompt.len() as u32,
                context: self.context as u32,
            });
        }
        let started = Instant::now();
        let mut model = self.base.clone();
        let sampling = if req.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = req.temperature;
            match (req.top_k, req.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(req.seed, sampling);
        let mut stops = StopScanner::new(&req.stop);
        let mut all: Vec<u32> = prompt.to_vec();
        let mut generated: Vec<u32> = Vec::new();
        let budget = (req.max_tokens as usize).min(self.context - prompt.len());
        let mut first_token_s = 0.0;
        let mut finish = FinishReason::Length;
        let mut final_text: Option<String> = None;
        let mut input = Tensor::new(prompt, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(internal)?;
        let mut pos = 0;
        while generated.len() < budget {
            if cancel.load(Ordering::Relaxed) {
                finish = FinishReason::Cancelled;
                break;
            }
            let logits = model
                .forward(&input, pos)
                .and_then(|l| l.squeeze(0))
                .map_err(internal)?;
            pos += input.dim(1).map_err(internal)?;
            let logits = if req.repeat_penalty != 1.0 {
                let from = all.len().saturating_sub(req.repeat_last_n);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    req.repeat_penalty,
                    &all[from..],
                )
                .map_err(internal)?
            } else {
                logits
            };
            let next = sampler.sample(&logits).map_err(internal)?;
            if generated.is_empty() {
                first_token_s = started.elapsed().as_secs_f64();
            }
            if self.end_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            generated.push(next);
            all.push(next);
            let text = self.decode(&generated)?;
            // A multi-byte character split across tokens decodes to U+FFFD until complete.
            if text.ends_with('\u{FFFD}') {
                on_step(Step::Working);
            } else {
                match stops.scan(&text) {
                    Scan::Release(piece) if piece.is_empty() => on_step(Step::Working),
                    Scan::Release(piece) => on_step(Step::Piece(&piece)),
                    Scan::Stopped { last, end } => {
                        if !last.is_empty() {
                            on_step(Step::Piece(&last));
                        }
                        final_text = Some(text[..end].to_string());
                        finish = FinishReason::Stop;
                        break;
                    }
                }
            }
            input = Tensor::new(&[next], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(internal)?;
        }
        let text = match final_text {
            Some(t) => t,
            None => {
                let text = self.decode(&generated)?;
                let rest = stops.finish(&text);
                if !rest.is_empty() {
                    on_step(Step::Piece(&rest));
                }
                text
            }
        };
        let total = started.elapsed().as_secs_f64();
        Ok(Generation {
            text,
            finish_reason: finish,
            prompt_tokens: prompt.len() as u32,
            completion_tokens: generated.len() as u32,
            first_token_s,
            decode_s: (total - first_token_s).max(0.0),
        })
    }
}

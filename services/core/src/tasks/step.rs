//! One attempt of one step: its `with` rendered against what the task knows, the call made
//! over the bus, and its checkpoint applied to the output.

use ozone_bus_schemas::spark::{self, ChatMessage, EmbedRequest, GenerateRequest, Prompt};
use ozone_bus_schemas::Subject;
use ozone_methodology::templates::Templates;
use ozone_methodology::{Check, Step};
use ozone_nats::bus::Bus;
use ozone_spark_client::SparkClient;
use std::time::Duration;
use tokio::sync::watch;

/// What an attempt needs besides the step.
#[derive(Debug, Clone)]
pub struct Caller {
    pub bus: Bus,
    pub spark: SparkClient,
}

/// One attempt of a step.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub task_id: &'a str,
    pub step: &'a Step,
    pub attempt: u32,
    /// What templates read (see `TaskRecord::context`).
    pub context: serde_json::Value,
    pub principles: &'a [String],
    /// Becomes true when the task is cancelled.
    pub cancel: watch::Receiver<bool>,
    pub timeout: Duration,
}

impl Attempt<'_> {
    /// The attempt's idempotency key: a request sent again for the same attempt (after a
    /// lost connection) is the same request to its callee.
    fn request_id(&self) -> String {
        format!("{}.{}.{}", self.task_id, self.step.id, self.attempt)
    }

    /// Runs the attempt; the operation's answer, or why it failed.
    pub async fn run(
        &self,
        caller: &Caller,
        templates: &Templates,
    ) -> Result<serde_json::Value, String> {
        let with = serde_json::Value::Object(self.step.with.clone().into_iter().collect());
        let request = templates
            .render_value(&with, &self.context)
            .map_err(|e| format!("with: {e}"))?;
        let output = match self.step.call.as_str() {
            c if c == spark::operation(spark::GENERATE).as_str() => {
                self.generate(caller, request).await?
            }
            c if c == spark::operation(spark::EMBED).as_str() => {
                self.embed(caller, request).await?
            }
            _ => self.one_reply(caller, &request).await?,
        };
        if let Some(check) = &self.step.check {
            apply_check(check, &output)?;
        }
        Ok(output)
    }

    async fn generate(
        &self,
        caller: &Caller,
        with: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        // The step's fields over SPARK's defaults; the request id is the attempt's.
        let mut request = serde_json::to_value(GenerateRequest::chat(self.request_id(), vec![]))
            .map_err(|e| e.to_string())?;
        if let (Some(base), serde_json::Value::Object(fields)) = (request.as_object_mut(), with) {
            for (k, v) in fields {
                if k != "request_id" {
                    base.insert(k, v);
                }
            }
        }
        let mut request: GenerateRequest = serde_json::from_value(request)
            .map_err(|e| format!("with: not a generate request: {e}"))?;
        with_principles(&mut request.prompt, self.principles);
        let done = caller
            .spark
            .generate(request, Some(self.cancel.clone()), |_| {})
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_value(done).map_err(|e| e.to_string())
    }

    async fn embed(
        &self,
        caller: &Caller,
        with: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let mut with = with;
        if let Some(fields) = with.as_object_mut() {
            fields.insert("request_id".into(), self.request_id().into());
        }
        let request: EmbedRequest =
            serde_json::from_value(with).map_err(|e| format!("with: not an embed request: {e}"))?;
        let done = caller
            .spark
            .embed(request.model, request.texts)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_value(done).map_err(|e| e.to_string())
    }

    /// Any one-reply operation: the request as the step wrote it, the reply as it came. A
    /// reply `{"failed": …}` (every operation's error form) fails the attempt.
    async fn one_reply(
        &self,
        caller: &Caller,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let subject = Subject::parse(&self.step.call).map_err(|e| e.to_string())?;
        let reply: serde_json::Value = caller
            .bus
            .request(&subject, request, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        match reply.as_object().and_then(|o| o.get("failed")) {
            Some(error) => Err(format!("{} answered: {error}", self.step.call)),
            None => Ok(reply),
        }
    }
}

/// The methodology's principles, put before the prompt: a system message in a chat, a
/// preamble before raw text.
fn with_principles(prompt: &mut Prompt, principles: &[String]) {
    if principles.is_empty() {
        return;
    }
    let text = principles.join("\n");
    match prompt {
        Prompt::Chat(messages) => messages.insert(
            0,
            ChatMessage {
                role: "system".into(),
                content: text,
            },
        ),
        Prompt::Raw(raw) => *raw = format!("{text}\n\n{raw}"),
    }
}

/// The text a check reads: the output's `text` when it has one, else the output as JSON.
fn checked_text(output: &serde_json::Value) -> String {
    match output.get("text").and_then(|t| t.as_str()) {
        Some(t) => t.to_string(),
        None => output.to_string(),
    }
}

/// Applies a checkpoint; the error says which condition failed.
pub fn apply_check(check: &Check, output: &serde_json::Value) -> Result<(), String> {
    let text = checked_text(output);
    let chars = text.chars().count();
    if let Some(min) = check.min_length {
        if chars < min {
            return Err(format!(
                "check: {chars} characters, fewer than min_length {min}"
            ));
        }
    }
    if let Some(max) = check.max_length {
        if chars > max {
            return Err(format!(
                "check: {chars} characters, more than max_length {max}"
            ));
        }
    }
    if let Some(needle) = &check.contains {
        if !text.contains(needle.as_str()) {
            return Err(format!("check: the output does not contain {needle:?}"));
        }
    }
    if let Some(re) = &check.regex {
        let re = regex::Regex::new(re).map_err(|e| format!("check: regex: {e}"))?;
        if !re.is_match(&text) {
            return Err(format!("check: the output does not match /{re}/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_read_the_text_and_say_what_failed() {
        let check = Check {
            contains: Some("Paris".into()),
            regex: Some("^The".into()),
            json_schema: None,
            min_length: Some(5),
            max_length: Some(40),
            on_fail: Default::default(),
        };
        assert!(apply_check(&check, &json!({"text": "The capital is Paris."})).is_ok());
        let e = apply_check(&check, &json!({"text": "The capital is Rome."})).unwrap_err();
        assert!(e.contains("does not contain \"Paris\""), "{e}");
        let e = apply_check(&check, &json!({"text": "Paris"})).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = apply_check(&check, &json!({"text": "The"})).unwrap_err();
        assert!(e.contains("fewer than min_length 5"), "{e}");
    }

    #[test]
    fn principles_come_first() {
        let mut p = Prompt::Raw("Go.".into());
        with_principles(&mut p, &["Be brief.".into()]);
        assert_eq!(p, Prompt::Raw("Be brief.\n\nGo.".into()));
        let mut chat = Prompt::Chat(vec![]);
        with_principles(&mut chat, &["Be brief.".into()]);
        assert!(matches!(&chat, Prompt::Chat(m) if m[0].role == "system"));
    }
}

//! Chat templates: the model's own Jinja template from its GGUF metadata, rendered with
//! minijinja (the templates are written for Hugging Face's Jinja dialect).

use minijinja::{context, Environment, ErrorKind};
use ozone_bus_schemas::spark::ChatMessage;

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos: String, eos: String) -> anyhow::Result<ChatTemplate> {
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| anyhow::anyhow!("the model's chat template does not compile: {e}"))?;
        Ok(ChatTemplate { env, bos, eos })
    }

    /// The prompt for `messages`, ending where the assistant's turn begins.
    pub fn render(&self, messages: &[ChatMessage]) -> anyhow::Result<String> {
        let t = self.env.get_template("chat")?;
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role, content => m.content })
            .collect();
        t.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| anyhow::anyhow!("cannot render the chat template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_chatml_template_with_a_generation_prompt() -> anyhow::Result<()> {
        let t = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into(),
            "<s>".into(),
            "</s>".into(),
        )?;
        let out = t.render(&[ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }])?;
        assert_eq!(
            out,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        Ok(())
    }

    #[test]
    fn raise_exception_becomes_an_error() -> anyhow::Result<()> {
        let t = ChatTemplate::new(
            "{{ raise_exception('roles must alternate') }}".into(),
            String::new(),
            String::new(),
        )?;
        let err = t
            .render(&[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("roles must alternate"), "{err}");
        Ok(())
    }
}

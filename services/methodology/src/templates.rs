//! The template language of `with`, `when` and `outputs`: minijinja (Jinja2 syntax), strict
//! about undefined names, with no autoescaping and no access to files.
//!
//! Input values are data: they are handed to the engine as values and never parsed as
//! templates, so `{{ … }}` inside an input is just text. A string that is exactly one
//! `{{ expression }}` evaluates to the expression's value with its type (a number, a list,
//! an object); any other string renders to a string.

use minijinja::{Environment, UndefinedBehavior};
use std::collections::BTreeSet;

/// The engine, configured once.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        Templates { env }
    }

    /// The variables a template reads, as dotted paths (`inputs.text`,
    /// `steps.draft.output.text`); an error when it does not compile.
    pub fn references(&self, text: &str) -> Result<BTreeSet<String>, String> {
        if let Some(expr) = sole_expression(text) {
            return self.expression_references(expr);
        }
        let t = self.env.template_from_str(text).map_err(|e| describe(&e))?;
        Ok(t.undeclared_variables(true).into_iter().collect())
    }

    /// The variables an expression (a `when` condition) reads.
    pub fn expression_references(&self, expr: &str) -> Result<BTreeSet<String>, String> {
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e))?;
        Ok(e.undeclared_variables(true).into_iter().collect())
    }

    /// Renders one `with` or `outputs` value: strings as templates (see the module's note on
    /// sole expressions), arrays and objects element by element, anything else as it is.
    pub fn render_value(
        &self,
        value: &serde_json::Value,
        context: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        match value {
            Value::String(text) => self.render_text(text, context),
            Value::Array(items) => items
                .iter()
                .map(|v| self.render_value(v, context))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), self.render_value(v, context)?)))
                .collect::<Result<_, String>>()
                .map(Value::Object),
            other => Ok(other.clone()),
        }
    }

    /// Renders one template string.
    pub fn render_text(
        &self,
        text: &str,
        context: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let ctx = minijinja::Value::from_serialize(context);
        if let Some(expr) = sole_expression(text) {
            let e = self
                .env
                .compile_expression(expr)
                .map_err(|e| describe(&e))?;
            let v = e.eval(ctx).map_err(|e| describe(&e))?;
            // Strictness covers printing, not a bare lookup: say what is missing here.
            if v.is_undefined() {
                return Err(format!("undefined value: `{expr}` reads nothing"));
            }
            return serde_json::to_value(&v).map_err(|e| e.to_string());
        }
        let t = self.env.template_from_str(text).map_err(|e| describe(&e))?;
        t.render(ctx)
            .map(serde_json::Value::String)
            .map_err(|e| describe(&e))
    }

    /// Evaluates a `when` condition: true, or false (by the template language's truthiness).
    pub fn condition(&self, expr: &str, context: &serde_json::Value) -> Result<bool, String> {
        let e = self
            .env
            .compile_expression(expr)
            .map_err(|e| describe(&e))?;
        let v = e
            .eval(minijinja::Value::from_serialize(context))
            .map_err(|e| describe(&e))?;
        Ok(v.is_true())
    }
}

/// `expr` when `text` is `{{ expr }}` and nothing else.
fn sole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    // `{{ a }} and {{ b }}` is two expressions with text between: a template.
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

/// The engine's error with its detail (what was expected where).
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_dotted_paths() {
        let t = Templates::new();
        let refs = t
            .references("Summarize {{ inputs.text }} as {{ steps.outline.output.text }}.")
            .unwrap();
        assert_eq!(
            refs,
            BTreeSet::from(["inputs.text".into(), "steps.outline.output.text".into()])
        );
        assert!(t.references("{{ inputs.text ").is_err());
        assert!(t.expression_references("inputs.n >").is_err());
    }

    #[test]
    fn input_values_are_data_never_templates() {
        let t = Templates::new();
        let ctx = json!({"inputs": {"text": "{{ 7 * 7 }} {% if true %}x{% endif %}"}});
        let out = t.render_text("Say: {{ inputs.text }}", &ctx).unwrap();
        assert_eq!(out, json!("Say: {{ 7 * 7 }} {% if true %}x{% endif %}"));
        let same = t.render_text("{{ inputs.text }}", &ctx).unwrap();
        assert_eq!(same, json!("{{ 7 * 7 }} {% if true %}x{% endif %}"));
    }

    #[test]
    fn a_sole_expression_keeps_its_type() {
        let t = Templates::new();
        let ctx = json!({"inputs": {"n": 3, "texts": ["a", "b"]}});
        assert_eq!(t.render_text("{{ inputs.n }}", &ctx).unwrap(), json!(3));
        assert_eq!(
            t.render_text("{{ inputs.texts }}", &ctx).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            t.render_text("n={{ inputs.n }}", &ctx).unwrap(),
            json!("n=3")
        );
        let rendered = t
            .render_value(&json!({"k": ["{{ inputs.n + 1 }}", 5]}), &ctx)
            .unwrap();
        assert_eq!(rendered, json!({"k": [4, 5]}));
        assert!(t.render_text("{{ inputs.missing }}", &ctx).is_err());
        assert!(t.condition("inputs.n > 2", &ctx).unwrap());
        assert!(!t.condition("inputs.texts | length > 2", &ctx).unwrap());
    }
}

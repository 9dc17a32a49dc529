//! Everything registration refuses, each problem naming its field. Nothing is registered
//! unless this finds nothing.

use crate::format::{Check, Methodology, Step};
use crate::graph::Graph;
use crate::problem::{Problem, Problems};
use crate::templates::Templates;
use ozone_bus_schemas::catalogue;
use std::collections::BTreeSet;
use std::time::Duration;

/// The most steps one methodology may have.
pub const MAX_STEPS: usize = 64;
/// The longest `timeout` a step may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most attempts a `retry` may set.
pub const MAX_ATTEMPTS: u32 = 10;

/// Checks a parsed methodology; every problem found, or nothing.
pub fn validate(m: &Methodology) -> Result<(), Problems> {
    let mut out = Vec::new();
    head(m, &mut out);
    inputs(m, &mut out);
    if m.steps.is_empty() {
        out.push(Problem::new(
            "steps",
            "a methodology needs at least one step",
        ));
    }
    if m.steps.len() > MAX_STEPS {
        out.push(Problem::new(
            "steps",
            format!("{} steps; at most {MAX_STEPS}", m.steps.len()),
        ));
    }
    for (i, s) in m.steps.iter().enumerate() {
        step(i, s, &mut out);
    }
    match Graph::new(&m.steps) {
        Err(problems) => out.extend(problems),
        Ok(graph) => match graph.cycle() {
            Some(cycle) => out.push(Problem::new(
                "steps",
                format!(
                    "the steps depend on each other in a cycle: {}",
                    cycle.join(" → ")
                ),
            )),
            None => references(m, &graph, &mut out),
        },
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(Problems(out))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[a-z_][a-z0-9_]*`, at most 63: usable as a template variable.
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && s.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn head(m: &Methodology, out: &mut Vec<Problem>) {
    if !is_name(&m.name) {
        out.push(Problem::new(
            "name",
            "use 1 to 63 lowercase letters, digits and '-', not starting with '-'",
        ));
    }
    match semver::Version::parse(&m.version) {
        Err(e) => out.push(Problem::new(
            "version",
            format!("not a semantic version: {e}"),
        )),
        Ok(v) if !v.build.is_empty() => out.push(Problem::new(
            "version",
            "build metadata (`+…`) is not allowed: two versions must differ in precedence",
        )),
        Ok(_) => {}
    }
    if m.description.trim().is_empty() {
        out.push(Problem::new(
            "description",
            "say what the methodology does (suggestion ranks by it)",
        ));
    }
    for (i, t) in m.tags.iter().enumerate() {
        if !is_name(t) {
            out.push(Problem::new(
                format!("tags[{i}]"),
                "use lowercase letters, digits and '-'",
            ));
        }
    }
}

fn inputs(m: &Methodology, out: &mut Vec<Problem>) {
    for (name, input) in &m.inputs {
        let field = format!("inputs.{name}");
        if !is_identifier(name) {
            out.push(Problem::new(
                &field,
                "an input name is `[a-z_][a-z0-9_]*` (it is a template variable)",
            ));
        }
        if let Some(default) = &input.default {
            if input.required == Some(true) {
                out.push(Problem::new(
                    format!("{field}.default"),
                    "a required input takes no default",
                ));
            }
            if !input.kind.admits(default) {
                out.push(Problem::new(
                    format!("{field}.default"),
                    format!("not a {:?} value", input.kind).to_lowercase(),
                ));
            }
        }
    }
}

fn duration(field: String, text: &str, max: Duration, out: &mut Vec<Problem>) {
    match humantime::parse_duration(text) {
        Err(e) => out.push(Problem::new(
            field,
            format!("not a duration (`30s`, `2m`): {e}"),
        )),
        Ok(d) if d.is_zero() || d > max => out.push(Problem::new(
            field,
            format!(
                "must lie between 1ms and {}",
                humantime::format_duration(max)
            ),
        )),
        Ok(_) => {}
    }
}

fn step(i: usize, s: &Step, out: &mut Vec<Problem>) {
    let at = |f: &str| format!("steps[{i}].{f}");
    if !is_identifier(&s.id) {
        out.push(Problem::new(
            at("id"),
            "a step id is `[a-z_][a-z0-9_]*` (templates read `steps.<id>.output`)",
        ));
    }
    match catalogue::find(&s.call) {
        None => {
            let known: Vec<String> = catalogue::operations()
                .iter()
                .map(|o| o.subject().to_string())
                .collect();
            out.push(Problem::new(
                at("call"),
                format!(
                    "no component offers `{}` (declared operations: {})",
                    s.call,
                    known.join(", ")
                ),
            ));
        }
        Some(spec) if !catalogue::core_may_call(&spec) => out.push(Problem::new(
            at("call"),
            format!(
                "the core, which runs methodologies, may not call `{}`",
                s.call
            ),
        )),
        Some(_) => {}
    }
    if let Some(t) = &s.timeout {
        duration(at("timeout"), t, MAX_TIMEOUT, out);
    }
    if let Some(r) = &s.retry {
        if r.attempts == 0 || r.attempts > MAX_ATTEMPTS {
            out.push(Problem::new(
                at("retry.attempts"),
                format!("1 to {MAX_ATTEMPTS} (the first attempt included)"),
            ));
        }
        duration(at("retry.backoff"), &r.backoff, MAX_TIMEOUT, out);
    }
    if let Some(c) = &s.check {
        check(&at("check"), c, s, out);
    }
}

fn check(field: &str, c: &Check, s: &Step, out: &mut Vec<Problem>) {
    if let Some(re) = &c.regex {
        if let Err(e) = regex::Regex::new(re) {
            out.push(Problem::new(format!("{field}.regex"), e.to_string()));
        }
    }
    if let (Some(min), Some(max)) = (c.min_length, c.max_length) {
        if min > max {
            out.push(Problem::new(
                format!("{field}.min_length"),
                format!("{min} is more than max_length {max}"),
            ));
        }
    }
    if c.json_schema.is_some() {
        // Refused rather than accepted and ignored: the core applies no JSON Schema yet.
        out.push(Problem::new(
            format!("{field}.json_schema"),
            "JSON Schema checks are not supported yet; use contains, regex, min_length or \
             max_length",
        ));
    }
    if c.on_fail == crate::format::OnFail::Retry && s.retry.as_ref().is_none_or(|r| r.attempts < 2)
    {
        out.push(Problem::new(
            format!("{field}.on_fail"),
            "`retry` needs the step's `retry.attempts` of 2 or more",
        ));
    }
}

/// Every template compiles and reads only what exists: declared inputs, the principles, and
/// outputs of steps that finish before it is rendered.
fn references(m: &Methodology, graph: &Graph, out: &mut Vec<Problem>) {
    let templates = Templates::new();
    let all: BTreeSet<usize> = (0..m.steps.len()).collect();
    for (i, s) in m.steps.iter().enumerate() {
        let before = graph.ancestors(i);
        for (key, value) in &s.with {
            let field = format!("steps[{i}].with.{key}");
            each_template(value, &mut |text| {
                let refs = templates.references(text);
                check_refs(m, &before, &field, refs, out);
            });
        }
        if let Some(when) = &s.when {
            let refs = templates.expression_references(when);
            check_refs(m, &before, &format!("steps[{i}].when"), refs, out);
        }
    }
    for (name, text) in &m.outputs {
        let refs = templates.references(text);
        check_refs(m, &all, &format!("outputs.{name}"), refs, out);
    }
}

fn each_template(value: &serde_json::Value, f: &mut impl FnMut(&str)) {
    match value {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| each_template(v, f)),
        serde_json::Value::Object(map) => map.values().for_each(|v| each_template(v, f)),
        _ => {}
    }
}

fn check_refs(
    m: &Methodology,
    readable: &BTreeSet<usize>,
    field: &str,
    refs: Result<BTreeSet<String>, String>,
    out: &mut Vec<Problem>,
) {
    let refs = match refs {
        Ok(r) => r,
        Err(e) => {
            out.push(Problem::new(field, format!("template error: {e}")));
            return;
        }
    };
    for r in refs {
        if let Some(problem) = undefined(m, readable, &r) {
            out.push(Problem::new(field, problem));
        }
    }
}

/// Why the dotted reference `r` reads nothing, if it does not.
fn undefined(m: &Methodology, readable: &BTreeSet<usize>, r: &str) -> Option<String> {
    let mut parts = r.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("principles"), _, _) | (Some("inputs"), None, _) => None,
        (Some("inputs"), Some(name), _) => (!m.inputs.contains_key(name))
            .then(|| format!("`{r}`: the methodology has no input `{name}`")),
        (Some("steps"), Some(id), rest) => {
            let Some(k) = m.steps.iter().position(|s| s.id == id) else {
                return Some(format!("`{r}`: no step has id `{id}`"));
            };
            if rest != Some("output") {
                return Some(format!("`{r}`: a step is read as `steps.{id}.output…`"));
            }
            (!readable.contains(&k)).then(|| {
                format!("`{r}`: step `{id}` may not have finished yet; list it in `depends_on`")
            })
        }
        _ => Some(format!(
            "`{r}`: unknown name (templates read `inputs.*`, `steps.<id>.output…`, `principles`)"
        )),
    }
}

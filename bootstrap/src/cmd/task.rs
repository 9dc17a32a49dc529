//! `ozone task run | list | show | watch | cancel | approve`: tasks on the core, reached as
//! the console operator. `run` reads each input's type from the methodology ZSEI holds, so
//! `--input n=3` is a number where the methodology wants one.

use crate::cmd::methodology::call;
use anyhow::Context;
use ozone_bus_schemas::core::{
    ApproveReply, ApproveRequest, ApproveStep, CancelReply, CancelTask, GetTask, GetTaskReply,
    ListTasks, ListTasksReply, ListTasksRequest, StepState, Submit, SubmitReply, SubmitRequest,
    TaskRef, TaskView,
};
use ozone_bus_schemas::zsei::{DocumentFormat, Get, GetReply, GetRequest};
use ozone_methodology::InputType;
use ozone_nats::bus::Bus;
use ozone_security::Home;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often `watch` asks the core.
const POLL: Duration = Duration::from_millis(300);

/// `KEY=VALUE` or `KEY=@FILE` (the file's text).
fn split_input(arg: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = arg
        .split_once('=')
        .with_context(|| format!("--input {arg:?}: write KEY=VALUE or KEY=@FILE"))?;
    let v = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--input {k}: cannot read {path}"))?,
        None => v.to_string(),
    };
    Ok((k.to_string(), v))
}

/// A command-line value as the input's type wants it.
fn typed(kind: Option<InputType>, key: &str, text: String) -> anyhow::Result<serde_json::Value> {
    use serde_json::Value;
    Ok(match kind {
        Some(InputType::Number) => Value::Number(
            serde_json::Number::from_f64(
                text.trim()
                    .parse::<f64>()
                    .with_context(|| format!("--input {key}: {text:?} is not a number"))?,
            )
            .with_context(|| format!("--input {key}: not a finite number"))?,
        ),
        Some(InputType::Bool) => Value::Bool(
            text.trim()
                .parse()
                .with_context(|| format!("--input {key}: write true or false"))?,
        ),
        Some(InputType::List) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => Value::Array(items),
            _ => Value::Array(
                text.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .collect(),
            ),
        },
        _ => Value::String(text),
    })
}

async fn input_types(
    bus: &Bus,
    name: &str,
    version: Option<String>,
) -> anyhow::Result<BTreeMap<String, InputType>> {
    let request = GetRequest {
        name: name.to_string(),
        version,
    };
    let record = match call::<Get>(bus, &request).await? {
        GetReply::Found(r) => r,
        GetReply::Failed(e) => anyhow::bail!("{e}"),
    };
    let m = ozone_methodology::parse(&record.document, DocumentFormat::Json)?;
    Ok(m.inputs.into_iter().map(|(k, i)| (k, i.kind)).collect())
}

/// Options of `ozone task run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub version: Option<String>,
    pub inputs: Vec<String>,
    pub wait: bool,
    pub json: bool,
}

/// `ozone task run NAME`: submits; with `--wait`, follows it to its end and prints the
/// outputs (non-zero exit unless it succeeded).
pub async fn run(home: &Home, name: &str, o: &RunOptions) -> anyhow::Result<bool> {
    let bus = crate::connect::cli_bus(home).await?;
    let types = input_types(&bus, name, o.version.clone()).await?;
    let mut inputs = BTreeMap::new();
    for arg in &o.inputs {
        let (k, v) = split_input(arg)?;
        let value = typed(types.get(&k).copied(), &k, v)?;
        inputs.insert(k, value);
    }
    let request = SubmitRequest {
        methodology: name.to_string(),
        version: o.version.clone(),
        inputs,
    };
    let task_id = match call::<Submit>(&bus, &request).await? {
        SubmitReply::Submitted { task_id } => task_id,
        SubmitReply::Failed(e) => anyhow::bail!("{e}"),
    };
    if !o.wait {
        println!("{task_id}");
        return Ok(true);
    }
    eprintln!("task {task_id}: {name}");
    let view = follow(&bus, &task_id, !o.json).await?;
    print_result(&view, o.json)
}

async fn get(bus: &Bus, task_id: &str) -> anyhow::Result<TaskView> {
    let request = TaskRef {
        task_id: task_id.to_string(),
    };
    match call::<GetTask>(bus, &request).await? {
        GetTaskReply::Found(v) => Ok(v),
        GetTaskReply::Failed(e) => anyhow::bail!("{e}"),
    }
}

/// Prints each step's changes as they happen until the task ends; returns its last state.
async fn follow(bus: &Bus, task_id: &str, show: bool) -> anyhow::Result<TaskView> {
    let mut seen: BTreeMap<String, (StepState, u32)> = BTreeMap::new();
    loop {
        let view = get(bus, task_id).await?;
        for s in &view.steps {
            let now = (s.state, s.attempts);
            if show && seen.get(&s.id) != Some(&now) {
                let detail = match (s.state, &s.error) {
                    (StepState::Failed | StepState::Retrying, Some(e)) => format!(": {e}"),
                    _ => String::new(),
                };
                eprintln!(
                    "  {:<16} {:<22} attempt {}{detail}",
                    s.id,
                    format!("{:?}", s.state).to_lowercase(),
                    s.attempts
                );
            }
            seen.insert(s.id.clone(), now);
        }
        if view.state.is_finished() {
            return Ok(view);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_result(view: &TaskView, json: bool) -> anyhow::Result<bool> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
    } else {
        eprintln!("task {}: {:?}", view.id, view.state);
        if let Some(e) = &view.error {
            eprintln!("  {e}");
        }
        for (name, value) in view.outputs.iter().flatten() {
            match value.as_str() {
                Some(text) => println!("{name}:\n{text}\n"),
                None => println!("{name}: {value}"),
            }
        }
    }
    Ok(view.state == ozone_bus_schemas::core::TaskState::Succeeded)
}

/// `ozone task watch ID`.
pub async fn watch(home: &Home, task_id: &str, json: bool) -> anyhow::Result<bool> {
    let bus = crate::connect::cli_bus(home).await?;
    let view = follow(&bus, task_id, !json).await?;
    print_result(&view, json)
}

/// `ozone task show ID`.
pub async fn show(home: &Home, task_id: &str) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&get(&bus, task_id).await?)?
    );
    Ok(())
}

/// `ozone task list`.
pub async fn list(home: &Home, json: bool) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let all = match call::<ListTasks>(&bus, &ListTasksRequest {}).await? {
        ListTasksReply::Listed(all) => all,
        ListTasksReply::Failed(e) => anyhow::bail!("{e}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<20} {:<9} {:<20} BY",
        "TASK", "METHODOLOGY", "VERSION", "STATE"
    );
    for t in all {
        println!(
            "{:<34} {:<20} {:<9} {:<20} {}",
            t.id,
            t.methodology,
            t.version,
            format!("{:?}", t.state).to_lowercase(),
            t.submitted_by
        );
    }
    Ok(())
}

/// `ozone task cancel ID`.
pub async fn cancel(home: &Home, task_id: &str) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let request = TaskRef {
        task_id: task_id.to_string(),
    };
    match call::<CancelTask>(&bus, &request).await? {
        CancelReply::Cancelled { state } => {
            println!("task {task_id}: {}", format!("{state:?}").to_lowercase());
            Ok(())
        }
        CancelReply::Failed(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// `ozone task approve ID STEP`.
pub async fn approve(home: &Home, task_id: &str, step: &str) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let request = ApproveRequest {
        task_id: task_id.to_string(),
        step: step.to_string(),
    };
    match call::<ApproveStep>(&bus, &request).await? {
        ApproveReply::Approved => {
            println!("approved {step} of task {task_id}");
            Ok(())
        }
        ApproveReply::Failed(e) => Err(anyhow::anyhow!("{e}")),
    }
}

//! Tasks on the core, against a real nats-server, ZSEI's registry, and SPARK with the real
//! model: a shipped methodology run step by step, timeouts and cancellation, bad input
//! refused while the core keeps serving, and a task that outlives its core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::core::{
    ApproveReply, ApproveRequest, ApproveStep, CancelReply, CancelTask, CoreError, GetTask,
    GetTaskReply, StepState, Submit, SubmitReply, SubmitRequest, TaskRef, TaskState, TaskView,
};
use ozone_bus_schemas::operation::Operation;
use ozone_bus_schemas::zsei::{DocumentFormat, Register, RegisterReply, RegisterRequest};
use ozone_bus_schemas::{AuditKind, Component, Identity, IdentityKind};
use ozone_nats::bus::Bus;
use ozone_security::envelope::Rotation;
use ozone_security::pki::CONSOLE_OPERATOR;
use ozone_spark_client::SparkClient;
use ozone_studio_core::tasks::TaskCapability;
use ozone_tests::{audited, SparkProcess, TestEcosystem};
use ozone_zsei::ZseiCapability;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type R = anyhow::Result<()>;
const CLI: &str = env!("CARGO_BIN_EXE_ozone-cli");

async fn call<Op: Operation>(bus: &Bus, request: &Op::Request) -> anyhow::Result<Op::Reply> {
    Ok(bus
        .request(&Op::SPEC.subject(), request, Duration::from_secs(15))
        .await?)
}

async fn operator(eco: &TestEcosystem) -> anyhow::Result<Bus> {
    let id = Identity::new(IdentityKind::Operator, CONSOLE_OPERATOR)?;
    Ok(Bus::start(eco.connect(&id).await?, &eco.t.home, Rotation::daily()).await?)
}

async fn submit(
    bus: &Bus,
    methodology: &str,
    inputs: serde_json::Value,
) -> anyhow::Result<Result<String, CoreError>> {
    let inputs: BTreeMap<String, serde_json::Value> = serde_json::from_value(inputs)?;
    let request = SubmitRequest {
        methodology: methodology.into(),
        version: None,
        inputs,
    };
    Ok(match call::<Submit>(bus, &request).await? {
        SubmitReply::Submitted { task_id } => Ok(task_id),
        SubmitReply::Failed(e) => Err(e),
    })
}

async fn task(bus: &Bus, task_id: &str) -> anyhow::Result<TaskView> {
    let request = TaskRef {
        task_id: task_id.into(),
    };
    match call::<GetTask>(bus, &request).await? {
        GetTaskReply::Found(v) => Ok(v),
        GetTaskReply::Failed(e) => anyhow::bail!("{e}"),
    }
}

/// Polls until `done` accepts the task (or `limit` passes).
async fn until(
    bus: &Bus,
    task_id: &str,
    limit: Duration,
    done: impl Fn(&TaskView) -> bool,
) -> anyhow::Result<TaskView> {
    let deadline = Instant::now() + limit;
    loop {
        let view = task(bus, task_id).await?;
        if done(&view) {
            return Ok(view);
        }
        anyhow::ensure!(Instant::now() < deadline, "task never got there: {view:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn register(bus: &Bus, document: serde_json::Value) -> R {
    let request = RegisterRequest {
        format: DocumentFormat::Json,
        document: document.to_string(),
    };
    let reply = call::<Register>(bus, &request).await?;
    anyhow::ensure!(
        matches!(reply, RegisterReply::Registered { .. }),
        "{reply:?}"
    );
    Ok(())
}

fn step<'a>(view: &'a TaskView, id: &str) -> &'a ozone_bus_schemas::core::StepView {
    view.steps.iter().find(|s| s.id == id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipped_methodology_runs_through_the_core_and_spark() -> R {
    let eco = TestEcosystem::audited().await?;
    let _spark = SparkProcess::start(CLI, &eco.t.home, &[])?;
    let _zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let _core = eco.serve(Component::Core, Box::new(TaskCapability)).await?;
    let op = operator(&eco).await?;
    SparkClient::new(op.clone())
        .wait_for_workers(1, Duration::from_secs(90))
        .await?;

    // summarize-text: two generation steps, the second reading the first's output.
    let text = "NATS is a messaging system. The ecosystem's eight services talk over it, \
                and every payload is encrypted end to end with keys that rotate daily.";
    let id = submit(
        &op,
        "summarize-text",
        json!({ "text": text, "max_words": 20 }),
    )
    .await?
    .unwrap();
    let view = until(&op, &id, Duration::from_secs(240), |v| {
        v.state.is_finished()
    })
    .await?;
    assert_eq!(view.state, TaskState::Succeeded, "{view:#?}");
    assert_eq!(view.submitted_by, "urn:ozone:operator:console");
    for s in ["outline", "summary"] {
        let st = step(&view, s);
        assert_eq!((st.state, st.attempts), (StepState::Succeeded, 1), "{st:?}");
    }
    let outline = step(&view, "outline").output.as_ref().unwrap()["text"].clone();
    let outputs = view.outputs.as_ref().unwrap();
    assert_eq!(outputs["main_points"], outline);
    let summary = outputs["summary"].as_str().unwrap();
    assert!(!summary.trim().is_empty(), "{view:#?}");
    println!("summary: {summary}");

    // A step past its timeout fails the task, saying so.
    register(
        &op,
        json!({
            "name": "slow", "version": "1.0.0", "description": "A long story, cut short.",
            "steps": [{ "id": "story", "call": "spark.generate", "timeout": "300ms",
                        "with": { "prompt": { "raw": "Once upon a time" }, "max_tokens": 400 } }]
        }),
    )
    .await?;
    let id = submit(&op, "slow", json!({})).await?.unwrap();
    let view = until(&op, &id, Duration::from_secs(30), |v| v.state.is_finished()).await?;
    assert_eq!(view.state, TaskState::Failed);
    assert!(
        view.error
            .as_deref()
            .unwrap_or_default()
            .contains("step story failed: timed out after 300ms"),
        "{view:#?}"
    );

    // Cancelling during a generation stops it.
    register(
        &op,
        json!({
            "name": "story", "version": "1.0.0", "description": "A long story.",
            "steps": [{ "id": "story", "call": "spark.generate",
                        "with": { "prompt": { "raw": "Once upon a time" }, "max_tokens": 2000 } }]
        }),
    )
    .await?;
    let id = submit(&op, "story", json!({})).await?.unwrap();
    until(&op, &id, Duration::from_secs(30), |v| {
        step(v, "story").state == StepState::Running
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let reply = call::<CancelTask>(
        &op,
        &TaskRef {
            task_id: id.clone(),
        },
    )
    .await?;
    assert_eq!(
        reply,
        CancelReply::Cancelled {
            state: TaskState::Cancelled
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let view = task(&op, &id).await?;
    assert_eq!(step(&view, "story").state, StepState::Cancelled);
    assert_eq!(
        view.error.as_deref(),
        Some("cancelled by urn:ozone:operator:console")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_core_keeps_serving() -> R {
    let eco = TestEcosystem::audited().await?;
    let _zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let _core = eco.serve(Component::Core, Box::new(TaskCapability)).await?;
    let op = operator(&eco).await?;
    // A methodology that needs no model: its one step lists the registry.
    register(
        &op,
        json!({
            "name": "echo", "version": "1.0.0", "description": "Say the input back.",
            "inputs": { "text": { "type": "text" } },
            "steps": [{ "id": "look", "call": "zsei.methodology.list" }],
            "outputs": { "echo": "You said: {{ inputs.text }}" }
        }),
    )
    .await?;

    let e = submit(&op, "nonesuch", json!({})).await?.unwrap_err();
    assert_eq!(
        e,
        CoreError::UnknownMethodology {
            name: "nonesuch".into()
        }
    );
    let e = submit(&op, "echo", json!({})).await?.unwrap_err();
    assert_eq!(e.to_string(), "input text: echo requires it");
    let e = submit(&op, "echo", json!({ "text": 5 }))
        .await?
        .unwrap_err();
    assert!(e.to_string().contains("expected a text value"), "{e}");
    // 300 kB of input: over the operation's 256 KiB, refused by the core's kit by name.
    let big = "x".repeat(300_000);
    let e = submit(&op, "echo", json!({ "text": big }))
        .await?
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("ozone-studio.task.submit takes at most 262144"),
        "{e}"
    );
    // 1 MB: over what one envelope carries; the caller's bus refuses it before sending.
    let huge = "x".repeat(1_000_000);
    let e = submit(&op, "echo", json!({ "text": huge }))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("exceeds the limit of 983040 bytes"),
        "{e}"
    );

    // Template syntax inside an input is text, never evaluated.
    let id = submit(
        &op,
        "echo",
        json!({ "text": "{{ 7 * 7 }} {% if true %}x{% endif %}" }),
    )
    .await?
    .unwrap();
    let view = until(&op, &id, Duration::from_secs(20), |v| v.state.is_finished()).await?;
    assert_eq!(view.state, TaskState::Succeeded, "{view:#?}");
    assert_eq!(
        view.outputs.unwrap()["echo"],
        json!("You said: {{ 7 * 7 }} {% if true %}x{% endif %}")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waits_for_approval_across_a_core_restart_and_runs_no_step_twice() -> R {
    let eco = TestEcosystem::audited().await?;
    let _zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let core = eco.serve(Component::Core, Box::new(TaskCapability)).await?;
    let op = operator(&eco).await?;
    register(
        &op,
        json!({
            "name": "gated", "version": "1.0.0", "description": "Look, wait for a yes, look again.",
            "steps": [
                { "id": "before", "call": "zsei.methodology.list" },
                { "id": "left", "call": "zsei.methodology.list", "depends_on": ["before"] },
                { "id": "right", "call": "zsei.methodology.list", "depends_on": ["before"],
                  "requires_approval": true },
                { "id": "after", "call": "zsei.methodology.list", "depends_on": ["left", "right"] }
            ],
            "outputs": { "count": "{{ steps.after.output.listed | length }}" }
        }),
    )
    .await?;
    let id = submit(&op, "gated", json!({})).await?.unwrap();
    let view = until(&op, &id, Duration::from_secs(20), |v| {
        v.state == TaskState::WaitingForApproval
    })
    .await?;
    assert_eq!(step(&view, "before").state, StepState::Succeeded);
    assert_eq!(step(&view, "left").state, StepState::Succeeded);
    assert_eq!(step(&view, "right").state, StepState::WaitingForApproval);

    // The core goes away while the task waits; a new one resumes it from the store.
    drop(core);
    let _core = eco.serve(Component::Core, Box::new(TaskCapability)).await?;
    let wrong = ApproveRequest {
        task_id: id.clone(),
        step: "after".into(),
    };
    let reply = call::<ApproveStep>(&op, &wrong).await?;
    assert!(
        matches!(
            reply,
            ApproveReply::Failed(CoreError::NothingToApprove { .. })
        ),
        "{reply:?}"
    );
    let approve = ApproveRequest {
        task_id: id.clone(),
        step: "right".into(),
    };
    assert_eq!(
        call::<ApproveStep>(&op, &approve).await?,
        ApproveReply::Approved
    );
    let view = until(&op, &id, Duration::from_secs(20), |v| v.state.is_finished()).await?;
    assert_eq!(view.state, TaskState::Succeeded, "{view:#?}");
    for s in &view.steps {
        assert_eq!((s.state, s.attempts), (StepState::Succeeded, 1), "{s:?}");
    }
    assert_eq!(
        step(&view, "right").approved_by.as_deref(),
        Some("urn:ozone:operator:console")
    );
    assert!(view.outputs.unwrap()["count"].as_u64().unwrap() >= 1);

    // The lifecycle is in the audit stream, under the core, naming who did what.
    let by = "urn:ozone:operator:console";
    audited(&eco, "the task's submission", |who, e| {
        who == "ozone-studio"
            && matches!(e, AuditKind::TaskSubmitted { task_id, by: b, .. } if *task_id == id && b == by)
    })
    .await?;
    audited(&eco, "the approval", |who, e| {
        who == "ozone-studio"
            && matches!(e, AuditKind::StepApproved { task_id, step, by: b } if *task_id == id && step == "right" && b == by)
    })
    .await?;
    audited(&eco, "the task's end", |who, e| {
        who == "ozone-studio"
            && matches!(e, AuditKind::TaskFinished { task_id, state, .. } if *task_id == id && state == "succeeded")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_twice_then_succeeds_completes_with_three_attempts() -> R {
    let eco = TestEcosystem::audited().await?;
    let _zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let _core = eco.serve(Component::Core, Box::new(TaskCapability)).await?;
    let op = operator(&eco).await?;
    // Its one step reads a methodology that does not exist yet: ZSEI answers `not_found`
    // (a failed attempt) until the test registers it.
    register(
        &op,
        json!({
            "name": "patient", "version": "1.0.0", "description": "Wait for `later` to exist.",
            "steps": [{ "id": "fetch", "call": "zsei.methodology.get",
                        "with": { "name": "later" },
                        "retry": { "attempts": 3, "backoff": "1s" } }],
            "outputs": { "found": "{{ steps.fetch.output.found.version }}" }
        }),
    )
    .await?;
    let id = submit(&op, "patient", json!({})).await?.unwrap();
    // After the second failure the next attempt waits 2 s: register `later` meanwhile.
    let view = until(&op, &id, Duration::from_secs(20), |v| {
        let s = step(v, "fetch");
        s.attempts == 3 && s.state == StepState::Retrying || v.state.is_finished()
    })
    .await?;
    assert!(!view.state.is_finished(), "{view:#?}");
    assert!(
        step(&view, "fetch")
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not_found"),
        "{view:#?}"
    );
    register(
        &op,
        json!({
            "name": "later", "version": "2.0.0", "description": "Here now.",
            "steps": [{ "id": "x", "call": "zsei.methodology.list" }]
        }),
    )
    .await?;
    let view = until(&op, &id, Duration::from_secs(20), |v| v.state.is_finished()).await?;
    assert_eq!(view.state, TaskState::Succeeded, "{view:#?}");
    assert_eq!(step(&view, "fetch").attempts, 3);
    assert_eq!(view.outputs.unwrap()["found"], json!("2.0.0"));
    Ok(())
}

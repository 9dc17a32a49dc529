//! ZSEI's methodology registry on a real nats-server with the generated configuration: the
//! console operator registers, reads, lists and deprecates over the encrypted bus; invalid
//! documents are refused naming their fields and store nothing; versions are immutable; the
//! registry outlives ZSEI; no other member can touch the bucket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ozone_bus_schemas::operation::Operation;
use ozone_bus_schemas::zsei::{
    Deprecate, DeprecateReply, DeprecateRequest, DocumentFormat, Get, GetReply, GetRequest, List,
    ListReply, ListRequest, MethodologySummary, Register, RegisterReply, RegisterRequest,
    ZseiError,
};
use ozone_bus_schemas::{Component, Identity, IdentityKind};
use ozone_nats::bus::Bus;
use ozone_nats::client::Violation;
use ozone_security::envelope::Rotation;
use ozone_security::pki::CONSOLE_OPERATOR;
use ozone_tests::{expect_violation, TestEcosystem};
use ozone_zsei::shipped::SHIPPED_BY;
use ozone_zsei::ZseiCapability;
use std::time::Duration;

type R = anyhow::Result<()>;

async fn call<Op: Operation>(bus: &Bus, request: &Op::Request) -> anyhow::Result<Op::Reply> {
    Ok(bus
        .request(&Op::SPEC.subject(), request, Duration::from_secs(10))
        .await?)
}

fn echo(version: &str, prompt: &str) -> RegisterRequest {
    RegisterRequest {
        format: DocumentFormat::Json,
        document: serde_json::json!({
            "name": "echo",
            "version": version,
            "description": "Say the text back.",
            "inputs": { "text": { "type": "text" } },
            "steps": [{ "id": "say", "call": "spark.generate",
                        "with": { "prompt": { "raw": prompt } } }],
            "outputs": { "text": "{{ steps.say.output.text }}" }
        })
        .to_string(),
    }
}

async fn list(bus: &Bus) -> anyhow::Result<Vec<MethodologySummary>> {
    match call::<List>(bus, &ListRequest {}).await? {
        ListReply::Listed(all) => Ok(all),
        ListReply::Failed(e) => anyhow::bail!("{e}"),
    }
}

async fn default_of(bus: &Bus, name: &str) -> anyhow::Result<Result<String, ZseiError>> {
    let request = GetRequest {
        name: name.into(),
        version: None,
    };
    Ok(match call::<Get>(bus, &request).await? {
        GetReply::Found(r) => Ok(r.version),
        GetReply::Failed(e) => Err(e),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_keeps_every_version_and_refuses_what_is_invalid() -> R {
    let eco = TestEcosystem::audited().await?;
    let zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let operator = Identity::new(IdentityKind::Operator, CONSOLE_OPERATOR)?;
    let op = Bus::start(
        eco.connect(&operator).await?,
        &eco.t.home,
        Rotation::daily(),
    )
    .await?;

    // The shipped methodologies are there from the start.
    let all = list(&op).await?;
    for shipped in ["summarize-text", "bootstrap"] {
        assert!(
            all.iter().any(|m| m.name == shipped && m.default),
            "{shipped} missing: {all:?}"
        );
    }
    let get = GetRequest {
        name: "summarize-text".into(),
        version: None,
    };
    let GetReply::Found(shipped) = call::<Get>(&op, &get).await? else {
        panic!("summarize-text not found");
    };
    assert_eq!(shipped.registered_by, SHIPPED_BY);

    // Register two versions; the default is the highest.
    for v in ["1.0.0", "1.2.0"] {
        let reply = call::<Register>(&op, &echo(v, "{{ inputs.text }}")).await?;
        assert_eq!(
            reply,
            RegisterReply::Registered {
                name: "echo".into(),
                version: v.into()
            }
        );
    }
    assert_eq!(default_of(&op, "echo").await?, Ok("1.2.0".into()));
    let GetReply::Found(record) = call::<Get>(
        &op,
        &GetRequest {
            name: "echo".into(),
            version: Some("1.0.0".into()),
        },
    )
    .await?
    else {
        panic!("echo 1.0.0 not found");
    };
    assert_eq!(record.registered_by, "urn:ozone:operator:console");

    // The same document again is a no-op; another document under a stored version is refused.
    let again = call::<Register>(&op, &echo("1.0.0", "{{ inputs.text }}")).await?;
    assert!(
        matches!(again, RegisterReply::Registered { .. }),
        "{again:?}"
    );
    let changed = call::<Register>(&op, &echo("1.0.0", "Repeat: {{ inputs.text }}")).await?;
    assert_eq!(
        changed,
        RegisterReply::Failed(ZseiError::VersionTaken {
            name: "echo".into(),
            version: "1.0.0".into()
        })
    );

    // Invalid documents: every problem with its field, nothing stored.
    let before = list(&op).await?;
    let mut cyclic = echo("2.0.0", "{{ inputs.text }}");
    cyclic.document = cyclic
        .document
        .replace("\"id\":\"say\"", "\"id\":\"say\",\"depends_on\":[\"say\"]");
    let invalid = [
        (
            echo("2.0.0", "{{ inputs.nothing }}"),
            "steps[0].with.prompt",
        ),
        (echo("2.0.0", "{{ inputs.text "), "steps[0].with.prompt"),
        (cyclic, "steps[0].depends_on[0]"),
        (
            RegisterRequest {
                format: DocumentFormat::Toml,
                document: "name = \"echo\"\nversion = [".into(),
            },
            "document",
        ),
    ];
    for (request, field) in invalid {
        match call::<Register>(&op, &request).await? {
            RegisterReply::Failed(ZseiError::InvalidMethodology { problems }) => {
                assert_eq!(problems[0].field, field, "{problems:?}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut unknown = echo("2.0.0", "x");
    unknown.document = unknown.document.replace("spark.generate", "spark.teleport");
    let RegisterReply::Failed(e) = call::<Register>(&op, &unknown).await? else {
        panic!("an unknown capability was registered");
    };
    assert!(
        e.to_string()
            .contains("steps[0].call: no component offers `spark.teleport`"),
        "{e}"
    );
    assert_eq!(
        list(&op).await?,
        before,
        "a refused document stored something"
    );

    // Deprecating the newest moves the default back; deprecating everything leaves none.
    let dep = |v: &str| DeprecateRequest {
        name: "echo".into(),
        version: v.into(),
    };
    let reply = call::<Deprecate>(&op, &dep("1.2.0")).await?;
    assert!(
        matches!(reply, DeprecateReply::Deprecated { .. }),
        "{reply:?}"
    );
    assert_eq!(default_of(&op, "echo").await?, Ok("1.0.0".into()));
    call::<Deprecate>(&op, &dep("1.0.0")).await?;
    assert!(matches!(
        default_of(&op, "echo").await?,
        Err(ZseiError::NotFound { .. })
    ));
    let missing = call::<Deprecate>(&op, &dep("7.0.0")).await?;
    assert!(
        matches!(missing, DeprecateReply::Failed(ZseiError::NotFound { .. })),
        "{missing:?}"
    );

    // The registry outlives ZSEI: a new instance serves the same versions.
    drop(zsei);
    let _zsei = eco.serve(Component::Zsei, Box::new(ZseiCapability)).await?;
    let after = list(&op).await?;
    let echo_versions: Vec<(String, bool)> = after
        .iter()
        .filter(|m| m.name == "echo")
        .map(|m| (m.version.clone(), m.deprecated))
        .collect();
    assert_eq!(
        echo_versions,
        [("1.0.0".to_string(), true), ("1.2.0".to_string(), true)]
    );
    Ok(())
}

#[tokio::test]
async fn no_other_member_touches_the_registry_bucket() -> R {
    let eco = TestEcosystem::start().await?;
    let forge = eco.connect(&Identity::component(Component::Forge)).await?;
    let mut events = forge.events();
    for subject in [
        "$KV.ozone-methodologies.echo.9.9.9",
        "$JS.API.DIRECT.GET.KV_ozone-methodologies",
        "$JS.API.STREAM.PURGE.KV_ozone-methodologies",
        "$JS.API.STREAM.DELETE.KV_ozone-methodologies",
    ] {
        forge.client.publish(subject, "{}".into()).await?;
        forge.client.flush().await?;
        expect_violation(&forge, &mut events, Violation::Publish(subject.into())).await?;
    }
    // An operator asks ZSEI; it cannot reach the bucket itself either.
    let operator = eco
        .connect(&Identity::new(IdentityKind::Operator, CONSOLE_OPERATOR)?)
        .await?;
    let mut events = operator.events();
    let subject = "$KV.ozone-methodologies.echo.9.9.9";
    operator.client.publish(subject, "{}".into()).await?;
    operator.client.flush().await?;
    expect_violation(&operator, &mut events, Violation::Publish(subject.into())).await?;
    Ok(())
}

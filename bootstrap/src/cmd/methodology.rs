//! `ozone methodology list | show | validate | register | deprecate`: the registry ZSEI
//! keeps, reached as the console operator; `validate` checks a file here, without the bus.

use anyhow::Context;
use ozone_bus_schemas::operation::Operation;
use ozone_bus_schemas::zsei::{
    Deprecate, DeprecateReply, DeprecateRequest, Get, GetReply, GetRequest, List, ListReply,
    ListRequest, Register, RegisterReply, RegisterRequest,
};
use ozone_nats::bus::Bus;
use ozone_security::Home;
use std::path::Path;
use std::time::Duration;

/// How long a registry call may take (ZSEI may be starting).
const CALL: Duration = Duration::from_secs(30);

pub(crate) async fn call<Op: Operation>(
    bus: &Bus,
    request: &Op::Request,
) -> anyhow::Result<Op::Reply> {
    bus.request(&Op::SPEC.subject(), request, CALL)
        .await
        .with_context(|| {
            format!(
                "{} did not answer (is ZSEI up? `ozone status`)",
                Op::SPEC.subject()
            )
        })
}

/// Reads a methodology file and the format its name implies.
fn read(path: &Path) -> anyhow::Result<(ozone_bus_schemas::zsei::DocumentFormat, String)> {
    let format = ozone_methodology::format_of(path).with_context(|| {
        format!(
            "{}: a methodology file ends in .json or .toml",
            path.display()
        )
    })?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((format, text))
}

/// `ozone methodology validate FILE`: every problem, each with its field; false if any.
pub fn validate_file(path: &Path) -> anyhow::Result<bool> {
    let (format, text) = read(path)?;
    match ozone_methodology::parse_valid(&text, format) {
        Ok(m) => {
            println!(
                "{}: valid ({} {}, {} steps)",
                path.display(),
                m.name,
                m.version,
                m.steps.len()
            );
            Ok(true)
        }
        Err(problems) => {
            eprintln!("{}: not a valid methodology", path.display());
            for p in &problems.0 {
                eprintln!("  {}: {}", p.field, p.problem);
            }
            Ok(false)
        }
    }
}

/// `ozone methodology register FILE`.
pub async fn register(home: &Home, path: &Path) -> anyhow::Result<()> {
    let (format, document) = read(path)?;
    let bus = crate::connect::cli_bus(home).await?;
    match call::<Register>(&bus, &RegisterRequest { format, document }).await? {
        RegisterReply::Registered { name, version } => {
            println!("registered {name} {version}");
            Ok(())
        }
        RegisterReply::Failed(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// `ozone methodology list`.
pub async fn list(home: &Home, json: bool) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let all = match call::<List>(&bus, &ListRequest {}).await? {
        ListReply::Listed(all) => all,
        ListReply::Failed(e) => anyhow::bail!("{e}"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<10} {:<8} DESCRIPTION",
        "NAME", "VERSION", "STATE"
    );
    for m in all {
        let state = match (m.default, m.deprecated) {
            (true, _) => "default",
            (_, true) => "deprecated",
            _ => "",
        };
        println!(
            "{:<24} {:<10} {:<8} {}",
            m.name, m.version, state, m.description
        );
    }
    Ok(())
}

/// `ozone methodology show NAME [--version V]`: the stored document, pretty JSON.
pub async fn show(home: &Home, name: &str, version: Option<String>) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let request = GetRequest {
        name: name.to_string(),
        version,
    };
    let record = match call::<Get>(&bus, &request).await? {
        GetReply::Found(r) => r,
        GetReply::Failed(e) => anyhow::bail!("{e}"),
    };
    let document: serde_json::Value = serde_json::from_str(&record.document)?;
    eprintln!(
        "{} {}{} — registered by {}",
        record.name,
        record.version,
        if record.deprecated {
            " (deprecated)"
        } else {
            ""
        },
        record.registered_by
    );
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// `ozone methodology deprecate NAME VERSION`.
pub async fn deprecate(home: &Home, name: &str, version: &str) -> anyhow::Result<()> {
    let bus = crate::connect::cli_bus(home).await?;
    let request = DeprecateRequest {
        name: name.to_string(),
        version: version.to_string(),
    };
    match call::<Deprecate>(&bus, &request).await? {
        DeprecateReply::Deprecated { name, version } => {
            println!("deprecated {name} {version}");
            Ok(())
        }
        DeprecateReply::Failed(e) => Err(anyhow::anyhow!("{e}")),
    }
}

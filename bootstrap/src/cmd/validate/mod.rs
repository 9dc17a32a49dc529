//! `ozone validate`: the seed's validation checks, each passed, failed (with the fix),
//! skipped (with why) or passed with a warning; any failure makes the exit status non-zero.

pub mod audit;
pub mod directory;
pub mod methodology;

use ozone_bus_schemas::Component;
use ozone_nats::{check_version, find_binary};
use ozone_security::pki::{self, Registry, Severity};
use ozone_security::{Home, SecurityConfig};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
    /// Nothing is broken, but something the operator asked for is not done.
    Warn(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// Certificates must stay valid at least this long.
const MIN_VALIDITY: Duration = Duration::from_secs(24 * 3600);

pub async fn run(home: &Home, cfg: &SecurityConfig) -> Vec<Check> {
    let unhonoured: Vec<String> = ozone_security::honoured::unhonoured(cfg)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut checks = vec![Check {
        name: "settings",
        outcome: if unhonoured.is_empty() {
            Outcome::Pass("every setting of security-config.toml is honoured".into())
        } else {
            Outcome::Warn(unhonoured)
        },
    }];
    let nats = match find_binary(&home.bin()).and_then(|b| check_version(&b)) {
        Ok(v) => Outcome::Pass(format!("nats-server {v}")),
        Err(e) => Outcome::Fail(e.to_string()),
    };
    checks.push(Check {
        name: "NATS version",
        outcome: nats,
    });

    let certs = {
        let errors: Vec<String> = pki::verify(home, MIN_VALIDITY)
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}: {} (fix: {})", f.subject, f.problem, f.fix))
            .collect();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expiring: Vec<String> = Registry::load(home)
            .map(|r| {
                r.identities
                    .iter()
                    .filter(|i| i.is_active() && i.not_after - now < MIN_VALIDITY.as_secs() as i64)
                    .map(|i| {
                        format!(
                            "{} expires within a day (fix: `ozone pki renew --within 2`)",
                            i.identity
                        )
                    })
                    .collect()
            })
            .unwrap_or_else(|e| vec![e.to_string()]);
        let problems: Vec<String> = errors.into_iter().chain(expiring).collect();
        if problems.is_empty() {
            Outcome::Pass("every certificate valid for more than a day".into())
        } else {
            Outcome::Fail(problems.join("; "))
        }
    };
    checks.push(Check {
        name: "certificates",
        outcome: certs,
    });

    let status = crate::cmd::status::gather(home, cfg).await;
    let components = match &status {
        Ok(s) => {
            let bad: Vec<String> = s
                .components
                .iter()
                .filter(|c| c.state != "ready" || c.instances.is_empty())
                .map(|c| {
                    format!(
                        "{} is {}{}",
                        c.component,
                        if c.instances.is_empty() && c.state == "ready" {
                            "not answering $SRV"
                        } else {
                            &c.state
                        },
                        c.detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            if bad.is_empty() {
                Outcome::Pass("all 8 components ready and answering $SRV".into())
            } else {
                Outcome::Fail(bad.join("; "))
            }
        }
        Err(e) => Outcome::Fail(format!("{e:#} (is the ecosystem up? `ozone up`)")),
    };
    checks.push(Check {
        name: "components healthy",
        outcome: components,
    });
    let directory = match &status {
        Ok(s) => {
            let running: Vec<Component> = s
                .components
                .iter()
                .filter(|c| !c.instances.is_empty())
                .filter_map(|c| Component::from_name(&c.component))
                .collect();
            crate::cmd::validate::directory::check(home, cfg, &running).await
        }
        Err(_) => Outcome::Skip("the bus is not reachable (see above)".into()),
    };
    checks.push(Check {
        name: "key directory",
        outcome: directory,
    });
    let audit = match &status {
        Ok(_) => crate::cmd::validate::audit::check(home, cfg).await,
        Err(_) => Outcome::Skip("the bus is not reachable (see above)".into()),
    };
    checks.push(Check {
        name: "audit stream",
        outcome: audit,
    });
    let bootstrap = match &status {
        Ok(_) => crate::cmd::validate::methodology::check(home).await,
        Err(_) => Outcome::Skip("the bus is not reachable (see above)".into()),
    };
    checks.push(Check {
        name: "bootstrap methodology",
        outcome: bootstrap,
    });
    checks
}

/// Prints the checks; returns the number of failures.
pub fn print(checks: &[Check]) -> usize {
    let mut failures = 0;
    for c in checks {
        match &c.outcome {
            Outcome::Pass(d) => println!("  ok    {:<22} {d}", c.name),
            Outcome::Skip(d) => println!("  skip  {:<22} {d}", c.name),
            Outcome::Warn(items) => {
                println!(
                    "  warn  {:<22} {} set but not honoured yet:",
                    c.name,
                    items.len()
                );
                for item in items {
                    println!("          - {item}");
                }
            }
            Outcome::Fail(d) => {
                failures += 1;
                println!("  FAIL  {:<22} {d}", c.name)
            }
        }
    }
    if failures == 0 {
        println!("validation passed");
    } else {
        println!("validation FAILED: {failures} check(s)");
    }
    failures
}

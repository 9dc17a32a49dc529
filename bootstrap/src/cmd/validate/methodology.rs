//! The seed's "bootstrap methodology" check: ZSEI holds a default version of `bootstrap` and
//! it is valid by today's rules (operations declared, the graph acyclic, templates sound).

use super::Outcome;
use ozone_bus_schemas::zsei::{DocumentFormat, Get, GetReply, GetRequest};
use ozone_security::Home;

pub async fn check(home: &Home) -> Outcome {
    let bus = match crate::connect::cli_bus(home).await {
        Ok(b) => b,
        Err(e) => return Outcome::Fail(format!("{e:#}")),
    };
    let request = GetRequest {
        name: "bootstrap".into(),
        version: None,
    };
    match crate::cmd::methodology::call::<Get>(&bus, &request).await {
        Err(e) => Outcome::Fail(format!("{e:#}")),
        Ok(GetReply::Failed(e)) => Outcome::Fail(format!(
            "{e} (fix: restart ZSEI, which registers the shipped methodologies when absent)"
        )),
        Ok(GetReply::Found(r)) => {
            match ozone_methodology::parse_valid(&r.document, DocumentFormat::Json) {
                Ok(m) => Outcome::Pass(format!(
                    "bootstrap {} registered and valid ({} steps)",
                    r.version,
                    m.steps.len()
                )),
                Err(problems) => Outcome::Fail(format!(
                    "bootstrap {} is registered but no longer valid: {problems}",
                    r.version
                )),
            }
        }
    }
}

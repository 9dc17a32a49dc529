//! A submission made into a task record: the methodology fetched from ZSEI and checked
//! again, the inputs checked against its declaration (unknown, missing, wrongly typed ones
//! refused by name) and its defaults applied.

use super::record::TaskRecord;
use ozone_bus_schemas::core::{CoreError, SubmitRequest};
use ozone_bus_schemas::operation::Operation;
use ozone_bus_schemas::zsei::{DocumentFormat, Get, GetReply, GetRequest, ZseiError};
use ozone_methodology::Methodology;
use ozone_nats::bus::Bus;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long ZSEI may take to answer.
const REGISTRY_WAIT: Duration = Duration::from_secs(10);

pub async fn prepare(bus: &Bus, req: SubmitRequest, caller: &str) -> Result<TaskRecord, CoreError> {
    let methodology = fetch(bus, &req.methodology, req.version.clone()).await?;
    let inputs = check_inputs(&methodology, req.inputs)?;
    let id = ozone_spark_client::new_request_id();
    Ok(TaskRecord::new(
        id,
        methodology,
        inputs,
        caller.to_string(),
        ozone_nats::bus::now_ms(),
    ))
}

async fn fetch(bus: &Bus, name: &str, version: Option<String>) -> Result<Methodology, CoreError> {
    let named = match &version {
        Some(v) => format!("{name} {v}"),
        None => name.to_string(),
    };
    let request = GetRequest {
        name: name.to_string(),
        version,
    };
    let reply: GetReply = bus
        .request(&Get::SPEC.subject(), &request, REGISTRY_WAIT)
        .await
        .map_err(|e| CoreError::Unavailable {
            detail: format!("the methodology registry (ZSEI): {e}"),
        })?;
    let record = match reply {
        GetReply::Found(r) => r,
        GetReply::Failed(ZseiError::NotFound { .. }) => {
            return Err(CoreError::UnknownMethodology { name: named })
        }
        GetReply::Failed(e) => {
            return Err(CoreError::Unavailable {
                detail: format!("ZSEI: {e}"),
            })
        }
    };
    ozone_methodology::parse_valid(&record.document, DocumentFormat::Json).map_err(|problems| {
        CoreError::Invalid {
            detail: format!("{named} is registered but not valid by this core's rules: {problems}"),
        }
    })
}

/// The inputs a task runs with: the given ones, checked, and the defaults of the rest.
pub fn check_inputs(
    m: &Methodology,
    given: BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, CoreError> {
    let invalid = |input: &str, problem: String| CoreError::InvalidInput {
        input: input.to_string(),
        problem,
    };
    for name in given.keys() {
        if !m.inputs.contains_key(name) {
            let known: Vec<&str> = m.inputs.keys().map(String::as_str).collect();
            return Err(invalid(
                name,
                format!(
                    "{} takes no such input (it takes: {})",
                    m.name,
                    known.join(", ")
                ),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (name, input) in &m.inputs {
        match given.get(name).or(input.default.as_ref()) {
            Some(value) if input.kind.admits(value) => {
                out.insert(name.clone(), value.clone());
            }
            Some(value) => {
                return Err(invalid(
                    name,
                    format!("expected a {:?} value, got {value}", input.kind).to_lowercase(),
                ))
            }
            None if input.is_required() => {
                return Err(invalid(name, format!("{} requires it", m.name)))
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn methodology() -> Methodology {
        ozone_methodology::parse(
            &json!({
                "name": "m", "version": "1.0.0", "description": "d",
                "inputs": {
                    "text": { "type": "text" },
                    "n": { "type": "number", "default": 3 }
                },
                "steps": [{ "id": "s", "call": "spark.generate" }]
            })
            .to_string(),
            DocumentFormat::Json,
        )
        .unwrap()
    }

    #[test]
    fn inputs_are_checked_by_name_and_defaults_applied() {
        let m = methodology();
        let given = BTreeMap::from([("text".to_string(), json!("{{ 7 * 7 }}"))]);
        let inputs = check_inputs(&m, given).unwrap();
        assert_eq!(inputs["n"], json!(3));
        assert_eq!(inputs["text"], json!("{{ 7 * 7 }}"));
        let e = check_inputs(&m, BTreeMap::new()).unwrap_err();
        assert_eq!(e.to_string(), "input text: m requires it");
        let e = check_inputs(&m, BTreeMap::from([("txet".into(), json!("x"))])).unwrap_err();
        assert!(
            e.to_string()
                .contains("takes no such input (it takes: n, text)"),
            "{e}"
        );
        let e = check_inputs(&m, BTreeMap::from([("text".into(), json!(5))])).unwrap_err();
        assert!(
            e.to_string().contains("expected a text value, got 5"),
            "{e}"
        );
    }
}

//! Every operation the ecosystem declares, for checks that need them all: a methodology's
//! steps name operations (`spark.generate`), and registration refuses one nobody declares or
//! the core may not call.

use crate::operation::{Operation, OperationSpec};
use crate::{core, spark, zsei, Component, Identity};

/// Every declared operation.
pub fn operations() -> Vec<OperationSpec> {
    vec![
        spark::Generate::SPEC,
        spark::Embed::SPEC,
        spark::Models::SPEC,
        zsei::Register::SPEC,
        zsei::Get::SPEC,
        zsei::List::SPEC,
        zsei::Deprecate::SPEC,
        core::Submit::SPEC,
        core::GetTask::SPEC,
        core::ListTasks::SPEC,
        core::CancelTask::SPEC,
        core::ApproveStep::SPEC,
    ]
}

/// The operation a call names (`<component>.<operation>`), if one is declared.
pub fn find(call: &str) -> Option<OperationSpec> {
    operations()
        .into_iter()
        .find(|spec| spec.subject().as_str() == call)
}

/// Whether the OZONE STUDIO core, which runs methodologies, may call `spec`.
pub fn core_may_call(spec: &OperationSpec) -> bool {
    spec.callers.includes(
        &Identity::component(Component::Core),
        &Identity::component(spec.component),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_found_by_subject() {
        assert_eq!(find("spark.generate").map(|s| s.name), Some("generate"));
        assert_eq!(
            find("zsei.methodology.list").map(|s| s.name),
            Some("methodology.list")
        );
        assert!(find("spark.teleport").is_none());
        // The core does not call itself: a step may not start a task.
        assert!(!core_may_call(&core::Submit::SPEC));
        let others = operations()
            .into_iter()
            .filter(|s| s.component != Component::Core);
        assert!(others.into_iter().all(|s| core_may_call(&s)));
    }
}

//! The steps' dependency graph: unknown and duplicate ids, cycles (named step by step), each
//! step's ancestors (the steps whose outputs it may read) and an order to start them in.

use crate::format::Step;
use crate::problem::Problem;
use std::collections::{BTreeSet, HashMap};

/// Steps by index, with each one's direct dependencies.
#[derive(Debug, Clone)]
pub struct Graph {
    ids: Vec<String>,
    deps: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph; refuses duplicate ids and dependencies on unknown or same steps.
    pub fn new(steps: &[Step]) -> Result<Graph, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut index = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            // The first step of an id keeps it; a later one is the duplicate.
            if *index.entry(s.id.as_str()).or_insert(i) != i {
                problems.push(Problem::new(
                    format!("steps[{i}].id"),
                    format!("`{}` is the id of an earlier step too", s.id),
                ));
            }
        }
        let mut deps = Vec::with_capacity(steps.len());
        for (i, s) in steps.iter().enumerate() {
            let mut mine = Vec::new();
            for (j, d) in s.depends_on.iter().enumerate() {
                let field = format!("steps[{i}].depends_on[{j}]");
                match index.get(d.as_str()) {
                    None => problems.push(Problem::new(field, format!("no step has id `{d}`"))),
                    Some(&k) if k == i => {
                        problems.push(Problem::new(field, "a step cannot depend on itself"))
                    }
                    Some(&k) => mine.push(k),
                }
            }
            mine.sort_unstable();
            mine.dedup();
            deps.push(mine);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Graph {
            ids: steps.iter().map(|s| s.id.clone()).collect(),
            deps,
        })
    }

    /// A cycle, as step ids from its first step back to it (`a → b → a`), if there is one.
    pub fn cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.ids.len()];
        let mut path: Vec<usize> = Vec::new();
        // Iterative depth-first search: (node, next dependency to visit).
        for root in 0..self.ids.len() {
            if mark[root] != Mark::New {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            mark[root] = Mark::OnPath;
            path.push(root);
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                if let Some(&dep) = self.deps[node].get(*next) {
                    *next += 1;
                    match mark[dep] {
                        Mark::OnPath => {
                            let start = path.iter().position(|&p| p == dep).unwrap_or(0);
                            let mut names: Vec<String> =
                                path[start..].iter().map(|&p| self.ids[p].clone()).collect();
                            names.push(self.ids[dep].clone());
                            return Some(names);
                        }
                        Mark::New => {
                            mark[dep] = Mark::OnPath;
                            path.push(dep);
                            stack.push((dep, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    path.pop();
                    stack.pop();
                }
            }
        }
        None
    }

    /// The steps `step` depends on, directly or not (by index). Only on an acyclic graph.
    pub fn ancestors(&self, step: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.deps.get(step).cloned().unwrap_or_default();
        while let Some(d) = todo.pop() {
            if seen.insert(d) {
                todo.extend(self.deps[d].iter().copied());
            }
        }
        seen
    }

    /// The direct dependencies of `step` (by index).
    pub fn dependencies(&self, step: usize) -> &[usize] {
        self.deps.get(step).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn step(id: &str, deps: &[&str]) -> Step {
        Step {
            id: id.into(),
            call: "spark.generate".into(),
            with: Default::default(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            when: None,
            timeout: None,
            retry: None,
            check: None,
            requires_approval: false,
            side_effects: false,
        }
    }

    #[test]
    fn a_cycle_is_named_step_by_step() {
        let g = Graph::new(&[
            step("fetch", &[]),
            step("draft", &["fetch", "review"]),
            step("review", &["draft"]),
        ])
        .unwrap();
        assert_eq!(g.cycle().unwrap(), ["draft", "review", "draft"]);
        let dag = Graph::new(&[step("a", &[]), step("b", &["a"]), step("c", &["a", "b"])]).unwrap();
        assert_eq!(dag.cycle(), None);
        assert_eq!(dag.ancestors(2), BTreeSet::from([0, 1]));
        assert_eq!(dag.ancestors(0), BTreeSet::new());
    }

    #[test]
    fn unknown_duplicate_and_self_dependencies_are_named() {
        let problems = Graph::new(&[step("a", &["a"]), step("a", &["ghost"])]).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "steps[1].id",
                "steps[0].depends_on[0]",
                "steps[1].depends_on[0]"
            ]
        );
        assert!(problems[2].problem.contains("ghost"));
    }
}

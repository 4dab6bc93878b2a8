//! Completion names taken from a [`Snapshot`], for faces that run the session on a worker.

use crate::lang::{CompletionSource, PluginRole};
use crate::snapshot::Snapshot;

/// The names a running session knows, for completion in faces that hold only its latest
/// [`Snapshot`] (the terminal REPL, the Jupyter kernel): tensor and layer names, plugins with
/// their kinds, and the open run's steps.
#[derive(Debug, Clone, Default)]
pub struct SnapshotNames {
    tensors: Vec<String>,
    plugins: Vec<(String, String)>,
    steps: Vec<u64>,
}

impl SnapshotNames {
    pub fn from_snapshot(snapshot: &Snapshot) -> SnapshotNames {
        let mut tensors: Vec<String> = Vec::new();
        let model_tensors = snapshot.model.iter().flat_map(|m| &m.tensors);
        let run_tensors = snapshot.run.iter().flat_map(|r| &r.tensors);
        for t in model_tensors.chain(run_tensors) {
            if !tensors.contains(&t.name) {
                tensors.push(t.name.clone());
            }
        }
        let plugins = snapshot
            .plugins
            .iter()
            .map(|p| (p.name.clone(), p.kind.clone()))
            .collect();
        let steps = snapshot
            .run
            .iter()
            .flat_map(|r| std::iter::once(r.first).chain(r.steps.iter().map(|s| s.step)))
            .collect();
        SnapshotNames {
            tensors,
            plugins,
            steps,
        }
    }
}

impl CompletionSource for SnapshotNames {
    fn tensor_names(&self) -> Vec<String> {
        self.tensors.clone()
    }

    fn layer_names(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|t| t.strip_suffix(".weight"))
            .map(str::to_string)
            .collect()
    }

    fn plugin_names(&self, role: Option<PluginRole>) -> Vec<String> {
        let kind = role.map(|r| match r {
            PluginRole::Tracer => "tracer",
            PluginRole::Checker => "checker",
            PluginRole::Visualiser => "visualiser",
        });
        self.plugins
            .iter()
            .filter(|(_, k)| kind.is_none_or(|kind| k == kind))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn run_steps(&self) -> Vec<u64> {
        let mut steps = self.steps.clone();
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

//! What completion knows about the running session: tensor, layer and plugin names and the open
//! run's steps, taken from the snapshot the session worker sends after every command.

use tritlab_session::lang::{CompletionSource, PluginRole};
use tritlab_session::Snapshot;

#[derive(Debug, Clone, Default)]
pub(crate) struct SessionNames {
    tensors: Vec<String>,
    plugins: Vec<(String, String)>,
    steps: Vec<u64>,
}

impl SessionNames {
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> SessionNames {
        let mut tensors: Vec<String> = Vec::new();
        let model_tensors = snapshot.model.iter().flat_map(|m| &m.tensors);
        let run_tensors = snapshot.run.iter().flat_map(|r| &r.tensors);
        for t in model_tensors.chain(run_tensors) {
            if !tensors.contains(&t.name) {
                tensors.push(t.name.clone());
            }
        }
        let mut steps: Vec<u64> = snapshot
            .run
            .iter()
            .flat_map(|r| std::iter::once(r.first).chain(r.steps.iter().map(|s| s.step)))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        SessionNames {
            tensors,
            plugins: snapshot
                .plugins
                .iter()
                .map(|p| (p.name.clone(), p.kind.clone()))
                .collect(),
            steps,
        }
    }
}

impl CompletionSource for SessionNames {
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
        self.steps.clone()
    }
}

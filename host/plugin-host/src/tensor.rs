//! The read-only view of tensors that plugins get through host imports.

use std::collections::BTreeMap;

use crate::types::{TensorInfo, Trit};

/// Serves tensor names, shapes and trits to plugins.
///
/// The caller provides it (the engine implements it over a loaded model);
/// plugins can only read. Implementations must be cheap to call repeatedly:
/// checkers stream large tensors in chunks.
pub trait TensorSource: Send + Sync {
    /// Every tensor that can be read, with its shape.
    fn tensors(&self) -> Vec<TensorInfo>;

    /// Up to `len` trits of tensor `name` from flat row-major index `offset`;
    /// fewer at the end of the tensor, none past it. `Err` explains a
    /// missing tensor (the text is passed to the plugin).
    fn read_trits(&self, name: &str, offset: u64, len: usize) -> Result<Vec<Trit>, String>;
}

/// A source with no tensors: the default until the caller provides one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTensors;

impl TensorSource for NoTensors {
    fn tensors(&self) -> Vec<TensorInfo> {
        Vec::new()
    }

    fn read_trits(&self, name: &str, _offset: u64, _len: usize) -> Result<Vec<Trit>, String> {
        Err(format!("no tensor named `{name}`"))
    }
}

/// Tensors held in memory, for tests and small tools.
#[derive(Clone, Debug, Default)]
pub struct InMemoryTensors {
    tensors: BTreeMap<String, (Vec<u32>, Vec<Trit>)>,
}

impl InMemoryTensors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tensor. Returns an error if the shape does not
    /// hold exactly `trits.len()` elements.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        shape: Vec<u32>,
        trits: Vec<Trit>,
    ) -> Result<(), String> {
        let name = name.into();
        let info = TensorInfo {
            name: name.clone(),
            shape,
        };
        if info.len() != Some(trits.len() as u64) {
            return Err(format!(
                "tensor `{name}`: shape {:?} does not hold {} trits",
                info.shape,
                trits.len()
            ));
        }
        self.tensors.insert(name, (info.shape, trits));
        Ok(())
    }
}

impl TensorSource for InMemoryTensors {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.tensors
            .iter()
            .map(|(name, (shape, _))| TensorInfo {
                name: name.clone(),
                shape: shape.clone(),
            })
            .collect()
    }

    fn read_trits(&self, name: &str, offset: u64, len: usize) -> Result<Vec<Trit>, String> {
        let (_, trits) = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("no tensor named `{name}`"))?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(trits.len());
        let end = start.saturating_add(len).min(trits.len());
        Ok(trits[start..end].to_vec())
    }
}

//! The GGUF v3 writer: metadata in insertion order, tensors in insertion order, data aligned to
//! 32 bytes (ggml's default, so readers need no `general.alignment`).

use crate::error::{GgufError, Result};
use crate::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::types::GgmlType;
use crate::value::{tag, Value};
use std::io::Write;
use std::path::Path;

struct PendingTensor {
    name: String,
    dims: Vec<usize>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes one file.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata key (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// Adds a tensor with ggml dimensions (`dims[0]` contiguous) and already-encoded data.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<()> {
        if dims.is_empty() || dims.len() > MAX_DIMS as usize || dims.contains(&0) {
            return Err(GgufError::Write(format!(
                "tensor `{name}`: dimensions {dims:?} are not 1 to 4 positive numbers"
            )));
        }
        let elements: usize = dims.iter().product();
        let size = ty
            .data_size(dims[0], elements)
            .map_err(|m| GgufError::Write(format!("tensor `{name}`: {m}")))?;
        if size != data.len() {
            return Err(GgufError::Write(format!(
                "tensor `{name}`: {ty} data of dimensions {dims:?} is {size} bytes, got {}",
                data.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::Write(format!("tensor `{name}` added twice")));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend_from_slice(&v.tag().to_le_bytes());
            write_value(&mut out, v, k)?;
        }
        let align = DEFAULT_ALIGNMENT as usize;
        let mut offset = 0usize;
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.data.len()).next_multiple_of(align);
        }
        out.resize(out.len().next_multiple_of(align), 0);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().next_multiple_of(align), 0);
        }
        Ok(out)
    }

    /// Writes the file (through a temporary file beside it, renamed when complete).
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let io = |e| GgufError::Io {
            path: path.to_path_buf(),
            error: e,
        };
        let tmp = path.with_extension("gguf.partial");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value, key: &str) -> Result<()> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => write_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(items) => {
            let elem = items.first().map_or(tag::U8, Value::tag);
            if elem == tag::ARRAY {
                return Err(GgufError::Write(format!(
                    "metadata `{key}`: nested arrays are not supported"
                )));
            }
            if items.iter().any(|i| i.tag() != elem) {
                return Err(GgufError::Write(format!(
                    "metadata `{key}`: array elements must all have one type"
                )));
            }
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                write_value(out, i, key)?;
            }
        }
    }
    Ok(())
}

//! The GGUF reader: the file is memory-mapped; the header, metadata and tensor records are parsed
//! with every length and offset checked against the mapping before it is used, so a truncated or
//! corrupt file is an error naming the byte where it went wrong, never a panic or a wild read.

use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::{tag, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tritlab_kernels::mapped::MappedFile;

pub const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// GGUF allows at most this many dimensions.
pub const MAX_DIMS: u32 = 4;

/// One tensor record.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the file.
    pub offset: u64,
    /// Bytes of the data.
    pub size: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The shape as `[rows, row_len]` for a matrix (`dims` reversed), `[len]` for a vector.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    path: PathBuf,
    mmap: Arc<MappedFile>,
    version: u32,
    alignment: u64,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
}

struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, message: impl Into<String>) -> GgufError {
        GgufError::Format {
            path: self.path.to_path_buf(),
            offset: self.pos as u64,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "{what} needs {n} bytes, the file ends after {} (truncated?)",
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().unwrap_or_default(),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().unwrap_or_default(),
        ))
    }

    /// A length that must fit in what is left of the file, at `min_bytes` per item.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            self.pos = at;
            return Err(self.err(format!(
                "{what} is {n}, more than the {left} bytes left in the file can hold"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            self.pos = at;
            self.err(format!("{what} is not UTF-8"))
        })
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            tag::U8 => Value::U8(self.take(1, "u8 value")?[0]),
            tag::I8 => Value::I8(self.take(1, "i8 value")?[0] as i8),
            tag::U16 => Value::U16(u16::from_le_bytes(
                self.take(2, "u16 value")?.try_into().unwrap_or_default(),
            )),
            tag::I16 => Value::I16(i16::from_le_bytes(
                self.take(2, "i16 value")?.try_into().unwrap_or_default(),
            )),
            tag::U32 => Value::U32(self.u32("u32 value")?),
            tag::I32 => Value::I32(self.u32("i32 value")? as i32),
            tag::F32 => Value::F32(f32::from_bits(self.u32("f32 value")?)),
            tag::BOOL => {
                let b = self.take(1, "bool value")?[0];
                if b > 1 {
                    self.pos -= 1;
                    return Err(self.err(format!("bool value {b} is neither 0 nor 1")));
                }
                Value::Bool(b == 1)
            }
            tag::STRING => Value::String(self.string("string length")?),
            tag::U64 => Value::U64(self.u64("u64 value")?),
            tag::I64 => Value::I64(self.u64("i64 value")? as i64),
            tag::F64 => Value::F64(f64::from_bits(self.u64("f64 value")?)),
            tag::ARRAY => {
                if depth > 0 {
                    return Err(self.err("nested arrays are not supported"));
                }
                let elem = self.u32("array element type")?;
                let min = match elem {
                    tag::U8 | tag::I8 | tag::BOOL => 1,
                    tag::U16 | tag::I16 => 2,
                    tag::U32 | tag::I32 | tag::F32 => 4,
                    tag::STRING | tag::U64 | tag::I64 | tag::F64 => 8,
                    tag::ARRAY => return Err(self.err("nested arrays are not supported")),
                    other => {
                        self.pos -= 4;
                        return Err(self.err(format!("unknown array element type {other}")));
                    }
                };
                let n = self.count("array length", min)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(elem, depth + 1)?);
                }
                Value::Array(v)
            }
            other => {
                self.pos -= 4;
                return Err(self.err(format!("unknown metadata value type {other}")));
            }
        })
    }
}

impl GgufFile {
    /// Maps and parses `path`, checking every tensor's type, size, alignment and bounds.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |e| GgufError::Io {
            path: path.to_path_buf(),
            error: e,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // Like every mmap-based model reader, this relies on nobody truncating the file in place
        // while it is open (see `tritlab_kernels::mapped`); every offset is checked against the
        // mapped length before it is read.
        let mmap = MappedFile::map(&file).map_err(io)?;
        Self::parse(path, Arc::new(mmap))
    }

    fn parse(path: &Path, mmap: Arc<MappedFile>) -> Result<Self> {
        let buf: &[u8] = &mmap;
        let mut c = Cursor { path, buf, pos: 0 };
        let magic = c.take(4, "the GGUF magic")?;
        if magic != MAGIC {
            c.pos = 0;
            return Err(c.err(format!(
                "not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"
            )));
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            c.pos -= 4;
            return Err(c.err(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        // A tensor record is at least 8 (name) + 4 (dims) + 4 (type) + 8 (offset) bytes; a
        // metadata entry at least 8 (key) + 4 (type) + 1.
        let n_tensors = c.count("the tensor count", 24)?;
        let n_kv = c.count("the metadata count", 13)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key_at = c.pos;
            let key = c.string("metadata key length")?;
            let ty = c.u32("metadata value type")?;
            let value = c.value(ty, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                c.pos = key_at;
                return Err(c.err(format!("metadata key `{key}` appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Metadata {
                        path: path.to_path_buf(),
                        key: "general.alignment".into(),
                        message: format!("{v:?} is not a power of two"),
                    })
                }
            },
        };
        struct Raw {
            name: String,
            dims: Vec<usize>,
            type_id: u32,
            rel: u64,
            at: usize,
        }
        let mut raws = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let at = c.pos;
            let name = c.string("tensor name length")?;
            let nd = c.u32("tensor dimension count")?;
            if nd == 0 || nd > MAX_DIMS {
                c.pos -= 4;
                return Err(c.err(format!(
                    "tensor `{name}` has {nd} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                let d = c.u64("tensor dimension")?;
                if d == 0 || d > i64::MAX as u64 {
                    c.pos -= 8;
                    return Err(c.err(format!("tensor `{name}` has dimension {d}")));
                }
                dims.push(d as usize);
            }
            let type_id = c.u32("tensor type")?;
            let rel = c.u64("tensor offset")?;
            raws.push(Raw {
                name,
                dims,
                type_id,
                rel,
                at,
            });
        }
        let data_start = (c.pos as u64).next_multiple_of(alignment);
        let file_len = buf.len() as u64;
        let mut tensors = Vec::with_capacity(raws.len());
        let mut by_name = BTreeMap::new();
        for r in raws {
            let offset = data_start.saturating_add(r.rel);
            let data_err = |message: String| GgufError::TensorData {
                path: path.to_path_buf(),
                tensor: r.name.clone(),
                offset,
                message,
            };
            let ty = GgmlType::from_id(r.type_id).ok_or_else(|| GgufError::UnknownType {
                path: path.to_path_buf(),
                tensor: r.name.clone(),
                offset,
                type_id: r.type_id,
            })?;
            let elements = r
                .dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| data_err(format!("dimensions {:?} overflow", r.dims)))?;
            let size = ty
                .data_size(r.dims[0], elements)
                .map_err(|m| data_err(format!("{ty} tensor of dimensions {:?}: {m}", r.dims)))?;
            if !r.rel.is_multiple_of(alignment) {
                return Err(data_err(format!(
                    "offset {} is not a multiple of the alignment {alignment}",
                    r.rel
                )));
            }
            if offset.checked_add(size as u64).is_none_or(|e| e > file_len) {
                return Err(data_err(format!(
                    "{size} bytes of {ty} data run past the end of the file ({file_len} bytes; truncated?)"
                )));
            }
            if by_name.insert(r.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Format {
                    path: path.to_path_buf(),
                    offset: r.at as u64,
                    message: format!("tensor `{}` appears twice", r.name),
                });
            }
            tensors.push(TensorInfo {
                name: r.name,
                dims: r.dims,
                ty,
                offset,
                size,
            });
        }
        // Tensors may come in any order, but must not share bytes.
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if a.offset + a.size as u64 > b.offset {
                return Err(GgufError::TensorData {
                    path: path.to_path_buf(),
                    tensor: b.name.clone(),
                    offset: b.offset,
                    message: format!("overlaps the data of tensor `{}`", a.name),
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            version,
            alignment,
            metadata,
            tensors,
            by_name,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The mapping, for callers that keep tensors where they lie (see [`GgufFile::range`]).
    pub fn mmap(&self) -> &Arc<MappedFile> {
        &self.mmap
    }

    pub fn file_len(&self) -> usize {
        self.mmap.len()
    }

    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    pub fn require(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })
    }

    /// Byte range of a tensor's data in the mapping (checked when the file was opened).
    pub fn range(&self, t: &TensorInfo) -> Range<usize> {
        t.offset as usize..t.offset as usize + t.size
    }

    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        &self.mmap[self.range(t)]
    }

    /// Drops a tensor's pages from the process after it was converted (they are read from the
    /// file again if touched), so converted weights are not resident twice.
    pub fn release(&self, t: &TensorInfo) {
        self.mmap.release(self.range(t));
    }

    /// A required string key.
    pub fn str_key(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| self.meta_err(key, "missing"))?
            .as_str()
            .ok_or_else(|| self.meta_err(key, "is not a string"))
    }

    /// An optional unsigned integer key; present but not an unsigned integer is an error.
    pub fn u64_key(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.meta_err(
                    key,
                    format!("{} is not a non-negative integer", v.type_name()),
                )
            }),
        }
    }

    /// An optional float key.
    pub fn f64_key(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.meta_err(key, format!("{} is not a number", v.type_name()))),
        }
    }

    pub fn meta_err(&self, key: &str, message: impl Into<String>) -> GgufError {
        GgufError::Metadata {
            path: self.path.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An error about one tensor's data.
    pub fn tensor_err(&self, t: &TensorInfo, message: impl Into<String>) -> GgufError {
        GgufError::TensorData {
            path: self.path.clone(),
            tensor: t.name.clone(),
            offset: t.offset,
            message: message.into(),
        }
    }
}

//! Memory-mapped safetensors checkpoints: one file, or shards listed by
//! `model.safetensors.index.json`.
//!
//! Files are mapped, never read whole: the packed ternary weights are touched once, converted
//! into the kernels' layout and their pages dropped again ([`TensorRef::release`]); the
//! embedding and `lm_head` stay in the mapping in their stored dtype ([`FloatMatrix`]), so the
//! process holds roughly the checkpoint's size and no f32 copy of the largest matrix.

use crate::error::{EngineError, Result};
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tritlab_kernels::dense::{bf16_to_f32, dot_bf16, dot_f32, gemm_f16, gemv_f16, widen_f16};
use tritlab_kernels::mapped::MappedFile;

/// Bytes before the JSON header of a safetensors file (its little-endian length).
const HEADER_LEN_BYTES: usize = 8;

/// One mapped safetensors file and its parsed header.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Arc<MappedFile>,
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl SafetensorsFile {
    /// Opens and maps `path` after checking its header against the file.
    ///
    /// The header is read with ordinary reads, and the file's length checked to hold every
    /// tensor's byte range, *before* the file is mapped: a truncated or inconsistent file is an
    /// error naming it, and no access through the mapping can fall past the end of the file as
    /// it was when opened.
    ///
    /// A mapping is only as stable as the file under it. If another process truncates or
    /// rewrites the file in place while it is mapped, the pages that disappeared raise SIGBUS
    /// on the next access and the process dies; no check made at open time can prevent that,
    /// because the kernel resolves each page when it is touched, not when it is mapped. Replacing
    /// a checkpoint by renaming a new file over it (as tritlab's own writers do) is safe: the
    /// mapping keeps the old inode alive.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let (header_len, metadata) = read_header(path, &mut file, file_len)?;
        // SAFETY: the mapping is read-only, and the header was checked above against the file's
        // length: every tensor's byte range lies inside the file as it is now, and the mapping's
        // length is compared with that length below. What no check can rule out is another
        // process truncating the file in place while it is mapped (SIGBUS on access): see the
        // doc comment and docs/ARCHITECTURE.md.
        let mmap = MappedFile::map(&file).map_err(|e| EngineError::io(path, e))?;
        if mmap.len() as u64 != file_len {
            return Err(EngineError::Safetensors {
                path: path.to_path_buf(),
                message: format!(
                    "the file changed while it was being opened ({file_len} bytes, then {})",
                    mmap.len()
                ),
            });
        }
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap: Arc::new(mmap),
            data_start: HEADER_LEN_BYTES + header_len,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        let info = self.tensors.get(name)?;
        let (s, e) = info.data_offsets;
        Some(TensorRef {
            file: self,
            name: name.to_string(),
            dtype: info.dtype,
            shape: info.shape.clone(),
            range: self.data_start + s..self.data_start + e,
        })
    }
}

/// The largest JSON header accepted (the `safetensors` crate's own limit): a header length
/// field is untrusted, and a corrupt one must not make the reader allocate gigabytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads and validates the header of a safetensors file of `file_len` bytes from `file`, without
/// mapping it: the header length must be sane and inside the file, the tensors' byte ranges
/// contiguous, matching their dtype and shape, and ending exactly at the end of the file.
/// Returns the JSON header's length and the parsed metadata.
fn read_header(path: &Path, file: &mut std::fs::File, file_len: u64) -> Result<(usize, Metadata)> {
    use std::io::Read;
    let invalid = |message: String| EngineError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    if file_len < HEADER_LEN_BYTES as u64 {
        return Err(invalid(format!(
            "the file is {file_len} bytes, shorter than the {HEADER_LEN_BYTES}-byte header length (the file is truncated or not safetensors)"
        )));
    }
    let mut len_bytes = [0u8; HEADER_LEN_BYTES];
    file.read_exact(&mut len_bytes)
        .map_err(|e| EngineError::io(path, e))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "header length {header_len} is more than the {MAX_HEADER_BYTES} bytes allowed (the file is corrupt or not safetensors)"
        )));
    }
    let data_start = HEADER_LEN_BYTES as u64 + header_len;
    if data_start > file_len {
        return Err(invalid(format!(
            "header length {header_len} runs past the end of the {file_len}-byte file (the file is truncated or not safetensors)"
        )));
    }
    // Bounded by MAX_HEADER_BYTES and by the file's length, both checked above.
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| EngineError::io(path, e))?;
    let header = std::str::from_utf8(&header)
        .map_err(|e| invalid(format!("the header is not UTF-8: {e}")))?;
    // Deserialising `Metadata` also checks that the tensors' byte ranges are contiguous and
    // match their dtype and shape, with overflow-checked sizes.
    let metadata: Metadata =
        serde_json::from_str(header).map_err(|e| invalid(format!("invalid header: {e}")))?;
    let data_len = metadata.data_len() as u64;
    let needed = data_start.checked_add(data_len).ok_or_else(|| {
        invalid(format!(
            "tensor data of {data_len} bytes overflows a file offset"
        ))
    })?;
    if needed > file_len {
        // Name the first tensor that does not fit, to say how much is missing.
        let mut infos: Vec<(String, &TensorInfo)> = metadata.tensors().into_iter().collect();
        infos.sort_by_key(|(_, info)| info.data_offsets);
        let first_out = infos
            .iter()
            .find(|(_, info)| data_start + info.data_offsets.1 as u64 > file_len)
            .map(|(name, info)| {
                format!(
                    "; tensor `{name}` needs bytes {}..{}",
                    data_start + info.data_offsets.0 as u64,
                    data_start + info.data_offsets.1 as u64
                )
            })
            .unwrap_or_default();
        return Err(invalid(format!(
            "the header describes {needed} bytes but the file has {file_len}{first_out} (the file is truncated, or its header does not describe its data)"
        )));
    }
    if needed < file_len {
        return Err(invalid(format!(
            "the header describes {needed} bytes but the file has {file_len}: {} bytes follow the last tensor (the header does not describe its data)",
            file_len - needed
        )));
    }
    Ok((header_len as usize, metadata))
}

/// All weight files of a checkpoint, with a name → file index.
pub struct WeightSet {
    /// What errors about missing tensors name: the single file, or the shard index.
    origin: PathBuf,
    files: Vec<SafetensorsFile>,
    index: BTreeMap<String, usize>,
}

impl WeightSet {
    /// Opens `path`: a `.safetensors` file, or a directory holding `model.safetensors` or
    /// `model.safetensors.index.json` and its shards.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::from_files(path.to_path_buf(), vec![path.to_path_buf()]);
        }
        if !path.is_dir() {
            return Err(EngineError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        let index_path = path.join("model.safetensors.index.json");
        if index_path.is_file() {
            return Self::open_index(&index_path);
        }
        let single = path.join("model.safetensors");
        if single.is_file() {
            return Self::from_files(single.clone(), vec![single]);
        }
        Err(EngineError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors or model.safetensors.index.json in this directory",
            ),
        ))
    }

    fn open_index(index_path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(index_path).map_err(|e| EngineError::io(index_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::config(index_path, format!("invalid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::config(index_path, "no \"weight_map\" object"))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<String> = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                EngineError::config(
                    index_path,
                    format!("weight_map entry for `{tensor}` is not a file name"),
                )
            })?;
            if file.contains('/') || file.contains('\\') || file == ".." {
                return Err(EngineError::config(
                    index_path,
                    format!("shard name {file:?} is not a plain file name"),
                ));
            }
            if !shard_names.iter().any(|s| s == file) {
                shard_names.push(file.to_string());
            }
        }
        shard_names.sort();
        let set = Self::from_files(
            index_path.to_path_buf(),
            shard_names.iter().map(|s| dir.join(s)).collect(),
        )?;
        // Every tensor the index promises must be in the shard it names.
        for (tensor, file) in map {
            let file = file.as_str().unwrap_or_default();
            let found = set
                .index
                .get(tensor)
                .map(|&i| set.files[i].path.file_name());
            if found != Some(Some(std::ffi::OsStr::new(file))) {
                return Err(EngineError::MissingTensor {
                    path: dir.join(file),
                    tensor: tensor.clone(),
                });
            }
        }
        Ok(set)
    }

    fn from_files(origin: PathBuf, paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = BTreeMap::new();
        for p in paths {
            let f = SafetensorsFile::open(&p)?;
            for name in f.names() {
                if index.insert(name.to_string(), files.len()).is_some() {
                    return Err(EngineError::tensor_value(
                        &p,
                        name,
                        "tensor appears in more than one shard",
                    ));
                }
            }
            files.push(f);
        }
        Ok(Self {
            origin,
            files,
            index,
        })
    }

    /// The file (or shard index) errors about the whole set refer to.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Result<TensorRef<'_>> {
        self.index
            .get(name)
            .and_then(|&i| self.files[i].tensor(name))
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.origin.clone(),
                tensor: name.to_string(),
            })
    }
}

/// The float element types tritlab reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatDtype {
    BF16,
    F16,
    F32,
}

impl FloatDtype {
    pub fn from_safetensors(d: Dtype) -> Option<Self> {
        match d {
            Dtype::BF16 => Some(FloatDtype::BF16),
            Dtype::F16 => Some(FloatDtype::F16),
            Dtype::F32 => Some(FloatDtype::F32),
            _ => None,
        }
    }

    pub fn size(self) -> usize {
        match self {
            FloatDtype::BF16 | FloatDtype::F16 => 2,
            FloatDtype::F32 => 4,
        }
    }
}

/// One tensor inside a mapped file.
pub struct TensorRef<'a> {
    file: &'a SafetensorsFile,
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    range: Range<usize>,
}

impl<'a> TensorRef<'a> {
    pub fn path(&self) -> &'a Path {
        &self.file.path
    }

    pub fn bytes(&self) -> &'a [u8] {
        &self.file.mmap[self.range.clone()]
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn expect_shape(&self, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(EngineError::TensorShape {
                path: self.path().to_path_buf(),
                tensor: self.name.clone(),
                expected: expected.to_vec(),
                actual: self.shape.clone(),
            });
        }
        Ok(())
    }

    pub fn dtype_error(&self, expected: &str) -> EngineError {
        EngineError::TensorDtype {
            path: self.path().to_path_buf(),
            tensor: self.name.clone(),
            expected: expected.to_string(),
            actual: format!("{:?}", self.dtype),
        }
    }

    pub fn float_dtype(&self) -> Result<FloatDtype> {
        FloatDtype::from_safetensors(self.dtype).ok_or_else(|| self.dtype_error("BF16, F16 or F32"))
    }

    /// The values as f32 (from BF16, F16 or F32), read unaligned from the mapping.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = self.bytes();
        Ok(match self.float_dtype()? {
            FloatDtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            FloatDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            FloatDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }

    /// A float vector of the given length that must be finite (norm weights, scales).
    pub fn to_f32_finite(&self) -> Result<Vec<f32>> {
        let v = self.to_f32()?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(EngineError::tensor_value(
                self.path(),
                &self.name,
                format!("non-finite value {} at index {i}", v[i]),
            ));
        }
        Ok(v)
    }

    /// Drops this tensor's pages from the process (they are read again from the file if touched).
    /// Used after converting packed weights once, so they do not stay resident twice.
    pub fn release(&self) {
        if self.range.is_empty() {
            return;
        }
        self.file.mmap.release(self.range.clone());
    }

    /// Keeps the tensor where it lies (in the mapping) as a row-major float matrix.
    pub fn to_float_matrix(&self, rows: usize, cols: usize) -> Result<FloatMatrix> {
        self.expect_shape(&[rows, cols])?;
        let dtype = self.float_dtype()?;
        let bytes = self.bytes();
        let aligned = (bytes.as_ptr() as usize).is_multiple_of(dtype.size());
        let storage = if aligned {
            FloatStorage::Mapped {
                mmap: self.file.mmap.clone(),
                range: self.range.clone(),
            }
        } else {
            // A header whose length is odd leaves the data unaligned: copy it once.
            match dtype {
                FloatDtype::F32 => FloatStorage::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                _ => FloatStorage::U16(
                    bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                ),
            }
        };
        Ok(FloatMatrix {
            rows,
            cols,
            dtype,
            storage,
        })
    }
}

enum FloatStorage {
    Mapped {
        mmap: Arc<MappedFile>,
        range: Range<usize>,
    },
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// A row-major float matrix kept in its stored dtype (bf16, f16 or f32): the embedding and the
/// output projection. Rows are widened to f32 only as they are used.
pub struct FloatMatrix {
    rows: usize,
    cols: usize,
    dtype: FloatDtype,
    storage: FloatStorage,
}

enum Rows<'a> {
    U16(&'a [u16]),
    F32(&'a [f32]),
}

impl FloatMatrix {
    /// An owned f32 matrix (synthetic or converted weights).
    pub fn from_f32(values: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        if values.len() != rows * cols {
            return Err(EngineError::Invalid(format!(
                "float matrix {rows}x{cols} needs {} values, got {}",
                rows * cols,
                values.len()
            )));
        }
        Ok(Self {
            rows,
            cols,
            dtype: FloatDtype::F32,
            storage: FloatStorage::F32(values),
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn dtype(&self) -> FloatDtype {
        self.dtype
    }
    /// Bytes of the stored matrix.
    pub fn bytes(&self) -> usize {
        self.rows * self.cols * self.dtype.size()
    }

    fn data(&self) -> Rows<'_> {
        match &self.storage {
            // Alignment was checked when the matrix was made, and the mapping never moves.
            FloatStorage::Mapped { mmap, range } => match self.dtype {
                FloatDtype::F32 => Rows::F32(bytemuck::cast_slice(&mmap[range.clone()])),
                _ => Rows::U16(bytemuck::cast_slice(&mmap[range.clone()])),
            },
            FloatStorage::U16(v) => Rows::U16(v),
            FloatStorage::F32(v) => Rows::F32(v),
        }
    }

    /// Row `r` widened to f32 (the embedding lookup, and converting a head row by row).
    ///
    /// A mapped matrix's row is read from the file ([`MappedFile::copy_out`]), not touched
    /// through the mapping: with a converted output head the stored matrix serves only these
    /// lookups, and mapped pages of the rows looked up would stay resident, each with the whole
    /// page-cache folio around it.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        if let FloatStorage::Mapped { mmap, range } = &self.storage {
            let at = range.start + r * self.cols * self.dtype.size();
            match self.dtype {
                FloatDtype::F32 => mmap.copy_out(at, bytemuck::cast_slice_mut(out)),
                dtype => {
                    let mut half = vec![0u16; self.cols];
                    mmap.copy_out(at, bytemuck::cast_slice_mut(&mut half));
                    if dtype == FloatDtype::BF16 {
                        for (o, &b) in out.iter_mut().zip(&half) {
                            *o = bf16_to_f32(b);
                        }
                    } else {
                        widen_f16(&half, out);
                    }
                }
            }
            return;
        }
        let range = r * self.cols..(r + 1) * self.cols;
        match (self.data(), self.dtype) {
            (Rows::F32(v), _) => out.copy_from_slice(&v[range]),
            (Rows::U16(v), FloatDtype::BF16) => {
                for (o, &b) in out.iter_mut().zip(&v[range]) {
                    *o = bf16_to_f32(b);
                }
            }
            (Rows::U16(v), _) => widen_f16(&v[range], out),
        }
    }

    /// `y[t][r] = Σ_c W[r][c]·x[t][c]` for `tokens` rows of `x`: each weight row is read once
    /// for all tokens, rows are split over the rayon pool.
    pub fn matmul(&self, x: &[f32], tokens: usize, y: &mut [f32]) {
        use rayon::prelude::*;
        let (rows, cols) = (self.rows, self.cols);
        debug_assert_eq!(x.len(), tokens * cols);
        debug_assert_eq!(y.len(), tokens * rows);
        const CHUNK: usize = 256;
        let data = self.data();
        let dtype = self.dtype;
        let compute = |r0: usize, out: &mut [f32]| {
            // `out` is [tokens][n] for rows r0..r0+n. Widening a bf16 or f16 row is exact, and
            // the one-token products (dot_bf16, the kernels' f16 GEMV) add in dot_f32's order,
            // so the one-token path and the many-token path (widen once, dot_f32) agree bit for
            // bit, and an f16 head gives the logits of its f32 widening.
            let n = out.len() / tokens;
            if let (Rows::U16(v), FloatDtype::F16) = (&data, dtype) {
                let w = &v[r0 * cols..(r0 + n) * cols];
                if tokens == 1 {
                    gemv_f16(w, cols, x, out);
                } else {
                    gemm_f16(w, cols, x, tokens, out);
                }
                return;
            }
            let mut wrow = vec![0.0f32; cols];
            for i in 0..n {
                let range = (r0 + i) * cols..(r0 + i + 1) * cols;
                match &data {
                    Rows::F32(v) => {
                        for t in 0..tokens {
                            out[t * n + i] =
                                dot_f32(&v[range.clone()], &x[t * cols..(t + 1) * cols]);
                        }
                    }
                    Rows::U16(v) if tokens == 1 => {
                        out[i] = dot_bf16(&v[range.clone()], x);
                    }
                    Rows::U16(v) => {
                        for (o, &b) in wrow.iter_mut().zip(&v[range.clone()]) {
                            *o = bf16_to_f32(b);
                        }
                        for t in 0..tokens {
                            out[t * n + i] = dot_f32(&wrow, &x[t * cols..(t + 1) * cols]);
                        }
                    }
                }
            }
        };
        if tokens == 1 {
            y.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(ci, out)| compute(ci * CHUNK, out));
            return;
        }
        let starts: Vec<usize> = (0..rows).step_by(CHUNK).collect();
        let parts: Vec<(usize, Vec<f32>)> = starts
            .into_par_iter()
            .map(|r0| {
                let n = CHUNK.min(rows - r0);
                let mut out = vec![0.0f32; n * tokens];
                compute(r0, &mut out);
                (r0, out)
            })
            .collect();
        for (r0, out) in parts {
            let n = out.len() / tokens;
            for t in 0..tokens {
                y[t * rows + r0..t * rows + r0 + n].copy_from_slice(&out[t * n..(t + 1) * n]);
            }
        }
    }
}

impl FloatMatrix {
    /// Drops the resident pages of a mapped matrix (they are read again from the file when
    /// touched): after the output head was converted once, only the embedding lookup reads this
    /// matrix, a row per token with a file read, so it need not stay resident. Owned matrices
    /// are unchanged.
    pub fn release_resident(&self) {
        if let FloatStorage::Mapped { mmap, range } = &self.storage {
            mmap.release(range.clone());
        }
    }
}

impl FloatMatrix {
    /// A matrix kept where it lies in a file mapping (a GGUF embedding). `range` must hold
    /// exactly `rows × cols` values of `dtype`, aligned to the dtype's size.
    pub fn mapped(
        mmap: Arc<MappedFile>,
        range: Range<usize>,
        rows: usize,
        cols: usize,
        dtype: FloatDtype,
    ) -> Result<Self> {
        let start = mmap.get(range.clone()).map(|b| b.as_ptr() as usize);
        match start {
            Some(p)
                if range.len() == rows * cols * dtype.size() && p.is_multiple_of(dtype.size()) =>
            {
                Ok(Self {
                    rows,
                    cols,
                    dtype,
                    storage: FloatStorage::Mapped { mmap, range },
                })
            }
            _ => Err(EngineError::Invalid(format!(
                "mapped {rows}x{cols} {dtype:?} matrix: byte range {range:?} does not fit"
            ))),
        }
    }
}

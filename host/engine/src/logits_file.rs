//! Logits written to a file for other programs: parity tests against transformers or llama.cpp
//! read every position's logits, not only the next token's top few.

use crate::error::{EngineError, Result};
use std::path::Path;

/// The file formats [`write_logits`] writes, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFormat {
    /// One f32 tensor `logits` of shape `[positions, vocab]`.
    Safetensors,
    /// `{"shape": [positions, vocab], "ids": [...], "logits": [[...], ...]}`, one row per
    /// position. Every f32 is written so that it reads back to the same value.
    Json,
}

impl LogitsFormat {
    /// The format for `path`'s extension, or `None` when it names neither.
    pub fn for_path(path: &Path) -> Option<LogitsFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "safetensors" => Some(LogitsFormat::Safetensors),
            "json" => Some(LogitsFormat::Json),
            _ => None,
        }
    }
}

/// Writes `logits` (row-major, `ids.len()` rows of `vocab`) for the input `ids` to `path`, in
/// the format its extension names. The file is replaced whole or not at all.
pub fn write_logits(
    path: &Path,
    ids: &[u32],
    logits: &[f32],
    vocab: usize,
) -> Result<LogitsFormat> {
    let invalid = |message: String| EngineError::Config {
        path: path.to_path_buf(),
        message,
    };
    let format = LogitsFormat::for_path(path).ok_or_else(|| {
        invalid("logits are written to a `.safetensors` or a `.json` file".into())
    })?;
    if vocab == 0 || logits.len() != ids.len() * vocab {
        return Err(invalid(format!(
            "{} logits do not make {} rows of {vocab}",
            logits.len(),
            ids.len()
        )));
    }
    let bytes = match format {
        LogitsFormat::Safetensors => {
            let data: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![ids.len(), vocab],
                &data,
            )
            .map_err(|e| invalid(format!("building the logits tensor: {e}")))?;
            safetensors::serialize([("logits", view)], None)
                .map_err(|e| invalid(format!("serialising the logits: {e}")))?
        }
        LogitsFormat::Json => {
            let rows: Vec<&[f32]> = logits.chunks_exact(vocab).collect();
            let json = serde_json::json!({
                "shape": [ids.len(), vocab],
                "ids": ids,
                "logits": rows,
            });
            serde_json::to_vec(&json).map_err(|e| invalid(format!("writing JSON: {e}")))?
        }
    };
    // Written beside the target and renamed over it, so a failed write leaves any earlier
    // file as it was.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| EngineError::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| EngineError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| EngineError::io(path, e.error))?;
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_hold_the_same_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let logits = [1.5f32, -0.25, 3.0e-7, f32::MAX, -1.0, 0.1];
        let st = tmp.path().join("l.safetensors");
        assert_eq!(
            write_logits(&st, &[4, 9], &logits, 3).unwrap(),
            LogitsFormat::Safetensors
        );
        let bytes = std::fs::read(&st).unwrap();
        let t = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = t.tensor("logits").unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        let back: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(back, logits);

        let js = tmp.path().join("l.json");
        write_logits(&js, &[4, 9], &logits, 3).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
        assert_eq!(v["shape"], serde_json::json!([2, 3]));
        assert_eq!(v["ids"], serde_json::json!([4, 9]));
        let row1: Vec<f32> = v["logits"][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(row1, logits[3..]);
    }

    #[test]
    fn an_unknown_extension_or_shape_is_an_error_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("l.npy");
        let e = write_logits(&p, &[1], &[0.0; 3], 3).unwrap_err();
        assert!(e.to_string().contains(".safetensors"), "{e}");
        assert!(!p.exists());
        let p = tmp.path().join("l.json");
        assert!(write_logits(&p, &[1, 2], &[0.0; 3], 3).is_err());
        assert!(!p.exists());
    }
}

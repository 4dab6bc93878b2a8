//! Latent checkpoints: a world (and its full-precision twin, if any) in one safetensors file.
//!
//! Tensors are `NAME` (the latent value), `NAME.adam_m` and `NAME.adam_v`; the twin's carry the
//! prefix `twin/`. The metadata holds the format, version, step and the world hashes, and a
//! loaded checkpoint is re-hashed and compared with them, so a damaged file is an error, never
//! a silently different world.

use crate::error::{write_atomic, Result, TrainError};
use crate::model::{Param, ParamSpec, World};
use crate::scheme::WorldScheme;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FORMAT: &str = "tritlab-checkpoint";
pub const CHECKPOINT_VERSION: &str = "1";

/// `checkpoints/step-00000042.safetensors`.
pub fn checkpoint_path(run_dir: &Path, step: u64) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("step-{step:08}.safetensors"))
}

/// The step a checkpoint file name (`step-N.safetensors`) stands for, if it is one.
pub fn step_of_path(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// The steps that have a checkpoint in `run_dir`, ascending.
pub fn checkpoint_steps(run_dir: &Path) -> Result<Vec<u64>> {
    let dir = run_dir.join("checkpoints");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
        let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
        if let Some(step) = step_of_path(Path::new(&entry.file_name())) {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

fn push_views<'a>(
    views: &mut Vec<(String, TensorView<'a>)>,
    prefix: &str,
    world: &'a World,
) -> Result<()> {
    for p in &world.params {
        for (suffix, values) in [("", &p.value), (".adam_m", &p.m), (".adam_v", &p.v)] {
            let view = TensorView::new(
                Dtype::F32,
                p.spec.shape.clone(),
                bytemuck::cast_slice(values),
            )
            .map_err(|e| TrainError::Invalid(format!("tensor `{}`: {e}", p.spec.name)))?;
            views.push((format!("{prefix}{}{suffix}", p.spec.name), view));
        }
    }
    Ok(())
}

/// Writes a checkpoint of a host-world run atomically.
pub fn save(path: &Path, world: &World, twin: Option<&World>) -> Result<()> {
    save_as(path, world, twin, WorldScheme::Host)
}

/// Writes a checkpoint atomically, its hashes under `scheme`. A device-world checkpoint also
/// names its scheme in the metadata (`world_scheme`), so that loading it checks the right hash;
/// host checkpoints are written as they always were.
pub fn save_as(
    path: &Path,
    world: &World,
    twin: Option<&World>,
    scheme: WorldScheme,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let mut views = Vec::new();
    push_views(&mut views, "", world)?;
    if let Some(t) = twin {
        push_views(&mut views, "twin/", t)?;
    }
    let mut meta = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("step".to_string(), world.step.to_string()),
        ("world_hash".to_string(), scheme.hash(world)?.to_string()),
    ]);
    if !scheme.is_host() {
        meta.insert("world_scheme".into(), scheme.name().into());
    }
    if let Some(t) = twin {
        meta.insert("twin_hash".into(), scheme.hash(t)?.to_string());
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| TrainError::format(path, format!("writing checkpoint: {e}")))?;
    write_atomic(path, &bytes)
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub world: World,
    pub twin: Option<World>,
    /// The scheme its hashes were computed under.
    pub scheme: WorldScheme,
}

fn read_world(
    path: &Path,
    st: &SafeTensors,
    specs: &[ParamSpec],
    prefix: &str,
    step: u64,
) -> Result<World> {
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st
            .tensor(name)
            .map_err(|_| TrainError::format(path, format!("checkpoint has no tensor `{name}`")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(TrainError::format(
                path,
                format!(
                    "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(t.data()))
    };
    let params = specs
        .iter()
        .map(|spec| {
            let base = format!("{prefix}{}", spec.name);
            Ok(Param {
                spec: spec.clone(),
                value: tensor(&base, &spec.shape)?,
                m: tensor(&format!("{base}.adam_m"), &spec.shape)?,
                v: tensor(&format!("{base}.adam_v"), &spec.shape)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(World { step, params })
}

/// Reads and verifies a checkpoint against the model's parameter list.
pub fn load(path: &Path, specs: &[ParamSpec], want_twin: bool) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| TrainError::format(path, format!("not a safetensors checkpoint: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let get = |k: &str| meta.get(k).map(String::as_str);
    if get("format") != Some(CHECKPOINT_FORMAT) {
        return Err(TrainError::format(path, "not a tritlab checkpoint"));
    }
    if get("version") != Some(CHECKPOINT_VERSION) {
        return Err(TrainError::format(
            path,
            format!(
                "checkpoint version {:?} is not supported (expected {CHECKPOINT_VERSION})",
                get("version")
            ),
        ));
    }
    let step: u64 = get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TrainError::format(path, "checkpoint metadata has no step"))?;
    // Resume and replay pick a checkpoint by its file name; a file whose metadata names another
    // step (copied or renamed by hand) would silently start them from the wrong world.
    if let Some(named) = step_of_path(path) {
        if named != step {
            return Err(TrainError::format(
                path,
                format!(
                    "the file name says step {named}, but the checkpoint's metadata says step {step}: the file was renamed or copied over another"
                ),
            ));
        }
    }
    let scheme = match get("world_scheme") {
        None => WorldScheme::Host,
        Some(name) => WorldScheme::from_name(name).ok_or_else(|| {
            TrainError::format(
                path,
                format!("unknown world scheme {name:?} in the metadata"),
            )
        })?,
    };
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| TrainError::format(path, format!("corrupt checkpoint: {e}")))?;
    let world = read_world(path, &st, specs, "", step)?;
    let check = |w: &World, key: &str| -> Result<()> {
        let stored = get(key).unwrap_or("");
        let actual = scheme.hash(w)?.to_string();
        if stored != actual {
            return Err(TrainError::format(
                path,
                format!("checkpoint content does not match its {key} (stored {stored}, content hashes to {actual}): the file is damaged"),
            ));
        }
        Ok(())
    };
    check(&world, "world_hash")?;
    let twin = if want_twin {
        let t = read_world(path, &st, specs, "twin/", step)?;
        check(&t, "twin_hash")?;
        Some(t)
    } else {
        None
    };
    Ok(Checkpoint {
        world,
        twin,
        scheme,
    })
}

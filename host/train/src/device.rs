//! Where a run computes: the CPU's thread pool or one CUDA GPU.
//!
//! The device is part of what makes a run reproducible, like its thread count: float sums depend
//! on how the work is split, and a GPU splits it differently from the CPU (and one GPU model from
//! another). So `run.json` records the device a run computed on, and resuming or replaying it
//! bit for bit needs the same device. Replaying a GPU run on the CPU still checks its trit flips
//! (see [`crate::replay`]), but not its floats.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The device a run asks for: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl DeviceSpec {
    /// The names the command line accepts, for help texts.
    pub const SYNTAX: &'static str = "cpu, cuda or cuda:N";

    pub fn is_cpu(self) -> bool {
        self == DeviceSpec::Cpu
    }

    /// Whether this build of tritlab can compute on CUDA GPUs.
    pub const fn cuda_available() -> bool {
        cfg!(feature = "cuda")
    }

    /// Opens the device. Without the `cuda` feature a CUDA device is a clear error that says how
    /// to build a binary that has it.
    pub fn open(self) -> Result<candle_core::Device> {
        self.check_built()?;
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(ordinal) => open_cuda(ordinal),
        }
    }

    /// Whether this build can compute on the device at all (without opening it), so that a run
    /// asked for on a GPU in a CPU-only build is refused before anything is written.
    pub fn check_built(self) -> Result<()> {
        match self {
            DeviceSpec::Cuda(ordinal) if !Self::cuda_available() => {
                Err(TrainError::Device(format!(
                "cuda:{ordinal} was asked for, but this tritlab was built without CUDA; build one \
                 with scripts/build-cuda.sh (docs/GPU.md)"
            )))
            }
            _ => Ok(()),
        }
    }
}

/// Lets cuBLAS multiply f32 matrices on TF32 tensor cores, or not. candle keeps this setting
/// per process, and a process computes one run at a time (`--matmul tf32`).
#[cfg(feature = "cuda")]
pub fn set_tf32(on: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

/// Without CUDA every product is f32.
#[cfg(not(feature = "cuda"))]
pub fn set_tf32(_: bool) {}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<candle_core::Device> {
    candle_core::Device::new_cuda(ordinal)
        .map_err(|e| TrainError::Device(format!("cannot open CUDA device {ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<candle_core::Device> {
    // `check_built` has refused already.
    Err(TrainError::Device(format!(
        "cuda:{ordinal}: no CUDA in this build"
    )))
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}` is not a device; expected {}", DeviceSpec::SYNTAX);
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                // Plain decimal digits only: `cuda:+1` and `cuda: 1` are typos, not devices.
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What `run.json` records about the device a run computed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceRecord {
    pub device: DeviceSpec,
    /// The GPU's name as its driver reports it (`NVIDIA H200`); none on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The GPU's compute capability (`9.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_capability: Option<String>,
    /// The CUDA toolkit the binary's kernels were compiled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_toolkit: Option<String>,
    /// The version of candle, whose kernels and cuBLAS calls computed the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candle: Option<String>,
    /// The NCCL library a data-parallel GPU run exchanged its gradients with (`2.27.3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nccl: Option<String>,
}

impl DeviceRecord {
    /// Describes an opened device.
    pub fn of(spec: DeviceSpec, device: &candle_core::Device) -> DeviceRecord {
        let mut record = DeviceRecord {
            device: spec,
            ..DeviceRecord::default()
        };
        describe(device, &mut record);
        record
    }

    /// Whether a run recorded on `self` recomputes bit for bit on `other`: the same kind of
    /// device, and for GPUs the same model (the ordinal may differ; identical GPUs compute alike).
    pub fn same_computation(&self, other: &DeviceRecord) -> bool {
        match (self.device, other.device) {
            (DeviceSpec::Cpu, DeviceSpec::Cpu) => true,
            (DeviceSpec::Cuda(_), DeviceSpec::Cuda(_)) => {
                self.name == other.name && self.compute_capability == other.compute_capability
            }
            _ => false,
        }
    }

    /// `NVIDIA H200 (cuda:0, sm 9.0)` or `cpu`.
    pub fn describe(&self) -> String {
        match (&self.name, &self.compute_capability) {
            (Some(name), Some(cc)) => format!("{name} ({}, compute capability {cc})", self.device),
            (Some(name), None) => format!("{name} ({})", self.device),
            _ => self.device.to_string(),
        }
    }
}

#[cfg(feature = "cuda")]
fn describe(device: &candle_core::Device, record: &mut DeviceRecord) {
    if let candle_core::Device::Cuda(d) = device {
        let stream = d.cuda_stream();
        let ctx = stream.context();
        record.name = ctx.name().ok();
        record.compute_capability = ctx
            .compute_capability()
            .ok()
            .map(|(major, minor)| format!("{major}.{minor}"));
        record.cuda_toolkit = option_env!("TRITLAB_CUDA_TOOLKIT").map(str::to_owned);
        record.candle = Some(CANDLE_VERSION.to_owned());
    }
}

#[cfg(not(feature = "cuda"))]
fn describe(_: &candle_core::Device, _: &mut DeviceRecord) {}

/// The candle release the GPU path is built on (kept in step with Cargo.toml by a test).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
const CANDLE_VERSION: &str = "0.11";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip() {
        for spec in [DeviceSpec::Cpu, DeviceSpec::Cuda(0), DeviceSpec::Cuda(7)] {
            assert_eq!(spec.to_string().parse::<DeviceSpec>(), Ok(spec));
        }
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        for bad in [
            "",
            "gpu",
            "cuda:",
            "cuda:x",
            "cuda:+1",
            "cuda: 1",
            "CPU",
            "cuda:99999999999999999999",
        ] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("expected cpu, cuda or cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn records_read_back_and_old_runs_are_cpu_runs() {
        let r = DeviceRecord {
            device: DeviceSpec::Cuda(1),
            name: Some("NVIDIA H200".into()),
            compute_capability: Some("9.0".into()),
            cuda_toolkit: Some("13.0".into()),
            candle: Some("0.11".into()),
            nccl: Some("2.27.3".into()),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"device\":\"cuda:1\""), "{json}");
        assert_eq!(serde_json::from_str::<DeviceRecord>(&json).unwrap(), r);
        let cpu: DeviceRecord = serde_json::from_str(r#"{"device":"cpu"}"#).unwrap();
        assert_eq!(cpu, DeviceRecord::default());
        assert!(!cpu.same_computation(&r));
        let other_gpu = DeviceRecord {
            device: DeviceSpec::Cuda(0),
            ..r.clone()
        };
        assert!(r.same_computation(&other_gpu));
        let other_model = DeviceRecord {
            name: Some("NVIDIA A100".into()),
            ..r.clone()
        };
        assert!(!r.same_computation(&other_model));
    }

    #[test]
    fn the_recorded_candle_version_is_the_one_built() {
        let manifest = include_str!("../Cargo.toml");
        assert!(
            manifest.contains(&format!("candle-core = {{ version = \"{CANDLE_VERSION}\"")),
            "update CANDLE_VERSION to the candle-core version in Cargo.toml"
        );
    }

    #[test]
    fn a_cpu_only_build_explains_how_to_get_cuda() {
        if DeviceSpec::cuda_available() {
            return;
        }
        let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
        assert!(
            e.contains("built without CUDA") && e.contains("build-cuda.sh"),
            "{e}"
        );
    }
}

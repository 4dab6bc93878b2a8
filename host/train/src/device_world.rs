//! The world kept on a CUDA GPU: latent weights and AdamW moments live in device memory, AdamW
//! runs there, and each step only what the morphism log needs comes down.
//!
//! Per step, after the forward and backward passes:
//!
//! 1. the global gradient norm: one f64 sum of squares per parameter, in two passes over a fixed
//!    grid (each block's partial sum in a fixed tree, then each parameter's partials in a fixed
//!    tree: no atomics, so deterministic on one GPU), combined on the host in parameter order;
//! 2. AdamW, one fused kernel per parameter, in place, with the CPU's formula operation for
//!    operation (compiled without contracting multiply-adds, with IEEE division and square root,
//!    so given the same gradients it computes the CPU's bits);
//! 3. the ternary view and the world hash ([`crate::scheme`]): one kernel per ternary parameter
//!    sums its |w| exactly in fixed point and one per tensor digests values and moments into two
//!    lanes; those few words come down, the host turns the sums into scales and the lanes into
//!    the hash, the scales go up, and one kernel per ternary parameter writes `trit · scale` (the
//!    next forward pass's weights) and the trits packed four to a byte, which come down: 1/16 of
//!    the f32 weights.
//!
//! The host compares the trits with the previous step's to log the flips, as for a host world.
//! The full world comes down only for checkpoints, evaluation on the host and export.

use crate::config::{TrainOptions, WeightQuant};
use crate::error::{Result, TrainError};
use crate::export::TernaryLayer;
use crate::model::{Network, Precision, World};
use candle_core::Tensor;
use tritlab_morphism::ContentHash;

#[cfg(feature = "cuda")]
pub use imp::DeviceWorld;

/// Without the `cuda` feature there is no device world; [`DeviceWorld::upload`] says so, and the
/// type has no values, so nothing else of it can be reached.
#[cfg(not(feature = "cuda"))]
pub enum DeviceWorld {}

#[cfg(not(feature = "cuda"))]
impl DeviceWorld {
    pub fn upload(_: &World, _: &Network, _: WeightQuant) -> Result<DeviceWorld> {
        Err(TrainError::Device(
            "a world kept on the GPU needs a tritlab built with CUDA (scripts/build-cuda.sh)"
                .into(),
        ))
    }
    pub fn step_count(&self) -> u64 {
        match *self {}
    }
    pub fn gradients(
        &mut self,
        _: &Network,
        _: &[u32],
        _: &[u32],
        _: usize,
        _: usize,
        _: Precision,
    ) -> Result<(f32, Vec<Tensor>)> {
        match *self {}
    }
    pub fn grad_norm(&self, _: &[Tensor]) -> Result<f64> {
        match *self {}
    }
    pub fn adamw(&mut self, _: &[Tensor], _: f64, _: f64, _: &TrainOptions) -> Result<()> {
        match *self {}
    }
    pub fn project(&mut self) -> Result<()> {
        match *self {}
    }
    pub fn view(&mut self) -> Result<(Vec<TernaryLayer>, ContentHash)> {
        match *self {}
    }
    pub fn forward_params(&mut self) -> Result<Vec<Tensor>> {
        match *self {}
    }
    pub fn download(&self) -> Result<World> {
        match *self {}
    }
    pub fn apply(&mut self, _: &[Tensor], _: f64, _: &TrainOptions, _: Precision) -> Result<f64> {
        match *self {}
    }
}

#[cfg(not(feature = "cuda"))]
impl crate::parallel::Replica for DeviceWorld {
    fn step_count(&self) -> u64 {
        match *self {}
    }
    fn micro_gradients(
        &mut self,
        _: &Network,
        _: &[u32],
        _: &[u32],
        _: usize,
        _: usize,
        _: Precision,
    ) -> Result<(f32, Tensor)> {
        match *self {}
    }
    fn apply_flat(
        &mut self,
        _: &Network,
        _: &Tensor,
        _: f64,
        _: &TrainOptions,
        _: Precision,
    ) -> Result<f64> {
        match *self {}
    }
}

// Kernel launches are `unsafe` in cudarc: the argument list must match the kernel's signature
// and the buffers must be as long as the kernel reads and writes, which each launch states.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod imp {
    use super::*;
    use crate::model::{ParamKind, ParamSpec};
    use crate::scheme;
    use candle_core::cuda::cudarc::driver::{
        CudaFunction, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda::cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};
    use candle_core::{DType, Device, Storage, Var};
    use rayon::prelude::*;
    use std::sync::{Arc, OnceLock};
    use tritlab_kernels::{ScaleGranularity, TernaryWeights, WeightScale};

    /// The kernels, compiled at first use by NVRTC (which the CUDA build links anyway). No
    /// headers: everything they use is built into the compiler.
    const SOURCE: &str = r#"
typedef unsigned long long u64;

__device__ __forceinline__ u64 mix(u64 x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

__device__ __forceinline__ u64 warp_sum(u64 v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ u64 fixed_abs(float v) {
    return (u64)(fminf(fabsf(v), 8388608.0f) * 1099511627776.0f);
}

__device__ __forceinline__ u64 not_finite(float v) {
    return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u ? 1ULL : 0ULL;
}

// Two lanes of sum_i mix((i << 32 | bits(x_i)) ^ K) mod 2^64 into out[0], out[1].
extern "C" __global__ void lanes(const float* x, u64 n, u64* out) {
    u64 a = 0, b = 0;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        u64 w = (i << 32) | (u64)__float_as_uint(x[i]);
        a += mix(w ^ 0x243f6a8885a308d3ULL);
        b += mix(w ^ 0x13198a2e03707344ULL);
    }
    a = warp_sum(a); b = warp_sum(b);
    if ((threadIdx.x & 31) == 0) { atomicAdd(out, a); atomicAdd(out + 1, b); }
}

// The exact fixed-point sum of |x| over the whole tensor: out[0] the high 32-bit halves,
// out[1] the low ones, out[2] the count of non-finite values.
extern "C" __global__ void abs_sum(const float* x, u64 n, u64* out) {
    u64 hi = 0, lo = 0, bad = 0;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float v = x[i];
        u64 q = fixed_abs(v);
        hi += q >> 32; lo += q & 0xffffffffULL; bad += not_finite(v);
    }
    hi = warp_sum(hi); lo = warp_sum(lo); bad = warp_sum(bad);
    if ((threadIdx.x & 31) == 0) { atomicAdd(out, hi); atomicAdd(out + 1, lo); atomicAdd(out + 2, bad); }
}

// The same per group of `group` columns of each row (the last one of a row may be short).
extern "C" __global__ void abs_sum_groups(const float* x, u64 rows, u64 cols, u64 group, u64 per_row, u64* out) {
    u64 g = blockIdx.x * (u64)blockDim.x + threadIdx.x;
    if (g >= rows * per_row) return;
    u64 r = g / per_row, s = (g % per_row) * group;
    u64 len = cols - s < group ? cols - s : group;
    const float* p = x + r * cols + s;
    u64 hi = 0, lo = 0, bad = 0;
    for (u64 j = 0; j < len; j++) {
        u64 q = fixed_abs(p[j]);
        hi += q >> 32; lo += q & 0xffffffffULL; bad += not_finite(p[j]);
    }
    out[3 * g] = hi; out[3 * g + 1] = lo; out[3 * g + 2] = bad;
}

// trit = clamp(rint(clamp(w * inv, -2, 2)), -1, 1); q = trit * scale; four trits (+1) a byte,
// the first in the low bits. group == 0: one scale for the tensor. project != 0: w = q too.
extern "C" __global__ void ternarize(float* w, u64 n, u64 cols, u64 group, u64 per_row,
                                     const float* inv, const float* scale,
                                     float* q, unsigned char* packed, int project) {
    u64 k = blockIdx.x * (u64)blockDim.x + threadIdx.x;
    if (k * 4 >= n) return;
    unsigned int byte = 0;
    for (int j = 0; j < 4; j++) {
        u64 i = k * 4 + j;
        unsigned int code = 1;
        if (i < n) {
            u64 g = group == 0 ? 0 : (i / cols) * per_row + (i % cols) / group;
            float y = fminf(fmaxf(__fmul_rn(w[i], inv[g]), -2.0f), 2.0f);
            float t = fminf(fmaxf(rintf(y), -1.0f), 1.0f);
            float v = __fmul_rn(t, scale[g]);
            q[i] = v;
            if (project) w[i] = v;
            code = (unsigned int)((int)t + 1);
        }
        byte |= code << (2 * j);
    }
    packed[k] = (unsigned char)byte;
}

// The gradient norm's first pass: block b of NORM_GRID sums (double)x^2 over its grid-stride
// share of x, then the block's threads in a fixed tree, into partial[b]. Every block writes its
// slot, so the second pass reads no stale values.
extern "C" __global__ void sq_partials(const float* x, u64 n, double* partial) {
    __shared__ double sh[256];
    double a = 0.0;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        double v = (double)x[i];
        a += v * v;
    }
    sh[threadIdx.x] = a;
    __syncthreads();
    for (unsigned int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

// The second pass: block p sums parameter p's `count` partials (count a multiple of blockDim),
// each thread its strided share in order, then the threads in a fixed tree, into out[p].
extern "C" __global__ void sum_partials(const double* partial, u64 count, double* out) {
    __shared__ double sh[256];
    const double* p = partial + blockIdx.x * count;
    double a = 0.0;
    for (u64 i = threadIdx.x; i < count; i += blockDim.x) a += p[i];
    sh[threadIdx.x] = a;
    __syncthreads();
    for (unsigned int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

// AdamW as optim::adamw_step computes it, operation for operation.
extern "C" __global__ void adamw(float* w, float* m, float* v, const float* g, u64 n,
                                 float scale, float b1, float b2, float c1, float c2,
                                 float step_size, float inv_bc2_sqrt, float eps, float decay) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float gi = g[i] * scale;
        float mi = b1 * m[i] + c1 * gi;
        float vi = b2 * v[i] + (c2 * gi) * gi;
        float denom = sqrtf(vi) * inv_bc2_sqrt + eps;
        w[i] = w[i] * decay - (step_size * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}
"#;

    /// The loaded kernels.
    struct Kernels {
        lanes: CudaFunction,
        abs_sum: CudaFunction,
        abs_sum_groups: CudaFunction,
        ternarize: CudaFunction,
        adamw: CudaFunction,
        sq_partials: CudaFunction,
        sum_partials: CudaFunction,
    }

    impl Kernels {
        fn load(stream: &CudaStream) -> Result<Kernels> {
            let module = stream
                .context()
                .load_module(Ptx::from_src(ptx()?))
                .map_err(|e| {
                    TrainError::Device(format!("loading the device world's kernels: {e}"))
                })?;
            let f = |name: &str| {
                module
                    .load_function(name)
                    .map_err(|e| TrainError::Device(format!("loading kernel `{name}`: {e}")))
            };
            Ok(Kernels {
                lanes: f("lanes")?,
                abs_sum: f("abs_sum")?,
                abs_sum_groups: f("abs_sum_groups")?,
                ternarize: f("ternarize")?,
                adamw: f("adamw")?,
                sq_partials: f("sq_partials")?,
                sum_partials: f("sum_partials")?,
            })
        }
    }
    const BLOCK: u32 = 256;
    /// The gradient norm's first pass: this many blocks of [`BLOCK`] threads for every
    /// parameter, whatever its size, so each sum's order depends only on the tensor's length.
    const NORM_GRID: usize = 1024;

    fn ptx() -> Result<&'static str> {
        static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
        PTX.get_or_init(|| {
            compile_ptx_with_opts(
                SOURCE,
                CompileOptions {
                    fmad: Some(false),
                    prec_div: Some(true),
                    prec_sqrt: Some(true),
                    ftz: Some(false),
                    ..CompileOptions::default()
                },
            )
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
        })
        .as_deref()
        .map_err(|e| TrainError::Device(format!("compiling the device world's kernels: {e}")))
    }

    fn ce(what: &str, e: impl std::fmt::Display) -> TrainError {
        TrainError::compute(what, e)
    }

    /// A grid-stride launch over `n` elements.
    fn stride(n: usize) -> LaunchConfig {
        let blocks = n.div_ceil(BLOCK as usize).clamp(1, 2048) as u32;
        LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One thread per item.
    fn each(n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(BLOCK as usize).max(1) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A tensor's f32 elements on the GPU as a view (candle tensors may start inside their
    /// storage). The storage guard must outlive the view.
    fn f32_view<'a>(
        storage: &'a Storage,
        layout: &candle_core::Layout,
        what: &str,
    ) -> Result<CudaView<'a, f32>> {
        let Storage::Cuda(cs) = storage else {
            return Err(TrainError::Device(format!(
                "{what} is not on a CUDA device"
            )));
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| TrainError::Device(format!("{what} is not contiguous")))?;
        let slice = cs.as_cuda_slice::<f32>().map_err(|e| ce(what, e))?;
        Ok(slice.slice(start..end))
    }

    /// Where one ternary parameter's scales and packed trits sit in the shared buffers.
    struct TernarySlot {
        param: usize,
        rows: usize,
        cols: usize,
        /// Groups per row (1 for a per-tensor scale) and their size (0: the whole tensor).
        per_row: usize,
        group: usize,
        /// Its groups' first index in the scale buffers and the sums buffer (3 words a group).
        first_group: usize,
        /// Its first byte in the packed-trit buffer.
        first_byte: usize,
        /// `trit · scale`, the forward pass's weights, rewritten by every ternarisation.
        q: Tensor,
    }

    impl TernarySlot {
        fn groups(&self) -> usize {
            self.rows * self.per_row
        }
    }

    /// The world in device memory.
    pub struct DeviceWorld {
        step: u64,
        specs: Vec<ParamSpec>,
        stream: Arc<CudaStream>,
        kernels: Kernels,
        values: Vec<Var>,
        m: Vec<Tensor>,
        v: Vec<Tensor>,
        slots: Vec<TernarySlot>,
        granularity: ScaleGranularity,
        /// Per parameter 3 × 2 lane words, then per group 3 sum words.
        words: CudaSlice<u64>,
        packed: CudaSlice<u8>,
        /// The gradient norm's partial sums, [`NORM_GRID`] a parameter, and its per-parameter sums.
        norm_partials: CudaSlice<f64>,
        norm_sums: CudaSlice<f64>,
        groups_total: usize,
        /// Whether the `q` tensors are the ternarisation of the current values.
        fresh: bool,
    }

    impl DeviceWorld {
        /// Copies a host world to the network's GPU.
        pub fn upload(world: &World, net: &Network, quant: WeightQuant) -> Result<DeviceWorld> {
            let Device::Cuda(device) = net.device() else {
                return Err(TrainError::Device(
                    "a device world needs a network on a CUDA GPU".into(),
                ));
            };
            let stream = device.cuda_stream();
            let kernels = Kernels::load(&stream)?;
            let dev = net.device();
            let upload = |values: &[f32], shape: &[usize], what: &str| {
                Tensor::from_slice(values, shape, dev).map_err(|e| ce(what, e))
            };
            let mut values = Vec::new();
            let (mut m, mut v) = (Vec::new(), Vec::new());
            for p in &world.params {
                if p.spec.numel() as u64 > 1 << 32 {
                    return Err(TrainError::Invalid(format!(
                        "`{}` has {} elements; the device world hash indexes at most 2³² per tensor",
                        p.spec.name,
                        p.spec.numel()
                    )));
                }
                let name = &p.spec.name;
                values.push(
                    Var::from_slice(&p.value, p.spec.shape.as_slice(), dev)
                        .map_err(|e| ce(&format!("uploading `{name}`"), e))?,
                );
                m.push(upload(&p.m, &p.spec.shape, name)?);
                v.push(upload(&p.v, &p.spec.shape, name)?);
            }
            let granularity = quant.granularity();
            let (mut first_group, mut first_byte) = (0, 0);
            let mut slots = Vec::new();
            for (i, p) in world.params.iter().enumerate() {
                if p.spec.kind != ParamKind::Ternary {
                    continue;
                }
                let (rows, cols) = p.spec.matrix();
                let (per_row, group) = match granularity {
                    ScaleGranularity::PerTensor => (1, 0),
                    ScaleGranularity::PerGroup { group_size: 0 } => {
                        return Err(TrainError::Invalid("a group size of 0".into()))
                    }
                    ScaleGranularity::PerGroup { group_size } => {
                        (cols.div_ceil(group_size), group_size)
                    }
                };
                let q = Tensor::zeros(p.spec.shape.as_slice(), DType::F32, dev)
                    .map_err(|e| ce("allocating ternary weights", e))?;
                let slot = TernarySlot {
                    param: i,
                    rows,
                    cols,
                    per_row,
                    group,
                    first_group,
                    first_byte,
                    q,
                };
                first_group += if group == 0 { 1 } else { slot.groups() };
                first_byte += (rows * cols).div_ceil(4);
                slots.push(slot);
            }
            let words_len = 6 * world.params.len() + 3 * first_group;
            let words = stream
                .alloc_zeros::<u64>(words_len)
                .map_err(|e| ce("allocating the digest words", e))?;
            let packed = stream
                .alloc_zeros::<u8>(first_byte.max(1))
                .map_err(|e| ce("allocating the trit buffer", e))?;
            let params = world.params.len().max(1);
            let norm_partials = stream
                .alloc_zeros::<f64>(params * NORM_GRID)
                .map_err(|e| ce("allocating the gradient norm's sums", e))?;
            let norm_sums = stream
                .alloc_zeros::<f64>(params)
                .map_err(|e| ce("allocating the gradient norm's sums", e))?;
            Ok(DeviceWorld {
                step: world.step,
                specs: world.params.iter().map(|p| p.spec.clone()).collect(),
                stream,
                kernels,
                values,
                m,
                v,
                slots,
                granularity,
                words,
                packed,
                norm_partials,
                norm_sums,
                groups_total: first_group,
                fresh: false,
            })
        }

        pub fn step_count(&self) -> u64 {
            self.step
        }

        /// The parameters the forward pass sees: ternary ones as `trit · scale` passed straight
        /// through to their latent values, the others as they are.
        fn effective(&mut self, precision: Precision) -> Result<Vec<Tensor>> {
            if !self.fresh {
                self.ternarise(false)?;
            }
            let mut out: Vec<Tensor> = self.values.iter().map(|v| v.as_tensor().clone()).collect();
            if matches!(precision, Precision::Ternary(_)) {
                for s in &self.slots {
                    let w = &out[s.param];
                    let through = (w - w.detach())
                        .and_then(|d| d + s.q.detach())
                        .map_err(|e| ce("the straight-through weights", e))?;
                    out[s.param] = through;
                }
            }
            Ok(out)
        }

        /// Detached forward parameters, for evaluation.
        pub fn forward_params(&mut self) -> Result<Vec<Tensor>> {
            if !self.fresh {
                self.ternarise(false)?;
            }
            let mut out: Vec<Tensor> = self.values.iter().map(|v| v.as_tensor().detach()).collect();
            for s in &self.slots {
                out[s.param] = s.q.detach();
            }
            Ok(out)
        }

        /// The batch loss and each parameter's gradient, left on the GPU.
        pub fn gradients(
            &mut self,
            net: &Network,
            inputs: &[u32],
            targets: &[u32],
            batch: usize,
            seq: usize,
            precision: Precision,
        ) -> Result<(f32, Vec<Tensor>)> {
            let params = self.effective(precision)?;
            let loss = net.loss(&params, inputs, targets, batch, seq, precision)?;
            let value = loss.to_scalar::<f32>().map_err(|e| ce("the loss", e))?;
            let grads = loss.backward().map_err(|e| ce("gradients", e))?;
            let out = self
                .values
                .iter()
                .zip(&self.specs)
                .map(|(var, spec)| match grads.get(var.as_tensor()) {
                    Some(g) => g.contiguous().map_err(|e| ce(&spec.name, e)),
                    None => Tensor::zeros(spec.shape.as_slice(), DType::F32, var.device())
                        .map_err(|e| ce(&spec.name, e)),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((value, out))
        }

        /// The global L2 norm of the gradients: per parameter an f64 sum of squares on the GPU,
        /// combined on the host in parameter order.
        ///
        /// Two passes over a fixed grid, all on the GPU's multiprocessors at once: candle's
        /// reduction to one value (`sum_all`) runs a single block over the whole tensor, which
        /// made this a tenth of the step. Every sum has a fixed order (no atomics), so a GPU
        /// computes the same norm run after run; the order differs from `sum_all`'s.
        pub fn grad_norm(&self, grads: &[Tensor]) -> Result<f64> {
            if grads.len() != self.specs.len() {
                return Err(TrainError::Invalid(format!(
                    "{} gradients for {} parameters",
                    grads.len(),
                    self.specs.len()
                )));
            }
            let stream = self.stream.clone();
            for (i, (g, spec)) in grads.iter().zip(&self.specs).enumerate() {
                let (gs, gl) = g.storage_and_layout();
                let x = f32_view(&gs, gl, &spec.name)?;
                let n = x.len() as u64;
                let out = self.norm_partials.slice(i * NORM_GRID..(i + 1) * NORM_GRID);
                let mut b = stream.launch_builder(&self.kernels.sq_partials);
                b.arg(&x).arg(&n).arg(&out);
                let grid = LaunchConfig {
                    grid_dim: (NORM_GRID as u32, 1, 1),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: x holds n floats, out NORM_GRID doubles, one a block.
                unsafe { b.launch(grid) }.map_err(|e| ce("the gradient norm", e))?;
            }
            let count = NORM_GRID as u64;
            let mut b = stream.launch_builder(&self.kernels.sum_partials);
            b.arg(&self.norm_partials).arg(&count).arg(&self.norm_sums);
            let grid = LaunchConfig {
                grid_dim: (self.specs.len() as u32, 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: norm_partials holds NORM_GRID doubles a parameter, norm_sums one; one
            // block a parameter.
            unsafe { b.launch(grid) }.map_err(|e| ce("the gradient norm", e))?;
            let sums = stream
                .clone_dtoh(&self.norm_sums)
                .map_err(|e| ce("downloading the gradient norm", e))?;
            Ok(sums[..self.specs.len()].iter().sum::<f64>().sqrt())
        }

        /// One AdamW step at learning rate `lr`, gradients multiplied by `scale`; increments the
        /// step, as [`crate::optim::adamw_step`] does on the host.
        pub fn adamw(
            &mut self,
            grads: &[Tensor],
            lr: f64,
            scale: f64,
            o: &TrainOptions,
        ) -> Result<()> {
            if grads.len() != self.values.len() {
                return Err(TrainError::Invalid(format!(
                    "{} gradients for {} parameters",
                    grads.len(),
                    self.values.len()
                )));
            }
            self.step += 1;
            let t = self.step as i32;
            let bc1 = 1.0 - o.beta1.powi(t);
            let bc2 = 1.0 - o.beta2.powi(t);
            let (b1, b2) = (o.beta1 as f32, o.beta2 as f32);
            let (c1, c2) = (1.0 - b1, 1.0 - b2);
            let step_size = (lr / bc1) as f32;
            let inv_bc2_sqrt = (1.0 / bc2.sqrt()) as f32;
            let eps = o.adam_eps as f32;
            let scale = scale as f32;
            for (i, spec) in self.specs.iter().enumerate() {
                let decay = if spec.decays() {
                    1.0 - (lr * o.weight_decay) as f32
                } else {
                    1.0
                };
                let n = spec.numel();
                let (ws, wl) = self.values[i].as_tensor().storage_and_layout();
                let (ms, ml) = self.m[i].storage_and_layout();
                let (vs, vl) = self.v[i].storage_and_layout();
                let (gs, gl) = grads[i].storage_and_layout();
                let w = f32_view(&ws, wl, &spec.name)?;
                let m = f32_view(&ms, ml, &spec.name)?;
                let v = f32_view(&vs, vl, &spec.name)?;
                let g = f32_view(&gs, gl, &spec.name)?;
                if g.len() != n {
                    return Err(TrainError::Invalid(format!(
                        "the gradient of `{}` has {} elements, not {n}",
                        spec.name,
                        g.len()
                    )));
                }
                let n64 = n as u64;
                let mut b = self.stream.launch_builder(&self.kernels.adamw);
                b.arg(&w).arg(&m).arg(&v).arg(&g).arg(&n64);
                b.arg(&scale).arg(&b1).arg(&b2).arg(&c1).arg(&c2);
                b.arg(&step_size).arg(&inv_bc2_sqrt).arg(&eps).arg(&decay);
                // SAFETY: the arguments match the kernel's signature; w, m, v and g hold n
                // elements each (checked above and by construction).
                unsafe { b.launch(stride(n)) }.map_err(|e| ce("AdamW", e))?;
            }
            self.fresh = false;
            Ok(())
        }

        /// The optimiser step with the gradients of every parameter: their global norm,
        /// clipping, AdamW and the projection when the run asks for it. Returns the norm.
        pub fn apply(
            &mut self,
            grads: &[Tensor],
            lr: f64,
            o: &TrainOptions,
            precision: Precision,
        ) -> Result<f64> {
            let norm = self.grad_norm(grads)?;
            self.adamw(grads, lr, crate::optim::clip_factor(norm, o.grad_clip), o)?;
            if o.projection && matches!(precision, Precision::Ternary(_)) {
                self.project()?;
            }
            Ok(norm)
        }

        /// The projection recipe: every ternary parameter becomes `trit · scale`.
        pub fn project(&mut self) -> Result<()> {
            self.ternarise(true).map(|_| ())
        }

        /// Launches the exact |w| sums (and, with `lanes`, the world digest), and downloads the
        /// words: per parameter 6 lane words, then per group 3 sum words.
        fn sums_and_lanes(&mut self, lanes: bool) -> Result<Vec<u64>> {
            let stream = self.stream.clone();
            stream
                .memset_zeros(&mut self.words)
                .map_err(|e| ce("clearing the digest words", e))?;
            let base = 6 * self.specs.len();
            if lanes {
                for (i, spec) in self.specs.iter().enumerate() {
                    let n = spec.numel();
                    let n64 = n as u64;
                    for (k, t) in [self.values[i].as_tensor(), &self.m[i], &self.v[i]]
                        .into_iter()
                        .enumerate()
                    {
                        let (s, l) = t.storage_and_layout();
                        let x = f32_view(&s, l, &spec.name)?;
                        let at = 6 * i + 2 * k;
                        let out = self.words.slice(at..at + 2);
                        let mut b = stream.launch_builder(&self.kernels.lanes);
                        b.arg(&x).arg(&n64).arg(&out);
                        // SAFETY: x holds n floats, out two words.
                        unsafe { b.launch(stride(n)) }.map_err(|e| ce("the world digest", e))?;
                    }
                }
            }
            let (whole, grouped) = (&self.kernels.abs_sum, &self.kernels.abs_sum_groups);
            for s in &self.slots {
                let spec = &self.specs[s.param];
                let (st, l) = self.values[s.param].as_tensor().storage_and_layout();
                let x = f32_view(&st, l, &spec.name)?;
                let at = base + 3 * s.first_group;
                if s.group == 0 {
                    let n = (s.rows * s.cols) as u64;
                    let out = self.words.slice(at..at + 3);
                    let mut b = stream.launch_builder(whole);
                    b.arg(&x).arg(&n).arg(&out);
                    // SAFETY: x holds n floats, out three words.
                    unsafe { b.launch(stride(s.rows * s.cols)) }
                        .map_err(|e| ce("the absmean sums", e))?;
                } else {
                    let out = self.words.slice(at..at + 3 * s.groups());
                    let (rows, cols, group, per_row) = (
                        s.rows as u64,
                        s.cols as u64,
                        s.group as u64,
                        s.per_row as u64,
                    );
                    let mut b = stream.launch_builder(grouped);
                    b.arg(&x)
                        .arg(&rows)
                        .arg(&cols)
                        .arg(&group)
                        .arg(&per_row)
                        .arg(&out);
                    // SAFETY: x is rows × cols floats, out three words per group.
                    unsafe { b.launch(each(s.groups())) }.map_err(|e| ce("the absmean sums", e))?;
                }
            }
            stream
                .clone_dtoh(&self.words)
                .map_err(|e| ce("downloading the digest words", e))
        }

        /// Ternarises every ternary parameter: exact sums down, scales up, `trit · scale` into
        /// the forward weights, packed trits down. Returns the layers and the digest words.
        fn ternarise(&mut self, project: bool) -> Result<(Vec<TernaryLayer>, Vec<u64>)> {
            self.ternarise_with(project, false)
        }

        fn ternarise_with(
            &mut self,
            project: bool,
            lanes: bool,
        ) -> Result<(Vec<TernaryLayer>, Vec<u64>)> {
            let words = self.sums_and_lanes(lanes)?;
            let base = 6 * self.specs.len();
            // Scales on the host, with the one function the CPU's checks use.
            let mut inv = vec![0f32; self.groups_total.max(1)];
            let mut scale = vec![0f32; self.groups_total.max(1)];
            for s in &self.slots {
                let spec = &self.specs[s.param];
                let count = if s.group == 0 { 1 } else { s.groups() };
                for g in 0..count {
                    let at = base + 3 * (s.first_group + g);
                    let (hi, lo, bad) = (words[at], words[at + 1], words[at + 2]);
                    if bad != 0 {
                        return Err(TrainError::Compute {
                            what: format!("ternarising `{}`", spec.name),
                            message: format!(
                                "{bad} of its weights are not finite; lower --lr or raise --warmup"
                            ),
                        });
                    }
                    let len = if s.group == 0 {
                        s.rows * s.cols
                    } else {
                        let start = (g % s.per_row) * s.group;
                        (s.cols - start).min(s.group)
                    };
                    let sum = (u128::from(hi) << 32) + u128::from(lo);
                    let (i, sc) = scheme::inv_and_scale(scheme::mean_of_sum(sum, len));
                    inv[s.first_group + g] = i;
                    scale[s.first_group + g] = sc;
                }
            }
            let stream = self.stream.clone();
            let inv_d = stream
                .clone_htod(&inv)
                .map_err(|e| ce("uploading the scales", e))?;
            let scale_d = stream
                .clone_htod(&scale)
                .map_err(|e| ce("uploading the scales", e))?;
            let flag: i32 = i32::from(project);
            for s in &self.slots {
                let spec = &self.specs[s.param];
                let n = s.rows * s.cols;
                let count = if s.group == 0 { 1 } else { s.groups() };
                let (ws, wl) = self.values[s.param].as_tensor().storage_and_layout();
                let (qs, ql) = s.q.storage_and_layout();
                let w = f32_view(&ws, wl, &spec.name)?;
                let q = f32_view(&qs, ql, &spec.name)?;
                let inv_v = inv_d.slice(s.first_group..s.first_group + count);
                let scale_v = scale_d.slice(s.first_group..s.first_group + count);
                let bytes = n.div_ceil(4);
                let packed = self.packed.slice(s.first_byte..s.first_byte + bytes);
                let (n64, cols, group, per_row) =
                    (n as u64, s.cols as u64, s.group as u64, s.per_row as u64);
                let mut b = stream.launch_builder(&self.kernels.ternarize);
                b.arg(&w).arg(&n64).arg(&cols).arg(&group).arg(&per_row);
                b.arg(&inv_v).arg(&scale_v).arg(&q).arg(&packed).arg(&flag);
                // SAFETY: w and q hold n floats, the scale views one word per group, packed
                // ⌈n/4⌉ bytes.
                unsafe { b.launch(each(bytes)) }.map_err(|e| ce("ternarising", e))?;
            }
            let packed = stream
                .clone_dtoh(&self.packed)
                .map_err(|e| ce("downloading the trits", e))?;
            self.fresh = true;
            // Each byte's four trits, looked up.
            let table: Vec<[i8; 4]> = (0..=255u8)
                .map(|b| std::array::from_fn(|j| ((b >> (2 * j)) & 3) as i8 - 1))
                .collect();
            let (specs, granularity) = (&self.specs, self.granularity);
            let layers = self
                .slots
                .par_iter()
                .map(|s| {
                    let n = s.rows * s.cols;
                    let bytes = &packed[s.first_byte..s.first_byte + n.div_ceil(4)];
                    let mut trits = vec![0i8; n];
                    trits
                        .par_chunks_mut(1 << 16)
                        .zip(bytes.par_chunks(1 << 14))
                        .for_each(|(out, bytes)| {
                            for (chunk, &b) in out.chunks_mut(4).zip(bytes) {
                                chunk.copy_from_slice(&table[usize::from(b)][..chunk.len()]);
                            }
                        });
                    let count = if s.group == 0 { 1 } else { s.groups() };
                    let scales = &scale[s.first_group..s.first_group + count];
                    let weight_scale = match granularity {
                        ScaleGranularity::PerTensor => WeightScale::PerTensor(scales[0]),
                        ScaleGranularity::PerGroup { group_size } => WeightScale::PerGroup {
                            group_size,
                            scales: scales.to_vec(),
                        },
                    };
                    TernaryLayer {
                        name: specs[s.param].name.clone(),
                        rows: s.rows,
                        cols: s.cols,
                        weights: TernaryWeights {
                            rows: s.rows,
                            cols: s.cols,
                            trits,
                            scale: weight_scale,
                        },
                    }
                })
                .collect();
            Ok((layers, words))
        }

        /// The world's ternary view (the trits and scales the next forward pass computes with)
        /// and its hash, computed on the GPU; only sums, lanes and packed trits come down.
        pub fn view(&mut self) -> Result<(Vec<TernaryLayer>, ContentHash)> {
            let (layers, words) = self.ternarise_with(false, true)?;
            let digests: Vec<[[u64; 2]; 3]> = (0..self.specs.len())
                .map(|i| {
                    let w = &words[6 * i..6 * i + 6];
                    [[w[0], w[1]], [w[2], w[3]], [w[4], w[5]]]
                })
                .collect();
            let hash = scheme::combine_parts(
                self.step,
                self.specs
                    .iter()
                    .map(|s| (s.name.as_str(), s.shape.as_slice())),
                &digests,
            );
            Ok((layers, hash))
        }

        /// The whole world, downloaded (for checkpoints, export and host-side checks).
        pub fn download(&self) -> Result<World> {
            let get = |t: &Tensor, name: &str| {
                t.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| ce(&format!("downloading `{name}`"), e))
            };
            let params = self
                .specs
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    Ok(crate::model::Param {
                        spec: spec.clone(),
                        value: get(self.values[i].as_tensor(), &spec.name)?,
                        m: get(&self.m[i], &spec.name)?,
                        v: get(&self.v[i], &spec.name)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(World {
                step: self.step,
                params,
            })
        }
    }

    impl crate::parallel::Replica for DeviceWorld {
        fn step_count(&self) -> u64 {
            self.step
        }

        fn micro_gradients(
            &mut self,
            network: &Network,
            inputs: &[u32],
            targets: &[u32],
            rows: usize,
            seq: usize,
            precision: Precision,
        ) -> Result<(f32, Tensor)> {
            let (loss, grads) = self.gradients(network, inputs, targets, rows, seq, precision)?;
            let flat = grads
                .iter()
                .map(|g| g.flatten_all())
                .collect::<candle_core::Result<Vec<_>>>()
                .and_then(|g| Tensor::cat(&g, 0))
                .map_err(|e| ce("the gradients", e))?;
            Ok((loss, flat))
        }

        fn apply_flat(
            &mut self,
            _: &Network,
            grads: &Tensor,
            lr: f64,
            o: &TrainOptions,
            precision: Precision,
        ) -> Result<f64> {
            let mut parts = Vec::with_capacity(self.specs.len());
            let mut at = 0;
            for spec in &self.specs {
                let n = spec.numel();
                if at + n > grads.elem_count() {
                    break;
                }
                parts.push(grads.narrow(0, at, n).map_err(|e| ce(&spec.name, e))?);
                at += n;
            }
            if parts.len() != self.specs.len() || at != grads.elem_count() {
                return Err(TrainError::Invalid(format!(
                    "{} gradient values for parameters of {}",
                    grads.elem_count(),
                    self.specs.iter().map(ParamSpec::numel).sum::<usize>()
                )));
            }
            self.apply(&parts, lr, o, precision)
        }
    }
}

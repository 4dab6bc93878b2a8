//! The trainable BitNet b1.58 decoder: its parameters as plain vectors (the *world*), and its
//! forward pass as a candle graph.
//!
//! The graph is transformers' `BitNetForCausalLM` with online quantisation, the same computation
//! the engine runs (see `tritlab_engine::bitnet`):
//!
//! ```text
//! h = embed[ids]
//! per layer:  x = rms(h, input_layernorm);  q,k,v = BitLinear(x);  rope(q), rope(k)
//!             h += o_proj(rms(causal_gqa_attention(q, k, v), attn_sub_norm))
//!             y = rms(h, post_attention_layernorm)
//!             h += down_proj(rms(act(gate_proj(y)) · up_proj(y), ffn_sub_norm))
//! logits = rms(h, norm) · embedᵀ
//! BitLinear(x) = int8(x) · ternary(W)ᵀ       (both straight-through in the backward pass)
//! ```
//!
//! The full-precision twin runs the same graph with both quantisers left out.

use crate::config::{Graph, Kernels};
use crate::ops::{
    self, BitLinear, CrossEntropy, HeadLoss, HeadProduct, Int8Activations, TernaryWeights,
};
use candle_core::{DType, Device, Tensor, Var, D};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;
use tritlab_engine::layout::{Dims, LayerTensors, ModelTensor};
use tritlab_engine::ops::Rope;
use tritlab_engine::{Activation, BitNetConfig};
use tritlab_kernels::ScaleGranularity;

/// What a parameter is, which decides its initialisation, weight decay and quantisation: the
/// engine layout's kind of the tensor (the trainer's embedding is also its output projection).
pub use tritlab_engine::layout::TensorKind as ParamKind;

/// One parameter: which tensor of the layout it is, its name (in the Hugging Face layout), shape
/// and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub tensor: ModelTensor,
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

impl ParamSpec {
    /// The spec of one tensor of the layout for a config.
    pub fn of(tensor: ModelTensor, dims: &Dims) -> ParamSpec {
        ParamSpec {
            tensor,
            name: tensor.hf_name(),
            shape: tensor.shape(dims),
            kind: tensor.kind(),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows and columns of a matrix parameter.
    pub fn matrix(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [r, c] => (*r, *c),
            [n] => (1, *n),
            _ => (1, self.numel()),
        }
    }

    pub fn decays(&self) -> bool {
        self.kind == ParamKind::Ternary
    }
}

/// The parameter list of a config, in the layout's order (the order of the world hash). The
/// trainer always ties the output projection to the embedding, so there is no `lm_head`.
pub fn param_specs(c: &BitNetConfig) -> Vec<ParamSpec> {
    let dims = Dims::of(c);
    ModelTensor::all(c.num_hidden_layers, true)
        .into_iter()
        .map(|t| ParamSpec::of(t, &dims))
        .collect()
}

/// The forward pass's view of the parameters, by role.
struct Weights<'a> {
    embed: &'a Tensor,
    layers: Vec<LayerTensors<&'a Tensor, &'a Tensor>>,
    norm: &'a Tensor,
}

/// A parameter's value and its AdamW moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub spec: ParamSpec,
    pub value: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// Everything training changes: the step count, latent parameters and optimiser state.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub step: u64,
    pub params: Vec<Param>,
}

/// A standard normal value (Box–Muller with `libm`, the same bits everywhere).
fn normal(rng: &mut ChaCha20Rng) -> f64 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
}

fn rng_for(seed: u64, name: &str) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let digest = blake3::hash(name.as_bytes());
    key[8..24].copy_from_slice(&digest.as_bytes()[..16]);
    key[24..32].copy_from_slice(b"init\0\0\0\0");
    ChaCha20Rng::from_seed(key)
}

/// Standard deviation of the initial weights (GPT-2's).
pub const INIT_STD: f64 = 0.02;

impl World {
    /// Step 0: weights drawn from N(0, 0.02²) per parameter from the seed, norms at 1, zero moments.
    pub fn init(specs: &[ParamSpec], seed: u64) -> World {
        let params = specs
            .iter()
            .map(|spec| {
                let n = spec.numel();
                let value = match spec.kind {
                    ParamKind::Norm => vec![1.0; n],
                    _ => {
                        let mut rng = rng_for(seed, &spec.name);
                        (0..n)
                            .map(|_| (normal(&mut rng) * INIT_STD) as f32)
                            .collect()
                    }
                };
                Param {
                    spec: spec.clone(),
                    value,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        World { step: 0, params }
    }

    /// blake3 over the step, every parameter's name, shape and value, and the AdamW moments.
    pub fn hash(&self) -> tritlab_morphism::ContentHash {
        let mut h = blake3::Hasher::new();
        h.update(b"tritlab-world-v1");
        h.update(&self.step.to_le_bytes());
        for p in &self.params {
            h.update(&(p.spec.name.len() as u64).to_le_bytes());
            h.update(p.spec.name.as_bytes());
            h.update(&(p.spec.shape.len() as u64).to_le_bytes());
            for &d in &p.spec.shape {
                h.update(&(d as u64).to_le_bytes());
            }
            for values in [&p.value, &p.m, &p.v] {
                h.update_rayon(bytemuck::cast_slice(values));
            }
        }
        tritlab_morphism::ContentHash(*h.finalize().as_bytes())
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.spec.name == name)
    }

    pub fn numel(&self) -> usize {
        self.params.iter().map(|p| p.spec.numel()).sum()
    }
}

/// How the forward pass treats the linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Absmean-ternary weights and int8 activations (straight-through).
    Ternary(ScaleGranularity),
    /// Plain f32 linear layers: the full-precision twin.
    Full,
}

/// Which implementation of the quantisers and the loss a graph uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantOps {
    /// The kernels' own quantisers as CPU custom ops ([`crate::ops`]): what the engine computes.
    Kernels,
    /// The same formulas in tensor operations ([`crate::ops::tensor`]), for any device.
    Tensor,
    /// The ternary parameters arrive already ternarised (straight-through to their latent
    /// values), as a world kept on the GPU hands them over ([`crate::device_world`]): the
    /// forward pass quantises only the activations, with tensor operations.
    Prequantized,
}

/// The forward graph for one config.
pub struct Network {
    pub config: BitNetConfig,
    pub specs: Vec<ParamSpec>,
    /// Where each tensor of the layout sits in `specs` (and in the parameter slices).
    index: HashMap<ModelTensor, usize>,
    activation: Activation,
    rope: Rope,
    device: Device,
    quant_ops: QuantOps,
    matmul: crate::config::Matmul,
    /// How the ternary graph's products are computed (the twin's are always f32).
    kernels: Kernels,
    /// How the layers' element-wise chains are computed.
    graph: Graph,
}

fn ce(what: &str, e: candle_core::Error) -> crate::TrainError {
    crate::TrainError::compute(what, e)
}

impl Network {
    /// The graph on the CPU.
    pub fn new(config: BitNetConfig) -> crate::Result<Self> {
        Self::on(config, Device::Cpu)
    }

    /// The graph on `device`. On the CPU the quantisers and the loss are the kernels' own custom
    /// ops (see [`crate::ops`]); on a GPU they are the same formulas in tensor operations, so no
    /// step leaves the device between the forward and the backward pass. The first graph of a
    /// process asks the allocator to keep freed memory
    /// ([`tritlab_kernels::mem::retain_freed_memory`]).
    pub fn on(config: BitNetConfig, device: Device) -> crate::Result<Self> {
        let activation = config.activation(std::path::Path::new("config.json"))?;
        // Each step allocates and frees a buffer for every value and gradient of the graph; keep
        // the freed memory for the next step instead of faulting it in again (see the function).
        tritlab_kernels::mem::retain_freed_memory();
        let specs = param_specs(&config);
        Ok(Network {
            rope: Rope::new(config.head_dim(), config.rope_theta()),
            index: specs
                .iter()
                .enumerate()
                .map(|(i, s)| (s.tensor, i))
                .collect(),
            specs,
            activation,
            config,
            quant_ops: if device.is_cpu() {
                QuantOps::Kernels
            } else {
                QuantOps::Tensor
            },
            device,
            matmul: crate::config::Matmul::F32,
            kernels: Kernels::F32,
            graph: Graph::Ops,
        })
    }

    /// How the linear layers and the output head multiply (`--matmul`; on a GPU).
    pub fn with_matmul(mut self, matmul: crate::config::Matmul) -> Self {
        self.matmul = matmul;
        self
    }

    /// Chooses how the products of the ternary graph are computed. The ternary kernels run on
    /// the CPU with the kernels' quantisers, on a machine with AMX.
    pub fn with_kernels(mut self, kernels: Kernels) -> crate::Result<Self> {
        if kernels == Kernels::Ternary {
            if !self.device.is_cpu() || self.quant_ops != QuantOps::Kernels {
                return Err(crate::TrainError::Device(
                    "the ternary product path runs on the CPU with the kernels' quantisers".into(),
                ));
            }
            kernels.check_available()?;
        }
        self.kernels = kernels;
        Ok(self)
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Chooses how the layers' RMS norms, rotary embeddings, attention softmax and gated unit are
    /// computed:
    /// candle's operations or the fused ones ([`crate::fused`]), on any device. (The graph of a
    /// world kept on a GPU fuses them whatever this says.)
    pub fn with_graph(mut self, graph: Graph) -> Self {
        self.graph = graph;
        self
    }

    pub fn graph(&self) -> Graph {
        self.graph
    }

    /// Chooses the quantisers' implementation: tensor operations work on every device, the
    /// kernels' custom ops only on the CPU.
    pub fn with_quant_ops(mut self, ops: QuantOps) -> crate::Result<Self> {
        if ops == QuantOps::Kernels && !self.device.is_cpu() {
            return Err(crate::TrainError::Device(
                "the kernels' quantisers run on the CPU only".into(),
            ));
        }
        if ops == QuantOps::Tensor && self.kernels == Kernels::Ternary {
            return Err(crate::TrainError::Device(
                "the ternary product path needs the kernels' quantisers".into(),
            ));
        }
        self.quant_ops = ops;
        Ok(self)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A host world's latent values are not ternarised: a graph that expects them ternarised
    /// ([`QuantOps::Prequantized`]) takes its ternary parameters from a device world only.
    fn check_host_world(&self, precision: Precision) -> crate::Result<()> {
        if self.quant_ops == QuantOps::Prequantized && matches!(precision, Precision::Ternary(_)) {
            return Err(crate::TrainError::Device(
                "this graph takes ternarised weights from a world kept on the GPU, not latent \
                 weights from the host"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn quant_ops(&self) -> QuantOps {
        self.quant_ops
    }

    /// Whether the whole graph is fused ([`crate::fused`], the activation quantiser and the loss
    /// too): the graph of a world kept on a CUDA GPU. Other graphs keep their quantisers and
    /// loss, so their runs replay as recorded.
    pub fn fused(&self) -> bool {
        self.quant_ops == QuantOps::Prequantized && self.device.is_cuda()
    }

    /// Whether the layers' RMS norms, rotary embeddings, attention softmax and gated unit are fused
    /// operations: a graph of [`Graph::Fused`], or a fused one ([`Network::fused`]).
    pub fn fused_layers(&self) -> bool {
        self.graph == Graph::Fused || self.fused()
    }

    /// The world's values as autograd variables, in spec order.
    pub fn vars(&self, world: &World) -> crate::Result<Vec<Var>> {
        world
            .params
            .iter()
            .map(|p| {
                Var::from_slice(&p.value, p.spec.shape.as_slice(), &self.device)
                    .map_err(|e| ce(&format!("loading `{}`", p.spec.name), e))
            })
            .collect()
    }

    /// `[batch·seq, vocab]` logits for `batch` rows of `seq` input ids.
    pub fn logits(
        &self,
        params: &[Tensor],
        inputs: &[u32],
        batch: usize,
        seq: usize,
        precision: Precision,
    ) -> crate::Result<Tensor> {
        self.logits_inner(params, inputs, batch, seq, precision)
            .map_err(|e| ce("the forward pass", e))
    }

    /// Mean next-token loss of a batch, as a scalar graph node.
    pub fn loss(
        &self,
        params: &[Tensor],
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
        precision: Precision,
    ) -> crate::Result<Tensor> {
        if self.ternary_kernels(precision) {
            let (h, embed) = self
                .final_states(params, inputs, batch, seq, precision)
                .map_err(|e| ce("the forward pass", e))?;
            return h
                .apply_op2(&embed, HeadLoss::new(Arc::new(targets.to_vec())))
                .map_err(|e| ce("the loss", e));
        }
        let logits = self.logits(params, inputs, batch, seq, precision)?;
        if self.fused() {
            return crate::fused::cross_entropy_rows(&logits, targets)
                .and_then(|rows| rows.mean_all())
                .map_err(|e| ce("the loss", e));
        }
        if self.quant_ops == QuantOps::Kernels {
            logits.apply_op1(CrossEntropy {
                targets: Arc::new(targets.to_vec()),
            })
        } else {
            ops::tensor::cross_entropy(&logits, targets)
        }
        .map_err(|e| ce("the loss", e))
    }

    fn rope_tables(&self, seq: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let hd = self.config.head_dim();
        let mut cos = Vec::with_capacity(seq * hd);
        let mut sin = Vec::with_capacity(seq * hd);
        for p in 0..seq {
            let (c, s) = self.rope.cos_sin(p);
            cos.extend_from_slice(&c);
            cos.extend_from_slice(&c);
            sin.extend_from_slice(&s);
            sin.extend_from_slice(&s);
        }
        Ok((
            Tensor::from_vec(cos, (seq, hd), &self.device)?,
            Tensor::from_vec(sin, (seq, hd), &self.device)?,
        ))
    }

    /// Names each parameter of a slice in spec order by its role in the layout.
    fn weights<'a>(&self, params: &'a [Tensor]) -> candle_core::Result<Weights<'a>> {
        let get = |t: ModelTensor| -> candle_core::Result<&'a Tensor> {
            self.index
                .get(&t)
                .and_then(|&i| params.get(i))
                .ok_or_else(|| candle_core::Error::Msg(format!("no parameter `{}`", t.hf_name())))
        };
        Ok(Weights {
            embed: get(ModelTensor::Embedding)?,
            layers: (0..self.config.num_hidden_layers)
                .map(|i| {
                    LayerTensors::try_build(
                        |n| get(ModelTensor::norm(i, n)),
                        |p| get(ModelTensor::proj(i, p)),
                    )
                })
                .collect::<candle_core::Result<_>>()?,
            norm: get(ModelTensor::FinalNorm)?,
        })
    }

    /// Whether a graph of `precision` computes on the ternary kernels.
    fn ternary_kernels(&self, precision: Precision) -> bool {
        self.kernels == Kernels::Ternary && matches!(precision, Precision::Ternary(_))
    }

    fn logits_inner(
        &self,
        params: &[Tensor],
        inputs: &[u32],
        batch: usize,
        seq: usize,
        precision: Precision,
    ) -> candle_core::Result<Tensor> {
        let (h, embed) = self.final_states(params, inputs, batch, seq, precision)?;
        if self.ternary_kernels(precision) {
            h.apply_op2(&embed, HeadProduct)
        } else if self.matmul == crate::config::Matmul::Bf16 {
            // `--matmul bf16`: the output head in bf16 too, the logits back in f32.
            h.to_dtype(DType::BF16)?
                .matmul(&embed.to_dtype(DType::BF16)?.t()?)?
                .to_dtype(DType::F32)
        } else {
            h.matmul(&embed.t()?)
        }
    }

    /// The final normed states `[batch·seq, d]` and the embedding they meet in the output head.
    fn final_states(
        &self,
        params: &[Tensor],
        inputs: &[u32],
        batch: usize,
        seq: usize,
        precision: Precision,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let c = &self.config;
        if inputs.len() != batch * seq {
            candle_core::bail!("{} input ids for a batch of {batch} × {seq}", inputs.len());
        }
        if params.len() != self.specs.len() {
            candle_core::bail!(
                "{} parameters for a model of {}",
                params.len(),
                self.specs.len()
            );
        }
        let eps = c.rms_norm_eps;
        let (heads, kv_heads, hd) = (c.num_attention_heads, c.num_kv_heads(), c.head_dim());
        let group = heads / kv_heads;
        let n = batch * seq;
        let (cos, sin) = self.rope_tables(seq)?;
        let fused = self.fused_layers();
        // The fused softmax masks by position; the unfused graph adds this mask.
        let mask = if fused {
            None
        } else {
            let mut m = vec![0.0f32; group * seq * seq];
            for g in 0..group {
                for t in 0..seq {
                    for s in t + 1..seq {
                        m[(g * seq + t) * seq + s] = f32::NEG_INFINITY;
                    }
                }
            }
            Some(Tensor::from_vec(m, (group * seq, seq), &self.device)?)
        };
        let rms = |x: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                return crate::fused::rms_norm(x, w, eps);
            }
            let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&inv)?.broadcast_mul(w)
        };
        // `x · wᵀ`, in bf16 with `--matmul bf16` (the result back in f32).
        let product = |x: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
            if self.matmul == crate::config::Matmul::Bf16 {
                x.to_dtype(DType::BF16)?
                    .matmul(&w.to_dtype(DType::BF16)?.t()?)?
                    .to_dtype(DType::F32)
            } else {
                x.matmul(&w.t()?)
            }
        };
        let ternary_kernels = self.ternary_kernels(precision);
        let linear = |x: &Tensor, w: &Tensor| -> candle_core::Result<Tensor> {
            match precision {
                Precision::Ternary(granularity) if ternary_kernels => {
                    x.contiguous()?.apply_op2(w, BitLinear::new(granularity))
                }
                Precision::Ternary(granularity) if self.quant_ops == QuantOps::Kernels => {
                    let xq = x.contiguous()?.apply_op1(Int8Activations)?;
                    let wq = w.apply_op1(TernaryWeights { granularity })?;
                    xq.matmul(&wq.t()?)
                }
                // `x` went through `input` already.
                Precision::Ternary(_) if self.quant_ops == QuantOps::Prequantized => product(x, w),
                Precision::Ternary(granularity) => {
                    let xq = ops::tensor::int8_activations(x)?;
                    let wq = ops::tensor::ternary_weights(w, granularity)?;
                    xq.matmul(&wq.t()?)
                }
                Precision::Full => product(x, w),
            }
        };
        // A device world's graph quantises each activation once, however many projections
        // read it (q, k and v read one, gate and up another); the others quantise per
        // projection, as they always have, so their runs replay as recorded.
        let prequantized =
            self.quant_ops == QuantOps::Prequantized && matches!(precision, Precision::Ternary(_));
        let input = |x: Tensor| -> candle_core::Result<Tensor> {
            if prequantized && self.fused() {
                crate::fused::int8_rows(&x)
            } else if prequantized {
                ops::tensor::int8_activations(&x)
            } else {
                Ok(x)
            }
        };
        let rope = |x: &Tensor| -> candle_core::Result<Tensor> {
            if fused {
                return crate::fused::rope(x, &cos, &sin);
            }
            let half = hd / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        };

        let ids = Tensor::from_slice(inputs, n, &self.device)?;
        let w = self.weights(params)?;
        let mut h = w.embed.embedding(&ids)?;
        for l in &w.layers {
            let x = input(rms(&h, l.input_layernorm)?)?;
            let q = linear(&x, l.q_proj)?
                .reshape((batch, seq, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = linear(&x, l.k_proj)?
                .reshape((batch, seq, kv_heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = linear(&x, l.v_proj)?
                .reshape((batch, seq, kv_heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
            let q = (rope(&q)? * (1.0 / (hd as f64).sqrt()))?;
            let k = rope(&k)?;
            // Query heads h·group … h·group+group-1 share KV head h: fold them into the rows.
            let q = q.reshape((batch, kv_heads, group * seq, hd))?;
            let scores = q.matmul(&k.t()?)?;
            let probs = if let Some(mask) = &mask {
                let scores = scores.broadcast_add(mask)?;
                let max = scores.max_keepdim(D::Minus1)?.detach();
                let e = scores.broadcast_sub(&max)?.exp()?;
                e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?
            } else {
                crate::fused::causal_softmax(&scores)?
            };
            let attn = probs
                .matmul(&v)?
                .reshape((batch, heads, seq, hd))?
                .transpose(1, 2)?
                .reshape((n, heads * hd))?;
            let attn = input(rms(&attn, l.attn_sub_norm)?)?;
            h = (h + linear(&attn, l.o_proj)?)?;

            let y = input(rms(&h, l.post_attention_layernorm)?)?;
            let gate = linear(&y, l.gate_proj)?;
            let unit = if fused {
                crate::fused::gated(&gate, &linear(&y, l.up_proj)?, self.activation)?
            } else {
                let gate = match self.activation {
                    Activation::Relu2 => gate.relu()?.sqr()?,
                    Activation::Silu => gate.silu()?,
                };
                (gate * linear(&y, l.up_proj)?)?
            };
            let ff = input(rms(&unit, l.ffn_sub_norm)?)?;
            h = (h + linear(&ff, l.down_proj)?)?;
        }
        Ok((rms(&h, w.norm)?.contiguous()?, w.embed.clone()))
    }

    /// Mean loss of each validation window, without building a backward graph.
    pub fn evaluate(
        &self,
        world: &World,
        windows: &[(&[u32], &[u32])],
        batch: usize,
        precision: Precision,
    ) -> crate::Result<f64> {
        if windows.is_empty() {
            return Err(crate::TrainError::Data(
                "the validation set is shorter than one sequence".into(),
            ));
        }
        self.check_host_world(precision)?;
        let params: Vec<Tensor> = self
            .vars(world)?
            .into_iter()
            .map(|v| v.as_tensor().detach())
            .collect();
        self.evaluate_tensors(&params, windows, batch, precision)
    }

    /// [`Network::evaluate`] on parameters already on the device (for a world kept there).
    pub fn evaluate_tensors(
        &self,
        params: &[Tensor],
        windows: &[(&[u32], &[u32])],
        batch: usize,
        precision: Precision,
    ) -> crate::Result<f64> {
        if windows.is_empty() {
            return Err(crate::TrainError::Data(
                "the validation set is shorter than one sequence".into(),
            ));
        }
        let seq = windows[0].0.len();
        let vocab = self.config.vocab_size;
        let mut total = 0.0f64;
        let mut count = 0usize;
        for chunk in windows.chunks(batch.max(1)) {
            let inputs: Vec<u32> = chunk.iter().flat_map(|w| w.0.iter().copied()).collect();
            let targets: Vec<u32> = chunk.iter().flat_map(|w| w.1.iter().copied()).collect();
            let logits = self.logits(params, &inputs, chunk.len(), seq, precision)?;
            if self.fused() {
                // The losses on the GPU: one float per token comes down, not its logits.
                let losses = crate::fused::cross_entropy_rows(&logits, &targets)
                    .and_then(|l| l.to_vec1::<f32>())
                    .map_err(|e| ce("validation losses", e))?;
                total += losses.iter().map(|&l| f64::from(l)).sum::<f64>();
                count += losses.len();
                continue;
            }
            let values = logits
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| ce("validation logits", e))?;
            let losses = CrossEntropy {
                targets: Arc::new(targets),
            }
            .row_losses(&values, vocab);
            total += losses.iter().sum::<f64>();
            count += losses.len();
        }
        Ok(total / count as f64)
    }

    /// Gradients of the batch loss with respect to every parameter, and the loss.
    pub fn gradients(
        &self,
        world: &World,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
        precision: Precision,
    ) -> crate::Result<(f32, Vec<Vec<f32>>)> {
        self.check_host_world(precision)?;
        let vars = self.vars(world)?;
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let loss = self.loss(&tensors, inputs, targets, batch, seq, precision)?;
        let value = loss
            .to_dtype(DType::F32)
            .and_then(|l| l.to_scalar::<f32>())
            .map_err(|e| ce("the loss", e))?;
        let grads = loss.backward().map_err(|e| ce("gradients", e))?;
        let out = vars
            .iter()
            .zip(&self.specs)
            .map(|(var, spec)| match grads.get(var.as_tensor()) {
                Some(g) => g
                    .flatten_all()
                    .and_then(|g| g.to_vec1::<f32>())
                    .map_err(|e| ce(&format!("the gradient of `{}`", spec.name), e)),
                None => Ok(vec![0.0; spec.numel()]),
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok((value, out))
    }
}

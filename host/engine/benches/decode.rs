//! Decode and prefill speed of a BitNet b1.58 2B-4T-shaped model, and its peak memory.
//!
//! `cargo bench -p tritlab-engine --bench decode`
//!
//! Writes a synthetic checkpoint with microsoft/bitnet-b1.58-2B-4T's shapes into a temporary
//! directory (or uses the one at `$TRITLAB_BENCH_MODEL`, e.g. from
//! `tritlab synth --shape bitnet-2b4t --seed 1 --out DIR`), loads it, and prints for 1 and 2
//! threads:
//!
//! * prefill tokens/s (a 64-token prompt in one pass) and decode tokens/s (one token at a time
//!   with the KV cache) through tritlab's ternary kernels;
//! * the same through plain f32 matrix products (candle-core) on weights dequantised to f32, with
//!   the same norms, RoPE and attention, and the ratio. An f32 copy of all 30 layers is 8.3 GB, so
//!   the baseline dequantises `TRITLAB_BENCH_F32_LAYERS` layers (default 6), times them and the f32
//!   output projection, and scales the layer time to 30 layers;
//! * peak resident memory (VmHWM, measured before the f32 baseline exists) against the packed
//!   checkpoint's bytes plus the KV cache;
//! * decode speed against the bound the machine's read bandwidth sets (bytes streamed per token:
//!   ternary matrices + bf16 output projection + KV cache), bandwidth measured with
//!   `tritlab_kernels::probe`, as in the kernel benchmark (a parallel read of 512 MB).
//!
//! Environment: `TRITLAB_BENCH_MODEL`, `TRITLAB_BENCH_DECODE` (tokens, default 16),
//! `TRITLAB_BENCH_PROMPT` (default 64), `TRITLAB_BENCH_F32_LAYERS` (default 6, 0 skips it).

use candle_core::{Device, Tensor};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;
use tritlab_engine::ops::{self, AttentionShape, Rope};
use tritlab_engine::{synth, Model, SynthShape};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("thread pool")
}

/// Bytes per second of a parallel read of `buf`, best of a few passes.
fn read_bandwidth(p: &rayon::ThreadPool, buf: &[u64]) -> f64 {
    p.install(|| tritlab_kernels::probe::read_bandwidth(buf, std::time::Duration::from_secs(1)))
}

struct Speed {
    prefill_tok_s: f64,
    decode_tok_s: f64,
}

fn prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % (vocab - 300)) as u32)
        .collect()
}

fn measure_tritlab(
    model: &Model,
    p: &rayon::ThreadPool,
    prompt: &[u32],
    decode: usize,
) -> (Speed, usize) {
    p.install(|| {
        // warm-up: touches every page once
        let mut cache = model.new_cache();
        black_box(
            model
                .forward_last(&prompt[..4], &mut cache)
                .expect("forward"),
        );
        let mut cache = model.new_cache();
        let t = Instant::now();
        let logits = model.forward_last(prompt, &mut cache).expect("prefill");
        let prefill = t.elapsed().as_secs_f64();
        let mut next = tritlab_engine::sampling::argmax(&logits);
        let t = Instant::now();
        for _ in 0..decode {
            let l = model.forward_last(&[next], &mut cache).expect("decode");
            next = tritlab_engine::sampling::argmax(&l);
        }
        let dec = t.elapsed().as_secs_f64();
        (
            Speed {
                prefill_tok_s: prompt.len() as f64 / prefill,
                decode_tok_s: decode as f64 / dec,
            },
            cache.bytes(),
        )
    })
}

/// The same decoder with every BitLinear replaced by an f32 candle matmul of the dequantised
/// weights (activations are not quantised: the plain full-precision model).
struct F32Baseline {
    layers: Vec<F32Layer>,
    lm_head: Tensor,
    embed_rows: usize,
}

struct F32Layer {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

fn dequantised(b: &tritlab_engine::BitLinear) -> Tensor {
    let w = b.matrix().to_weights().dequantize();
    Tensor::from_vec(w, (b.out_features(), b.in_features()), &Device::Cpu).expect("tensor")
}

impl F32Baseline {
    fn new(model: &Model, layers: usize) -> Self {
        let head = model.lm_head();
        let mut w = vec![0.0f32; head.rows() * head.cols()];
        for (r, row) in w.chunks_exact_mut(head.cols()).enumerate() {
            head.row_f32(r, row);
        }
        Self {
            layers: model.layers()[..layers]
                .iter()
                .map(|l| F32Layer {
                    q: dequantised(&l.q_proj),
                    k: dequantised(&l.k_proj),
                    v: dequantised(&l.v_proj),
                    o: dequantised(&l.o_proj),
                    gate: dequantised(&l.gate_proj),
                    up: dequantised(&l.up_proj),
                    down: dequantised(&l.down_proj),
                })
                .collect(),
            lm_head: Tensor::from_vec(w, (head.rows(), head.cols()), &Device::Cpu).expect("tensor"),
            embed_rows: head.rows(),
        }
    }

    fn linear(x: &[f32], tokens: usize, w: &Tensor) -> Vec<f32> {
        let cols = x.len() / tokens;
        let xt = Tensor::from_slice(x, (tokens, cols), &Device::Cpu).expect("tensor");
        let y = xt.matmul(&w.t().expect("transpose")).expect("matmul");
        y.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("to_vec")
    }

    /// Seconds spent in the layers and in the output projection for one forward of `tokens`
    /// new tokens after `cache_len` cached ones (KV caches held in `kv`).
    fn forward(
        &self,
        model: &Model,
        tokens: &[u32],
        kv: &mut [(Vec<f32>, Vec<f32>)],
    ) -> (f64, f64) {
        let c = model.config();
        let (h, hd) = (c.hidden_size, c.head_dim());
        let shape = AttentionShape {
            heads: c.num_attention_heads,
            kv_heads: c.num_kv_heads(),
            head_dim: hd,
        };
        let (q_dim, kv_dim) = (shape.heads * hd, shape.kv_heads * hd);
        let t_len = tokens.len();
        let start = kv[0].0.len() / kv_dim;
        let rope = Rope::new(hd, c.rope_theta());
        let ones_h = vec![1.0f32; h];
        let ones_i = vec![1.0f32; c.intermediate_size];
        let t0 = Instant::now();
        let mut hidden = vec![0.0f32; t_len * h];
        for (row, &t) in hidden.chunks_exact_mut(h).zip(tokens) {
            model.embedding().row_f32(t as usize % self.embed_rows, row);
        }
        for (l, (kc, vc)) in self.layers.iter().zip(kv.iter_mut()) {
            let mut x = vec![0.0; t_len * h];
            ops::rms_norm_into(&hidden, &ones_h, 1e-5, &mut x);
            let mut q = Self::linear(&x, t_len, &l.q);
            let mut k = Self::linear(&x, t_len, &l.k);
            let v = Self::linear(&x, t_len, &l.v);
            for t in 0..t_len {
                let (cos, sin) = rope.cos_sin(start + t);
                rope.apply(&mut q[t * q_dim..(t + 1) * q_dim], &cos, &sin);
                rope.apply(&mut k[t * kv_dim..(t + 1) * kv_dim], &cos, &sin);
            }
            kc.extend_from_slice(&k);
            vc.extend_from_slice(&v);
            let mut a = vec![0.0; t_len * q_dim];
            ops::attention(&q, kc, vc, start, t_len, shape, &mut a);
            ops::rms_norm(&mut a, &ones_h, 1e-5);
            for (hv, o) in hidden.iter_mut().zip(Self::linear(&a, t_len, &l.o)) {
                *hv += o;
            }
            ops::rms_norm_into(&hidden, &ones_h, 1e-5, &mut x);
            let mut g = Self::linear(&x, t_len, &l.gate);
            let u = Self::linear(&x, t_len, &l.up);
            ops::relu2_mul(&mut g, &u);
            ops::rms_norm(&mut g, &ones_i, 1e-5);
            for (hv, o) in hidden.iter_mut().zip(Self::linear(&g, t_len, &l.down)) {
                *hv += o;
            }
        }
        let layers = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let last = &hidden[(t_len - 1) * h..];
        black_box(Self::linear(last, 1, &self.lm_head));
        (layers, t1.elapsed().as_secs_f64())
    }

    /// Estimated full-model speed: layer time scaled to all layers, plus the output projection.
    fn measure(
        &self,
        model: &Model,
        p: &rayon::ThreadPool,
        prompt: &[u32],
        decode: usize,
    ) -> Speed {
        let scale = model.layers().len() as f64 / self.layers.len() as f64;
        p.install(|| {
            let mut kv = vec![(Vec::new(), Vec::new()); self.layers.len()];
            black_box(self.forward(model, &prompt[..4], &mut kv));
            let mut kv = vec![(Vec::new(), Vec::new()); self.layers.len()];
            let (l, o) = self.forward(model, prompt, &mut kv);
            let prefill = l * scale + o;
            let mut dec = 0.0;
            for i in 0..decode {
                let (l, o) = self.forward(model, &[prompt[i % prompt.len()]], &mut kv);
                dec += l * scale + o;
            }
            Speed {
                prefill_tok_s: prompt.len() as f64 / prefill,
                decode_tok_s: decode as f64 / dec,
            }
        })
    }
}

fn main() {
    let decode = env_usize("TRITLAB_BENCH_DECODE", 16);
    let prompt_len = env_usize("TRITLAB_BENCH_PROMPT", 64);
    let f32_layers = env_usize("TRITLAB_BENCH_F32_LAYERS", 6);
    let threads = [1usize, 2];
    println!(
        "machine: {} logical CPUs, kernel backend {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tritlab_kernels::Backend::active().name()
    );

    let _tmp;
    let dir: PathBuf = match std::env::var_os("TRITLAB_BENCH_MODEL") {
        Some(d) => PathBuf::from(d),
        None => {
            _tmp = tempfile::tempdir().expect("temp dir");
            let d = _tmp.path().join("bitnet-2b4t");
            let t = Instant::now();
            synth(SynthShape::Bitnet2b4t, 1, &d).expect("synth");
            println!(
                "synthesised a 2B-4T-shaped checkpoint in {:.1}s",
                t.elapsed().as_secs_f64()
            );
            d
        }
    };
    let file_bytes: u64 = std::fs::read_dir(&dir)
        .expect("model dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t = Instant::now();
    let model = Model::load(&dir).expect("load");
    println!(
        "loaded {} in {:.1}s: ternary matrices {:.1} MB, bf16 embedding/lm_head {:.1} MB, checkpoint {:.1} MB",
        dir.display(),
        t.elapsed().as_secs_f64(),
        model.ternary_bytes() as f64 / 1e6,
        model.float_bytes() as f64 / 1e6,
        file_bytes as f64 / 1e6
    );
    let prompt = prompt(prompt_len, model.vocab_size());

    let mut ours = Vec::new();
    let mut kv_bytes = 0;
    for &n in &threads {
        let (s, kv) = measure_tritlab(&model, &pool(n), &prompt, decode);
        kv_bytes = kv;
        ours.push(s);
    }
    // Before the bandwidth buffer and the f32 baseline exist.
    let hwm = vm_hwm_bytes().unwrap_or(0);

    // The read bandwidth of a shared machine drifts by tens of percent over minutes, so the
    // decode speed that is compared with it is measured again between two bandwidth
    // measurements, and compared with their mean. (The runs above gave the memory figure; the
    // bandwidth buffer would distort it.)
    let bw_buf = tritlab_kernels::probe::bandwidth_buffer(512 << 20);
    let mut bandwidth = Vec::new();
    let mut decode_next_to_bw = Vec::new();
    for &n in &threads {
        let before = read_bandwidth(&pool(n), &bw_buf);
        let (s, _) = measure_tritlab(&model, &pool(n), &prompt, decode);
        let after = read_bandwidth(&pool(n), &bw_buf);
        bandwidth.push((before + after) / 2.0);
        decode_next_to_bw.push(s.decode_tok_s);
    }
    drop(bw_buf);

    let f32_speeds: Option<Vec<Speed>> = (f32_layers > 0).then(|| {
        let layers = f32_layers.min(model.layers().len());
        let t = Instant::now();
        let base = F32Baseline::new(&model, layers);
        println!(
            "f32 baseline: {layers} of {} layers dequantised to f32 + f32 output projection in {:.1}s; layer time scaled by {:.1}",
            model.layers().len(),
            t.elapsed().as_secs_f64(),
            model.layers().len() as f64 / layers as f64
        );
        threads.iter().map(|&n| base.measure(&model, &pool(n), &prompt, decode)).collect()
    });

    println!();
    println!(
        "{:<8} {:>14} {:>14} {:>12} {:>12} {:>9} {:>9} {:>10} {:>14} {:>12}",
        "threads",
        "prefill tok/s",
        "decode tok/s",
        "f32 prefill",
        "f32 decode",
        "prefill×",
        "decode×",
        "read GB/s",
        "decode@bw tok/s",
        "decode/bound"
    );
    // Bytes read per decoded token: every ternary matrix, the bf16 output projection, the KV cache.
    let per_token = (model.ternary_bytes() + model.lm_head().bytes() + kv_bytes) as f64;
    for (i, &n) in threads.iter().enumerate() {
        let s = &ours[i];
        let bound = bandwidth[i] / per_token;
        let (fp, fd) = f32_speeds.as_ref().map_or((f64::NAN, f64::NAN), |f| {
            (f[i].prefill_tok_s, f[i].decode_tok_s)
        });
        println!(
            "{:<8} {:>14.1} {:>14.2} {:>12.1} {:>12.2} {:>9.2} {:>9.2} {:>10.2} {:>15.2} {:>11.0}%",
            n,
            s.prefill_tok_s,
            s.decode_tok_s,
            fp,
            fd,
            s.prefill_tok_s / fp,
            s.decode_tok_s / fd,
            bandwidth[i] / 1e9,
            decode_next_to_bw[i],
            100.0 * decode_next_to_bw[i] / bound
        );
    }
    println!();
    println!(
        "bytes per decoded token: {:.1} MB (ternary {:.1} MB + bf16 lm_head {:.1} MB + KV cache {:.1} MB)",
        per_token / 1e6,
        model.ternary_bytes() as f64 / 1e6,
        model.lm_head().bytes() as f64 / 1e6,
        kv_bytes as f64 / 1e6
    );
    println!(
        "peak resident memory (VmHWM, load + runs, before the bandwidth buffer and f32 baseline): {:.1} MB = {:.3}× (checkpoint {:.1} MB + KV cache {:.1} MB)",
        hwm as f64 / 1e6,
        hwm as f64 / (file_bytes as f64 + kv_bytes as f64),
        file_bytes as f64 / 1e6,
        kv_bytes as f64 / 1e6
    );
    println!("single-token products: {}", tritlab_kernels::tune::report());
    println!("read GB/s = mean of the read bandwidth (median of passes over 512 MB) just before and just after");
    println!("a second decode run, decode@bw; decode/bound = decode@bw over (read bandwidth / bytes per token).");
}

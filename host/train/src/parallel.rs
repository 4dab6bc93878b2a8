//! Micro-batches and data parallelism: a step's batch split into equal micro-batches whose
//! gradients are summed in one fixed order, on one device or on several at once.
//!
//! The order is what keeps the morphism log exact. Of `S` micro-batches and `R` ranks (devices,
//! each holding a replica of the world), rank `r` computes micro-batches `r`, `r + R`, `r + 2R`, …,
//! one a round. After each round every rank gathers the round's gradients from all ranks (an
//! all-gather: data movement, no arithmetic) and adds them to its running sum in micro-batch
//! order. Every rank therefore computes the same sum, bit for bit, and it is the sum a single
//! device computes taking the micro-batches one after another: the bits of a step depend on the
//! number of micro-batches, not on the number of devices. A run trained on two GPUs resumes or
//! replays on one GPU of the same model exactly. (A summing all-reduce would add in an order
//! that depends on NCCL's algorithm and the rank count.)
//!
//! Each micro-batch's loss travels with its gradients (one more element at the end of the
//! buffer), so every rank computes the same step loss and every rank refuses a step whose loss
//! is not finite, before any of them changes its world.
//!
//! The cost is memory and traffic: a rank receives `R` gradient buffers a round where a ring
//! all-reduce would move two; for two GPUs that is the same traffic.

use crate::config::TrainOptions;
use crate::data::Batch;
use crate::device::DeviceSpec;
use crate::error::{Result, TrainError};
use crate::model::{Network, Precision, World};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

fn ce(what: &str, e: candle_core::Error) -> TrainError {
    TrainError::compute(what, e)
}

/// One rank's end of a group of ranks that exchange gradients.
pub trait Collective: Send + Sync {
    /// This rank's index, 0-based.
    fn rank(&self) -> usize;
    /// How many ranks the group has.
    fn ranks(&self) -> usize;
    /// Every rank's `flat` (a 1-D f32 tensor of the same length on every rank), concatenated in
    /// rank order, on this rank's device. Every rank must call it the same number of times.
    fn all_gather(&self, flat: &Tensor) -> Result<Tensor>;
    /// Tells the other ranks that this one has stopped, so that none waits for it forever.
    fn abandon(&self);
}

/// The ranks of a group in one process that exchange tensors through shared memory: CPU
/// replicas, which compute what GPU replicas compute through NCCL, so that the order of the
/// sums can be tested on any machine.
pub struct LocalGroup {
    rank: usize,
    ranks: usize,
    round: Mutex<u64>,
    shared: Arc<(Mutex<Rounds>, Condvar)>,
}

#[derive(Default)]
struct Rounds {
    /// Per round, each rank's tensor and how many ranks have taken the round's result.
    open: HashMap<u64, (Vec<Option<Tensor>>, usize)>,
    /// A rank that stopped, and why.
    abandoned: Option<usize>,
}

impl LocalGroup {
    /// The `ranks` ends of a new group, rank 0 first.
    pub fn new(ranks: usize) -> Vec<LocalGroup> {
        let shared = Arc::new((Mutex::new(Rounds::default()), Condvar::new()));
        (0..ranks)
            .map(|rank| LocalGroup {
                rank,
                ranks,
                round: Mutex::new(0),
                shared: shared.clone(),
            })
            .collect()
    }
}

fn poisoned() -> TrainError {
    TrainError::Device("a rank of the data-parallel group panicked".into())
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.ranks
    }

    fn all_gather(&self, flat: &Tensor) -> Result<Tensor> {
        let round = {
            let mut r = self.round.lock().map_err(|_| poisoned())?;
            *r += 1;
            *r
        };
        let (lock, turn) = &*self.shared;
        let mut rounds = lock.lock().map_err(|_| poisoned())?;
        let ranks = self.ranks;
        rounds
            .open
            .entry(round)
            .or_insert_with(|| (vec![None; ranks], 0))
            .0[self.rank] = Some(flat.clone());
        turn.notify_all();
        loop {
            if let Some(r) = rounds.abandoned {
                return Err(TrainError::Device(format!(
                    "rank {r} of the data-parallel group stopped before round {round}'s exchange"
                )));
            }
            match rounds.open.get(&round) {
                Some((slots, _)) if slots.iter().all(Option::is_some) => break,
                Some(_) => {}
                None => {
                    return Err(TrainError::Invalid(format!(
                        "round {round} of the exchange closed before rank {} took its result",
                        self.rank
                    )))
                }
            }
            rounds = turn.wait(rounds).map_err(|_| poisoned())?;
        }
        // The round stays open until every rank, this one included, has taken its result.
        let Some((slots, taken)) = rounds.open.get_mut(&round) else {
            return Err(TrainError::Invalid(format!(
                "round {round} of the exchange closed before rank {} took its result",
                self.rank
            )));
        };
        let parts: Vec<Tensor> = slots.iter().flatten().cloned().collect();
        *taken += 1;
        if *taken == ranks {
            rounds.open.remove(&round);
        }
        drop(rounds);
        Tensor::cat(&parts, 0).map_err(|e| ce("gathering the gradients", e))
    }

    fn abandon(&self) {
        let (lock, turn) = &*self.shared;
        if let Ok(mut rounds) = lock.lock() {
            rounds.abandoned.get_or_insert(self.rank);
        }
        turn.notify_all();
    }
}

/// The collectives of the devices of a data-parallel run, rank 0 first: shared memory between
/// CPU replicas, NCCL between GPUs (one communicator a GPU, all in this process).
pub fn group(devices: &[Device], specs: &[DeviceSpec]) -> Result<Vec<Box<dyn Collective>>> {
    if specs.iter().all(|d| d.is_cpu()) {
        return Ok(LocalGroup::new(devices.len())
            .into_iter()
            .map(|g| Box::new(g) as Box<dyn Collective>)
            .collect());
    }
    if specs.iter().any(|d| d.is_cpu()) {
        return Err(TrainError::Device(format!(
            "a data-parallel run computes on GPUs or on the CPU, not both: {}",
            specs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    nccl::group(devices)
}

/// The version of the NCCL library this process loaded (`2.27.3`), for a GPU run's record.
pub fn nccl_version() -> Option<String> {
    nccl::version()
}

#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod nccl {
    use super::*;
    use candle_core::cuda::cudarc::nccl::safe::Comm;
    use candle_core::op::BackpropOp;
    use candle_core::{CudaStorage, Storage};

    /// The communicators of the group, one a GPU, each taken out (which aborts it) when a rank
    /// stops. NCCL lets any thread use a communicator as long as calls on it do not overlap,
    /// which the mutexes ensure.
    struct Comms(Vec<Mutex<Option<Comm>>>);

    // SAFETY: a `Comm` is a handle to NCCL state that is not tied to the thread that made it;
    // every use of one goes through its mutex.
    unsafe impl Send for Comms {}
    // SAFETY: as above; shared references reach the communicators only through the mutexes.
    unsafe impl Sync for Comms {}

    pub fn version() -> Option<String> {
        // NCCL 2.9 and later: major · 10000 + minor · 100 + patch.
        let code = candle_core::cuda::cudarc::nccl::result::get_nccl_version().ok()?;
        Some(format!(
            "{}.{}.{}",
            code / 10000,
            code / 100 % 100,
            code % 100
        ))
    }

    pub struct NcclRank {
        comms: Arc<Comms>,
        device: candle_core::CudaDevice,
        rank: usize,
        ranks: usize,
    }

    pub fn group(devices: &[Device]) -> Result<Vec<Box<dyn Collective>>> {
        let cuda: Vec<candle_core::CudaDevice> = devices
            .iter()
            .map(|d| match d {
                Device::Cuda(c) => Ok(c.clone()),
                other => Err(TrainError::Device(format!(
                    "NCCL connects GPUs, not {other:?}"
                ))),
            })
            .collect::<Result<_>>()?;
        let streams = cuda.iter().map(|d| d.cuda_stream()).collect();
        let comms = Comm::from_devices(streams).map_err(|e| {
            TrainError::Device(format!(
                "cannot connect the GPUs with NCCL ({e:?}); NCCL refuses two ranks on one GPU, \
                 so list each GPU once"
            ))
        })?;
        let ranks = comms.len();
        let comms = Arc::new(Comms(
            comms.into_iter().map(|c| Mutex::new(Some(c))).collect(),
        ));
        Ok(cuda
            .into_iter()
            .enumerate()
            .map(|(rank, device)| {
                Box::new(NcclRank {
                    comms: comms.clone(),
                    device,
                    rank,
                    ranks,
                }) as Box<dyn Collective>
            })
            .collect())
    }

    impl Collective for NcclRank {
        fn rank(&self) -> usize {
            self.rank
        }

        fn ranks(&self) -> usize {
            self.ranks
        }

        fn all_gather(&self, flat: &Tensor) -> Result<Tensor> {
            let n = flat.elem_count();
            let flat = flat.contiguous().map_err(|e| ce("the gradients", e))?;
            let (storage, layout) = flat.storage_and_layout();
            let Storage::Cuda(cs) = &*storage else {
                return Err(TrainError::Device(
                    "the gradients to gather are not on a GPU".into(),
                ));
            };
            let (start, end) = layout
                .contiguous_offsets()
                .ok_or_else(|| TrainError::Device("the gradients are not contiguous".into()))?;
            let send = cs
                .as_cuda_slice::<f32>()
                .map_err(|e| ce("the gradients", e))?
                .slice(start..end);
            let stream = self.device.cuda_stream();
            let mut recv = stream.alloc_zeros::<f32>(n * self.ranks).map_err(|e| {
                TrainError::Device(format!("allocating the gathered gradients: {e}"))
            })?;
            let guard = self.comms.0[self.rank].lock().map_err(|_| poisoned())?;
            let Some(comm) = guard.as_ref() else {
                return Err(TrainError::Device(
                    "another rank of the data-parallel group stopped; its NCCL communicators are closed"
                        .into(),
                ));
            };
            comm.all_gather(&send, &mut recv)
                .map_err(|e| TrainError::Device(format!("NCCL all-gather: {e:?}")))?;
            let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(recv, self.device.clone()));
            Ok(Tensor::from_storage(
                storage,
                n * self.ranks,
                BackpropOp::none(),
                false,
            ))
        }

        fn abandon(&self) {
            // A rank that stopped before an exchange leaves the others waiting inside NCCL.
            // Dropping a communicator aborts it (`ncclCommAbort`), which ends the collectives
            // waiting on it: all of them go, so that no rank waits for this one.
            for comm in &self.comms.0 {
                if let Ok(mut c) = comm.lock() {
                    c.take();
                }
            }
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod nccl {
    use super::*;

    pub fn version() -> Option<String> {
        None
    }

    pub fn group(_: &[Device]) -> Result<Vec<Box<dyn Collective>>> {
        Err(TrainError::Device(
            "data parallelism over GPUs needs a tritlab built with CUDA (scripts/build-cuda.sh)"
                .into(),
        ))
    }
}

/// What one rank computed in a step: the step's loss (the mean of its micro-batches' losses,
/// summed in micro-batch order) and the gradient norm it clipped with, the same on every rank.
#[derive(Debug, Clone, PartialEq)]
pub struct RankStep {
    pub loss: f32,
    pub grad_norm: f64,
}

/// A world that computes a share of a step: on the host, or kept on a GPU.
pub trait Replica: Send {
    /// The steps the world has taken.
    fn step_count(&self) -> u64;

    /// The mean loss of `rows` sequences and the gradient of every parameter, flattened and
    /// concatenated in parameter order into one 1-D f32 tensor on the replica's device.
    fn micro_gradients(
        &mut self,
        network: &Network,
        inputs: &[u32],
        targets: &[u32],
        rows: usize,
        seq: usize,
        precision: Precision,
    ) -> Result<(f32, Tensor)>;

    /// The optimiser step with the summed gradient (laid out as [`Replica::micro_gradients`]
    /// lays it out): its global norm, clipping, AdamW and the projection when the run asks for
    /// it. Returns the norm.
    fn apply_flat(
        &mut self,
        network: &Network,
        grads: &Tensor,
        lr: f64,
        o: &TrainOptions,
        precision: Precision,
    ) -> Result<f64>;
}

/// One replica's part of a step.
pub struct Rank<'a> {
    pub world: &'a mut dyn Replica,
    pub network: &'a Network,
    pub collective: Option<&'a dyn Collective>,
}

/// Computes step `step` on every rank at once (one thread a rank; the caller's thread when there
/// is one): each rank's micro-batches, the exchange, the sum, then the optimiser step on every
/// replica. Every rank must report the same loss and gradient norm, or the replicas have
/// diverged and the step is refused.
pub fn step(
    ranks: Vec<Rank<'_>>,
    batch: &Batch,
    lr: f64,
    o: &TrainOptions,
    precision: Precision,
    step: u64,
) -> Result<RankStep> {
    let count = ranks.len();
    if count == 0 || !o.micro_batches.is_multiple_of(count) {
        return Err(TrainError::Options(format!(
            "--micro-batches {} must be a multiple of the {count} devices, so that each computes \
             the same number",
            o.micro_batches
        )));
    }
    let results: Vec<Result<RankStep>> = if count == 1 {
        ranks
            .into_iter()
            .map(|r| rank_step(r, 0, count, batch, lr, o, precision, step))
            .collect()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    s.spawn(move || rank_step(r, i, count, batch, lr, o, precision, step))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(poisoned())))
                .collect()
        })
    };
    let mut first: Option<RankStep> = None;
    for (rank, result) in results.into_iter().enumerate() {
        let r = result?;
        match &first {
            None => first = Some(r),
            Some(f) if f.loss.to_bits() != r.loss.to_bits() || f.grad_norm != r.grad_norm => {
                return Err(TrainError::Compute {
                    what: format!("step {step}"),
                    message: format!(
                        "rank {rank} computed loss {} and gradient norm {}, rank 0 {} and {}: \
                         the replicas no longer hold the same world",
                        r.loss, r.grad_norm, f.loss, f.grad_norm
                    ),
                })
            }
            Some(_) => {}
        }
    }
    first.ok_or_else(|| TrainError::Invalid("a step on no ranks".into()))
}

#[allow(clippy::too_many_arguments)]
fn rank_step(
    r: Rank<'_>,
    rank: usize,
    ranks: usize,
    batch: &Batch,
    lr: f64,
    o: &TrainOptions,
    precision: Precision,
    step: u64,
) -> Result<RankStep> {
    let collective = r.collective;
    let result = rank_step_inner(r, rank, ranks, batch, lr, o, precision, step);
    if result.is_err() {
        if let Some(c) = collective {
            c.abandon();
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn rank_step_inner(
    r: Rank<'_>,
    rank: usize,
    ranks: usize,
    batch: &Batch,
    lr: f64,
    o: &TrainOptions,
    precision: Precision,
    step: u64,
) -> Result<RankStep> {
    let Rank {
        world,
        network,
        collective,
    } = r;
    if let Some(c) = collective {
        if c.rank() != rank || c.ranks() != ranks {
            return Err(TrainError::Invalid(format!(
                "rank {rank} of {ranks} was handed the collective of rank {} of {}",
                c.rank(),
                c.ranks()
            )));
        }
    }
    let micro = o.micro_batches;
    let rows = o.batch_size / micro;
    let len = rows * o.seq_len;
    let mut sum: Option<Tensor> = None;
    let mut losses = vec![0f32; micro];
    for round in 0..micro / ranks {
        let k = round * ranks + rank;
        let span = k * len..(k + 1) * len;
        let (loss, grads) = world.micro_gradients(
            network,
            &batch.inputs[span.clone()],
            &batch.targets[span],
            rows,
            o.seq_len,
            precision,
        )?;
        let n = grads.elem_count();
        let loss = Tensor::new(&[loss], grads.device()).map_err(|e| ce("the loss", e))?;
        let mine = Tensor::cat(&[&grads, &loss], 0).map_err(|e| ce("the gradients", e))?;
        drop(grads);
        let all = match collective {
            Some(c) => c.all_gather(&mine)?,
            None => mine,
        };
        let parts = all.elem_count() / (n + 1);
        let round_losses = (0..parts)
            .map(|p| all.get(p * (n + 1) + n))
            .collect::<candle_core::Result<Vec<_>>>()
            .and_then(|l| Tensor::stack(&l, 0))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(|e| ce("the losses", e))?;
        for (p, l) in round_losses.into_iter().enumerate() {
            losses[round * ranks + p] = l;
            let part = all
                .narrow(0, p * (n + 1), n)
                .map_err(|e| ce("the gradients", e))?;
            sum = Some(
                match sum {
                    None => part.copy(),
                    Some(s) => s + part,
                }
                .map_err(|e| ce("summing the gradients", e))?,
            );
        }
    }
    let sum = sum.ok_or_else(|| TrainError::Invalid("a step of no micro-batches".into()))?;
    let grads = if micro > 1 {
        sum.affine(1.0 / micro as f64, 0.0)
            .map_err(|e| ce("averaging the gradients", e))?
    } else {
        sum
    };
    let loss = losses.iter().sum::<f32>() / micro as f32;
    if !loss.is_finite() {
        return Err(TrainError::Compute {
            what: format!("step {step}"),
            message: format!("the loss is {loss}; lower --lr or raise --warmup"),
        });
    }
    let grad_norm = world.apply_flat(network, &grads, lr, o, precision)?;
    Ok(RankStep { loss, grad_norm })
}

/// The flat gradient split back into the parameters' sizes (host worlds).
pub(crate) fn split_host(world: &World, flat: &Tensor) -> Result<Vec<Vec<f32>>> {
    let values = flat
        .to_vec1::<f32>()
        .map_err(|e| ce("downloading the gradients", e))?;
    let mut out = Vec::with_capacity(world.params.len());
    let mut at = 0;
    for p in &world.params {
        let n = p.value.len();
        let part = values.get(at..at + n).ok_or_else(|| {
            TrainError::Invalid(format!(
                "{} gradient values for parameters of more",
                values.len()
            ))
        })?;
        out.push(part.to_vec());
        at += n;
    }
    if at != values.len() {
        return Err(TrainError::Invalid(format!(
            "{} gradient values for parameters of {at}",
            values.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_group_gathers_in_rank_order_round_after_round() {
        let group = LocalGroup::new(3);
        let out: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|g| {
                    s.spawn(move || {
                        (0..4)
                            .map(|round| {
                                let mine =
                                    Tensor::new(&[g.rank() as f32, round as f32], &Device::Cpu)
                                        .unwrap();
                                g.all_gather(&mine).unwrap().to_vec1::<f32>().unwrap()
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for rank in out {
            for (round, got) in rank.into_iter().enumerate() {
                let r = round as f32;
                assert_eq!(got, vec![0.0, r, 1.0, r, 2.0, r]);
            }
        }
        let rounds = group[0].shared.0.lock().unwrap();
        assert!(rounds.open.is_empty(), "every finished round is dropped");
    }

    #[test]
    fn a_rank_that_stops_releases_the_others() {
        let group = LocalGroup::new(2);
        let e = std::thread::scope(|s| {
            let waiting = s.spawn(|| {
                let t = Tensor::new(&[1f32], &Device::Cpu).unwrap();
                group[0].all_gather(&t)
            });
            group[1].abandon();
            waiting.join().unwrap()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("rank 1") && e.contains("stopped"), "{e}");
    }
}

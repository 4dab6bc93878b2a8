//! `Model::forward_batch` gives every sequence of a batch exactly the logits, cache and step
//! trits it gets on its own, and a [`Sequence`] fed by batched steps with a chunked prompt
//! chooses the same tokens as [`generate_ids`].

use crate::common;

use common::*;
use proptest::prelude::*;
use std::sync::OnceLock;
use tritlab_engine::{
    generate_ids, BatchItem, GenerateOptions, HeadPrecision, KvCache, Logits, Model, OutputHead,
    SamplingOptions, Sequence, StepControl, StepTritStats,
};

/// The tiny synthetic model with an exact and an int8 head, loaded once for every case.
fn models() -> &'static [Model; 2] {
    static MODELS: OnceLock<(tempfile::TempDir, [Model; 2])> = OnceLock::new();
    &MODELS
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tiny_model(tmp.path(), 11);
            let exact = Model::load(&dir).unwrap();
            let int8 = Model::load_with(&dir, OutputHead::Quantized(HeadPrecision::Int8)).unwrap();
            (tmp, [exact, int8])
        })
        .1
}

/// One sequence of a case: tokens already cached, new tokens, which logits it wants.
#[derive(Debug, Clone)]
struct Case {
    cached: Vec<u32>,
    new: Vec<u32>,
    logits: Logits,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(0u32..512, 0..24),
        prop::collection::vec(0u32..512, 1..12),
        prop_oneof![Just(Logits::All), Just(Logits::Last), Just(Logits::None)],
    )
        .prop_map(|(cached, new, logits)| Case {
            cached,
            new,
            logits,
        })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn prefilled(model: &Model, ids: &[u32]) -> KvCache {
    let mut cache = model.new_cache();
    if !ids.is_empty() {
        model.forward(ids, &mut cache).unwrap();
    }
    cache
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_gives_each_sequence_its_own_results_bit_for_bit(
        cases in prop::collection::vec(case(), 1..6),
        head in 0usize..2,
    ) {
        let model = &models()[head];
        // Alone: each sequence through forward_with, then one more token to compare caches.
        let mut alone = Vec::new();
        for c in &cases {
            let mut cache = prefilled(model, &c.cached);
            let mut trits = StepTritStats::default();
            let logits = model.forward_with(&c.new, &mut cache, c.logits, Some(&mut trits)).unwrap();
            let after = model.forward_last(&[7], &mut cache).unwrap();
            alone.push((logits, trits, after));
        }
        // Together.
        let mut caches: Vec<KvCache> = cases.iter().map(|c| prefilled(model, &c.cached)).collect();
        let mut trits = vec![StepTritStats::default(); cases.len()];
        let mut items: Vec<BatchItem<'_>> = cases
            .iter()
            .zip(caches.iter_mut())
            .zip(trits.iter_mut())
            .map(|((c, cache), trace)| BatchItem {
                tokens: &c.new,
                cache,
                logits: c.logits,
                trace: Some(trace),
            })
            .collect();
        let together = model.forward_batch(&mut items).unwrap();
        drop(items);
        prop_assert_eq!(together.len(), cases.len());
        for (i, ((c, cache), (logits, want_trits, after))) in
            cases.iter().zip(caches.iter_mut()).zip(&alone).enumerate()
        {
            prop_assert_eq!(cache.len(), c.cached.len() + c.new.len(), "item {}", i);
            prop_assert_eq!(bits(&together[i]), bits(logits), "logits of item {}", i);
            prop_assert_eq!(&trits[i].total, &want_trits.total, "trits of item {}", i);
            let next = model.forward_last(&[7], cache).unwrap();
            prop_assert_eq!(bits(&next), bits(after), "cache of item {}", i);
        }
    }
}

/// A bad item fails the whole batch with its index, and no cache changes.
#[test]
fn a_bad_item_names_itself_and_leaves_every_cache_alone() {
    let model = &models()[0];
    let mut a = prefilled(model, &[1, 2, 3]);
    let mut b = model.new_cache();
    let mut items = [
        BatchItem {
            tokens: &[4, 5],
            cache: &mut a,
            logits: Logits::Last,
            trace: None,
        },
        BatchItem {
            tokens: &[100_000],
            cache: &mut b,
            logits: Logits::Last,
            trace: None,
        },
    ];
    let err = model.forward_batch(&mut items).unwrap_err().to_string();
    assert!(err.starts_with("batch item 1: token id 100000"), "{err}");
    assert_eq!((a.len(), b.len()), (3, 0));
}

/// Several sequences decoded together, their prompts prefilled in chunks beside the others'
/// decode steps, choose the tokens `generate_ids` chooses for each alone (greedy and seeded).
#[test]
fn batched_sequences_with_chunked_prompts_choose_what_generate_chooses() {
    let model = &models()[1];
    let prompts: Vec<Vec<u32>> = vec![
        (0..37).map(|i| (i * 13 + 5) % 512).collect(),
        vec![9],
        (0..11).map(|i| (i * 7 + 1) % 512).collect(),
    ];
    let options: Vec<GenerateOptions> = (0..3)
        .map(|i| GenerateOptions {
            max_tokens: 20,
            sampling: if i == 1 {
                SamplingOptions::greedy()
            } else {
                SamplingOptions {
                    temperature: 0.9,
                    top_k: Some(40),
                    top_p: Some(0.95),
                    seed: 3 + i as u64,
                }
            },
            stop_at_eos: false,
            ..GenerateOptions::default()
        })
        .collect();
    let want: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&options)
        .map(|(p, o)| {
            generate_ids(model, None, p, o, |_| StepControl::Continue)
                .unwrap()
                .tokens
        })
        .collect();

    const CHUNK: usize = 8;
    struct Live {
        seq: Sequence,
        cache: KvCache,
        prompt: Vec<u32>,
        fed: usize,
        next: Option<u32>,
        done: bool,
    }
    let mut live: Vec<Live> = prompts
        .iter()
        .zip(&options)
        .map(|(p, o)| Live {
            seq: Sequence::new(model, o).unwrap(),
            cache: model.new_cache(),
            prompt: p.clone(),
            fed: 0,
            next: None,
            done: false,
        })
        .collect();
    while live.iter().any(|l| !l.done) {
        let mut budget = CHUNK;
        let mut chunks: Vec<Vec<u32>> = Vec::new();
        let mut who = Vec::new();
        for (i, l) in live.iter().enumerate() {
            if l.done {
                continue;
            }
            if let Some(t) = l.next {
                chunks.push(vec![t]);
                who.push(i);
            } else if budget > 0 {
                let n = budget.min(l.prompt.len() - l.fed);
                budget -= n;
                chunks.push(l.prompt[l.fed..l.fed + n].to_vec());
                who.push(i);
            }
        }
        let mut trits = vec![StepTritStats::default(); who.len()];
        let mut caches: Vec<KvCache> = who
            .iter()
            .map(|&i| std::mem::take(&mut live[i].cache))
            .collect();
        let mut items: Vec<BatchItem<'_>> = chunks
            .iter()
            .zip(caches.iter_mut())
            .zip(trits.iter_mut())
            .zip(&who)
            .map(|(((tokens, cache), trace), &i)| {
                let l = &live[i];
                let last_chunk = l.next.is_some() || l.fed + tokens.len() == l.prompt.len();
                BatchItem {
                    tokens,
                    cache,
                    logits: if last_chunk {
                        Logits::Last
                    } else {
                        Logits::None
                    },
                    trace: Some(trace),
                }
            })
            .collect();
        let logits = model.forward_batch(&mut items).unwrap();
        drop(items);
        for (k, &i) in who.iter().enumerate() {
            let l = &mut live[i];
            l.cache = std::mem::take(&mut caches[k]);
            if l.next.is_none() {
                l.fed += chunks[k].len();
                if l.fed < l.prompt.len() {
                    continue;
                }
            }
            let position = l.cache.len();
            let trace = std::mem::take(&mut trits[k]);
            match l.seq.next(&logits[k], trace, position, None).unwrap() {
                Ok(step) if l.seq.finished().is_none() => l.next = Some(step.token_id),
                _ => l.done = true,
            }
        }
    }
    for (i, l) in live.iter().enumerate() {
        assert_eq!(l.seq.generated(), &want[i][..], "sequence {i}");
    }
}

//! Every fuzz target over its committed corpus and a fixed set of mutations of it, in the
//! ordinary test build.
//!
//! libFuzzer runs (`scripts/fuzz.sh`) need a nightly compiler and an instrumented build of the
//! whole stack, which is too slow for every test run. This replay needs neither: each seed in
//! `fuzz/corpus/TARGET/` is run as it is, then `MUTANTS_PER_SEED` mutations of it (bit flips,
//! boundary values, inserted, deleted, repeated and spliced ranges, truncation), drawn from a
//! fixed-seed generator so that every run checks the same inputs. A target that panics on any of
//! them fails here, with the input saved and the command that reproduces it under libFuzzer.
//!
//! `TRITLAB_FUZZ_REPLAY_MUTANTS=N` changes the number of mutations per seed (0: seeds only).

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tritlab_fuzz::targets::{self, Target};

/// Mutations per seed when `TRITLAB_FUZZ_REPLAY_MUTANTS` is unset: a few seconds for all targets on two cores.
const MUTANTS_PER_SEED: usize = 256;

/// SplitMix64: a fixed, seedable sequence, so a failure here reproduces on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values at the edges of signed and unsigned integer ranges, as libFuzzer's dictionary of
/// "interesting" integers has them.
const EDGE_BYTES: [u8; 6] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];
const EDGE_WORDS: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

/// One to four stacked mutations of `input`, with `other` (another seed of the same target) as
/// the donor for splices.
fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = EDGE_BYTES[rng.below(EDGE_BYTES.len())];
            }
            2 if len >= 4 => {
                let at = rng.below(len - 3);
                let word = EDGE_WORDS[rng.below(EDGE_WORDS.len())];
                data[at..at + 4].copy_from_slice(&word.to_le_bytes());
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                data.drain(at..end);
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, copy);
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            7 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(256)).min(other.len());
                let at = rng.below(len + 1);
                let cut = (at + rng.below(256)).min(len);
                data.splice(at..cut, other[from..end].iter().copied());
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// A deterministic name for a failing input (FNV-1a of its bytes).
fn input_name(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("replay-{hash:016x}")
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .collect();
    seeds.sort();
    assert!(
        !seeds.is_empty(),
        "{}: a fuzz target needs at least one seed",
        dir.display()
    );
    seeds
}

fn mutants_per_seed() -> usize {
    match std::env::var("TRITLAB_FUZZ_REPLAY_MUTANTS") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("TRITLAB_FUZZ_REPLAY_MUTANTS={text:?} is not a count")),
        Err(_) => MUTANTS_PER_SEED,
    }
}

fn replay(name: &str) {
    let target: &Target = targets::ALL
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let seeds = corpus(name);
    let mutants = mutants_per_seed();
    let saved = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-replay")
        .join(name);
    // Per target, so that adding a target or a seed leaves the other targets' inputs as they were.
    let mut rng = Rng(name.bytes().fold(0, |h, b| h.rotate_left(5) ^ u64::from(b)));

    let mut failures = String::new();
    let (mut runs, mut failed) = (0usize, 0usize);
    for (i, (seed_name, seed)) in seeds.iter().enumerate() {
        let other = &seeds[(i + 1) % seeds.len()].1;
        for m in 0..=mutants {
            let (input, origin) = if m == 0 {
                (seed.clone(), format!("seed {seed_name}"))
            } else {
                let mut input = mutate(seed, other, &mut rng);
                if let Some(repair) = target.repair {
                    // As the target's libFuzzer mutator does, seven times in eight.
                    let choice = rng.next() as u32;
                    if !choice.is_multiple_of(8) {
                        repair(&mut input, choice >> 3);
                    }
                }
                (input, format!("mutation {m} of seed {seed_name}"))
            };
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&input))).is_err() {
                failed += 1;
                if failed > 10 {
                    continue;
                }
                std::fs::create_dir_all(&saved).expect("create the folder for failing inputs");
                let path = saved.join(input_name(&input));
                std::fs::write(&path, &input).expect("save the failing input");
                let _ = writeln!(
                    failures,
                    "  {origin}: saved as {}\n    reproduce: cargo +nightly fuzz run -a --features libfuzzer --target-dir fuzz/target {name} {}",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    assert!(
        failed == 0,
        "fuzz target {name} panicked on {failed} of {runs} inputs (the first 10 are listed):\n{failures}"
    );
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// Every target in `targets::ALL` has a test above, so a new target cannot go unreplayed.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($name)),*];
            for target in targets::ALL {
                assert!(tested.contains(&target.name), "no replay test for {}", target.name);
            }
            assert_eq!(tested.len(), targets::ALL.len());
        }
    };
}

replay_tests!(
    command_lang,
    engine_config,
    engine_forward,
    morphism_log,
    plugin_convert,
    png_asset,
    tokenizer,
    train_checkpoint,
    train_run_json,
    trit_flips,
    workbook_export,
    workbook_roundtrip,
);

/// The mutator must produce inputs that differ from the seed, or the replay would only re-run
/// the corpus.
#[test]
fn mutations_change_the_input() {
    let mut rng = Rng(7);
    let seed = b"{\"vocab_size\": 16, \"hidden_size\": 8}".to_vec();
    let changed = (0..100)
        .filter(|_| mutate(&seed, b"other", &mut rng) != seed)
        .count();
    assert!(
        changed >= 95,
        "only {changed} of 100 mutations changed the input"
    );
}

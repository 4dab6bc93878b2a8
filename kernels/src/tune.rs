//! Tuning the single-token product (decode) to the host while it runs.
//!
//! Decoding streams every weight from memory once per token, and how fast a loop streams
//! depends on the host as much as on the loop: how far ahead software prefetch must ask is
//! bandwidth × latency, and whether the hardware prefetcher follows four interleaved rows or
//! only one sequential stream differs between CPUs (see [`Setting`]). A
//! constant tuned on one machine ran at half the bandwidth on the next. It has to be the
//! kernel's own loop that is timed: a bare read loop keeps enough misses in flight from its
//! out-of-order window alone and barely notices the distance, while the GEMV, with a longer
//! loop body, ran at half speed without software prefetch on the same host. So the settings are
//! measured here, on the real work: while the process's first single-token products run, each
//! call draws one [`Setting`] of [`CANDIDATES`] and is timed; once every candidate has enough
//! calls, the fastest is kept for the rest of the process.
//!
//! Every setting computes the same exact integer sums, so tuning changes speed, never a
//! result. Calls are compared shape by shape (a call's key is its weight bytes): the median
//! time of each shape under each setting, weighted by how often the shape occurs, so a setting
//! that happened to draw more of the large, faster-streaming matrices gains nothing by it.
//!
//! `TRITLAB_TUNE=off` (or `0`, `no`) keeps [`Setting::DEFAULT`] and measures nothing.

use crate::backend::{set_prefetch_distance, DEFAULT_PREFETCH_DISTANCE};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Environment variable that turns tuning off (`0`, `off` or `no`).
pub const TUNE_ENV: &str = "TRITLAB_TUNE";

/// How a single-token product reads its rows (AVX2 and AVX-512; the other backends have one
/// way).
///
/// `rows`: four rows side by side share each load of the token's activations, which is the
/// faster loop while the rows come from cache. From memory that is four streams a row apart
/// instead of one, and on some hosts the hardware prefetcher follows one sequential stream
/// much better: on a Zen 3 host, one row at a time read cold 2B-4T-shaped matrices at 77–100%
/// of the read bandwidth where four rows reached 61–87%.
///
/// `prefetch`: how far ahead each row is prefetched, bandwidth × latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Rows read side by side: 4, or one at a time for any other value.
    pub rows: usize,
    /// Software prefetch distance in bytes (a multiple of 64; 0 turns prefetching off).
    pub prefetch: usize,
}

impl Setting {
    /// The setting without tuning.
    pub const DEFAULT: Setting = Setting {
        rows: 4,
        prefetch: DEFAULT_PREFETCH_DISTANCE,
    };

    /// The output head and T1 products prefetch at the distance chosen for I2.
    fn publish(self) {
        set_prefetch_distance(self.prefetch);
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = if self.rows == 1 { "row" } else { "rows" };
        write!(
            f,
            "{} {rows}, prefetch {} KiB",
            self.rows,
            self.prefetch >> 10
        )
    }
}

const fn setting(rows: usize, prefetch_kib: usize) -> Setting {
    Setting {
        rows,
        prefetch: prefetch_kib << 10,
    }
}

/// What the tuner tries, in order of preference: among settings within [`TIE`] of the fastest,
/// the earliest wins (the default first, then shorter distances, which disturb the caches less).
pub const CANDIDATES: [Setting; 8] = [
    Setting::DEFAULT,
    setting(1, 8),
    setting(4, 2),
    setting(1, 2),
    setting(4, 4),
    setting(1, 4),
    setting(4, 16),
    setting(1, 16),
];

/// Settings within this fraction of the fastest count as equally fast.
pub const TIE: f64 = 0.02;

/// Timed calls each candidate needs, over shapes every candidate has met, before a choice.
pub const MIN_CALLS: usize = 48;

/// Calls of one shape under one candidate needed before that shape counts.
const MIN_PER_SHAPE: usize = 3;

/// Calls kept per shape and candidate (the median needs no more).
const MAX_PER_SHAPE: usize = 64;

/// What the tuner has found so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The setting in use; `None` while calls are still being measured.
    pub chosen: Option<Setting>,
    /// Whether tuning is on (off: the defaults, nothing measured).
    pub enabled: bool,
    /// Each candidate's estimated time for the calls seen, relative to the fastest (1.0), with
    /// its timed calls; empty until a choice was made.
    pub relative: Vec<(Setting, f64, usize)>,
}

impl Report {
    /// The time of the calls seen under `setting`, relative to the chosen setting's.
    pub fn relative_time(&self, setting: Setting) -> Option<f64> {
        self.relative
            .iter()
            .find(|(s, _, _)| *s == setting)
            .map(|(_, r, _)| *r)
    }
}

/// One line: the setting, and how much longer the default took where another was chosen.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.enabled, self.chosen) {
            (false, _) => write!(f, "{} (tuning off)", Setting::DEFAULT),
            (true, None) => write!(f, "still measuring"),
            (true, Some(chosen)) if chosen == Setting::DEFAULT => {
                write!(f, "{chosen} (measured: the default is fastest)")
            }
            (true, Some(chosen)) => match self.relative_time(Setting::DEFAULT) {
                Some(r) => write!(f, "{chosen} (measured: the default took {r:.2}×)"),
                None => write!(f, "{chosen} (measured)"),
            },
        }
    }
}

/// Timings per shape (weight bytes) and candidate.
#[derive(Debug, Default)]
struct Explorer {
    draws: u64,
    shapes: BTreeMap<usize, Vec<Vec<u64>>>,
}

impl Explorer {
    /// The candidate the next call runs: a fixed pseudo-random sequence, so that no candidate
    /// is tied to one position in a model's repeating pattern of shapes.
    fn draw(&mut self) -> usize {
        self.draws += 1;
        (splitmix(self.draws) % CANDIDATES.len() as u64) as usize
    }

    fn record(&mut self, candidate: usize, bytes: usize, nanos: u64) {
        let per = self
            .shapes
            .entry(bytes)
            .or_insert_with(|| vec![Vec::new(); CANDIDATES.len()]);
        if per[candidate].len() < MAX_PER_SHAPE {
            per[candidate].push(nanos);
        }
    }

    /// Each candidate's estimated time and counted calls, once every candidate has
    /// [`MIN_CALLS`] calls over shapes that all candidates have met.
    fn estimates(&self) -> Option<Vec<(f64, usize)>> {
        let mut est = vec![(0.0f64, 0usize); CANDIDATES.len()];
        for per in self.shapes.values() {
            if per.iter().any(|t| t.len() < MIN_PER_SHAPE) {
                continue;
            }
            let weight: usize = per.iter().map(Vec::len).sum();
            for (e, times) in est.iter_mut().zip(per) {
                e.0 += median(times) * weight as f64;
                e.1 += times.len();
            }
        }
        est.iter().all(|e| e.1 >= MIN_CALLS).then_some(est)
    }

    /// The chosen candidate and the report, when the timings suffice.
    fn decide(&self) -> Option<(usize, Report)> {
        let est = self.estimates()?;
        let fastest = est.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
        let chosen = est.iter().position(|e| e.0 <= fastest * (1.0 + TIE))?;
        let relative = CANDIDATES
            .iter()
            .zip(&est)
            .map(|(s, e)| (*s, e.0 / fastest, e.1))
            .collect();
        Some((
            chosen,
            Report {
                chosen: Some(CANDIDATES[chosen]),
                enabled: true,
                relative,
            },
        ))
    }
}

fn median(times: &[u64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_unstable();
    t[t.len() / 2] as f64
}

fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

enum State {
    Off,
    Exploring(Explorer),
    Chosen(Report),
}

fn state() -> &'static Mutex<State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        Mutex::new(if crate::mem::env_says_off(TUNE_ENV) {
            State::Off
        } else {
            State::Exploring(Explorer::default())
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    // The state is valid after any panic (every update is a single assignment or push).
    state().lock().unwrap_or_else(|e| e.into_inner())
}

/// A call being measured: hand it back to [`finish`] with the call's time.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    candidate: usize,
    bytes: usize,
}

/// The settled setting, for calls that need no lock: its index in [`CANDIDATES`] plus one,
/// or 0 while measuring (or before the state was first read).
static SETTLED: AtomicUsize = AtomicUsize::new(0);

/// Before a single-token product over `bytes` of weights: the setting the call runs with, and
/// a ticket when the call is to be timed. Once a setting is chosen (or tuning is off) this reads
/// one atomic: decode calls it a hundred times a token, from every session at once.
pub fn begin(bytes: usize) -> (Setting, Option<Ticket>) {
    if let Some(k) = SETTLED.load(Ordering::Acquire).checked_sub(1) {
        return (CANDIDATES[k], None);
    }
    let mut state = lock();
    match &mut *state {
        State::Off => {
            SETTLED.store(1, Ordering::Release);
            (Setting::DEFAULT, None)
        }
        State::Chosen(report) => (report.chosen.unwrap_or(Setting::DEFAULT), None),
        State::Exploring(explorer) => {
            let candidate = explorer.draw();
            (CANDIDATES[candidate], Some(Ticket { candidate, bytes }))
        }
    }
}

/// The setting in use, without timing anything: the chosen one, or the default while
/// measuring or with tuning off.
pub fn current() -> Setting {
    match SETTLED.load(Ordering::Acquire).checked_sub(1) {
        Some(k) => CANDIDATES[k],
        None => Setting::DEFAULT,
    }
}

/// After the call `ticket` was given for: records its time, and chooses a setting once the
/// timings suffice.
pub fn finish(ticket: Ticket, elapsed: Duration) {
    let mut state = lock();
    let State::Exploring(explorer) = &mut *state else {
        return;
    };
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    explorer.record(ticket.candidate, ticket.bytes, nanos);
    if let Some((chosen, report)) = explorer.decide() {
        CANDIDATES[chosen].publish();
        *state = State::Chosen(report);
        SETTLED.store(chosen + 1, Ordering::Release);
    }
}

/// What the tuner has found (see [`Report`]).
pub fn report() -> Report {
    match &*lock() {
        State::Off => Report {
            chosen: Some(Setting::DEFAULT),
            enabled: false,
            relative: Vec::new(),
        },
        State::Exploring(_) => Report {
            chosen: None,
            enabled: true,
            relative: Vec::new(),
        },
        State::Chosen(report) => report.clone(),
    }
}

/// Forgets what was measured and measures again (unless tuning is off). The engine calls it
/// when it loads a model: a choice made on a small model's products, which ran from cache, says
/// nothing about streaming a large one from memory.
pub fn restart() {
    let mut state = lock();
    if !matches!(*state, State::Off) {
        SETTLED.store(0, Ordering::Release);
        Setting::DEFAULT.publish();
        *state = State::Exploring(Explorer::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds an explorer calls of the given shapes, each taking `time(candidate, bytes)`.
    fn explore(shapes: &[usize], time: impl Fn(usize, usize) -> u64) -> (usize, Report, u64) {
        let mut e = Explorer::default();
        for call in 0.. {
            let bytes = shapes[call % shapes.len()];
            let k = e.draw();
            e.record(k, bytes, time(k, bytes));
            if let Some((chosen, report)) = e.decide() {
                return (chosen, report, e.draws);
            }
            assert!(call < 100_000, "the explorer never decided");
        }
        unreachable!()
    }

    #[test]
    fn picks_the_fastest_candidate_per_shape() {
        // Candidate 5 is 20% faster than the rest on every shape.
        let (chosen, report, draws) = explore(&[640 << 10, 1728 << 10, 4 << 20], |k, b| {
            let base = b as u64 / 10;
            if k == 5 {
                base * 8 / 10
            } else {
                base
            }
        });
        assert_eq!(chosen, 5);
        assert_eq!(report.chosen, Some(CANDIDATES[5]));
        assert_eq!(report.relative.len(), CANDIDATES.len());
        assert!((report.relative[5].1 - 1.0).abs() < 1e-12);
        assert!((report.relative[0].1 - 1.25).abs() < 1e-3);
        // Enough calls to be sure, few enough to settle within the first tokens of a decode.
        assert!(draws >= (MIN_CALLS * CANDIDATES.len()) as u64);
        assert!(draws < 2_000, "{draws} calls before a choice");
    }

    #[test]
    fn a_tie_goes_to_the_earlier_candidate() {
        // Candidate 3 is 1% faster: within the tie margin of the default, which wins.
        let (chosen, _, _) = explore(&[1 << 20], |k, _| if k == 3 { 990 } else { 1000 });
        assert_eq!(chosen, 0);
    }

    #[test]
    fn shapes_are_compared_like_for_like() {
        // Candidate 2 is slower on every shape but, timed in total, would look faster had it
        // drawn more of the small shape; per-shape medians must not be fooled. Make one shape
        // tiny and frequent and one large and rare: the 10% slower candidate must lose.
        let (chosen, report, _) = explore(&[1 << 10, 1 << 10, 1 << 10, 8 << 20], |k, b| {
            let t = b as u64;
            if k == 2 {
                t * 11 / 10
            } else {
                t
            }
        });
        assert_ne!(chosen, 2);
        assert!(report.relative[2].1 > 1.05, "{report:?}");
    }

    #[test]
    fn outliers_do_not_decide() {
        // Every eighth call of candidate 1 is preempted (100× slower); its median is still
        // the fastest.
        let calls = std::cell::Cell::new(0u64);
        let (chosen, _, _) = explore(&[1 << 20], |k, _| {
            calls.set(calls.get() + 1);
            match k {
                1 if calls.get().is_multiple_of(8) => 100_000,
                1 => 800,
                _ => 1000,
            }
        });
        assert_eq!(chosen, 1);
    }

    #[test]
    fn the_draw_reaches_every_candidate_evenly() {
        let mut e = Explorer::default();
        let mut counts = [0usize; CANDIDATES.len()];
        for _ in 0..8000 {
            counts[e.draw()] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn report_reads_well() {
        let mut r = Report {
            chosen: Some(CANDIDATES[1]),
            enabled: true,
            relative: vec![(CANDIDATES[0], 1.31, 50), (CANDIDATES[1], 1.0, 50)],
        };
        assert_eq!(
            r.to_string(),
            "1 row, prefetch 8 KiB (measured: the default took 1.31×)"
        );
        r.chosen = Some(CANDIDATES[0]);
        assert_eq!(
            r.to_string(),
            "4 rows, prefetch 8 KiB (measured: the default is fastest)"
        );
        r.enabled = false;
        assert_eq!(r.to_string(), "4 rows, prefetch 8 KiB (tuning off)");
    }
}

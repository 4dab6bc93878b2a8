//! `triad-checker`: GF(3) balance checks.
//!
//! A set of trits is *balanced* when its sum is 0 in GF(3), i.e. the number
//! of +1 and -1 trits agree mod 3. The checker applies that rule to a layer's
//! counts, a row, a tensor (as a whole and row by row), a trace of tracer
//! annotations, and a triad of three parties.

wit_bindgen::generate!({
    path: "../../wit",
    world: "checker-plugin",
});

use exports::tritlab::plugin::checker::Guest as CheckerGuest;
use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use tritlab::plugin::host::{list_tensors, read_trits};
use tritlab::plugin::types::{
    AnnotatedStep, CheckSubject, LayerCounts, OptionValue, PluginInfo, PluginKind, Triad,
    TritCounts, Verdict, VerdictStatus,
};

/// Row verdicts reported per tensor before the rest are summarised, so a
/// badly unbalanced matrix yields a readable report rather than megabytes.
const MAX_ROW_VERDICTS: usize = 32;
/// Trits requested per `read-trits` call when streaming a stored tensor.
const READ_CHUNK: u32 = 1 << 16;

struct TriadChecker;

/// Sum of trits reduced into 0..=2.
fn gf3(sum: i128) -> u8 {
    sum.rem_euclid(3) as u8
}

fn verdict(check: &str, balanced: bool, message: String, location: String) -> Verdict {
    Verdict {
        check: check.into(),
        status: if balanced {
            VerdictStatus::Ok
        } else {
            VerdictStatus::Violated
        },
        message,
        location,
    }
}

fn balance_message(sum: i128) -> String {
    format!("Σ trits = {sum} ≡ {} (mod 3)", gf3(sum))
}

fn check_counts(counts: &LayerCounts) -> Verdict {
    let TritCounts {
        negative, positive, ..
    } = counts.counts;
    let sum = i128::from(positive) - i128::from(negative);
    verdict(
        "gf3-balance",
        gf3(sum) == 0,
        balance_message(sum),
        counts.layer.clone(),
    )
}

/// Sum of a trit slice, or the index of the first value that is not a trit.
fn trit_sum(trits: &[i8]) -> Result<i128, usize> {
    trits
        .iter()
        .enumerate()
        .try_fold(0i128, |sum, (index, &trit)| match trit {
            -1..=1 => Ok(sum + i128::from(trit)),
            _ => Err(index),
        })
}

/// Rows and columns of a shape, treating the first axis as rows.
fn rows_and_columns(shape: &[u32]) -> Option<(u64, u64)> {
    let (&rows, rest) = shape.split_first()?;
    let columns = rest
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))?;
    Some((u64::from(rows), columns))
}

/// Accumulates per-row and whole-tensor balance over a stream of trits.
struct TensorBalance {
    name: String,
    columns: u64,
    position: u64,
    row_sum: i128,
    total_sum: i128,
    unbalanced_rows: u64,
    verdicts: Vec<Verdict>,
    invalid: Option<(u64, i8)>,
}

impl TensorBalance {
    fn new(name: &str, columns: u64) -> Self {
        Self {
            name: name.into(),
            columns: columns.max(1),
            position: 0,
            row_sum: 0,
            total_sum: 0,
            unbalanced_rows: 0,
            verdicts: Vec::new(),
            invalid: None,
        }
    }

    fn feed(&mut self, trits: &[i8]) {
        for &trit in trits {
            if !(-1..=1).contains(&trit) {
                self.invalid.get_or_insert((self.position, trit));
            }
            self.row_sum += i128::from(trit);
            self.total_sum += i128::from(trit);
            self.position += 1;
            if self.position % self.columns == 0 {
                self.end_row(self.position / self.columns - 1);
            }
        }
    }

    fn end_row(&mut self, row: u64) {
        if gf3(self.row_sum) != 0 {
            self.unbalanced_rows += 1;
            if self.verdicts.len() < MAX_ROW_VERDICTS {
                self.verdicts.push(verdict(
                    "gf3-row-balance",
                    false,
                    balance_message(self.row_sum),
                    format!("{}[{row}]", self.name),
                ));
            }
        }
        self.row_sum = 0;
    }

    fn finish(mut self, expected_len: u64) -> Vec<Verdict> {
        if let Some((index, value)) = self.invalid {
            return vec![verdict(
                "trit-values",
                false,
                format!("value {value} at flat index {index} is not a trit"),
                self.name,
            )];
        }
        if self.position != expected_len {
            return vec![verdict(
                "shape",
                false,
                format!(
                    "shape holds {expected_len} trits but {} were given",
                    self.position
                ),
                self.name,
            )];
        }
        let rows = self.position / self.columns;
        let listed = self.verdicts.len() as u64;
        let summary = if self.unbalanced_rows > listed {
            format!(
                "{} of {rows} rows unbalanced (first {listed} listed)",
                self.unbalanced_rows
            )
        } else {
            format!("{} of {rows} rows unbalanced", self.unbalanced_rows)
        };
        self.verdicts.push(verdict(
            "gf3-row-balance",
            self.unbalanced_rows == 0,
            summary,
            self.name.clone(),
        ));
        self.verdicts.push(verdict(
            "gf3-balance",
            gf3(self.total_sum) == 0,
            balance_message(self.total_sum),
            self.name,
        ));
        self.verdicts
    }
}

fn check_tensor(name: &str, shape: &[u32], trits: &[i8]) -> Result<Vec<Verdict>, String> {
    let (rows, columns) = rows_and_columns(shape)
        .ok_or_else(|| format!("tensor `{name}` has an empty or overflowing shape"))?;
    let mut balance = TensorBalance::new(name, columns);
    balance.feed(trits);
    Ok(balance.finish(rows.saturating_mul(columns)))
}

fn check_stored_tensor(name: &str) -> Result<Vec<Verdict>, String> {
    let info = list_tensors()
        .into_iter()
        .find(|info| info.name == name)
        .ok_or_else(|| format!("the host serves no tensor named `{name}`"))?;
    let (rows, columns) = rows_and_columns(&info.shape)
        .ok_or_else(|| format!("tensor `{name}` has an empty or overflowing shape"))?;
    let len = rows.saturating_mul(columns);
    let mut balance = TensorBalance::new(name, columns);
    let mut offset = 0u64;
    while offset < len {
        let want = READ_CHUNK.min(u32::try_from(len - offset).unwrap_or(READ_CHUNK));
        let chunk = read_trits(name, offset, want)?;
        if chunk.is_empty() {
            break;
        }
        balance.feed(&chunk);
        offset += chunk.len() as u64;
    }
    Ok(balance.finish(len))
}

fn check_trace(steps: &[AnnotatedStep]) -> Verdict {
    let location = match (steps.first(), steps.last()) {
        (Some(first), Some(last)) => format!("steps {}..={}", first.step, last.step),
        _ => "empty trace".into(),
    };
    let trits: Vec<i8> = steps.iter().map(|step| step.annotation.trit).collect();
    match trit_sum(&trits) {
        Ok(sum) => verdict("gf3-trace", gf3(sum) == 0, balance_message(sum), location),
        Err(index) => verdict(
            "trit-values",
            false,
            format!(
                "step {} carries {} which is not a trit",
                steps[index].step, trits[index]
            ),
            location,
        ),
    }
}

fn check_triad(triad: &Triad) -> Verdict {
    let (a, b, c) = &triad.parties;
    let names = format!(
        "{} ({:+}), {} ({:+}), {} ({:+})",
        a.name, a.trit, b.name, b.trit, c.name, c.trit
    );
    match trit_sum(&[a.trit, b.trit, c.trit]) {
        Ok(sum) => verdict(
            "balanced-triad",
            gf3(sum) == 0,
            format!("{names}: {}", balance_message(sum)),
            triad.label.clone(),
        ),
        Err(_) => verdict(
            "trit-values",
            false,
            format!("{names}: not all are trits"),
            triad.label.clone(),
        ),
    }
}

impl PluginGuest for TriadChecker {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "triad-checker".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Checker,
            description: "Checks GF(3) balance (Σ trits ≡ 0 mod 3) of layers, rows, tensors, traces and triads."
                .into(),
            options: Vec::new(),
        }
    }

    fn configure(options: Vec<OptionValue>) -> Result<(), String> {
        match options.first() {
            Some(option) => Err(format!(
                "triad-checker takes no options (got `{}`)",
                option.name
            )),
            None => Ok(()),
        }
    }
}

impl CheckerGuest for TriadChecker {
    fn check(subject: CheckSubject) -> Result<Vec<Verdict>, String> {
        match subject {
            CheckSubject::Layer(counts) => Ok(vec![check_counts(&counts)]),
            CheckSubject::Row(row) => {
                let location = format!("{}[{}]", row.tensor, row.row);
                Ok(vec![match trit_sum(&row.trits) {
                    Ok(sum) => {
                        verdict("gf3-balance", gf3(sum) == 0, balance_message(sum), location)
                    }
                    Err(index) => verdict(
                        "trit-values",
                        false,
                        format!("value {} at column {index} is not a trit", row.trits[index]),
                        location,
                    ),
                }])
            }
            CheckSubject::Tensor(tensor) => {
                check_tensor(&tensor.name, &tensor.shape, &tensor.trits)
            }
            CheckSubject::StoredTensor(name) => check_stored_tensor(&name),
            CheckSubject::Trace(steps) => Ok(vec![check_trace(&steps)]),
            CheckSubject::Triad(triad) => Ok(vec![check_triad(&triad)]),
        }
    }
}

export!(TriadChecker);

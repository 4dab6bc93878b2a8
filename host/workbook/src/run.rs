//! Running a workbook headless: every cell in order, through whatever [`CellRunner`] executes
//! them, with progress events and a report. The runner is a trait so this crate needs neither the
//! engine nor a Rust evaluator, and tests can run books with a fake.

use std::fmt;

use crate::book::{Cell, CellId, Workbook};
use crate::output::Output;

/// Executes one cell. Implemented by the command language's session and the Rust evaluator.
pub trait CellRunner {
    /// Runs `cell`, the `index`-th cell of the book (0-based, prose not counted).
    fn run_cell(&mut self, cell: &Cell, index: usize) -> CellResult;
}

/// What running a cell gave: its new outputs and whether it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    pub outputs: Vec<Output>,
    /// `Some(message)` if the cell failed.
    pub failure: Option<String>,
}

impl CellResult {
    pub fn ok(outputs: Vec<Output>) -> Self {
        CellResult {
            outputs,
            failure: None,
        }
    }

    pub fn failed(outputs: Vec<Output>, message: impl Into<String>) -> Self {
        CellResult {
            outputs,
            failure: Some(message.into()),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// How [`run_book`] treats failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Run the remaining cells after one fails, instead of stopping.
    pub keep_going: bool,
}

/// Progress of a run, for a face to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// Cell `number` (1-based) of `total` is about to run.
    CellStarted {
        number: usize,
        total: usize,
        line: Option<usize>,
    },
    /// Cell `number` finished.
    CellFinished { number: usize, ok: bool },
}

/// A cell that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFailure {
    /// 1-based cell number, prose not counted.
    pub number: usize,
    /// The line where the cell starts in the text it was read from, if it was read.
    pub line: Option<usize>,
    pub id: Option<CellId>,
    pub message: String,
}

impl fmt::Display for CellFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cell {}", self.number)?;
        match (&self.id, self.line) {
            (Some(id), Some(line)) => write!(f, " ({id}, line {line})")?,
            (Some(id), None) => write!(f, " ({id})")?,
            (None, Some(line)) => write!(f, " (line {line})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of [`run_book`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Cells in the book.
    pub total: usize,
    /// Cells that ran (the rest were skipped after a failure).
    pub ran: usize,
    pub failures: Vec<CellFailure>,
}

impl RunReport {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether a failure stopped the run before every cell ran.
    pub fn stopped_early(&self) -> bool {
        self.ran < self.total
    }
}

/// Runs every cell of `book` in order, replacing each cell's outputs with what it gave.
///
/// A failed cell keeps the outputs it produced; if none of them is an [`Output::Error`], its
/// failure message is added as one, so the book shows why it failed. After a failure the run
/// stops unless `opts.keep_going`; cells that did not run keep their previous outputs.
pub fn run_book(
    book: &mut Workbook,
    runner: &mut dyn CellRunner,
    opts: &RunOptions,
    mut progress: impl FnMut(RunEvent),
) -> RunReport {
    let total = book.cells().count();
    let mut report = RunReport {
        total,
        ..RunReport::default()
    };
    for (index, cell) in book.cells_mut().enumerate() {
        let number = index + 1;
        progress(RunEvent::CellStarted {
            number,
            total,
            line: cell.source_line(),
        });
        let CellResult {
            mut outputs,
            failure,
        } = runner.run_cell(cell, index);
        report.ran += 1;
        let ok = failure.is_none();
        if let Some(message) = failure {
            if !outputs
                .iter()
                .any(|output| matches!(output, Output::Error(_)))
            {
                outputs.push(Output::Error(message.clone()));
            }
            report.failures.push(CellFailure {
                number,
                line: cell.source_line(),
                id: cell.id.clone(),
                message,
            });
        }
        cell.outputs = outputs;
        progress(RunEvent::CellFinished { number, ok });
        if !ok && !opts.keep_going {
            break;
        }
    }
    report
}

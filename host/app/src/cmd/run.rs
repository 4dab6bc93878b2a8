//! `tritlab run BOOK`: runs a workbook headless, saves its outputs and exports it.
//!
//! Cells run in order in one session, with the working directory set to the workbook's folder,
//! so relative paths in cells (data files, run directories, models) are relative to the book
//! wherever tritlab is started from. Paths on the command line are relative to where it was
//! started, as usual.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tritlab_session::SessionWorker;
use tritlab_workbook::{
    run_book, Cell, CellKind, CellResult, CellRunner, ExportFormat, RunEvent, RunOptions, Workbook,
};

use crate::console::{self, Console};
use crate::interrupt;
use crate::render::Style;

#[derive(clap::Args)]
pub struct Args {
    /// The workbook (a `.md` file in tritlab's workbook format).
    pub book: PathBuf,
    /// Also write the run book here: `.html`, `.ipynb` or `.md`, by extension (repeatable).
    #[arg(long, value_name = "OUT")]
    pub export: Vec<PathBuf>,
    /// Run every cell even after one fails (the run still exits with status 1).
    #[arg(long)]
    pub keep_going: bool,
    /// Leave the workbook file as it is instead of writing the new outputs into it.
    #[arg(long)]
    pub no_save: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // Check everything that can be checked before minutes of cells run.
    for out in &args.export {
        if ExportFormat::from_path(out).is_none() {
            bail!(
                "cannot export to {}: the extension must be .html, .ipynb or .md",
                out.display()
            );
        }
    }
    let book_path = std::path::absolute(&args.book)
        .with_context(|| format!("resolving {}", args.book.display()))?;
    let exports: Vec<PathBuf> = args
        .export
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| format!("resolving {}", p.display())))
        .collect::<Result<_>>()?;
    let mut book = Workbook::load(&book_path)?;
    let book_dir = book_path.parent().unwrap_or(Path::new("/")).to_path_buf();

    // The session (and with it every relative path in the cells) works in the book's folder.
    // Like the REPL, the session starts with the default model loaded.
    let config = console::session_config(true);
    std::env::set_current_dir(&book_dir)
        .with_context(|| format!("changing to the workbook's folder {}", book_dir.display()))?;
    interrupt::install();
    let (worker, snapshot) = console::start_worker(config, tritlab_rust_cells::Preparation::Wait);
    let err = Style::stderr();
    for note in console::startup_notes(&snapshot) {
        eprintln!("{}", err.yellow(&format!("note: {note}")));
    }

    let out = Style::stdout();
    let summaries: Vec<String> = book.cells().map(summary).collect();
    let total = summaries.len();
    println!(
        "{}",
        out.bold(&format!(
            "{}: {total} cell{}",
            args.book.display(),
            if total == 1 { "" } else { "s" }
        ))
    );
    let mut runner = SessionCells {
        worker: &worker,
        console: Console::new(false),
    };
    let options = RunOptions {
        keep_going: args.keep_going,
    };
    let started = Instant::now();
    let mut cell_started = Instant::now();
    let width = total.to_string().len();
    let report = run_book(&mut book, &mut runner, &options, |event| match event {
        RunEvent::CellStarted {
            number,
            total,
            line,
        } => {
            cell_started = Instant::now();
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            println!(
                "[{number:>width$}/{total}] {at}{}",
                summaries.get(number - 1).map_or("", String::as_str)
            );
        }
        RunEvent::CellFinished { ok, .. } => {
            let secs = cell_started.elapsed().as_secs_f64();
            let verdict = if ok {
                out.paint("32", "ok")
            } else {
                out.paint("1;31", "failed")
            };
            println!("{}  {verdict} in {secs:.1} s", " ".repeat(2 * width + 2));
        }
    });

    for failure in &report.failures {
        eprintln!("{}", err.red(&format!("error in {failure}")));
    }
    if report.stopped_early() {
        eprintln!(
            "stopped at cell {} of {}; --keep-going runs the rest",
            report.ran, report.total
        );
    }
    // The outputs go back into the book even after a failure: the book shows where and why.
    // Saving and each export are tried even if another fails.
    let mut written = true;
    if !args.no_save {
        match book.save(&book_path) {
            Ok(()) => println!("saved the outputs into {}", args.book.display()),
            Err(e) => {
                written = false;
                eprintln!(
                    "{}",
                    err.red(&format!(
                        "error: saving the outputs into {}: {e}",
                        book_path.display()
                    ))
                );
            }
        }
    }
    for path in &exports {
        match export_to(&book, path) {
            Ok(()) => println!("exported {}", path.display()),
            Err(e) => {
                written = false;
                eprintln!("{}", err.red(&format!("error: {e:#}")));
            }
        }
    }
    let failed = report.failures.len();
    println!(
        "{} of {} cells ran, {failed} failed, in {:.1} s",
        report.ran,
        report.total,
        started.elapsed().as_secs_f64()
    );
    Ok(if report.is_ok() && written {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes `book` to `path` in the format its extension names, creating the folder if needed.
fn export_to(book: &Workbook, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for an export", dir.display()))?;
    }
    tritlab_workbook::export(book, path).with_context(|| format!("exporting to {}", path.display()))
}

/// A cell in one line for the progress list: its kind and first line.
fn summary(cell: &Cell) -> String {
    let first = cell
        .source
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let more = cell.source.lines().filter(|l| !l.trim().is_empty()).count() > 1;
    let first = first.trim();
    let first: String = if first.chars().count() > 72 {
        first.chars().take(71).chain(['…']).collect()
    } else {
        first.to_string()
    };
    let kind = match cell.kind {
        CellKind::Command => "",
        CellKind::Rust => "rust: ",
    };
    format!("{kind}{first}{}", if more { " …" } else { "" })
}

/// Runs cells on a session worker: command cells as they are, Rust cells as a `:rust` block.
struct SessionCells<'a> {
    worker: &'a SessionWorker,
    console: Console,
}

impl CellRunner for SessionCells<'_> {
    fn run_cell(&mut self, cell: &Cell, _index: usize) -> CellResult {
        let source = match cell.kind {
            CellKind::Command => cell.source.clone(),
            CellKind::Rust => match rust_block(&cell.source) {
                Ok(Some(block)) => block,
                Ok(None) => return CellResult::ok(Vec::new()),
                Err(message) => return CellResult::failed(Vec::new(), message),
            },
        };
        let job = self.console.run(self.worker, &source);
        match job.exec.error {
            Some(error) => CellResult::failed(job.exec.outputs, error.to_string()),
            None => CellResult::ok(job.exec.outputs),
        }
    }
}

/// A Rust cell's code as a `:rust` … `:end` block of the command language; `None` for a cell
/// with no code.
fn rust_block(code: &str) -> Result<Option<String>, String> {
    if code.trim().is_empty() {
        return Ok(None);
    }
    if let Some((n, _)) = code
        .lines()
        .enumerate()
        .find(|(_, line)| line.trim() == ":end")
    {
        return Err(format!(
            "line {} of the Rust cell is `:end`, which would end the cell early; it is not Rust",
            n + 1
        ));
    }
    Ok(Some(format!(":rust\n{code}\n:end")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_cells_become_rust_blocks() {
        assert_eq!(
            rust_block("let x = 1;\nprintln!(\"{x}\");")
                .unwrap()
                .unwrap(),
            ":rust\nlet x = 1;\nprintln!(\"{x}\");\n:end"
        );
        assert_eq!(rust_block("  \n").unwrap(), None);
        let err = rust_block("let a = 1;\n  :end\n").unwrap_err();
        assert!(err.starts_with("line 2 of the Rust cell"), "{err}");
    }

    #[test]
    fn the_block_parses_back_to_the_code() {
        let code = "fn f() -> u8 { 3 }\n\nprintln!(\"{}\", f());";
        let block = rust_block(code).unwrap().unwrap();
        let statements = tritlab_session::parse_script(&block).unwrap();
        assert_eq!(statements.len(), 1);
        match &statements[0].command {
            tritlab_session::Command::Rust(parsed) => assert_eq!(parsed, code),
            other => panic!("not a Rust command: {other:?}"),
        }
    }

    #[test]
    fn summaries_show_the_first_line() {
        assert_eq!(summary(&Cell::command("\ninfo\n")), "info");
        assert_eq!(
            summary(&Cell::command("load default\ninfo")),
            "load default …"
        );
        assert_eq!(summary(&Cell::rust("let x = 1;")), "rust: let x = 1;");
        let long = format!("generate \"{}\"", "a".repeat(100));
        let shown = summary(&Cell::command(long));
        assert_eq!(shown.chars().count(), 72);
        assert!(shown.ends_with("aa…"), "{shown}");
    }
}

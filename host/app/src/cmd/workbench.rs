//! `tritlab workbench [BOOK]` (and `tritlab` with no arguments on a desktop): the eframe
//! workbench on a workbook, the tour by default.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tritlab_rust_cells::{Preparation, SidecarEvaluator};
use tritlab_workbench::{run_workbench, WorkbenchOptions};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Workbook to open (default: the shipped tour).
    pub book: Option<PathBuf>,
    /// Start with an empty workbook.
    #[arg(long, conflicts_with = "book")]
    pub empty: bool,
    /// Run every cell once the book is open.
    #[arg(long)]
    pub run: bool,
    /// Save a screenshot after this many seconds to --screenshot-file and close (smoke tests).
    #[arg(long, value_name = "SECONDS", requires = "screenshot_file")]
    pub screenshot_after: Option<f64>,
    #[arg(long, value_name = "PNG")]
    pub screenshot_file: Option<PathBuf>,
}

/// Whether a desktop session is there to open a window on.
pub fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut options = WorkbenchOptions::default();
    if args.empty {
        options.book = None;
    } else if let Some(book) = args.book {
        options.book = Some(book);
    }
    options.run_on_open = args.run;
    if let (Some(secs), Some(file)) = (args.screenshot_after, args.screenshot_file) {
        options.screenshot_after = Some((Duration::from_secs_f64(secs.max(0.0)), file));
    }
    options.rust = Some(Box::new(SidecarEvaluator::new(Preparation::Report)));
    run_workbench(options)?;
    Ok(ExitCode::SUCCESS)
}

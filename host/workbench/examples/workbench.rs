//! Opens the workbench, for trying it by hand and for smoke tests.
//!
//! ```sh
//! cargo run -p tritlab-workbench --example workbench                       # the tour
//! cargo run -p tritlab-workbench --example workbench -- notes.md --run     # a book, run on open
//! cargo run -p tritlab-workbench --example workbench -- --screenshot 5 /tmp/wb.png
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tritlab_workbench::{run_workbench, WorkbenchOptions};

const USAGE: &str =
    "usage: workbench [BOOK.md | --empty] [--run] [--no-persist] [--screenshot SECONDS PNG]";

fn main() -> ExitCode {
    let mut options = WorkbenchOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--run" => options.run_on_open = true,
            "--empty" => options.book = None,
            "--no-persist" => options.persist = false,
            "--screenshot" => {
                let seconds = args.next().and_then(|s| s.parse::<f64>().ok());
                let path = args.next().map(PathBuf::from);
                let (Some(seconds), Some(path)) = (seconds, path) else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                options.screenshot_after = Some((Duration::from_secs_f64(seconds.max(0.0)), path));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            flag if flag.starts_with('-') => {
                eprintln!("unknown option {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
            book => options.book = Some(PathBuf::from(book)),
        }
    }
    match run_workbench(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("workbench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

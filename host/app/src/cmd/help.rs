//! `tritlab help [COMMAND] [--markdown]`: the command language's reference, from the command
//! table. `tritlab help --markdown > docs/COMMANDS.md` regenerates the committed reference (a
//! test of tritlab-session fails while the two differ).

use anyhow::{bail, Result};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// One command's help; the index of every command if left out.
    pub command: Option<String>,
    /// The whole reference as Markdown (what docs/COMMANDS.md holds).
    #[arg(long, conflicts_with = "command")]
    pub markdown: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    use tritlab_session::lang::{help_command, help_index, reference_markdown};
    let text = match (&args.command, args.markdown) {
        (_, true) => reference_markdown(),
        (Some(name), false) => match help_command(name) {
            Some(text) => text,
            None => bail!("no command `{name}`; `tritlab help` lists them"),
        },
        (None, false) => help_index(),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

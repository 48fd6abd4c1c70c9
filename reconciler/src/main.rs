//! `previewd`: the reconciler binary. Wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use previewd::config::Config;
use previewd::{crd, offline};

#[derive(Parser)]
#[command(name = "previewd", version, about = "Preview environments for pull requests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PreviewEnvironment CustomResourceDefinition (YAML).
    Crd,
    /// Print, as multi-document YAML, every object the reconciler would apply for a queue message.
    Render {
        #[arg(long)]
        config: PathBuf,
        /// A queue message (JSON), as in docs/examples/events/.
        #[arg(long)]
        event: PathBuf,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; errors name the field.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => crd::crd_yaml().map_err(|e| e.to_string()),
        Command::Render { config, event } => offline::render_event(&config, &event).map_err(|e| e.to_string()),
        Command::Config { command: ConfigCommand::Check { file } } => Config::load(&file)
            .map(|c| format!("{}: ok ({} repositories)\n", file.display(), c.repositories.len()))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("previewd: {err}");
            }
            ExitCode::FAILURE
        }
    }
}

//! `previewd`: the reconciler binary. Wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use previewd::config::Config;
use previewd::crd;

#[derive(Parser)]
#[command(name = "previewd", version, about = "Preview environments for pull requests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconciler: queue consumers, the PreviewEnvironment controller, /healthz,
    /// /readyz and /metrics. Environment: PREVIEWD_QUEUE_URL (or PREVIEWD_NATS_URL), PREVIEWD_CONSUMERS (2),
    /// PREVIEWD_LISTEN (0.0.0.0:8080), the standard AWS_* and KUBECONFIG / in-cluster config.
    Run {
        #[arg(long, env = "PREVIEWD_CONFIG", default_value = "/etc/previewd/config.yaml")]
        config: PathBuf,
    },
    /// The in-cluster front: GitHub webhooks over HTTP into NATS JetStream, for installs without
    /// AWS. Environment: PREVIEWD_NATS_URL, PREVIEWD_WEBHOOK_SECRET, PREVIEWD_LISTEN
    /// (0.0.0.0:8080) and the Lambda's PREVIEWD_* limits (docs/in-cluster-front.md).
    WebhookServer,
    /// Print what every preview in the cluster costs, with totals per repository and team and
    /// the projection against the budget (uses KUBECONFIG / in-cluster config).
    Cost {
        #[arg(long, env = "PREVIEWD_CONFIG", default_value = "/etc/previewd/config.yaml")]
        config: PathBuf,
    },
    /// Work off the queue once, print a row per event, and exit. With KUBECONFIG set, writes
    /// to that cluster (and reconciles each preview once); without, renders each preview into
    /// `--out` (one directory per preview). Environment: PREVIEWD_QUEUE_URL, the standard AWS_*.
    Consume {
        #[arg(long, env = "PREVIEWD_CONFIG", default_value = "/etc/previewd/config.yaml")]
        config: PathBuf,
        /// Where previews are rendered without a cluster.
        #[arg(long, default_value = ".run/previews")]
        out: PathBuf,
        /// Without a cluster: a checkout standing in for the PRs' head commit, from which a
        /// seeded repository's schema is read (its loader Job is rendered too).
        #[arg(long)]
        checkout: Option<PathBuf>,
    },
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
    /// Which services a change needs: follows each service's build graph in a checkout of the
    /// PR's head (`--repo-dir`) and base (`--base-dir`); the `paths` globs alone without one.
    /// Prints {"services": [...], "reasons": {...}, "by": "graph"|"paths"}.
    Detect {
        #[arg(long, env = "PREVIEWD_CONFIG", default_value = "/etc/previewd/config.yaml")]
        config: PathBuf,
        /// OWNER/NAME, as configured.
        #[arg(long)]
        repository: String,
        /// The changed paths, one per line.
        #[arg(long)]
        files: PathBuf,
        /// The PR's unified diff (tells which key of an env or version file changed).
        #[arg(long)]
        diff: Option<PathBuf>,
        /// A checkout of the PR's head commit.
        #[arg(long)]
        repo_dir: Option<PathBuf>,
        /// A checkout of the PR's base commit (deleted files; what changed in a compose file).
        #[arg(long)]
        base_dir: Option<PathBuf>,
    },
    /// Synthetic test data from a schema: PostgreSQL DDL (migrations, in order), JSON Schema,
    /// OpenAPI or protobuf in, INSERTs or JSON out; the same seed gives the same data.
    Seed {
        /// Schema files: .sql (CREATE TABLE, CREATE TYPE … AS ENUM, ALTER TABLE … ADD/DROP),
        /// .json/.yaml (JSON Schema, OpenAPI components) or .proto (messages).
        #[arg(long, required = true, num_args = 1..)]
        schema: Vec<PathBuf>,
        /// Rows per table.
        #[arg(long, default_value_t = 20)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = previewd::cmd::seed::Format::Sql)]
        format: previewd::cmd::seed::Format,
    },
    /// A/B experiments (`repositories[].experiment`).
    Experiments {
        #[command(subcommand)]
        command: ExperimentsCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ExperimentsCommand {
    /// Compare each experiment's arms: services per preview, cost per preview-hour, AI spend,
    /// corrections and time to Ready, with 95% confidence intervals, over the cluster's
    /// PreviewEnvironments (KUBECONFIG / in-cluster config), and over the arms' counters in
    /// Prometheus with `--prometheus`.
    Report {
        #[arg(long, env = "PREVIEWD_CONFIG", default_value = "/etc/previewd/config.yaml")]
        config: PathBuf,
        /// Prometheus's base URL, for the counters (previews, corrections, AI spend).
        #[arg(long)]
        prometheus: Option<String>,
        /// How far back the counters are read.
        #[arg(long, default_value = "30d", value_parser = humantime_serde::re::humantime::parse_duration)]
        window: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file; errors name the field.
    Check { file: PathBuf },
    /// Print the configuration's JSON Schema (the chart embeds it under `config` in
    /// values.schema.json: `make generated`).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run { config } = &cli.command {
        return serve(previewd::cmd::run::run(config));
    }
    if let Command::WebhookServer = &cli.command {
        return serve(previewd::cmd::webhook_server::serve());
    }
    let result = match cli.command {
        Command::Run { .. } | Command::WebhookServer => Ok(String::new()),
        Command::Cost { config } => cost_report(&config),
        Command::Consume { config, out, checkout } => consume(&config, &out, checkout.as_deref()),
        Command::Crd => crd::crd_yaml().map_err(|e| e.to_string()),
        Command::Detect { config, repository, files, diff, repo_dir, base_dir } => {
            previewd::cmd::detect::detect(&previewd::cmd::detect::DetectArgs {
                config,
                repository,
                files,
                diff,
                repo_dir,
                base_dir,
            })
        }
        Command::Experiments { command: ExperimentsCommand::Report { config, prometheus, window } } => {
            block_on(previewd::cmd::experiments::report(&config, prometheus.as_deref(), window)).and_then(|r| r)
        }
        Command::Seed { schema, rows, seed, format } => previewd::cmd::seed::seed(&schema, rows, seed, format),
        Command::Render { config, event } => {
            block_on(previewd::cmd::render::render_event(&config, &event)).and_then(|r| r.map_err(|e| e.to_string()))
        }
        Command::Config { command: ConfigCommand::Check { file } } => Config::load(&file)
            .map(|c| format!("{}: ok ({} repositories)\n", file.display(), c.repositories.len()))
            .map_err(|e| e.to_string()),
        Command::Config { command: ConfigCommand::Schema } => {
            serde_json::to_string_pretty(&Config::schema()).map(|json| format!("{json}\n")).map_err(|e| e.to_string())
        }
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

fn consume(
    config: &std::path::Path,
    out: &std::path::Path,
    checkout: Option<&std::path::Path>,
) -> Result<String, String> {
    block_on(previewd::cmd::consume::consume(config, out, checkout))?
}

fn cost_report(config: &std::path::Path) -> Result<String, String> {
    block_on(previewd::cmd::cost::cost_report(config))?
}

/// Runs one command's future to its end on a fresh runtime.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    Ok(runtime.block_on(future))
}

/// Runs a long-lived command with logs and traces, until it ends.
fn serve<E: std::fmt::Display>(command: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("previewd: cannot start the async runtime: {err}");
            }
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut telemetry = match previewd::telemetry::init() {
            Ok(telemetry) => telemetry,
            Err(err) => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("previewd: {err}");
                }
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(traces = telemetry.exporting(), "telemetry ready");
        let code = match command.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %err, "previewd cannot run");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown();
        code
    })
}

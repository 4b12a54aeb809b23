//! The `drscreen` command line: the edge that turns files into core calls.
//! `grade` and `validate` run the full pipeline in-process; `model inspect` shows the
//! locked model. Flags, environment and file become one validated `Config` in
//! `cli::settings`. anyhow lives here only; the library returns typed errors.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::GlobalArgs;

/// Diabetic-retinopathy screening of fundus photographs with a locked ONNX model.
#[derive(Parser)]
#[command(name = "drscreen", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Grade fundus images (files or folders) and print one result per exam.
    Grade(cli::grade::GradeArgs),
    /// Acceptance test against a labels CSV: kappa, AUC, sensitivity/specificity, plots.
    Validate(cli::validate::ValidateArgs),
    /// Inspect model packages.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Run the HTTP service (binds after the model is verified and warm).
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Load-generate against a running drscreen and report throughput and latency.
    Loadtest(cli::loadtest::LoadtestArgs),
    /// Apply pending database schema migrations (serve also applies them at start-up).
    Migrate,
    /// Remove stored images no exam or DICOM instance refers to (left by failed commits).
    Gc(cli::store::GcArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Show a package's manifest, inputs/outputs, provider and integrity.
    Inspect {
        /// Package directory [default: the configured model].
        package: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".into()),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Grade(args) => cli::grade::run(&cli.global, args),
        Command::Validate(args) => cli::validate::run(&cli.global, args),
        Command::Model(ModelCommand::Inspect { package }) => cli::inspect::run(&cli.global, package),
        Command::Serve => cli::serve::run(&cli.global),
        Command::Keys(cmd) => cli::keys::run(&cli.global, cmd),
        Command::Loadtest(args) => cli::loadtest::run(args),
        Command::Migrate => cli::store::migrate(&cli.global),
        Command::Gc(args) => cli::store::gc(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drscreen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

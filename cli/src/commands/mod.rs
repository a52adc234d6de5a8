//! One module per group of commands. Each command returns an [`Outcome`]: its exit code
//! and its JSON document (text is printed as it goes, and not at all with `--json`).

mod backup;
mod catalog;
mod consolidate;
mod repository;
mod restore;
mod verify;

use clap::CommandFactory;

use crate::app::App;
use crate::args::{Cli, Command, KeyCommand};
use crate::exit::Exit;

/// How a command ended.
pub(crate) struct Outcome {
    pub(crate) exit: Exit,
    /// The `--json` document (docs/CLI.md).
    pub(crate) json: serde_json::Value,
}

impl Outcome {
    pub(crate) fn done(json: serde_json::Value) -> Self {
        Self {
            exit: Exit::Done,
            json,
        }
    }
}

/// Runs the command.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // These two need no config, state or repository.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "zib", &mut std::io::stdout());
            return Ok(Outcome::done(serde_json::Value::Null));
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(Outcome::done(serde_json::Value::Null));
        }
        _ => {}
    }
    let app = App::new(cli.global)?;
    match &cli.command {
        Command::Init(args) => repository::init(&app, args).await,
        Command::Key(KeyCommand::Export { dir }) => repository::key_export(&app, dir).await,
        Command::Key(KeyCommand::Recover { out }) => {
            repository::key_recover(&app, out.as_deref()).await
        }
        Command::Passwd(args) => repository::passwd(&app, args).await,
        Command::Cleanup(args) => repository::cleanup(&app, args).await,
        Command::Backup(args) => backup::backup(&app, args).await,
        Command::Plan(args) => backup::plan(&app, args.dataset.as_deref()).await,
        Command::List(args) => catalog::list(&app, args.dataset.as_deref()).await,
        Command::Status(args) => catalog::status(&app, args).await,
        Command::Cost => catalog::cost(&app).await,
        Command::Restore(args) => restore::restore(&app, args).await,
        Command::Verify(args) => verify::verify(&app, args).await,
        Command::Consolidate(args) => consolidate::consolidate(&app, args).await,
        Command::Completions { .. } | Command::Man => Ok(Outcome::done(serde_json::Value::Null)),
    }
}

/// The error as a JSON object (for per-dataset results).
pub(crate) fn error_json(error: &anyhow::Error) -> serde_json::Value {
    let (message, hint) = crate::exit::describe(error);
    serde_json::json!({
        "message": message,
        "hint": hint,
        "exit_code": crate::exit::exit_for(error) as u8,
    })
}

/// One dataset's outcome in a command over several: its JSON document, or its error
/// reported on stderr and recorded as a failed entry (the other datasets still run).
pub(crate) fn record(
    dataset: &str,
    result: anyhow::Result<serde_json::Value>,
    results: &mut Vec<serde_json::Value>,
    failures: &mut Vec<anyhow::Error>,
) {
    match result {
        Ok(json) => results.push(json),
        Err(error) => {
            report_error(dataset, &error);
            results.push(
                serde_json::json!({ "dataset": dataset, "status": "failed", "error": error_json(&error) }),
            );
            failures.push(error);
        }
    }
}

/// Prints one failed item of several (the run goes on with the others).
#[allow(clippy::print_stderr)]
pub(crate) fn report_error(what: &str, error: &anyhow::Error) {
    let (message, hint) = crate::exit::describe(error);
    eprintln!("zib: error: {what}: {message}");
    if let Some(hint) = hint {
        eprintln!("zib: hint: {hint}");
    }
}

//! `drscreen keys create --role ROLE`: prints a new API key once, on its last line.

use std::process::ExitCode;

use clap::Subcommand;
use drscreen::store::{Role, Store};

use crate::GlobalArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key (only its hash is stored; the key is shown once).
    Create {
        /// device (submit, read own results), clinician (read, review) or admin.
        #[arg(long, value_enum)]
        role: Role,
    },
}

pub fn run(global: &GlobalArgs, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    match cmd {
        KeysCommand::Create { role } => {
            let store = Store::open(&config.data_dir)?;
            let (id, key) = store.create_key(role, "cli")?;
            println!("created {} key {id} in {}; store it now, it is not shown again:", role.as_str(), config.data_dir.display());
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

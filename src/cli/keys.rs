//! `drscreen keys create --role ROLE` prints a new API key once, on its last line;
//! `drscreen keys revoke ID` revokes one (its review sessions end at once). Both are audited.

use std::process::ExitCode;

use clap::Subcommand;
use drscreen::store::{Role, Store};

use crate::cli::GlobalArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key (only its hash is stored; the key is shown once).
    Create {
        /// device (submit, read own results), clinician (read, review) or admin.
        #[arg(long, value_parser = role_parser())]
        role: Role,
    },
    /// Revoke an API key by its id (the part after `drs_`).
    Revoke {
        /// The key id.
        id: String,
    },
}

/// `Role` stays free of clap; the CLI lists its names and maps them back.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::TypedValueParser;
    let roles = [Role::Device, Role::Clinician, Role::Admin];
    clap::builder::PossibleValuesParser::new(roles.map(Role::as_str))
        .try_map(|name| Role::parse(&name).ok_or_else(|| format!("unknown role '{name}'")))
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
        KeysCommand::Revoke { id } => {
            let store = Store::open(&config.data_dir)?;
            if store.revoke_key(&id, "cli")? {
                println!("revoked key {id}");
            } else {
                anyhow::bail!("no active key with id {id} in {}", config.data_dir.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `drscreen keys create --role ROLE [--name NAME]` prints a new API key once, on its
//! last line; `drscreen keys revoke ID` revokes one (its review sessions end at once);
//! `drscreen keys list` shows every key's id, role, name and state (never a secret).
//! Creating and revoking are audited.

use std::process::ExitCode;

use clap::Subcommand;
use drscreen::store::{KeyName, Role};

use crate::cli::GlobalArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key (only its hash is stored; the key is shown once).
    Create {
        /// device (submit, read own results), clinician (read, review) or admin.
        #[arg(long, value_parser = role_parser())]
        role: Role,
        /// The person or system the key belongs to ("Dr Kari Nordmann"), shown on the
        /// review pages, in the review history and in the audit log instead of the key id.
        #[arg(long, value_parser = name_parser)]
        name: Option<KeyName>,
    },
    /// List the API keys: id, role, name, created, revoked.
    List,
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

/// Refuses a bad name before anything is written, with the reason in words.
fn name_parser(text: &str) -> Result<KeyName, String> {
    KeyName::parse(text)
}

pub fn run(global: &GlobalArgs, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    match cmd {
        KeysCommand::Create { role, name } => {
            let store = crate::cli::store::open_store(&config)?;
            let (id, key) = store.create_named_key(role, name.as_ref(), "cli")?;
            let named = name.as_ref().map(|n| format!(" for {}", n.as_str())).unwrap_or_default();
            println!("created {} key {id}{named} in {}; store it now, it is not shown again:", role.as_str(), config.database());
            println!("{key}");
        }
        KeysCommand::List => {
            let store = crate::cli::store::open_store(&config)?;
            println!("{:<12}  {:<9}  {:<24}  {:<8}  name", "id", "role", "created", "state");
            for k in store.list_keys()? {
                let state = if k.revoked { "revoked" } else { "active" };
                println!("{:<12}  {:<9}  {:<24}  {:<8}  {}", k.id, k.role, k.created_at, state, k.name.as_deref().unwrap_or("-"));
            }
        }
        KeysCommand::Revoke { id } => {
            let store = crate::cli::store::open_store(&config)?;
            if store.revoke_key(&id, "cli")? {
                println!("revoked key {id}");
            } else {
                anyhow::bail!("no active key with id {id} in {}", config.database());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

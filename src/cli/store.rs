//! Opening the configured store, and the store's own commands: `drscreen migrate`
//! (apply schema migrations explicitly, e.g. as a Kubernetes Job before a rollout) and
//! `drscreen gc` (remove image objects no row refers to).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use drscreen::config::Config;
use drscreen::store::{SCHEMA_VERSION, Store, StoreError};

use crate::cli::GlobalArgs;

/// How long `serve` keeps trying to reach an unavailable database at start-up before it
/// gives up (a replica may start before the database does; its orchestrator restarts it).
const STARTUP_DB_WAIT: Duration = Duration::from_secs(60);

/// Opens the configured database and image store, applying pending migrations (under
/// PostgreSQL's migration lock, so replicas starting together do not race). Retries
/// while the database is unreachable, up to [`STARTUP_DB_WAIT`].
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let database = config.database();
    let images = config.objects();
    let started = Instant::now();
    loop {
        match Store::connect(&database, &images, true) {
            Err(StoreError::Unavailable(why)) if started.elapsed() < STARTUP_DB_WAIT => {
                tracing::warn!(database = %database, %why, "database unavailable; retrying");
                std::thread::sleep(Duration::from_secs(2));
            }
            other => return other.with_context(|| format!("cannot open the store (database {database}, images {images})")),
        }
    }
}

/// `drscreen migrate`: applies pending migrations and says which.
pub fn migrate(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let database = config.database();
    let applied = Store::migrate(&database).with_context(|| format!("cannot migrate {database}"))?;
    if applied.is_empty() {
        println!("{database}: schema is current (version {SCHEMA_VERSION})");
    } else {
        let list = applied.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        println!("{database}: applied migration(s) {list}; schema version {SCHEMA_VERSION}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `drscreen gc` options.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only list the orphaned objects; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Spare objects younger than this many seconds (an upload stores its images before
    /// its rows commit).
    #[arg(long, default_value_t = 3600)]
    pub older_than_secs: u64,
}

/// `drscreen gc`: removes image objects left by commits that failed.
pub fn gc(global: &GlobalArgs, args: GcArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let store = open_store(&config)?;
    let orphans = store.collect_garbage(Duration::from_secs(args.older_than_secs), args.dry_run)?;
    let bytes: u64 = orphans.iter().map(|o| o.size).sum();
    for o in &orphans {
        println!("{}  {} bytes", o.sha256, o.size);
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    println!("{verb} {} orphaned object(s), {bytes} bytes, from {}", orphans.len(), store.blobs().describe());
    Ok(ExitCode::SUCCESS)
}

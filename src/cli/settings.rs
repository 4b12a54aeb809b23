//! The settings every command shares, and the one conversion from them to a validated
//! `Config`. clap reads `--config` and one flag per knob in `drscreen::config::knobs()`,
//! each with its `DRSCREEN_*` variable (the flag wins); `GlobalArgs::config` applies
//! those overrides over the file and the defaults, then validates the merged result.
//! The flags are built from the knob table at run time, so a knob is declared once and
//! its `--help` default is read from `Config::default()`.

use std::path::PathBuf;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches};
use drscreen::config::{Config, ConfigError, Knob, knobs};

/// Settings shared by every command (defaults < --config file < DRSCREEN_* env < flags).
#[derive(Args, Clone)]
pub struct GlobalArgs {
    /// TOML configuration file (see README.md for every key).
    #[arg(long, global = true, env = "DRSCREEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

impl GlobalArgs {
    /// The effective configuration: defaults, the file, then environment and flags, checked.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        for o in &self.overrides.0 {
            o.knob.apply(&mut config, &o.value).with_context(|| format!("invalid setting from {}", o.origin()))?;
        }
        config.validate().map_err(|e| {
            let origin = match &e {
                ConfigError::Invalid { key, .. } => self.origin_of(key),
                _ => None,
            };
            anyhow::Error::new(e).context(format!("invalid setting from {}", origin.unwrap_or_else(|| "the defaults".into())))
        })?;
        Ok(config)
    }

    /// Where the value behind a TOML key came from, for error messages.
    fn origin_of(&self, key: &str) -> Option<String> {
        // `dicom.sr_destination.host` is set by the `dicom.sr_destination` knob.
        let owns = |o: &&Override| key == o.knob.key || key.starts_with(&format!("{}.", o.knob.key));
        match (self.overrides.0.iter().find(owns), &self.config) {
            (Some(o), _) => Some(o.origin()),
            (None, Some(file)) => Some(format!("the config file {}", file.display())),
            (None, None) => None,
        }
    }
}

/// The knobs given as a flag or an environment variable, in table order.
#[derive(Clone, Default)]
struct Overrides(Vec<Override>);

#[derive(Clone)]
struct Override {
    knob: &'static Knob,
    value: String,
    from_flag: bool,
}

impl Override {
    fn origin(&self) -> String {
        if self.from_flag { format!("--{}", self.knob.flag) } else { self.knob.env() }
    }
}

/// The flag (and variable) for one knob. No clap default is set: a default would hide
/// the file's value, so the default is only shown, read from `Config::default()`.
fn knob_arg(knob: &'static Knob, defaults: &Config) -> Arg {
    let arg = Arg::new(knob.flag)
        .long(knob.flag)
        .env(knob.env())
        .global(true)
        .value_name(knob.flag.to_uppercase().replace('-', "_"))
        .help(format!("{} [default: {}]", knob.help, knob.show(defaults)));
    let arg = if knob.list { arg.action(ArgAction::Append).value_delimiter(',') } else { arg.action(ArgAction::Set) };
    if knob.choices.is_empty() {
        // Parsing once here gives clap's usual "invalid value" error for bad syntax.
        arg.value_parser(move |text: &str| knob.check(text).map(|()| text.to_string()))
    } else {
        arg.value_parser(PossibleValuesParser::new(knob.choices))
    }
}

impl Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let defaults = Config::default();
        cmd.args(knobs().iter().map(|k| knob_arg(k, &defaults)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = knobs().iter().filter_map(|knob| {
            let from_flag = match matches.value_source(knob.flag)? {
                ValueSource::CommandLine => true,
                ValueSource::EnvVariable => false,
                _ => return None,
            };
            let values: Vec<&str> = matches.get_many::<String>(knob.flag)?.map(String::as_str).collect();
            Some(Override { knob, value: values.join(","), from_flag })
        });
        Ok(Self(given.collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

//! Options from a TOML file, beneath flags and environment variables.
//!
//! The file's keys are the subcommand's long flag names. A key is applied
//! only where the flag was neither given nor set by its environment
//! variable, by re-parsing with the file's values appended as flags, so clap
//! still validates every value and `--help` stays the one reference.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{path}: unknown option `{key}`")]
    UnknownKey { path: String, key: String },
    #[error("{path}: `{key}` has an unsupported value {value}")]
    Value { path: String, key: String, value: String },
}

/// Parses the process's arguments into `C`, then, for a subcommand in
/// `with_file` given `--config FILE`, re-parses with the file's options
/// appended beneath the flags and environment variables.
pub fn parse<C: clap::Parser>(with_file: &[&str]) -> Result<C, ConfigFileError> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = C::command().get_matches_from(&args);
    if let Some((name, sub)) = matches.subcommand() {
        if let (true, Some(path)) = (with_file.contains(&name), sub.get_one::<std::path::PathBuf>("config")) {
            let cmd = C::command();
            let sub_cmd = cmd.find_subcommand(name).expect("clap matched this subcommand");
            let extra = extra_args(path, sub_cmd, sub)?;
            return Ok(C::parse_from(args.into_iter().chain(extra)));
        }
    }
    Ok(C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// Flags for the keys of `path` that `matches` did not already set.
pub fn extra_args(path: &Path, cmd: &Command, matches: &ArgMatches) -> Result<Vec<OsString>, ConfigFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: p.clone(), source })?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|source| ConfigFileError::Parse { path: p.clone(), source })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        if !cmd.get_arguments().any(|a| a.get_id() == id.as_str()) || id == "config" {
            return Err(ConfigFileError::UnknownKey { path: p, key });
        }
        if matches!(matches.value_source(&id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let flag = format!("--{}", id.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => out.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => out.push(format!("{flag}={s}").into()),
            toml::Value::Integer(i) => out.push(format!("{flag}={i}").into()),
            toml::Value::Float(f) => out.push(format!("{flag}={f}").into()),
            toml::Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.push(format!("{flag}={}", parts.join(",")).into());
            }
            other => return Err(ConfigFileError::Value { path: p, key, value: other.to_string() }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("t")
            .arg(Arg::new("config").long("config"))
            .arg(Arg::new("max_sessions").long("max-sessions").default_value("8"))
            .arg(Arg::new("listen").long("listen").default_value("a"))
            .arg(Arg::new("insecure_dev").long("insecure-dev").action(ArgAction::SetTrue))
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn file_fills_what_flags_leave_unset() {
        let f = file("max-sessions = 3\nlisten = \"b\"\ninsecure-dev = true\n");
        let m = cmd().get_matches_from(["t", "--listen", "c"]);
        let extra = extra_args(f.path(), &cmd(), &m).unwrap();
        let mut args: Vec<OsString> = vec!["t".into(), "--listen".into(), "c".into()];
        args.extend(extra);
        let m = cmd().get_matches_from(args);
        assert_eq!(m.get_one::<String>("max_sessions").unwrap(), "3");
        assert_eq!(m.get_one::<String>("listen").unwrap(), "c", "the flag wins");
        assert!(m.get_flag("insecure_dev"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let f = file("max-sesions = 3\n");
        let m = cmd().get_matches_from(["t"]);
        let err = extra_args(f.path(), &cmd(), &m).unwrap_err().to_string();
        assert!(err.contains("unknown option `max-sesions`"), "{err}");
    }
}

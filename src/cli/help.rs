//! The command line as users meet it in batch logs: every parse error on one line with
//! clap's hints kept, and `--help` showing each run flag's default.
//!
//! The run commands' flags are `Option`s (so that a flag, a config file and the built-in
//! default can be layered), which leaves clap nothing to show as a default; the defaults
//! are taken from the resolved configs' `Default` instead, so they cannot drift apart.

use crate::config::{HmcConfig, SampleConfig, TrainConfig};
use clap::{CommandFactory, FromArgMatches};

/// Parses the command line (what `Cli::try_parse` does, with the augmented help).
pub fn parse() -> Result<super::Cli, clap::Error> {
    let mut m = command().try_get_matches()?;
    super::Cli::from_arg_matches_mut(&mut m)
}

/// clap's error on one line: its message, the missing arguments or the "did you mean" tip
/// that follow it, without the usage block.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    match parts.split_first() {
        Some((first, [])) => first.to_string(),
        // "...were not provided:" followed by the arguments' names.
        Some((first, rest)) if first.ends_with(':') => format!("{first} {}", rest.join(" ")),
        Some((first, rest)) => format!("{first} ({})", rest.join("; ")),
        None => "error: bad arguments".to_string(),
    }
}

/// The CLI with defaults and the help of flags that have no doc comment.
pub fn command() -> clap::Command {
    let mut cmd = super::Cli::command();
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    let subs = [
        ("hmc", json(serde_json::to_value(HmcConfig::default()))),
        ("train", json(serde_json::to_value(TrainConfig::default()))),
        ("sample", json(serde_json::to_value(SampleConfig::default()))),
    ];
    for (name, defaults) in subs {
        cmd = cmd.mut_subcommand(name, |sc| annotate(sc, name, &defaults));
    }
    cmd
}

fn annotate(mut sc: clap::Command, name: &str, defaults: &serde_json::Value) -> clap::Command {
    let ids: Vec<String> = sc.get_arguments().map(|a| a.get_id().to_string()).collect();
    for id in ids {
        let shown = special_default(name, &id).map(str::to_string).or_else(|| match defaults.get(&id) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(serde_json::Value::Bool(true)) => Some("true".into()),
            _ => None,
        });
        let fallback = missing_help(name, &id);
        sc = sc.mut_arg(id.as_str(), |a| {
            let mut help = a.get_help().map(|h| h.to_string()).or(fallback.map(str::to_string)).unwrap_or_default();
            if let Some(d) = &shown {
                help = format!("{help} [default: {d}]");
            }
            a.help(help)
        });
    }
    sc
}

/// Defaults that are not a plain value of the resolved config.
fn special_default(cmd: &str, id: &str) -> Option<&'static str> {
    Some(match (cmd, id) {
        ("hmc", "kappa") => "0.27, when neither kappa nor m2 is given",
        ("hmc", "lambda") => "0.022",
        (_, "max_memory") => "80 % of the node's available memory / its ranks",
        ("train", "sigma_max") => "the largest distance between training configurations",
        ("sample", "lattice") => "the model's training lattice",
        ("sample", "sigma_min" | "sigma_max") => "the model's",
        ("sample", "kappa" | "m2" | "lambda") => "the model's theory",
        ("sample", "batch") => "sized by max_memory",
        _ => return None,
    })
}

/// Help for flags whose field has no doc comment.
fn missing_help(cmd: &str, id: &str) -> Option<&'static str> {
    Some(match (cmd, id) {
        ("hmc", "seed") => "Random seed: chain c draws from the stream (seed, c).",
        ("train", "seed") => "Random seed (initial weights, batch slots, held-out noise).",
        ("train", "weight_decay") => "Decoupled (AdamW) weight decay of the rank >= 2 tensors.",
        ("sample", "seed") => "Random seed: configuration i draws from the stream (seed, i).",
        ("sample", "n_configs") => "Number of configurations to generate.",
        ("sample", "m2") => "Bare mass squared m² of the target theory (mass form); excludes --kappa.",
        ("sample", "lambda") => "Quartic coupling λ of the target theory.",
        ("sample", "out") => "Output HDF5 file.",
        ("sample", "force") => "Overwrite an existing output.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_args(cmd: &clap::Command, path: String, out: &mut Vec<(String, bool)>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id != "help" && id != "version" {
                let has = a.get_help().is_some_and(|h| !h.to_string().trim().is_empty());
                out.push((format!("{path} --{id}"), has));
            }
        }
        for sc in cmd.get_subcommands() {
            all_args(sc, format!("{path} {}", sc.get_name()), out);
        }
    }

    #[test]
    fn every_flag_has_help_text() {
        let mut args = Vec::new();
        all_args(&command(), "latdiff".into(), &mut args);
        assert!(args.len() > 80, "{} arguments found", args.len());
        let bare: Vec<&String> = args.iter().filter(|(_, h)| !h).map(|(n, _)| n).collect();
        assert!(bare.is_empty(), "no help text: {bare:?}");
    }

    #[test]
    fn help_shows_defaults() {
        let mut cmd = command();
        let hmc = cmd.find_subcommand_mut("hmc").unwrap().render_long_help().to_string();
        for want in ["[default: 16x16]", "[default: 1024]", "[default: omelyan]", "[default: auto]", "[default: 0.27"] {
            assert!(hmc.contains(want), "hmc --help lacks {want}");
        }
        let sample = cmd.find_subcommand_mut("sample").unwrap().render_long_help().to_string();
        assert!(sample.contains("[default: em]") && sample.contains("[default: 200]"), "{sample}");
    }

    #[test]
    fn errors_keep_their_hints_on_one_line() {
        let err = |args: &[&str]| one_line(&command().try_get_matches_from(args).unwrap_err());
        let missing = err(&["latdiff", "analyze"]);
        assert!(missing.contains("not provided: <FILES>") || missing.contains("not provided: <FILE"), "{missing}");
        let info = err(&["latdiff", "info"]);
        assert!(info.contains("<FILE>"), "{info}");
        let typo = err(&["latdiff", "hmc", "--n-mdd", "3"]);
        assert!(typo.contains("'--n-mdd'") && typo.contains("'--n-md'"), "{typo}");
        for l in [missing, info, typo] {
            assert_eq!(l.lines().count(), 1, "{l}");
        }
    }
}

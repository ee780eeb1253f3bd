//! Run configuration: command-line flags over a TOML file over built-in defaults.
//!
//! Each command has one list of keys (`hmc`, `train`, `sample`; written out by
//! `keys::command_keys!`) that gives its options struct, both its clap arguments and its
//! TOML schema (every field optional, unknown keys refused), and its resolved struct with
//! every value filled in and every choice parsed (`choices`). The resolved struct
//! serialises to TOML: that text is stored in every output file (`config` attribute) and
//! is itself a valid `--config` file.
//!
//! Plain data and parsing, below every layer that uses it (docs/architecture.md): it
//! imports nothing above `theory` and `nn`, and touches the file system only to read its
//! TOML file and to check that named inputs exist. What needs the outputs or a checkpoint
//! (resuming from a stored configuration, output checks) is the command's, in
//! `cli::{hmc, train, sample}::resolve`.

mod choices;
mod couplings;
mod hmc;
mod keys;
mod sample;
mod train;

#[cfg(test)]
mod tests;

pub use choices::{Integrator, Kernel, NetworkPreset, SamplerKind, ScoreForm, SmcTarget, Start, TheoryName};
pub use couplings::{resolve_couplings, resolve_theory, DEFAULT_KAPPA, DEFAULT_LAMBDA};
pub use hmc::{HmcConfig, HmcOptions, NTherm};
pub use sample::{check_learnt_levels, SampleConfig, SampleOptions, DEFAULT_SMC_REPLICAS};
pub use train::{TrainConfig, TrainOptions};

use crate::lattice::Lattice;
use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::Path;
use std::str::FromStr;

/// Lattice size from `32`, `"32"` or `"16x32"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatticeSpec(pub Lattice);

impl FromStr for LatticeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Lattice::parse(s).map(LatticeSpec)
    }
}
impl Serialize for LatticeSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}
impl<'de> Deserialize<'de> for LatticeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = match NumberOrName::deserialize(d)? {
            NumberOrName::Number(n) => n.to_string(),
            NumberOrName::Name(s) => s,
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A TOML value that may be a number or a string (`lattice = 32` or `"16x32"`,
/// `n_therm = 100` or `"auto"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrName {
    Number(i64),
    Name(String),
}

/// Reads a TOML options file; errors name the file, the line and the key.
pub fn read_options_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("config: cannot read '{}': {e}", path.display()))?;
    toml::from_str::<T>(&text).map_err(|e| {
        let line = e.span().map(|sp| {
            let line_no = text[..sp.start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!(" line {line_no} (`{line}`)")
        });
        anyhow!("config '{}'{}: {}", path.display(), line.unwrap_or_default(), e.message().trim())
    })
}

pub fn to_toml<T: Serialize>(cfg: &T) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("# could not serialise config: {e}"))
}

/// A float key's value is a number.
fn finite(key: &str, v: f64) -> Result<()> {
    if !v.is_finite() {
        bail!("{key}: {v} is not a finite number");
    }
    Ok(())
}

/// A configuration stored in a checkpoint (its `config` attribute), read as options (the
/// file layer of a resumed run) or as the resolved configuration it was.
pub fn stored_config<T: DeserializeOwned>(text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| anyhow!("resume: stored config unreadable: {}", e.message()))
}

fn check_max_memory(m: Option<usize>) -> Result<()> {
    if m == Some(0) {
        bail!("max_memory: must be at least 1 MiB");
    }
    // MiB to bytes must not overflow.
    crate::limits::bound("max_memory", m.unwrap_or(0) as u64, 1 << 40)
}

/// The first key (in TOML order) whose values differ, with both values.
fn first_difference<T: Serialize>(a: &T, b: &T) -> Option<(String, String, String)> {
    let (ta, tb) = (toml::Table::try_from(a).ok()?, toml::Table::try_from(b).ok()?);
    let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
    let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
    let diff =
        keys.into_iter().find(|k| ta.get(*k) != tb.get(*k)).map(|k| (k.clone(), show(ta.get(k)), show(tb.get(k))));
    diff
}

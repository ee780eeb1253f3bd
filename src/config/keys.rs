//! One list per command declares its keys: `command_keys!` writes from it the options
//! struct (clap flags and TOML keys, every one optional), the resolved configuration (every
//! key filled in, choices parsed: what outputs store) and its defaults, and the layering of
//! flags over file over defaults that turns the one into the other. A key is written once.

use super::{finite, LatticeSpec, NTherm};
use super::{Integrator, Kernel, SamplerKind, ScoreForm, SmcTarget, Start, TheoryName};
use anyhow::{anyhow, Result};
use std::path::PathBuf;

/// Declares a command's keys from one list. Each entry:
///
/// ```text
/// /// Help text: the flag's `--help`.
/// #[arg(allow_hyphen_values = true)]        (optional: clap settings besides `long`)
/// #[stored(skip_serializing_if = "…")]      (optional: serde settings of the stored key)
/// #[resolve(function)]                       (optional: layering by hand, see below)
/// key: OptionsType => ResolvedType = default,
/// ```
///
/// `OptionsType` is `Option<T>`; how it and the default give the resolved value is
/// [`Layer`]'s: the flag over the file over the default, a choice parsed from its name, a
/// float checked finite. Every boolean is `Option<bool>` with
/// `#[arg(num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]`: one rule
/// for all of them, `--force` (true), `--force true`, `--force=false` (which overrides a
/// file's `force = true`), and the TOML key `force = true`. A key whose value
/// depends on another key is layered by `function(flags, file, default)`.
///
/// The options struct also has `config` (the TOML file, a flag only). The resolved struct
/// derives `Serialize` (its TOML text is stored in outputs, in the list's order), plus
/// whatever attributes precede its name.
macro_rules! command_keys {
    (
        $(#[$options_meta:meta])*
        options $Options:ident;
        $(#[$config_meta:meta])*
        config $Config:ident;
        $(
            $(#[doc = $doc:literal])*
            $(#[arg($($arg:tt)*)])?
            $(#[stored($($stored:tt)*)])?
            $(#[resolve($resolve:path)])?
            $key:ident : $O:ty => $C:ty = $default:expr,
        )*
    ) => {
        $(#[$options_meta])*
        #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct $Options {
            /// TOML file with any of these keys; flags override it.
            #[arg(long)]
            #[serde(skip)]
            pub config: Option<std::path::PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long $(, $($arg)*)?)]
                #[serde(default, skip_serializing_if = "crate::config::keys::Unset::is_unset")]
                pub $key: $O,
            )*
        }

        $(#[$config_meta])*
        #[derive(Clone, Debug, serde::Serialize)]
        pub struct $Config {
            $(
                $(#[serde($($stored)*)])?
                pub $key: $C,
            )*
        }

        impl Default for $Config {
            fn default() -> Self {
                $Config { $($key: $default,)* }
            }
        }

        impl $Config {
            /// Flags over file over the defaults, key by key: choices parsed, floats
            /// finite. The checks across keys are the caller's.
            fn layered(file: &$Options, flags: &$Options) -> anyhow::Result<Self> {
                let default = Self::default();
                Ok($Config {
                    $($key: command_keys!(@layer [$($resolve)?] $key, flags, file, default),)*
                })
            }
        }
    };
    (@layer [] $key:ident, $flags:ident, $file:ident, $default:ident) => {
        crate::config::keys::Layer::resolve(
            stringify!($key),
            $flags.$key.clone(),
            $file.$key.clone(),
            $default.$key,
        )?
    };
    (@layer [$resolve:path] $key:ident, $flags:ident, $file:ident, $default:ident) => {
        $resolve($flags, $file, $default.$key)?
    };
}
pub(super) use command_keys;

/// An options value that was not given: left out when options are written.
pub trait Unset {
    fn is_unset(&self) -> bool;
}
impl<T> Unset for Option<T> {
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

/// How a key's flag, file value (options type `O`) and default give its resolved value.
pub trait Layer<O>: Sized {
    fn resolve(key: &str, flag: O, file: O, default: Self) -> Result<Self>;
}

/// Values taken as given.
macro_rules! plain_layers {
    ($($T:ty),*) => {$(
        impl Layer<Option<$T>> for $T {
            fn resolve(_: &str, flag: Option<$T>, file: Option<$T>, default: Self) -> Result<Self> {
                Ok(flag.or(file).unwrap_or(default))
            }
        }
        impl Layer<Option<$T>> for Option<$T> {
            fn resolve(_: &str, flag: Option<$T>, file: Option<$T>, default: Self) -> Result<Self> {
                Ok(flag.or(file).or(default))
            }
        }
    )*};
}
plain_layers!(bool, usize, u64, String, PathBuf, LatticeSpec, NTherm, Integrator, Start, TheoryName);

/// Choices: parsed from their names (the error names the key, the value and the choices).
macro_rules! choice_layers {
    ($($T:ty),*) => {$(
        impl Layer<Option<String>> for $T {
            fn resolve(_: &str, flag: Option<String>, file: Option<String>, default: Self) -> Result<Self> {
                flag.or(file).map_or(Ok(default), |name| <$T>::parse(&name).map_err(|e| anyhow!(e)))
            }
        }
    )*};
}
choice_layers!(SamplerKind, Kernel, SmcTarget, ScoreForm);

/// Floats are finite: a NaN or an infinity is refused by name, before any check reads it.
impl Layer<Option<f64>> for f64 {
    fn resolve(key: &str, flag: Option<f64>, file: Option<f64>, default: Self) -> Result<Self> {
        let v = flag.or(file).unwrap_or(default);
        finite(key, v)?;
        Ok(v)
    }
}
impl Layer<Option<f64>> for Option<f64> {
    fn resolve(key: &str, flag: Option<f64>, file: Option<f64>, default: Self) -> Result<Self> {
        let v = flag.or(file).or(default);
        if let Some(v) = v {
            finite(key, v)?;
        }
        Ok(v)
    }
}

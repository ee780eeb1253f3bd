//! Typed HDF5 attributes: numbers, integers, strings and float arrays.

use anyhow::{Context, Result};
use hdf5::types::{TypeDescriptor, VarLenUnicode};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    F64(f64),
    I64(i64),
    Str(String),
    F64s(Vec<f64>),
    I64s(Vec<i64>),
}

impl AttrValue {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::F64(v) => Some(*v),
            AttrValue::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::F64(v) => write!(f, "{v}"),
            AttrValue::I64(v) => write!(f, "{v}"),
            AttrValue::Str(s) => write!(f, "{s}"),
            AttrValue::F64s(v) => write!(f, "{v:?}"),
            AttrValue::I64s(v) => write!(f, "{v:?}"),
        }
    }
}

pub fn write_attr(loc: &hdf5::Location, name: &str, value: &AttrValue) -> Result<()> {
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    let r: hdf5::Result<()> = (|| match value {
        AttrValue::F64(v) => loc.new_attr::<f64>().create(name)?.write_scalar(v),
        AttrValue::I64(v) => loc.new_attr::<i64>().create(name)?.write_scalar(v),
        AttrValue::Str(s) => {
            let s = VarLenUnicode::from_str(s).unwrap_or_else(|_| VarLenUnicode::from_str("<invalid>").unwrap());
            loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&s)
        }
        AttrValue::F64s(v) => loc.new_attr::<f64>().shape(v.len()).create(name)?.write_raw(v),
        AttrValue::I64s(v) => loc.new_attr::<i64>().shape(v.len()).create(name)?.write_raw(v),
    })();
    r.with_context(|| format!("writing attribute '{name}'"))
}

pub fn read_attr(loc: &hdf5::Location, name: &str) -> Result<AttrValue> {
    let a = loc.attr(name).with_context(|| format!("attribute '{name}' missing"))?;
    let scalar = a.ndim() == 0;
    Ok(match a.dtype()?.to_descriptor()? {
        TypeDescriptor::Float(_) if scalar => AttrValue::F64(a.read_scalar::<f64>()?),
        TypeDescriptor::Float(_) => AttrValue::F64s(a.read_raw::<f64>()?),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) if scalar => AttrValue::I64(a.read_scalar::<i64>()?),
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => AttrValue::I64s(a.read_raw::<i64>()?),
        TypeDescriptor::VarLenUnicode => AttrValue::Str(a.read_scalar::<VarLenUnicode>()?.as_str().to_string()),
        TypeDescriptor::VarLenAscii => {
            AttrValue::Str(a.read_scalar::<hdf5::types::VarLenAscii>()?.as_str().to_string())
        }
        other => AttrValue::Str(format!("<{other:?}>")),
    })
}

/// All attributes of a location, sorted by name.
pub fn read_all(loc: &hdf5::Location) -> Result<Vec<(String, AttrValue)>> {
    let mut names = loc.attr_names()?;
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = read_attr(loc, &n)?;
            Ok((n, v))
        })
        .collect()
}

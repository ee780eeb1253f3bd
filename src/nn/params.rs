//! Flat parameter buffer layout: gradients, Adam moments and EMA weights share it, so
//! zeroing, all-reduce, update and checkpointing are each a single pass over one slice.

use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl ParamEntry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamLayout {
    pub entries: Vec<ParamEntry>,
    pub len: usize,
}

impl ParamLayout {
    /// Appends a tensor and returns its index in `entries`.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> usize {
        let name = name.into();
        assert!(self.find(&name).is_none(), "duplicate parameter {name}");
        let e = ParamEntry { name, shape: shape.to_vec(), offset: self.len };
        self.len += e.len();
        self.entries.push(e);
        self.entries.len() - 1
    }

    pub fn find(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }

    pub fn range(&self, idx: usize) -> Range<usize> {
        self.entries[idx].range()
    }

    /// Parameter count.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_contiguous_and_roundtrip() {
        let mut l = ParamLayout::default();
        l.push("a.w", &[4, 3, 3, 3]);
        l.push("a.b", &[4]);
        assert_eq!(l.range(1), 108..112);
        assert_eq!(l.len(), 112);
        let s = serde_json::to_string(&l).unwrap();
        let back: ParamLayout = serde_json::from_str(&s).unwrap();
        assert_eq!(back, l);
    }
}

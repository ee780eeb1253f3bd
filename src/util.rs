//! Utilities

//! Random streams

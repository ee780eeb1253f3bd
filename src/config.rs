//! Run configuration

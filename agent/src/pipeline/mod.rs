//! The pipeline runtime.

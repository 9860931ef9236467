//! The procfs receiver. STUB: being written.

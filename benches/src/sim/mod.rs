//! `phoenix-sim`: a load simulator that runs real processes with chosen
//! names, CPU duty cycles, memory footprints, thread counts, lifetimes and
//! churn, so that Phoenix can be measured on a busy node's population on one
//! machine. See `docs/SIMULATOR.md`.
//!
//! - [`profile`]: what to run (built-in profiles and the YAML schema);
//! - [`supervisor`]: spawning, keeping counts, churn, stopping, the summary;
//! - [`child`]: the workload each simulated process runs;
//! - [`exe`]: the named executables the children are started through.

pub mod child;
pub mod duration;
pub mod exe;
pub mod profile;
pub mod supervisor;

pub use profile::{Group, Profile, ProfileError};
pub use supervisor::{Options, StopReason, Summary};

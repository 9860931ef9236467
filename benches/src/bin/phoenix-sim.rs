//! `phoenix-sim`: run a population of real, named processes (a load
//! simulator), or write a synthetic `/proc` tree. `--help` has the details;
//! `docs/SIMULATOR.md` has the profile schema.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, CommandFactory, Parser, Subcommand};
use phoenix_benches::sim::child::{self, CHILD_ENV};
use phoenix_benches::sim::duration::HumanDuration;
use phoenix_benches::sim::profile::{self, BUILTIN, Profile};
use phoenix_benches::sim::supervisor::{self, Options};
use phoenix_benches::synthetic::{SynthConfig, SyntheticTree};

/// Exit codes: what a script can tell apart.
const EXIT_OK: u8 = 0;
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_BAD_PROFILE: u8 = 3;

const AFTER_HELP: &str = "\
Profiles:
  realistic         about 150 processes shaped like a Kubernetes node: postgres, mysqld,
                    redis-server, nginx, envoy, java, node, python3, sshd, cron, containerd,
                    kubelet, container shims and pauses, and short-lived tools (sh, curl, grep)
                    that exit and are respawned; about 1 GiB and a third of a core in all
  high-cardinality  2,000 mostly idle processes with no extra memory
  high-churn        a small steady population plus 20-30 processes started and ended per second
  --profile-file    your own; `phoenix-sim profile realistic` prints one to start from

Profile YAML (every field but name and count is optional):
  name: my-profile                # shown in the summary
  groups:
    - name: postgres              # executable name and comm (the kernel cuts comm to 15 bytes)
      count: 8                    # processes kept running
      cpu_percent: 2              # of one core, per process (150 needs threads >= 2); default 0
      memory_mib: 48              # allocated and touched per process; default 0
      threads: 4                  # per process, main thread included; default 1
      lifetime: 30s               # each process exits after this long; default: never
      churn_per_second: 0.5       # oldest processes stopped and replaced per second; default 0
      respawn: true               # replace processes that exit, keeping count; default true
      args: [-D, /var/lib/pg]     # the rest of /proc/PID/cmdline; default none

How processes get their names: each name is a hard link (or, across filesystems, a copy)
of this binary in a private directory (<work-dir>/phoenix-sim-<pid>/bin/<name>), so comm and
the /proc/PID/exe file name are the name; the workload travels in an environment variable,
so the command line is `<name> <args>`.

Stopping: SIGINT (Ctrl-C), SIGTERM or SIGHUP, or the end of --duration, kills every child
(one process group of their own), reaps them and prints a summary (YAML) on stdout. If the
simulator itself is killed (kill -9), the children die with it (PR_SET_PDEATHSIG).

Synthetic /proc (`phoenix-sim synth --help`): writes DIR/proc/<pid>/{stat,status,io,cmdline,
comm,cgroup,exe,fd/} and DIR/etc/passwd for N processes, exactly as the kernel formats them, for
the procfs receiver's root_path; deterministic from --seed, advanced with --ticks.

Exit codes: 0 ok, 1 runtime error (spawning failed, children kept failing, not enough memory,
I/O error), 2 usage error, 3 bad profile (the message gives the line and column).";

#[derive(Parser)]
#[command(
    name = "phoenix-sim",
    version,
    about = "Phoenix load simulator: real processes with chosen names, CPU, memory, threads, lifetimes and churn; and a synthetic /proc generator",
    after_long_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a profile (the same as giving the run options without a subcommand).
    Run(RunArgs),
    /// Write a synthetic /proc tree (and advance it tick by tick).
    Synth(SynthArgs),
    /// Print a built-in profile as YAML, to start a custom one from.
    Profile {
        /// realistic, high-cardinality or high-churn.
        #[arg(value_parser = BUILTIN.to_vec())]
        name: String,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// A built-in profile: realistic, high-cardinality or high-churn.
    #[arg(long, value_name = "NAME", value_parser = BUILTIN.to_vec())]
    profile: Option<String>,
    /// A profile in YAML (schema below and in docs/SIMULATOR.md).
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    profile_file: Option<PathBuf>,
    /// Stop by itself after this long (500ms, 30s, 5m, 1h); default: until SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION")]
    duration: Option<HumanDuration>,
    /// Where to make the private directory of named executables [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Check the profile and the machine, print what would run, and exit.
    #[arg(long)]
    dry_run: bool,
    /// No progress lines on stderr (the summary is still printed).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Directory to write DIR/proc and DIR/etc/passwd in: new, empty, or an earlier synthetic tree (replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// User-space processes (PID 1 included), kept constant across ticks.
    #[arg(long, default_value_t = 10_000)]
    processes: usize,
    /// Kernel threads on top (kthreadd, kworkers; the receiver skips them by default).
    #[arg(long, default_value_t = 0)]
    kernel_threads: usize,
    /// The same seed writes the same tree.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Advance this many ticks after writing the tree (0: with --interval, until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    ticks: u64,
    /// Real time between ticks: a live tree for an agent to scrape (files are then replaced atomically).
    #[arg(long, value_name = "DURATION")]
    interval: Option<HumanDuration>,
    /// Simulated time per tick (how far counters move).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    tick: HumanDuration,
    /// At most this many fd/ entries per process (they dominate the file count).
    #[arg(long, default_value_t = 16)]
    max_fds: u32,
    /// Probability per tick that a long-lived process exits (short-lived tools exit far more often).
    #[arg(long, default_value_t = 0.002)]
    death_rate: f64,
    /// Probability that a new process is given a freed PID (with a new start time).
    #[arg(long, default_value_t = 0.01)]
    pid_reuse: f64,
}

fn main() -> ExitCode {
    // A child of the simulator: run the workload and never return.
    if let Some(spec) = std::env::var_os(CHILD_ENV) {
        child::main(&spec.to_string_lossy());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
        }
    };
    let code = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Synth(args)) => synth(args),
        Some(Command::Profile { name }) => print_profile(&name),
    };
    ExitCode::from(code)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "phoenix-sim: {line}");
}

/// A usage error in clap's format (and exit code 2).
fn usage(message: &str) -> u8 {
    let e = Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, message);
    let _ = e.print();
    EXIT_USAGE
}

fn print_profile(name: &str) -> u8 {
    let Some(p) = profile::builtin(name) else {
        return usage(&format!("unknown profile {name:?}"));
    };
    let _ = write!(
        std::io::stdout(),
        "# phoenix-sim profile {name}: edit, then run with --profile-file\n{}",
        p.to_yaml()
    );
    EXIT_OK
}

fn load_profile(args: &RunArgs) -> Result<Profile, u8> {
    match (&args.profile, &args.profile_file) {
        (Some(name), _) => profile::builtin(name).ok_or(EXIT_USAGE),
        (None, Some(path)) => profile::load(path).map_err(|e| {
            say(&format!("bad profile: {e}"));
            EXIT_BAD_PROFILE
        }),
        (None, None) => Err(usage(
            "choose what to run: --profile realistic|high-cardinality|high-churn, or --profile-file FILE",
        )),
    }
}

fn run(args: RunArgs) -> u8 {
    let profile = match load_profile(&args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if args.dry_run {
        return dry_run(&profile);
    }
    let options = Options {
        profile,
        duration: args.duration.map(|d| d.0),
        work_base: args.work_dir.unwrap_or_else(std::env::temp_dir),
        quiet: args.quiet,
    };
    match supervisor::run(options) {
        Ok(summary) => {
            let _ = write!(std::io::stdout(), "{summary}");
            if summary.ok() { EXIT_OK } else { EXIT_RUNTIME }
        }
        Err(e) => {
            say(&e);
            EXIT_RUNTIME
        }
    }
}

fn dry_run(profile: &Profile) -> u8 {
    let t = profile.totals();
    let mut out = format!(
        "profile {}: {} processes, {} threads, {} MiB allocated by workloads, {:.1}% of one core, {:.1} spawns/s\n",
        profile.name, t.processes, t.threads, t.memory_mib, t.cpu_percent, t.spawns_per_second
    );
    for g in &profile.groups {
        out.push_str(&format!(
            "  {:<24} x{:<5} cpu {:>5.1}%  mem {:>5} MiB  threads {:>3}  lifetime {:<8} churn {}/s\n",
            g.name,
            g.count,
            g.cpu_percent,
            g.memory_mib,
            g.threads,
            g.lifetime.map_or_else(|| "-".to_string(), |l| l.to_string()),
            g.churn_per_second
        ));
    }
    let _ = write!(std::io::stdout(), "{out}");
    match supervisor::preflight(profile) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            say(&e);
            EXIT_RUNTIME
        }
    }
}

fn synth(args: SynthArgs) -> u8 {
    let config = SynthConfig {
        processes: args.processes,
        kernel_threads: args.kernel_threads,
        seed: args.seed,
        tick: args.tick.0,
        death_rate: args.death_rate,
        pid_reuse: args.pid_reuse,
        max_fds: args.max_fds,
        // A live tree is read while it changes: never show a torn file.
        atomic: args.interval.is_some(),
        ..SynthConfig::default()
    };
    let problems = config.validate();
    if !problems.is_empty() {
        return usage(&problems.join("; "));
    }
    let started = Instant::now();
    let mut tree = match SyntheticTree::create(&args.out, config) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("cannot write the tree: {e}"));
            return match e.kind() {
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::InvalidInput => EXIT_USAGE,
                _ => EXIT_RUNTIME,
            };
        }
    };
    let _ = writeln!(
        std::io::stdout(),
        "wrote {} processes and {} kernel threads to {} in {:.2}s (seed {})",
        tree.processes().len() - tree.kernel_threads(),
        tree.kernel_threads(),
        tree.root().join("proc").display(),
        started.elapsed().as_secs_f64(),
        args.seed
    );
    let mut done = 0u64;
    while (args.ticks == 0 && args.interval.is_some()) || done < args.ticks {
        if let Some(interval) = args.interval {
            std::thread::sleep(interval.0);
        }
        let t0 = Instant::now();
        match tree.advance() {
            Ok(tick) => {
                done += 1;
                let _ = writeln!(
                    std::io::stdout(),
                    "tick {}: {} born ({} reused PIDs), {} exited, {} re-parented, {} updated in {:.2}s",
                    tree.ticks(),
                    tick.born.len(),
                    tick.reused.len(),
                    tick.died.len(),
                    tick.reparented.len(),
                    tick.updated,
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                say(&format!("cannot advance the tree: {e}"));
                return EXIT_RUNTIME;
            }
        }
    }
    EXIT_OK
}

//! The agent's own CPU and memory, in the names Prometheus' process
//! collector uses (`process_cpu_seconds_total`, ...), so standard dashboards
//! and alerts work on the agent unchanged.

use std::fmt::Write as _;

use crate::sys::sysconf;

/// CPU seconds and resident bytes of the running agent, from
/// `/proc/self/stat` (the agent's own `/proc`, not the scraped `root_path`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OwnUsage {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
}

impl OwnUsage {
    pub fn read() -> Option<OwnUsage> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which ends at the last ')'.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        // Indices relative to field 3 (state) of proc_pid_stat(5).
        let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let ticks = clock_ticks_per_second();
        Some(OwnUsage {
            cpu_seconds: (num(11)? + num(12)?) as f64 / ticks,
            threads: num(17)?,
            virtual_bytes: num(20)?,
            resident_bytes: num(21)? * page_size(),
        })
    }

    /// Append the usage in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let lines: [(&str, &str, &str, String); 4] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent by the agent in seconds.",
                format!("{}", self.cpu_seconds),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size of the agent in bytes.",
                self.resident_bytes.to_string(),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size of the agent in bytes.",
                self.virtual_bytes.to_string(),
            ),
            (
                "process_threads",
                "gauge",
                "Threads of the agent.",
                self.threads.to_string(),
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64
}

fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_usage() {
        let u = OwnUsage::read().expect("/proc/self/stat is readable");
        assert!(u.resident_bytes > 0);
        assert!(u.threads >= 1);
        let mut out = String::new();
        u.render(&mut out);
        assert!(out.contains("# TYPE process_cpu_seconds_total counter"));
    }
}

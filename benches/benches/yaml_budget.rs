//! Validation time of hostile YAML against the shipped configs: the whole
//! `AgentConfig::load` (budget check, parse, env substitution, checks), as
//! `phoenix-agent validate`, a reload and the controller's
//! `POST /api/v1/configs/validate` run it. Hostile inputs are refused by the
//! budget; the shipped configs pass it and pay for the check too (measured
//! alone in `check_budget/`). Peak memory is measured per process by the
//! `yaml-peak` binary (see `docs/BENCHMARKS.md`, "Hostile YAML").

use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use phoenix_benches::hostile_yaml::cases;
use phoenix_config::AgentConfig;
use phoenix_config::yaml::check_budget;

fn no_env(_: &str) -> Option<String> {
    None
}

/// One group: `accepts` run on every case.
fn group(c: &mut Criterion, name: &str, accepts: impl Fn(&str) -> bool) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for (case, make) in cases() {
        let text = make();
        group.bench_function(case, |b| b.iter(|| black_box(accepts(black_box(&text)))));
    }
    group.finish();
}

fn validate(c: &mut Criterion) {
    group(c, "validate", |text| {
        AgentConfig::load_with_env(text, &no_env).is_ok()
    });
    group(c, "check_budget", |text| check_budget(text).is_ok());
}

criterion_group!(benches, validate);
criterion_main!(benches);

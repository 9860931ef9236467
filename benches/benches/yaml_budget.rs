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

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for (name, make) in cases() {
        let text = make();
        group.bench_function(name, |b| {
            b.iter(|| black_box(AgentConfig::load_with_env(black_box(&text), &no_env).is_ok()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("check_budget");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    for (name, make) in cases() {
        let text = make();
        group.bench_function(name, |b| {
            b.iter(|| black_box(check_budget(black_box(&text)).is_ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);

//! The verdict: each candidate against the baseline, every KPI over the
//! fleet and the window with a bootstrap confidence interval, each
//! criterion judged on that interval, a monthly cost per variant, and a
//! recommendation in plain words.
//!
//! The unit of measurement is one interval of one agent. A candidate is
//! compared with the baseline on the intervals where an agent reported
//! both (they come from one scrape, so they pair exactly). The bootstrap
//! resamples in two stages, agents with replacement and then each drawn
//! agent's intervals with replacement, so the interval reflects both how
//! agents differ and how intervals vary within an agent. Ratios are ratios
//! of sums (fleet totals), not means of per-agent ratios: a host with ten
//! processes does not weigh as much as one with a thousand. The random
//! generator is seeded from the experiment id: the same data gives the same
//! report.

use std::collections::BTreeMap;

use serde::Serialize;

use super::spec::{ExperimentSpec, Timing};

/// One stored measurement: a variant on an agent in one interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub variant: String,
    pub agent_id: String,
    pub interval_ns: i64,
    pub series: u64,
    pub datapoints: u64,
    pub bytes: u64,
    pub bytes_gzip: u64,
    pub cpu_seconds: f64,
    pub critical_total: u64,
    pub critical_visible: u64,
    pub topn_fidelity: Option<f64>,
    /// Process CPU (cores, or CPU seconds without utilization) and memory
    /// (bytes) the variant exported in total; `None` in rows stored before
    /// they were.
    pub cpu_total: Option<f64>,
    pub memory_total: Option<f64>,
    /// What the agent said the candidate loses this interval (only on the
    /// way in: stored apart, summed, read back as [`LossTotal`]s).
    #[serde(skip)]
    pub losses: Vec<Loss>,
}

/// An executable a candidate does not show individually in one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Loss {
    pub executable: String,
    pub processes: u32,
    pub cpu_share: f64,
    pub memory_share: f64,
    pub folded: bool,
}

/// The [`Loss`]es of one executable and candidate, summed over the
/// intervals (and agents) they were reported in.
#[derive(Debug, Clone, PartialEq)]
pub struct LossTotal {
    pub variant: String,
    pub executable: String,
    pub folded: bool,
    pub intervals: u64,
    pub processes: u64,
    pub cpu_share: f64,
    pub memory_share: f64,
}

/// Executables named per candidate in a report, of each kind.
const LOSSES_REPORTED: usize = 5;

// The report is the API's: the report endpoint and the stored verdict
// serialize exactly these.
pub use phoenix_api::{
    Analysis as Report, CandidateLoss, CandidateReport, CriterionResult, Disqualification,
    Estimate, Kpis, Outcome, VariantSummary,
};

/// Fewer paired intervals than this can fail a candidate, never pass it.
pub const MIN_PAIRED_INTERVALS: usize = 3;

/// 30 days, the month of the cost estimate.
const MONTH_SECONDS: f64 = 30.0 * 86_400.0;

/// Sums over a set of paired intervals; every KPI is a function of them.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: f64,
    base_series: f64,
    cand_series: f64,
    base_datapoints: f64,
    cand_datapoints: f64,
    base_bytes: f64,
    cand_bytes: f64,
    critical_total: f64,
    critical_visible: f64,
    fidelity: Mean,
    cpu_seconds: f64,
    cpu: Totals,
    memory: Totals,
}

/// A resource's total in the baseline and the candidate, over the
/// intervals that have both.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    base: f64,
    cand: f64,
}

impl Totals {
    fn add(&mut self, base: Option<f64>, cand: Option<f64>) {
        if let (Some(b), Some(c)) = (base, cand) {
            self.base += b;
            self.cand += c;
        }
    }
    /// Σ candidate / Σ baseline: what the candidate still accounts for.
    fn conservation(&self) -> f64 {
        if self.base > 0.0 {
            self.cand / self.base
        } else {
            f64::NAN
        }
    }
}

/// The mean of a per-interval ratio the agents compute (top-N fidelity):
/// intervals without one do not count.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: f64,
}

impl Mean {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.sum += v;
            self.n += 1.0;
        }
    }
    fn value(&self) -> f64 {
        if self.n > 0.0 {
            self.sum / self.n
        } else {
            f64::NAN
        }
    }
}

/// How many KPIs a candidate has, in the order of [`Sums::kpis`].
const KPIS: usize = 8;

impl Sums {
    fn add(&mut self, p: &Pair) {
        self.n += 1.0;
        self.base_series += p.base_series;
        self.cand_series += p.cand_series;
        self.base_datapoints += p.base_datapoints;
        self.cand_datapoints += p.cand_datapoints;
        self.base_bytes += p.base_bytes;
        self.cand_bytes += p.cand_bytes;
        self.critical_total += p.critical_total;
        self.critical_visible += p.critical_visible;
        self.fidelity.add(p.fidelity);
        self.cpu.add(p.base_cpu_total, p.cand_cpu_total);
        self.memory.add(p.base_memory_total, p.cand_memory_total);
        self.cpu_seconds += p.cpu_seconds;
    }

    /// [series, datapoints, bytes reduction, coverage, fidelity, cpu %,
    /// cpu conservation, memory conservation]; NaN where undefined.
    fn kpis(&self, interval_s: f64) -> [f64; KPIS] {
        let reduction = |b: f64, c: f64| if b > 0.0 { 1.0 - c / b } else { f64::NAN };
        [
            reduction(self.base_series, self.cand_series),
            reduction(self.base_datapoints, self.cand_datapoints),
            reduction(self.base_bytes, self.cand_bytes),
            if self.critical_total > 0.0 {
                self.critical_visible / self.critical_total
            } else {
                f64::NAN
            },
            self.fidelity.value(),
            if self.n > 0.0 {
                100.0 * self.cpu_seconds / (self.n * interval_s)
            } else {
                f64::NAN
            },
            self.cpu.conservation(),
            self.memory.conservation(),
        ]
    }
}

/// A candidate interval with its baseline interval.
#[derive(Debug, Clone, Copy)]
struct Pair {
    base_series: f64,
    cand_series: f64,
    base_datapoints: f64,
    cand_datapoints: f64,
    base_bytes: f64,
    cand_bytes: f64,
    critical_total: f64,
    critical_visible: f64,
    fidelity: Option<f64>,
    cpu_seconds: f64,
    base_cpu_total: Option<f64>,
    cand_cpu_total: Option<f64>,
    base_memory_total: Option<f64>,
    cand_memory_total: Option<f64>,
}

/// SplitMix64: small, fast, good enough for resampling (and for the
/// benches' simulated noise), and ours.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn from_seed(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    /// Seeded by a text (FNV-1a of it): an experiment id gives its own,
    /// repeatable stream.
    pub fn seeded(text: &str) -> SplitMix64 {
        SplitMix64(phoenix_processors::hash::fnv1a(text.as_bytes()))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        phoenix_processors::hash::mix64(self.0)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in [lo, hi).
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// The bootstrap of every KPI for one candidate: per KPI, the estimate.
fn bootstrap(
    agents: &[Vec<Pair>],
    interval_s: f64,
    resamples: u32,
    confidence: f64,
    rng: &mut SplitMix64,
) -> [Option<Estimate>; KPIS] {
    let mut all = Sums::default();
    for p in agents.iter().flatten() {
        all.add(p);
    }
    let point = all.kpis(interval_s);
    let mut draws: [Vec<f64>; KPIS] = Default::default();
    for _ in 0..resamples {
        let mut s = Sums::default();
        for _ in 0..agents.len() {
            let intervals = &agents[rng.below(agents.len())];
            for _ in 0..intervals.len() {
                s.add(&intervals[rng.below(intervals.len())]);
            }
        }
        for (d, v) in draws.iter_mut().zip(s.kpis(interval_s)) {
            if v.is_finite() {
                d.push(v);
            }
        }
    }
    let alpha = (1.0 - confidence) / 2.0;
    let mut out = [None; KPIS];
    for (i, d) in draws.iter_mut().enumerate() {
        if !point[i].is_finite() || d.is_empty() {
            continue;
        }
        d.sort_by(f64::total_cmp);
        let at = |q: f64| d[((q * (d.len() - 1) as f64).round() as usize).min(d.len() - 1)];
        out[i] = Some(Estimate {
            value: point[i],
            low: at(alpha).min(point[i]),
            high: at(1.0 - alpha).max(point[i]),
        });
    }
    out
}

/// Pass when the whole confidence interval meets the threshold; fail when
/// the measured value itself misses it (no amount of data turns a hidden
/// critical process into full coverage); inconclusive when the value meets
/// it but the interval reaches across.
fn judge(
    criterion: &'static str,
    kpi: &'static str,
    at_least: bool,
    threshold: f64,
    estimate: Option<Estimate>,
) -> CriterionResult {
    // Rounding noise must not fail a candidate that keeps 100% of 100%.
    const EPS: f64 = 1e-9;
    let meets = |v: f64| {
        if at_least {
            v + EPS >= threshold
        } else {
            v - EPS <= threshold
        }
    };
    let outcome = match estimate {
        None => Outcome::NoData,
        Some(e) if !meets(e.value) => Outcome::Fail,
        Some(e) if meets(e.low) && meets(e.high) => Outcome::Pass,
        Some(_) => Outcome::Inconclusive,
    };
    CriterionResult {
        criterion: criterion.to_string(),
        kpi: kpi.to_string(),
        op: if at_least { ">=" } else { "<=" }.to_string(),
        threshold,
        estimate,
        outcome,
    }
}

/// Analyse `rows` (after the warm-up) and `losses` for `spec`;
/// `target_agents` scales the cost estimate to the fleet; `seed` (the
/// experiment id) makes it repeatable. A candidate in `disqualified`
/// (by name) fails, its KPIs measured up to its breach shown all the same.
pub fn analyse(
    spec: &ExperimentSpec,
    timing: &Timing,
    target_agents: usize,
    seed: &str,
    rows: &[Measurement],
    losses: &[LossTotal],
    disqualified: &BTreeMap<String, Disqualification>,
) -> Report {
    let interval_s = timing.interval_ms as f64 / 1000.0;
    let baseline = spec.baseline_name();
    // agent → interval → variant → row
    let mut grid: BTreeMap<&str, BTreeMap<i64, BTreeMap<&str, &Measurement>>> = BTreeMap::new();
    for r in rows {
        grid.entry(&r.agent_id)
            .or_default()
            .entry(r.interval_ns)
            .or_default()
            .insert(&r.variant, r);
    }

    let mut names = vec![baseline.clone()];
    names.extend(spec.candidate_names());
    let variants: Vec<VariantSummary> = names
        .iter()
        .map(|n| summarize(n, rows, interval_s, target_agents, spec))
        .collect();

    let mut rng = SplitMix64::seeded(seed);
    let mut candidates = Vec::new();
    for name in spec.candidate_names() {
        let mut per_agent: Vec<Vec<Pair>> = Vec::new();
        for intervals in grid.values() {
            let pairs: Vec<Pair> = intervals
                .values()
                .filter_map(|v| {
                    let b = v.get(baseline.as_str())?;
                    let c = v.get(name.as_str())?;
                    Some(Pair {
                        base_series: b.series as f64,
                        cand_series: c.series as f64,
                        base_datapoints: b.datapoints as f64,
                        cand_datapoints: c.datapoints as f64,
                        base_bytes: b.bytes as f64,
                        cand_bytes: c.bytes as f64,
                        critical_total: c.critical_total as f64,
                        critical_visible: c.critical_visible as f64,
                        fidelity: c.topn_fidelity,
                        cpu_seconds: c.cpu_seconds,
                        base_cpu_total: b.cpu_total,
                        cand_cpu_total: c.cpu_total,
                        base_memory_total: b.memory_total,
                        cand_memory_total: c.memory_total,
                    })
                })
                .collect();
            if !pairs.is_empty() {
                per_agent.push(pairs);
            }
        }
        let paired_intervals = per_agent.iter().map(Vec::len).sum();
        let [
            series,
            datapoints,
            bytes,
            coverage,
            fidelity,
            cpu,
            cpu_conservation,
            memory_conservation,
        ] = bootstrap(
            &per_agent,
            interval_s,
            spec.analysis.resamples,
            spec.analysis.confidence,
            &mut rng,
        );
        let kpis = Kpis {
            series_reduction: series,
            datapoints_reduction: datapoints,
            bytes_reduction: bytes,
            critical_coverage: coverage,
            topn_fidelity: fidelity,
            cpu_overhead_percent: cpu,
            cpu_conservation,
            memory_conservation,
        };
        let c = &spec.criteria;
        let mut criteria = Vec::new();
        let mut at_least = |criterion, kpi, t: Option<f64>, e| {
            if let Some(t) = t {
                criteria.push(judge(criterion, kpi, true, t, e));
            }
        };
        at_least(
            "min_series_reduction",
            "series_reduction",
            c.min_series_reduction,
            series,
        );
        at_least(
            "min_bytes_reduction",
            "bytes_reduction",
            c.min_bytes_reduction,
            bytes,
        );
        at_least(
            "min_critical_coverage",
            "critical_coverage",
            c.min_critical_coverage,
            coverage,
        );
        at_least(
            "min_topn_fidelity",
            "topn_fidelity",
            c.min_topn_fidelity,
            fidelity,
        );
        at_least(
            "min_cpu_conservation",
            "cpu_conservation",
            c.min_cpu_conservation,
            cpu_conservation,
        );
        at_least(
            "min_memory_conservation",
            "memory_conservation",
            c.min_memory_conservation,
            memory_conservation,
        );
        if let Some(t) = c.max_cpu_overhead_percent {
            criteria.push(judge(
                "max_cpu_overhead_percent",
                "cpu_overhead_percent",
                false,
                t,
                cpu,
            ));
        }
        let disqualified = disqualified.get(&name).cloned();
        let outcome = if disqualified.is_some() {
            Outcome::Fail
        } else if paired_intervals == 0 {
            Outcome::NoData
        } else if criteria.iter().any(|r| r.outcome == Outcome::Fail) {
            Outcome::Fail
        } else if paired_intervals < MIN_PAIRED_INTERVALS {
            // A handful of identical resamples gives an interval of zero
            // width: not evidence enough to change a fleet's config.
            Outcome::Inconclusive
        } else if criteria.iter().all(|r| r.outcome == Outcome::Pass) {
            Outcome::Pass
        } else {
            Outcome::Inconclusive
        };
        let measured = variants
            .iter()
            .find(|v| v.name == name)
            .map_or(0, |v| v.intervals);
        candidates.push(CandidateReport {
            losses: candidate_losses(&name, measured, losses),
            name,
            paired_intervals,
            agents: per_agent.len(),
            kpis,
            criteria,
            outcome,
            disqualified,
        });
    }

    let cost = |name: &str| {
        variants
            .iter()
            .find(|v| v.name == name)
            .map_or(f64::INFINITY, |v| v.monthly_cost)
    };
    let winner = candidates
        .iter()
        .filter(|c| c.outcome == Outcome::Pass)
        .min_by(|a, b| cost(&a.name).total_cmp(&cost(&b.name)))
        .map(|c| c.name.clone());
    let recommendation = recommend(spec, &baseline, winner.as_deref(), &candidates, &variants);
    Report {
        verdict: if winner.is_some() {
            "succeeded"
        } else {
            "failed"
        }
        .to_string(),
        winner,
        recommendation,
        confidence: spec.analysis.confidence,
        resamples: spec.analysis.resamples,
        target_agents,
        currency: spec.pricing.currency.clone(),
        variants,
        candidates,
    }
}

/// What `name` loses, averaged over the `measured` intervals of it: the
/// dropped executables first, then the folded ones, largest share first.
fn candidate_losses(name: &str, measured: usize, losses: &[LossTotal]) -> Vec<CandidateLoss> {
    if measured == 0 {
        return Vec::new();
    }
    let n = measured as f64;
    let mut mine: Vec<CandidateLoss> = losses
        .iter()
        .filter(|l| l.variant == name)
        .map(|l| CandidateLoss {
            executable: l.executable.clone(),
            folded: l.folded,
            cpu_share: l.cpu_share / n,
            memory_share: l.memory_share / n,
            processes: l.processes as f64 / l.intervals.max(1) as f64,
        })
        .collect();
    let weight = |l: &CandidateLoss| l.cpu_share.max(l.memory_share);
    mine.sort_by(|a, b| {
        a.folded
            .cmp(&b.folded)
            .then(weight(b).total_cmp(&weight(a)))
            .then(a.executable.cmp(&b.executable))
    });
    let mut out = Vec::new();
    for folded in [false, true] {
        out.extend(
            mine.iter()
                .filter(|l| l.folded == folded)
                .take(LOSSES_REPORTED)
                .cloned(),
        );
    }
    out
}

/// `"no-batch" drops busy-batch (58.0% of the baseline's process CPU)`,
/// the three largest, or nothing when it drops nothing.
fn dropped_text(c: &CandidateReport) -> Option<String> {
    let dropped: Vec<String> = c
        .losses
        .iter()
        .filter(|l| !l.folded && l.cpu_share.max(l.memory_share) >= 0.01)
        .take(3)
        .map(|l| {
            if l.cpu_share >= l.memory_share {
                format!(
                    "{} ({} of the baseline's process CPU)",
                    l.executable,
                    pct(l.cpu_share)
                )
            } else {
                format!(
                    "{} ({} of its process memory)",
                    l.executable,
                    pct(l.memory_share)
                )
            }
        })
        .collect();
    (!dropped.is_empty()).then(|| format!("{:?} drops {}", c.name, dropped.join(", ")))
}

/// `"aggressive" was disqualified by guardrail critical_coverage: ...`.
fn disqualified_text(c: &CandidateReport) -> Option<String> {
    let d = c.disqualified.as_ref()?;
    Some(format!(
        "{:?} was disqualified by guardrail {}: {}.",
        c.name, d.guardrail, d.reason
    ))
}

fn summarize(
    name: &str,
    rows: &[Measurement],
    interval_s: f64,
    target_agents: usize,
    spec: &ExperimentSpec,
) -> VariantSummary {
    let mine: Vec<&Measurement> = rows.iter().filter(|r| r.variant == name).collect();
    let n = mine.len();
    let mean = |f: &dyn Fn(&Measurement) -> f64| {
        if n == 0 {
            0.0
        } else {
            mine.iter().map(|r| f(r)).sum::<f64>() / n as f64
        }
    };
    let series = mean(&|r| r.series as f64);
    let datapoints = mean(&|r| r.datapoints as f64);
    let bytes = mean(&|r| r.bytes as f64);
    let bytes_gzip = mean(&|r| r.bytes_gzip as f64);
    let cpu = mean(&|r| r.cpu_seconds) * 100.0 / interval_s;
    let per_month = MONTH_SECONDS / interval_s * target_agents as f64;
    let monthly_datapoints = datapoints * per_month;
    let monthly_gb = bytes * per_month / 1e9;
    let monthly_cost = monthly_datapoints / 1e6 * spec.pricing.per_million_datapoints
        + monthly_gb * spec.pricing.per_gb;
    VariantSummary {
        name: name.to_string(),
        intervals: n,
        series,
        datapoints,
        bytes,
        bytes_gzip,
        cpu_overhead_percent: cpu,
        monthly_datapoints,
        monthly_gb,
        monthly_cost,
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn describe(r: &CriterionResult) -> String {
    let Some(e) = r.estimate else {
        return format!("{}: no data", r.kpi);
    };
    let (v, lo, hi, t) = if r.kpi == "cpu_overhead_percent" {
        let f = |x: f64| format!("{x:.2}% of a core");
        (f(e.value), f(e.low), f(e.high), f(r.threshold))
    } else {
        (pct(e.value), pct(e.low), pct(e.high), pct(r.threshold))
    };
    format!(
        "{} {v} (CI {lo} to {hi}) against {} {t}",
        r.kpi.replace('_', " "),
        if r.op == ">=" {
            "a minimum of"
        } else {
            "a maximum of"
        }
    )
}

fn recommend(
    spec: &ExperimentSpec,
    baseline: &str,
    winner: Option<&str>,
    candidates: &[CandidateReport],
    variants: &[VariantSummary],
) -> String {
    let cost = |name: &str| {
        variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.monthly_cost)
    };
    let money = |v: f64| format!("{v:.2} {}", spec.pricing.currency);
    match winner {
        Some(w) => {
            let c = candidates
                .iter()
                .find(|c| c.name == w)
                .expect("winner is a candidate");
            let mut text = format!("Promote {w:?}: it met every criterion");
            if let Some(e) = c.kpis.series_reduction {
                text += &format!(", with {} fewer series", pct(e.value));
            }
            if let Some(e) = c.kpis.bytes_reduction {
                text += &format!(" and {} fewer bytes", pct(e.value));
            }
            if let Some(e) = c.kpis.critical_coverage {
                text += &format!(", keeping {} of critical processes visible", pct(e.value));
            }
            if let Some(e) = c.kpis.cpu_conservation {
                text += &format!(" and {} of the baseline's process CPU", pct(e.value));
            }
            text.push('.');
            if let Some(dropped) = dropped_text(c) {
                text += &format!(" {dropped}.");
            }
            if let (Some(b), Some(w)) = (cost(baseline), cost(w)) {
                text += &format!(
                    " Estimated cost: {} a month instead of {} (saves {}).",
                    money(w),
                    money(b),
                    money(b - w)
                );
            }
            for c in candidates {
                if let Some(why) = disqualified_text(c) {
                    text += &format!(" {why}");
                }
            }
            text
        }
        None => {
            let mut text = format!("Keep {baseline:?}: no candidate met every criterion.");
            for c in candidates {
                if let Some(why) = disqualified_text(c) {
                    text += &format!(" {why}");
                    continue;
                }
                let failing: Vec<String> = c
                    .criteria
                    .iter()
                    .filter(|r| r.outcome != Outcome::Pass)
                    .map(|r| {
                        let word = match r.outcome {
                            Outcome::Fail => "failed",
                            Outcome::Inconclusive => "inconclusive",
                            _ => "not measured",
                        };
                        format!("{word}: {}", describe(r))
                    })
                    .collect();
                if c.paired_intervals < MIN_PAIRED_INTERVALS {
                    text += &format!(
                        " {:?} has {} interval(s) measured next to the baseline; a verdict needs {MIN_PAIRED_INTERVALS}.",
                        c.name, c.paired_intervals
                    );
                } else if !failing.is_empty() {
                    text += &format!(" {:?}: {}.", c.name, failing.join("; "));
                }
                if let Some(dropped) = dropped_text(c) {
                    text += &format!(" {dropped}.");
                }
                if failing.iter().any(|f| f.starts_with("inconclusive")) {
                    text += " A longer window or more agents would narrow the intervals.";
                }
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(criteria: &str) -> ExperimentSpec {
        ExperimentSpec::parse(&format!(
            "
name: t
targets: {{ hosts: [a] }}
candidates: [ {{ name: lean }} ]
critical_processes: [x]
interval: 10s
duration: 10m
criteria: {{ {criteria} }}
analysis: {{ resamples: 500 }}
"
        ))
        .unwrap()
    }

    fn none() -> BTreeMap<String, Disqualification> {
        BTreeMap::new()
    }

    /// `analyse` with no losses and no disqualification.
    fn run(s: &ExperimentSpec, agents: usize, seed: &str, rows: &[Measurement]) -> Report {
        analyse(s, &s.timing().unwrap(), agents, seed, rows, &[], &none())
    }

    fn row(variant: &str, agent: &str, t: i64, series: u64, visible: u64) -> Measurement {
        Measurement {
            variant: variant.into(),
            agent_id: agent.into(),
            interval_ns: t,
            series,
            datapoints: series * 2,
            bytes: series * 100,
            bytes_gzip: series * 10,
            cpu_seconds: 0.001,
            critical_total: 2,
            critical_visible: visible,
            topn_fidelity: (variant != "baseline").then_some(0.9),
            cpu_total: Some(0.5),
            memory_total: Some(1e9),
            losses: Vec::new(),
        }
    }

    /// Three agents, 20 intervals: the candidate keeps 30% of the series
    /// (with a little noise) and every critical process.
    fn data(visible: u64) -> Vec<Measurement> {
        let mut rows = Vec::new();
        for (a, size) in [("a", 100), ("b", 200), ("c", 400)] {
            for t in 0..20 {
                rows.push(row("baseline", a, t, size, 2));
                let kept = size * 3 / 10 + (t as u64 % 3);
                rows.push(row("lean", a, t, kept, visible));
            }
        }
        rows
    }

    #[test]
    fn a_clear_win_passes_with_a_tight_interval_around_the_truth() {
        let s = spec(
            "min_series_reduction: 0.5, min_critical_coverage: 1.0, max_cpu_overhead_percent: 1",
        );
        let r = run(&s, 10, "exp-1", &data(2));
        let c = &r.candidates[0];
        assert_eq!(c.paired_intervals, 60);
        let e = c.kpis.series_reduction.unwrap();
        assert!((e.value - 0.695).abs() < 0.01, "{e:?}");
        assert!(
            e.low <= e.value && e.value <= e.high && e.high - e.low < 0.02,
            "{e:?}"
        );
        assert_eq!(c.kpis.critical_coverage.unwrap().value, 1.0);
        // 0.001 s per 10 s interval = 0.01% of a core.
        assert!((c.kpis.cpu_overhead_percent.unwrap().value - 0.01).abs() < 1e-9);
        assert!(
            c.criteria.iter().all(|r| r.outcome == Outcome::Pass),
            "{:?}",
            c.criteria
        );
        assert_eq!(r.verdict, "succeeded");
        assert_eq!(r.winner.as_deref(), Some("lean"));
        assert!(
            r.recommendation.starts_with("Promote \"lean\""),
            "{}",
            r.recommendation
        );
        // The same data, the same report.
        assert_eq!(run(&s, 10, "exp-1", &data(2)), r);
    }

    #[test]
    fn losing_a_critical_process_fails_and_says_why() {
        let s = spec("min_critical_coverage: 1.0");
        let r = run(&s, 3, "exp-2", &data(1));
        let c = &r.candidates[0];
        assert_eq!(c.kpis.critical_coverage.unwrap().value, 0.5);
        assert_eq!(c.outcome, Outcome::Fail);
        assert_eq!(r.verdict, "failed");
        assert!(
            r.recommendation.contains("critical coverage 50.0%"),
            "{}",
            r.recommendation
        );
    }

    #[test]
    fn dropping_a_busy_process_fails_on_cpu_conservation_by_default() {
        // Fewer series, every critical process kept, but 60% of the
        // baseline's process CPU gone in every interval.
        let mut rows = data(2);
        for r in rows.iter_mut().filter(|r| r.variant == "lean") {
            r.cpu_total = Some(0.2 + (r.interval_ns % 3) as f64 * 0.005);
        }
        let s = spec("min_series_reduction: 0.5");
        assert_eq!(
            s.criteria.min_cpu_conservation,
            Some(crate::experiment::spec::DEFAULT_MIN_CPU_CONSERVATION)
        );
        let r = run(&s, 3, "exp-cons", &rows);
        let c = &r.candidates[0];
        let e = c.kpis.cpu_conservation.unwrap();
        assert!((e.value - 0.41).abs() < 0.01, "{e:?}");
        assert_eq!(c.kpis.memory_conservation.unwrap().value, 1.0);
        let judged = c
            .criteria
            .iter()
            .find(|r| r.criterion == "min_cpu_conservation")
            .unwrap();
        assert_eq!(judged.outcome, Outcome::Fail);
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(
            r.recommendation.contains("failed: cpu conservation 4"),
            "{}",
            r.recommendation
        );
        // Turned off, the same candidate wins on its reduction.
        let s = spec("min_series_reduction: 0.5, min_cpu_conservation: null");
        let r = run(&s, 3, "exp-cons", &rows);
        assert_eq!(r.winner.as_deref(), Some("lean"));
        // Rows from before the totals were stored: not measured, so not a
        // pass either.
        for r in rows.iter_mut() {
            r.cpu_total = None;
        }
        let s = spec("min_series_reduction: 0.5");
        let r = run(&s, 3, "exp-cons", &rows);
        assert_eq!(r.candidates[0].outcome, Outcome::Inconclusive);
    }

    #[test]
    fn the_verdict_names_what_a_candidate_drops_and_what_it_folds() {
        let mut rows = data(2);
        for r in rows.iter_mut().filter(|r| r.variant == "lean") {
            r.cpu_total = Some(0.2);
        }
        // 60 measured intervals; busy-batch lost in all of them, sleepers
        // folded in half.
        let total = |executable: &str, folded, intervals, cpu_share| LossTotal {
            variant: "lean".into(),
            executable: executable.into(),
            folded,
            intervals,
            processes: intervals,
            cpu_share,
            memory_share: 0.0,
        };
        let losses = [
            total("busy-batch", false, 60, 60.0 * 0.6),
            total("sleeper", true, 30, 30.0 * 0.002),
            total("other-variant-only", false, 60, 60.0),
        ];
        let mut losses = losses.to_vec();
        losses[2].variant = "baseline".into();
        let s = spec("min_series_reduction: 0.5");
        let r = analyse(
            &s,
            &s.timing().unwrap(),
            3,
            "exp-loss",
            &rows,
            &losses,
            &none(),
        );
        let c = &r.candidates[0];
        assert_eq!(c.losses.len(), 2, "{:?}", c.losses);
        assert_eq!(
            (c.losses[0].executable.as_str(), c.losses[0].folded),
            ("busy-batch", false)
        );
        assert!((c.losses[0].cpu_share - 0.6).abs() < 1e-9);
        assert_eq!(
            (c.losses[1].executable.as_str(), c.losses[1].folded),
            ("sleeper", true)
        );
        assert!(
            (c.losses[1].cpu_share - 0.001).abs() < 1e-9,
            "averaged over all 60"
        );
        assert!(
            r.recommendation
                .contains("\"lean\" drops busy-batch (60.0% of the baseline's process CPU)"),
            "{}",
            r.recommendation
        );
        assert!(
            !r.recommendation.contains("sleeper"),
            "folded is not dropped"
        );
    }

    #[test]
    fn a_threshold_inside_the_interval_is_inconclusive() {
        // Two agents that disagree widely: 10% and 90% reduction, 50.5%
        // overall, against a minimum of 50%.
        let mut rows = Vec::new();
        for t in 0..5 {
            rows.push(row("baseline", "a", t, 100, 2));
            rows.push(row("lean", "a", t, 90, 2));
            rows.push(row("baseline", "b", t, 100, 2));
            rows.push(row("lean", "b", t, 9, 2));
        }
        let s = spec("min_series_reduction: 0.5");
        let r = run(&s, 2, "exp-3", &rows);
        let crit = &r.candidates[0].criteria[0];
        assert_eq!(crit.criterion, "min_series_reduction");
        assert_eq!(crit.outcome, Outcome::Inconclusive, "{crit:?}");
        assert!(
            r.recommendation.contains("longer window"),
            "{}",
            r.recommendation
        );
    }

    #[test]
    fn too_few_intervals_never_pass() {
        let s = spec("min_series_reduction: 0.5");
        let rows = vec![
            row("baseline", "a", 0, 1000, 2),
            row("lean", "a", 0, 100, 2),
        ];
        let r = run(&s, 1, "x", &rows);
        assert_eq!(r.candidates[0].criteria[0].outcome, Outcome::Pass);
        assert_eq!(r.candidates[0].outcome, Outcome::Inconclusive);
        assert_eq!(r.verdict, "failed");
        assert!(
            r.recommendation.contains("a verdict needs 3"),
            "{}",
            r.recommendation
        );
    }

    #[test]
    fn no_data_is_not_a_pass_and_costs_scale_with_the_fleet() {
        let s = spec("min_series_reduction: 0.5");
        let r = run(&s, 5, "exp-4", &[]);
        assert_eq!(r.candidates[0].outcome, Outcome::NoData);
        assert_eq!(r.verdict, "failed");

        let rows = vec![
            row("baseline", "a", 0, 1000, 2),
            row("lean", "a", 0, 100, 2),
        ];
        let r1 = run(&s, 1, "x", &rows);
        let r10 = run(&s, 10, "x", &rows);
        let b1 = &r1.variants[0];
        // 2000 datapoints every 10 s for 30 days: 518.4 M; at 0.10 per
        // million plus 100 kB per interval at 0.50 per GB.
        assert!((b1.monthly_datapoints - 518_400_000.0).abs() < 1.0);
        let expected = 518.4 * 0.10 + 25.92 * 0.50;
        assert!(
            (b1.monthly_cost - expected).abs() < 1e-6,
            "{}",
            b1.monthly_cost
        );
        assert!((r10.variants[0].monthly_cost - 10.0 * expected).abs() < 1e-6);
    }

    #[test]
    fn a_disqualified_candidate_fails_whatever_its_kpis_and_never_wins() {
        let s = ExperimentSpec::parse(
            "
name: t
targets: { hosts: [a] }
candidates: [ { name: lean }, { name: hider } ]
critical_processes: [x]
interval: 10s
duration: 10m
criteria: { min_series_reduction: 0.5 }
analysis: { resamples: 200 }
",
        )
        .unwrap();
        // Both keep 30% of the series; `hider` is the cheaper one.
        let mut rows = data(2);
        rows.extend(
            data(2)
                .into_iter()
                .filter(|r| r.variant == "lean")
                .map(|mut r| {
                    r.variant = "hider".into();
                    r.series = r.series * 2 / 3;
                    r.datapoints = r.series * 2;
                    r.bytes = r.series * 100;
                    r
                }),
        );
        let r = run(&s, 3, "exp-dq", &rows);
        assert_eq!(r.winner.as_deref(), Some("hider"));

        let why = Disqualification {
            at: "2026-01-01T00:01:00.000Z".into(),
            guardrail: "critical_coverage".into(),
            reason: "\"hider\" kept 0 of 2 critical processes visible on agent a".into(),
        };
        let disqualified = BTreeMap::from([("hider".to_string(), why.clone())]);
        let r = analyse(
            &s,
            &s.timing().unwrap(),
            3,
            "exp-dq",
            &rows,
            &[],
            &disqualified,
        );
        let hider = r.candidates.iter().find(|c| c.name == "hider").unwrap();
        assert_eq!(hider.outcome, Outcome::Fail);
        assert_eq!(hider.disqualified.as_ref(), Some(&why));
        // Its numbers up to the breach are still there, criteria passed.
        assert!(hider.kpis.series_reduction.is_some());
        assert!(hider.criteria.iter().all(|c| c.outcome == Outcome::Pass));
        assert_eq!(r.winner.as_deref(), Some("lean"));
        let said = "\"hider\" was disqualified by guardrail critical_coverage: \
                    \"hider\" kept 0 of 2 critical processes visible on agent a.";
        assert!(
            r.recommendation.starts_with("Promote \"lean\"") && r.recommendation.contains(said),
            "{}",
            r.recommendation
        );
        // Every candidate disqualified: no winner, and the reasons.
        let both = BTreeMap::from([
            ("hider".to_string(), why.clone()),
            ("lean".to_string(), why),
        ]);
        let r = analyse(&s, &s.timing().unwrap(), 3, "exp-dq", &rows, &[], &both);
        assert_eq!((r.verdict.as_str(), r.winner.as_deref()), ("failed", None));
        assert!(r.recommendation.contains(said), "{}", r.recommendation);
        assert!(
            r.recommendation.contains("\"lean\" was disqualified"),
            "{}",
            r.recommendation
        );
    }
}

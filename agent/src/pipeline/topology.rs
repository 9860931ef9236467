//! A topology is one config, fully built: receivers, pipelines with their
//! processors, exporters, the experiment. A reload builds a new topology
//! next to the running one, reusing every component whose config did not
//! change (so it keeps its state: the receiver's process cache and CPU
//! history, processors' hysteresis, exporters' connections and queues),
//! and then swaps it in whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phoenix_processors::model::{Batch, KeyValue, Value};
use phoenix_processors::processors::{K8sAttributes, K8sAttributesConfig};
use phoenix_processors::{Processor, ProcessorConfig, Resource, semconv};

use super::accounting::{self, Accountant, Assessment, Comparator, IntervalReport, PipelineStats};
use super::gauges::PipelineGauges;
use crate::exporter::{self, BuildContext, Exporter, ExporterConfig};
use crate::k8s::{PodSource, SourceSettings};
use crate::receiver::procfs::{ProcfsConfig, ProcfsReceiver};
use phoenix_config::{AgentConfig, ComponentId, PipelineMode, ReceiverConfig};
use phoenix_telemetry::registry::Registry;

/// A receiver instance and the config it was built from.
#[derive(Clone)]
pub(super) struct ReceiverSlot {
    config: ProcfsConfig,
    pub(super) interval: Duration,
    /// Behind a mutex so the blocking scrape can run on the blocking pool.
    pub(super) scraper: Arc<Mutex<ProcfsReceiver>>,
}

impl ReceiverSlot {
    /// Whether `other` can keep this instance: everything but the interval
    /// (which the receiver loop reads at every tick) is the same.
    fn reusable_for(&self, other: &ProcfsConfig) -> bool {
        let mut same_interval = other.clone();
        same_interval.collection_interval = self.config.collection_interval;
        same_interval == self.config
    }
}

/// An exporter and the config it was built from.
#[derive(Clone)]
pub(super) struct ExporterSlot {
    config: ExporterConfig,
    pub(super) exporter: Arc<dyn Exporter>,
}

/// What a pipeline's processors were built from: when it is unchanged, the
/// processors (and their state) are kept across a reload.
#[derive(Clone, PartialEq)]
struct ProcessorChain(Vec<(ComponentId, ProcessorConfig)>);

/// The state of a pipeline that survives reloads that leave its processors
/// unchanged.
struct PipelineState {
    chain: ProcessorChain,
    processors: Mutex<Vec<Box<dyn Processor>>>,
    accountant: Mutex<Accountant>,
}

/// One pipeline, built: its processors (with their state), where its
/// output goes and what it stamps on it.
pub struct Pipeline {
    id: ComponentId,
    name: String,
    receivers: Vec<ComponentId>,
    mode: PipelineMode,
    state: Arc<PipelineState>,
    exporters: Vec<Arc<dyn Exporter>>,
    /// `phoenix.pipeline` (and the experiment attributes) for every resource.
    stamp: Vec<KeyValue>,
    gauges: PipelineGauges,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run the processors on one snapshot and measure the output.
    fn process(&self, snapshot: &Batch) -> (Arc<Batch>, PipelineStats) {
        let started = accounting::thread_cpu_time();
        // Processors act on processes. A receiver resource without a process
        // identity describes the host (`system.process.count`): no filter,
        // top-k or rollup may drop or fold it, so it goes around them.
        let of_host = |r: &&Resource| r.identity.is_none();
        let mut batch = Batch {
            time_unix_nano: snapshot.time_unix_nano,
            common_attributes: snapshot.common_attributes.with_all(&self.stamp),
            resources: snapshot
                .resources
                .iter()
                .filter(|r| !of_host(r))
                .cloned()
                .collect(),
        };
        {
            let mut processors = self
                .state
                .processors
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for p in processors.iter_mut() {
                p.process(&mut batch);
            }
        }
        batch
            .resources
            .extend(snapshot.resources.iter().filter(of_host).cloned());
        let cpu = accounting::thread_cpu_time().saturating_sub(started);
        let stats = self
            .state
            .accountant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .measure(&self.name, self.mode, &batch, cpu);
        (Arc::new(batch), stats)
    }

    /// Hand the output to the exporters, unless this is a shadow pipeline.
    fn export(&self, output: &Arc<Batch>) {
        if self.mode == PipelineMode::Export {
            for e in &self.exporters {
                e.submit(output.clone());
            }
        }
    }
}

/// The experiment the pipelines run as variants of, if any.
struct Experiment {
    id: String,
    /// Without one, no pipeline is a candidate: every pipeline still reports
    /// its critical coverage (a promoted config, watched as it rolls out).
    baseline: Option<ComponentId>,
    comparator: Mutex<Comparator>,
}

/// Everything a receiver's interval runs through, built whole from a config.
pub struct Topology {
    pub(super) receivers: BTreeMap<ComponentId, ReceiverSlot>,
    pub(super) exporters: BTreeMap<ComponentId, ExporterSlot>,
    pipelines: Vec<Pipeline>,
    experiment: Option<Experiment>,
    /// One pod metadata source per distinct `k8sattributes` config, shared
    /// by every pipeline whose chain has it (one list of the node's pods
    /// per refresh, however many pipelines). Dropping the last handle
    /// stops its task.
    sources: Vec<(K8sAttributesConfig, Arc<PodSource>)>,
}

/// What a build reused and what it built anew, for the reload's log line.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildSummary {
    pub receivers_kept: Vec<String>,
    pub receivers_new: Vec<String>,
    pub exporters_kept: Vec<String>,
    pub exporters_new: Vec<String>,
    /// Pipelines whose processors (and their state) were kept.
    pub pipelines_kept: Vec<String>,
    pub pipelines_new: Vec<String>,
}

impl Topology {
    /// Build `config`, reusing from `previous` every receiver, exporter and
    /// processor chain whose config is unchanged. Must run inside the tokio
    /// runtime (exporters start tasks). On error, whatever was newly built
    /// is shut down again and `previous` is untouched.
    pub fn build(
        config: &AgentConfig,
        previous: Option<&Topology>,
        registry: &Registry,
    ) -> anyhow::Result<(Topology, BuildSummary)> {
        let mut summary = BuildSummary::default();
        let mut fresh_exporters: Vec<Arc<dyn Exporter>> = Vec::new();
        let result = Self::build_inner(
            config,
            previous,
            registry,
            &mut summary,
            &mut fresh_exporters,
        );
        if result.is_err() {
            // Free what the failed build holds (ports, files, tasks) so the
            // running topology is left exactly as it was.
            for e in fresh_exporters {
                tokio::spawn(async move {
                    e.shutdown(Duration::ZERO).await;
                });
            }
        }
        result.map(|t| (t, summary))
    }

    fn build_inner(
        config: &AgentConfig,
        previous: Option<&Topology>,
        registry: &Registry,
        summary: &mut BuildSummary,
        fresh_exporters: &mut Vec<Arc<dyn Exporter>>,
    ) -> anyhow::Result<Topology> {
        let used =
            |f: &dyn Fn(&phoenix_config::PipelineConfig) -> bool| config.pipelines.values().any(f);

        let mut receivers = BTreeMap::new();
        for (id, rc) in &config.receivers {
            // Only receivers some pipeline uses are started.
            if !used(&|p| p.receivers.contains(id)) {
                continue;
            }
            let ReceiverConfig::Procfs(pc) = rc;
            let kept = previous
                .and_then(|t| t.receivers.get(id))
                .filter(|slot| slot.reusable_for(pc));
            let scraper = match kept {
                Some(slot) => {
                    summary.receivers_kept.push(id.to_string());
                    slot.scraper.clone()
                }
                None => {
                    summary.receivers_new.push(id.to_string());
                    Arc::new(Mutex::new(
                        ProcfsReceiver::new(pc, registry)
                            .map_err(|e| anyhow::anyhow!("receivers::{id}: {e:#}"))?,
                    ))
                }
            };
            receivers.insert(
                id.clone(),
                ReceiverSlot {
                    config: pc.clone(),
                    interval: rc.collection_interval(),
                    scraper,
                },
            );
        }

        let mut exporters = BTreeMap::new();
        for (id, ec) in &config.exporters {
            if !used(&|p| p.exporters.contains(id)) {
                continue;
            }
            let kept = previous
                .and_then(|t| t.exporters.get(id))
                .filter(|slot| slot.config == *ec);
            let exporter = match kept {
                Some(slot) => {
                    summary.exporters_kept.push(id.to_string());
                    slot.exporter.clone()
                }
                None => {
                    summary.exporters_new.push(id.to_string());
                    let ctx = BuildContext {
                        id: id.to_string(),
                        registry: registry.clone(),
                    };
                    let built = exporter::build(ec, &ctx)
                        .map_err(|e| anyhow::anyhow!("exporters::{id}: {e:#}"))?;
                    fresh_exporters.push(built.clone());
                    built
                }
            };
            exporters.insert(
                id.clone(),
                ExporterSlot {
                    config: ec.clone(),
                    exporter,
                },
            );
        }

        let mut sources: Vec<(K8sAttributesConfig, Arc<PodSource>)> = Vec::new();
        for (pid, pc) in &config.processors {
            let ProcessorConfig::K8sAttributes(k) = pc else {
                continue;
            };
            if sources.iter().any(|(c, _)| c == k) || !used(&|p| p.processors.contains(pid)) {
                continue;
            }
            let kept = previous
                .and_then(|t| t.sources.iter().find(|(c, _)| c == k))
                .map(|(_, s)| s.clone());
            let source = match kept {
                Some(source) => source,
                None => {
                    let settings =
                        SourceSettings::resolve(k, &pid.to_string(), &|n| std::env::var(n).ok())
                            .and_then(|s| PodSource::start(s, registry))
                            .map_err(|e| anyhow::anyhow!("processors::{pid}: {e:#}"))?;
                    Arc::new(settings)
                }
            };
            sources.push((k.clone(), source));
        }

        let mut pipelines = Vec::with_capacity(config.pipelines.len());
        for (id, pc) in &config.pipelines {
            let name = id.to_string();
            let chain = ProcessorChain(
                pc.processors
                    .iter()
                    .map(|pid| {
                        config
                            .processors
                            .get(pid)
                            .map(|c| (pid.clone(), c.clone()))
                            .ok_or_else(|| anyhow::anyhow!("processors::{pid} is not defined"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            );
            let kept = previous
                .and_then(|t| t.pipelines.iter().find(|p| p.id == *id))
                .map(|p| p.state.clone())
                .filter(|state| state.chain == chain);
            let state = match kept {
                Some(state) => {
                    summary.pipelines_kept.push(name.clone());
                    state
                }
                None => {
                    summary.pipelines_new.push(name.clone());
                    // Each pipeline gets its own processor instances: their
                    // state belongs to the pipeline, as in the collector.
                    let processors = chain
                        .0
                        .iter()
                        .map(|(pid, c)| {
                            match c {
                                ProcessorConfig::K8sAttributes(k) => sources
                                    .iter()
                                    .find(|(c, _)| c == k)
                                    .ok_or_else(|| "no pod metadata source".to_string())
                                    .and_then(|(_, s)| K8sAttributes::new(k, s.metadata()))
                                    .map(|p| Box::new(p) as Box<dyn Processor>),
                                other => other.build(),
                            }
                            .map_err(|e| anyhow::anyhow!("processors::{pid}: {e}"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    Arc::new(PipelineState {
                        chain,
                        processors: Mutex::new(processors),
                        accountant: Mutex::new(Accountant::new()),
                    })
                }
            };
            let candidate = config
                .experiment
                .as_ref()
                .and_then(|e| e.baseline.as_deref())
                .is_some_and(|b| b != name);
            pipelines.push(Pipeline {
                id: id.clone(),
                gauges: PipelineGauges::new(registry, &name, candidate),
                stamp: stamp(config, id),
                name,
                receivers: pc.receivers.clone(),
                mode: pc.mode,
                state,
                exporters: pc
                    .exporters
                    .iter()
                    .filter_map(|e| exporters.get(e).map(|s| s.exporter.clone()))
                    .collect(),
            });
        }

        let experiment = match &config.experiment {
            None => None,
            Some(e) => Some(Experiment {
                id: e.id.clone(),
                baseline: e
                    .baseline
                    .as_deref()
                    .map(ComponentId::parse)
                    .transpose()
                    .map_err(|m| anyhow::anyhow!("experiment: {m}"))?,
                comparator: Mutex::new(
                    Comparator::new(&e.critical_processes)
                        .map_err(|m| anyhow::anyhow!("experiment: {m}"))?,
                ),
            }),
        };

        Ok(Topology {
            receivers,
            exporters,
            pipelines,
            experiment,
            sources,
        })
    }

    /// Pipeline ids, in config order.
    pub fn pipeline_names(&self) -> Vec<String> {
        self.pipelines.iter().map(|p| p.name.clone()).collect()
    }

    /// Run every pipeline that reads from `receiver` on its snapshot, count
    /// the critical processes each keeps visible, compare candidates with
    /// the baseline, export, and report.
    pub fn run_interval(&self, receiver: &ComponentId, snapshot: &Batch) -> IntervalReport {
        let mut outputs: Vec<(&Pipeline, Arc<Batch>, PipelineStats)> = self
            .pipelines
            .iter()
            .filter(|p| p.receivers.contains(receiver))
            .map(|p| {
                let (output, stats) = p.process(snapshot);
                (p, output, stats)
            })
            .collect();

        if let Some(exp) = &self.experiment {
            let mut comparator = exp.comparator.lock().unwrap_or_else(|e| e.into_inner());
            let critical = comparator.critical_identities(snapshot);
            let baseline = exp
                .baseline
                .as_ref()
                .and_then(|b| outputs.iter().position(|(p, ..)| p.id == *b));
            // Without critical processes or a baseline there is nothing to
            // count or compare.
            if !critical.is_empty() || baseline.is_some() {
                let assessed: Vec<Assessment> = outputs
                    .iter()
                    .enumerate()
                    .map(|(i, (_, output, stats))| {
                        let against = baseline
                            .filter(|&b| b != i)
                            .map(|b| (&outputs[b].2, &*outputs[b].1));
                        comparator.assess(&critical, (stats, output), against)
                    })
                    .collect();
                for ((_, _, stats), a) in outputs.iter_mut().zip(assessed) {
                    stats.critical_total = critical.len();
                    stats.critical_visible = a.critical_visible;
                    stats.comparison = a.comparison;
                }
            }
        }

        let mut pipelines = Vec::with_capacity(outputs.len());
        for (p, output, stats) in outputs {
            p.gauges.record(&stats);
            p.export(&output);
            pipelines.push(stats);
        }
        // The baseline leads the report: candidates read against it.
        if let Some(baseline) = self.experiment.as_ref().and_then(|e| e.baseline.as_ref()) {
            let baseline = baseline.to_string();
            pipelines.sort_by_key(|s| s.pipeline != baseline);
        }
        IntervalReport {
            time_unix_nano: snapshot.time_unix_nano,
            receiver: receiver.to_string(),
            scraped_resources: snapshot.resources.len(),
            experiment_id: self.experiment.as_ref().map(|e| e.id.clone()),
            pipelines,
        }
    }

    /// Every distinct exporter of the pipelines reading from `receiver`.
    pub(super) fn exporters_of(&self, receiver: &ComponentId) -> Vec<Arc<dyn Exporter>> {
        let mut out: Vec<Arc<dyn Exporter>> = Vec::new();
        for p in self
            .pipelines
            .iter()
            .filter(|p| p.receivers.contains(receiver))
        {
            for e in &p.exporters {
                if !out.iter().any(|o| Arc::ptr_eq(o, e)) {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// Exporters of `self` that `next` does not keep: a reload must drain
    /// them once it has swapped `next` in.
    pub(super) fn exporters_dropped_by(
        &self,
        next: &Topology,
    ) -> Vec<(ComponentId, Arc<dyn Exporter>)> {
        self.exporters
            .iter()
            .filter(|(_, slot)| {
                !next
                    .exporters
                    .values()
                    .any(|n| Arc::ptr_eq(&n.exporter, &slot.exporter))
            })
            .map(|(id, slot)| (id.clone(), slot.exporter.clone()))
            .collect()
    }
}

/// `phoenix.pipeline`, and inside an experiment `phoenix.experiment.id` and
/// `phoenix.variant` (the pipeline's name part), stamped on every resource.
/// A block without a baseline is no trial (a promoted config that only
/// names the critical processes to count): its exports carry no
/// experiment attributes.
fn stamp(config: &AgentConfig, id: &ComponentId) -> Vec<KeyValue> {
    let mut stamp = vec![KeyValue::new(
        semconv::PHOENIX_PIPELINE.into(),
        Value::Str(id.to_string().into()),
    )];
    if let Some(exp) = config.experiment.as_ref().filter(|e| e.baseline.is_some()) {
        stamp.push(KeyValue::new(
            semconv::PHOENIX_EXPERIMENT_ID.into(),
            Value::Str(exp.id.as_str().into()),
        ));
        stamp.push(KeyValue::new(
            semconv::PHOENIX_VARIANT.into(),
            Value::Str(id.name().unwrap_or(id.kind()).into()),
        ));
    }
    stamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::accounting::tests::workers_and_postgres;

    /// Build a config whose `metrics/promoted` exports everything (to a
    /// file in a directory of its own, `test` naming it) and whose
    /// `metrics/lossy` (a shadow) filters postgres out, run one interval on
    /// a scrape of two workers and a postgres, and clean up.
    async fn run(test: &str, experiment: &str) -> IntervalReport {
        let dir =
            std::env::temp_dir().join(format!("phoenix-topology-{test}-{}", std::process::id()));
        let text = format!(
            "receivers:
  procfs: {{}}
processors:
  filter/no-postgres:
    exclude: {{ attributes: [{{ key: process.executable.name, value: postgres }}] }}
exporters:
  file: {{ path: {} }}
service:
  pipelines:
    metrics/promoted: {{ receivers: [procfs], exporters: [file] }}
    metrics/lossy: {{ receivers: [procfs], processors: [filter/no-postgres], mode: shadow }}
{experiment}",
            dir.join("out.jsonl").display()
        );
        let config = AgentConfig::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (topology, _) = Topology::build(&config, None, &Registry::new()).expect("builds");
        let report = topology.run_interval(
            &ComponentId::parse("procfs").unwrap(),
            &workers_and_postgres(),
        );
        for slot in topology.exporters.values() {
            slot.exporter.shutdown(Duration::from_secs(5)).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        report
    }

    fn coverage(report: &IntervalReport, pipeline: &str) -> (usize, usize) {
        let p = report
            .pipelines
            .iter()
            .find(|p| p.pipeline == pipeline)
            .unwrap_or_else(|| panic!("{pipeline} in {report:?}"));
        (p.critical_visible, p.critical_total)
    }

    #[tokio::test]
    async fn every_pipeline_reports_critical_coverage_with_or_without_a_baseline() {
        for (test, baseline) in [
            ("no-baseline", None),
            ("baseline", Some("metrics/promoted")),
        ] {
            let experiment = format!(
                "experiment: {{ id: e, critical_processes: ['^postgres$']{} }}\n",
                baseline.map_or(String::new(), |b| format!(", baseline: {b}"))
            );
            let report = run(test, &experiment).await;
            assert_eq!(report.experiment_id.as_deref(), Some("e"));
            assert_eq!(
                coverage(&report, "metrics/promoted"),
                (1, 1),
                "{experiment}"
            );
            assert_eq!(coverage(&report, "metrics/lossy"), (0, 1), "{experiment}");
            // The baseline leads and is not compared; without one, nothing is.
            assert!(report.pipelines[0].comparison.is_none(), "{experiment}");
            let lossy = report
                .pipelines
                .iter()
                .find(|p| p.pipeline == "metrics/lossy");
            let compared = lossy.and_then(|p| p.comparison.as_ref());
            match baseline {
                None => assert!(compared.is_none(), "no candidate: {report:?}"),
                Some(b) => {
                    assert_eq!(report.pipelines[0].pipeline, b);
                    let c = compared.expect("a candidate");
                    assert_eq!((c.critical_visible, c.critical_total), (0, 1));
                }
            }
        }
    }

    /// The host's resource (`system.process.count`, no process identity)
    /// comes out of every pipeline as it went in: an aggregate would make
    /// it a group of one, a top-k fold it into `others`.
    #[test]
    fn host_resources_go_around_the_processors() {
        let text = "receivers:
  procfs: {}
processors:
  aggregate: {}
  topk: { k: 1, by: process.memory.usage }
exporters:
  console: {}
service:
  pipelines:
    metrics/agg: { receivers: [procfs], processors: [aggregate], exporters: [console] }
    metrics/top: { receivers: [procfs], processors: [topk], exporters: [console] }
";
        let config = AgentConfig::load(text).expect("valid");
        let (topology, _) = Topology::build(&config, None, &Registry::new()).expect("builds");
        let host = Resource {
            attributes: phoenix_processors::Attributes::empty(),
            metrics: workers_and_postgres().resources[0].metrics.clone(),
            identity: None,
        };
        let mut snapshot = workers_and_postgres();
        snapshot.resources.insert(1, host.clone());
        for pipeline in &topology.pipelines {
            let (output, _) = pipeline.process(&snapshot);
            let hosts: Vec<&Resource> = output
                .resources
                .iter()
                .filter(|r| r.attributes.is_empty())
                .collect();
            assert_eq!(hosts, [&host], "{}: {output:?}", pipeline.name());
            assert!(
                output.resources.len() < snapshot.resources.len(),
                "{} reduced the processes",
                pipeline.name()
            );
        }
    }

    #[test]
    fn only_a_trial_stamps_the_experiment_on_what_it_exports() {
        let keys = |experiment: &str| -> Vec<String> {
            let text = format!(
                "receivers: {{ procfs: {{}} }}\nexporters: {{ console: {{}} }}\n\
                 service: {{ pipelines: {{ metrics/lean: {{ receivers: [procfs], exporters: [console] }} }} }}\n{experiment}"
            );
            let config = AgentConfig::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            stamp(&config, &ComponentId::parse("metrics/lean").unwrap())
                .into_iter()
                .map(|kv| kv.key.to_string())
                .collect()
        };
        let trial = keys("experiment: { id: e, baseline: metrics/lean }");
        assert_eq!(trial.len(), 3, "{trial:?}");
        // A promoted config naming only its critical processes exports as
        // any config does.
        let promoted = keys("experiment: { id: e, critical_processes: ['^etcd$'] }");
        assert_eq!(promoted, [semconv::PHOENIX_PIPELINE.to_string()]);
    }

    #[tokio::test]
    async fn no_critical_processes_named_is_zero_of_zero() {
        for (test, experiment) in [
            ("no-experiment", ""),
            ("no-patterns", "experiment: { id: rollout-1 }\n"),
        ] {
            let report = run(test, experiment).await;
            for p in ["metrics/promoted", "metrics/lossy"] {
                assert_eq!(coverage(&report, p), (0, 0), "{experiment:?}");
            }
        }
    }

    #[tokio::test]
    async fn pipelines_share_one_pod_source_per_config_and_a_reload_keeps_it() {
        let text = |refresh: &str, env: &str| {
            format!(
                "receivers: {{ procfs: {{}} }}
processors:
  k8sattributes: {{ auth_type: none, endpoint: 'http://127.0.0.1:9', node_name: n, refresh_interval: {refresh} }}
  k8sattributes/same: {{ auth_type: none, endpoint: 'http://127.0.0.1:9', node_name: n, refresh_interval: {refresh} }}
  k8sattributes/env: {{ auth_type: none, endpoint: 'http://127.0.0.1:9', node_from_env_var: {env} }}
exporters: {{ console: {{}} }}
service:
  pipelines:
    metrics/a: {{ receivers: [procfs], processors: [k8sattributes], exporters: [console] }}
    metrics/b: {{ receivers: [procfs], processors: [k8sattributes/same], exporters: [console] }}
"
            )
        };
        let registry = Registry::new();
        // k8sattributes/env is in no pipeline: not started, its variable not read.
        let config = AgentConfig::load(&text("60s", "PHOENIX_TEST_UNSET_NODE")).unwrap();
        let (first, _) = Topology::build(&config, None, &registry).expect("builds");
        assert_eq!(first.sources.len(), 1, "one source for two equal configs");
        let (again, _) = Topology::build(&config, Some(&first), &registry).expect("builds");
        assert!(Arc::ptr_eq(&first.sources[0].1, &again.sources[0].1));
        let changed = AgentConfig::load(&text("30s", "X")).unwrap();
        let (other, _) = Topology::build(&changed, Some(&again), &registry).expect("builds");
        assert!(!Arc::ptr_eq(&again.sources[0].1, &other.sources[0].1));

        let unset = text("60s", "PHOENIX_TEST_UNSET_NODE").replace(
            "processors: [k8sattributes/same]",
            "processors: [k8sattributes/env]",
        );
        let config = AgentConfig::load(&unset).unwrap();
        let e = Topology::build(&config, None, &registry)
            .err()
            .expect("the node is unknown");
        let e = format!("{e:#}");
        assert!(
            e.contains("processors::k8sattributes/env") && e.contains("PHOENIX_TEST_UNSET_NODE"),
            "{e}"
        );
    }
}

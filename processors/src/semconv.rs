//! OpenTelemetry semantic-convention names (v1.44) used by Phoenix, plus
//! Phoenix's own attributes. One place, so receivers, processors and
//! exporters cannot disagree on a spelling.

// Process metrics.
pub const PROCESS_CPU_TIME: &str = "process.cpu.time";
pub const PROCESS_CPU_UTILIZATION: &str = "process.cpu.utilization";
pub const PROCESS_MEMORY_USAGE: &str = "process.memory.usage";
pub const PROCESS_MEMORY_VIRTUAL: &str = "process.memory.virtual";
pub const PROCESS_DISK_IO: &str = "process.disk.io";
pub const PROCESS_THREAD_COUNT: &str = "process.thread.count";
pub const PROCESS_UNIX_FILE_DESCRIPTOR_COUNT: &str = "process.unix.file_descriptor.count";
pub const PROCESS_CONTEXT_SWITCHES: &str = "process.context_switches";
pub const PROCESS_PAGING_FAULTS: &str = "process.paging.faults";
pub const PROCESS_UPTIME: &str = "process.uptime";
pub const PROCESS_MEMORY_UTILIZATION: &str = "process.memory.utilization";
pub const PROCESS_DISK_OPERATIONS: &str = "process.disk.operations";
/// Signals pending for the process (the Collector's name; semconv has none).
pub const PROCESS_SIGNALS_PENDING: &str = "process.signals_pending";
/// Phoenix's: the soft `RLIMIT_NOFILE`, beside the descriptor count.
pub const PROCESS_UNIX_FILE_DESCRIPTOR_LIMIT: &str = "process.unix.file_descriptor.limit";
/// Phoenix's: proportional, unique and swapped memory from `smaps_rollup`.
pub const PROCESS_MEMORY_PSS: &str = "process.memory.pss";
pub const PROCESS_MEMORY_USS: &str = "process.memory.uss";
pub const PROCESS_MEMORY_SWAP: &str = "process.memory.swap";

// Host metrics the procfs receiver counts in the same pass.
pub const SYSTEM_PROCESS_COUNT: &str = "system.process.count";
pub const SYSTEM_PROCESS_CREATED: &str = "system.process.created";

// Data-point attributes and their values.
pub const CPU_MODE: &str = "cpu.mode";
pub const CPU_MODE_USER: &str = "user";
pub const CPU_MODE_SYSTEM: &str = "system";
/// Time waiting for block I/O (delay accounting), `cpu.mode=wait`.
pub const CPU_MODE_WAIT: &str = "wait";
pub const DISK_IO_DIRECTION: &str = "disk.io.direction";
pub const DISK_IO_DIRECTION_READ: &str = "read";
pub const DISK_IO_DIRECTION_WRITE: &str = "write";
pub const PROCESS_CONTEXT_SWITCH_TYPE: &str = "process.context_switch.type";
pub const CONTEXT_SWITCH_VOLUNTARY: &str = "voluntary";
pub const CONTEXT_SWITCH_INVOLUNTARY: &str = "involuntary";
pub const SYSTEM_PAGING_FAULT_TYPE: &str = "system.paging.fault.type";
pub const PAGING_FAULT_MAJOR: &str = "major";
pub const PAGING_FAULT_MINOR: &str = "minor";
/// The state of a process in `system.process.count`.
pub const PROCESS_STATE: &str = "process.state";

// Resource attributes.
pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_PARENT_PID: &str = "process.parent_pid";
pub const PROCESS_CREATION_TIME: &str = "process.creation.time";
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
pub const PROCESS_COMMAND: &str = "process.command";
pub const PROCESS_COMMAND_LINE: &str = "process.command_line";
pub const PROCESS_OWNER: &str = "process.owner";
pub const HOST_NAME: &str = "host.name";

// Container identity, read from the process's cgroup (resource attributes).
pub const CONTAINER_ID: &str = "container.id";
/// `container.runtime.name`: semconv replaced `container.runtime` with it.
pub const CONTAINER_RUNTIME_NAME: &str = "container.runtime.name";
pub const PROCESS_LINUX_CGROUP: &str = "process.linux.cgroup";

// Kubernetes resource attributes, set by the `k8sattributes` processor from
// the pod that runs a process's container (`container.id` above). The pod
// UID the receiver reads from the cgroup path too.
pub const K8S_POD_NAME: &str = "k8s.pod.name";
pub const K8S_POD_UID: &str = "k8s.pod.uid";
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";
pub const K8S_NODE_NAME: &str = "k8s.node.name";
pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
pub const K8S_REPLICASET_NAME: &str = "k8s.replicaset.name";
pub const K8S_STATEFULSET_NAME: &str = "k8s.statefulset.name";
pub const K8S_DAEMONSET_NAME: &str = "k8s.daemonset.name";
pub const K8S_JOB_NAME: &str = "k8s.job.name";
pub const K8S_CRONJOB_NAME: &str = "k8s.cronjob.name";
/// Prefix of a pod label copied as an attribute (`k8s.pod.label.<key>`).
pub const K8S_POD_LABEL_PREFIX: &str = "k8s.pod.label.";
/// Prefix of a pod annotation copied as an attribute (`k8s.pod.annotation.<key>`).
pub const K8S_POD_ANNOTATION_PREFIX: &str = "k8s.pod.annotation.";

// Phoenix's own resource attributes.
pub const PHOENIX_PIPELINE: &str = "phoenix.pipeline";
pub const PHOENIX_EXPERIMENT_ID: &str = "phoenix.experiment.id";
pub const PHOENIX_VARIANT: &str = "phoenix.variant";
pub const PHOENIX_PRIORITY: &str = "phoenix.priority";
/// Marks a resource that stands for several processes (`others` from top-k
/// and budget); its value says which kind of rollup.
pub const PHOENIX_ROLLUP: &str = "phoenix.rollup";
pub const PHOENIX_ROLLUP_OTHERS: &str = "others";

// Phoenix's own metrics.
/// How many processes a rollup resource (an aggregate group, `others`)
/// stands for: an UpDownCounter, unit `{process}`, integer.
pub const PHOENIX_PROCESS_COUNT: &str = "phoenix.process.count";

// Values of `phoenix.priority`.
pub const PRIORITY_CRITICAL: &str = "critical";
pub const PRIORITY_HIGH: &str = "high";
pub const PRIORITY_MEDIUM: &str = "medium";
pub const PRIORITY_LOW: &str = "low";

/// Instrumentation scope name stamped on everything Phoenix exports.
pub const SCOPE_NAME: &str = "phoenix.receiver.procfs";

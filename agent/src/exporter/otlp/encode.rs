//! Batch → OTLP protobuf messages (`ExportMetricsServiceRequest`).
//!
//! One `ResourceMetrics` per resource, the batch's common attributes merged
//! into each (the resource's own value wins on a clash), one scope.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue as PbKeyValue, any_value,
};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric as PbMetric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use phoenix_processors::model::{
    Attributes, Batch, KeyValue, Metric, MetricKind, Number, Temporality, Value,
};
use phoenix_processors::semconv::SCOPE_NAME;

/// Encode a whole batch as one export request.
pub fn to_request(batch: &Batch) -> ExportMetricsServiceRequest {
    let scope = InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    };
    let resource_metrics = batch
        .resources
        .iter()
        .map(|r| ResourceMetrics {
            resource: Some(PbResource {
                attributes: merged_attributes(&batch.common_attributes, &r.attributes),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope.clone()),
                metrics: r
                    .metrics
                    .iter()
                    .map(|m| encode_metric(m, batch.time_unix_nano))
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn merged_attributes(common: &Attributes, own: &Attributes) -> Vec<PbKeyValue> {
    let mut out = Vec::with_capacity(common.len() + own.len());
    out.extend(
        common
            .iter()
            .filter(|c| own.get(&c.key).is_none())
            .map(encode_kv),
    );
    out.extend(own.iter().map(encode_kv));
    out
}

fn encode_kv(kv: &KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key.to_string(),
        value: Some(AnyValue {
            value: Some(match &kv.value {
                Value::Str(s) => any_value::Value::StringValue(s.to_string()),
                Value::Int(v) => any_value::Value::IntValue(*v),
                Value::Double(v) => any_value::Value::DoubleValue(*v),
                Value::Bool(v) => any_value::Value::BoolValue(*v),
            }),
        }),
        key_strindex: 0,
    }
}

fn encode_metric(m: &Metric, time_unix_nano: u64) -> PbMetric {
    let points: Vec<NumberDataPoint> = m
        .points
        .iter()
        .map(|p| NumberDataPoint {
            attributes: p.attributes.iter().map(encode_kv).collect(),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(match p.value {
                Number::Int(v) => number_data_point::Value::AsInt(v),
                Number::Double(v) => number_data_point::Value::AsDouble(v),
            }),
        })
        .collect();
    let data = match m.desc.kind {
        MetricKind::Gauge => metric::Data::Gauge(Gauge {
            data_points: points,
        }),
        MetricKind::Sum {
            monotonic,
            temporality,
        } => metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: match temporality {
                Temporality::Cumulative => AggregationTemporality::Cumulative,
                Temporality::Delta => AggregationTemporality::Delta,
            } as i32,
            is_monotonic: monotonic,
        }),
    };
    PbMetric {
        name: m.desc.name.to_string(),
        description: m.desc.description.to_string(),
        unit: m.desc.unit.to_string(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

/// Protobuf wire encoding of [`to_request`]'s message straight from the
/// model, without building the intermediate prost structs (no `String`
/// copies, no per-point allocations): what the OTLP protobuf exporters send
/// and what the pipeline accounting measures. Decodes to exactly
/// `to_request(batch)` (tested).
pub fn encode_request(batch: &Batch, buf: &mut Vec<u8>) {
    buf.reserve(encoded_len(batch));
    let scope_len = scope_len();
    for r in &batch.resources {
        let rm_len = resource_metrics_len(batch, r, scope_len);
        wire::key(1, LEN, buf);
        wire::varint(rm_len as u64, buf);
        // ResourceMetrics.resource = 1
        let res_len = resource_len(&batch.common_attributes, &r.attributes);
        wire::key(1, LEN, buf);
        wire::varint(res_len as u64, buf);
        for kv in merged(&batch.common_attributes, &r.attributes) {
            write_kv(1, kv, buf);
        }
        // ResourceMetrics.scope_metrics = 2
        let sm_len = scope_metrics_len(r, scope_len, batch.time_unix_nano);
        wire::key(2, LEN, buf);
        wire::varint(sm_len as u64, buf);
        // ScopeMetrics.scope = 1
        wire::key(1, LEN, buf);
        wire::varint(scope_len as u64, buf);
        wire::string(1, SCOPE_NAME, buf);
        wire::string(2, env!("CARGO_PKG_VERSION"), buf);
        // ScopeMetrics.metrics = 2
        for m in &r.metrics {
            wire::key(2, LEN, buf);
            wire::varint(metric_len(m, batch.time_unix_nano) as u64, buf);
            write_metric(m, batch.time_unix_nano, buf);
        }
    }
}

/// Exact size of [`encode_request`]'s output, computed without encoding.
pub fn encoded_len(batch: &Batch) -> usize {
    let scope_len = scope_len();
    batch
        .resources
        .iter()
        .map(|r| wire::field_len(resource_metrics_len(batch, r, scope_len)))
        .sum()
}

const LEN: u32 = 2;

/// The batch's common attributes a resource does not override, then the
/// resource's own, as [`to_request`] merges them.
fn merged<'a>(common: &'a Attributes, own: &'a Attributes) -> impl Iterator<Item = &'a KeyValue> {
    common
        .iter()
        .filter(move |c| own.get(&c.key).is_none())
        .chain(own.iter())
}

fn scope_len() -> usize {
    wire::string_len(SCOPE_NAME) + wire::string_len(env!("CARGO_PKG_VERSION"))
}

fn resource_len(common: &Attributes, own: &Attributes) -> usize {
    merged(common, own)
        .map(|kv| wire::field_len(kv_len(kv)))
        .sum()
}

fn resource_metrics_len(
    batch: &Batch,
    r: &phoenix_processors::model::Resource,
    scope_len: usize,
) -> usize {
    wire::field_len(resource_len(&batch.common_attributes, &r.attributes))
        + wire::field_len(scope_metrics_len(r, scope_len, batch.time_unix_nano))
}

fn scope_metrics_len(
    r: &phoenix_processors::model::Resource,
    scope_len: usize,
    time: u64,
) -> usize {
    wire::field_len(scope_len)
        + r.metrics
            .iter()
            .map(|m| wire::field_len(metric_len(m, time)))
            .sum::<usize>()
}

fn any_value_len(v: &Value) -> usize {
    match v {
        Value::Str(s) => wire::field_len(s.len()),
        // Key and one varint byte, for true and false alike.
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + wire::varint_len(*i as u64),
        Value::Double(_) => 1 + 8,
    }
}

fn kv_len(kv: &KeyValue) -> usize {
    wire::string_len(&kv.key) + wire::field_len(any_value_len(&kv.value))
}

fn write_kv(tag: u32, kv: &KeyValue, buf: &mut Vec<u8>) {
    wire::key(tag, LEN, buf);
    wire::varint(kv_len(kv) as u64, buf);
    wire::string(1, &kv.key, buf);
    wire::key(2, LEN, buf);
    wire::varint(any_value_len(&kv.value) as u64, buf);
    // A oneof member is written even when it holds its type's default.
    match &kv.value {
        Value::Str(s) => {
            wire::key(1, LEN, buf);
            wire::varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bool(b) => {
            wire::key(2, 0, buf);
            wire::varint(u64::from(*b), buf);
        }
        Value::Int(i) => {
            wire::key(3, 0, buf);
            wire::varint(*i as u64, buf);
        }
        Value::Double(d) => {
            wire::key(4, 1, buf);
            buf.extend_from_slice(&d.to_le_bytes());
        }
    }
}

fn point_len(p: &phoenix_processors::model::Point, time: u64) -> usize {
    p.attributes
        .iter()
        .map(|kv| wire::field_len(kv_len(kv)))
        .sum::<usize>()
        + if p.start_time_unix_nano != 0 {
            1 + 8
        } else {
            0
        }
        + if time != 0 { 1 + 8 } else { 0 }
        + 1
        + 8
}

fn write_point(p: &phoenix_processors::model::Point, time: u64, buf: &mut Vec<u8>) {
    for kv in p.attributes.iter() {
        write_kv(7, kv, buf);
    }
    if p.start_time_unix_nano != 0 {
        wire::key(2, 1, buf);
        buf.extend_from_slice(&p.start_time_unix_nano.to_le_bytes());
    }
    if time != 0 {
        wire::key(3, 1, buf);
        buf.extend_from_slice(&time.to_le_bytes());
    }
    match p.value {
        Number::Double(d) => {
            wire::key(4, 1, buf);
            buf.extend_from_slice(&d.to_le_bytes());
        }
        Number::Int(i) => {
            wire::key(6, 1, buf);
            buf.extend_from_slice(&i.to_le_bytes());
        }
    }
}

/// Length of the Gauge or Sum message holding the metric's points.
fn data_len(m: &Metric, time: u64) -> usize {
    let points: usize = m
        .points
        .iter()
        .map(|p| wire::field_len(point_len(p, time)))
        .sum();
    match m.desc.kind {
        MetricKind::Gauge => points,
        MetricKind::Sum { monotonic, .. } => points + 2 + if monotonic { 2 } else { 0 },
    }
}

fn metric_len(m: &Metric, time: u64) -> usize {
    wire::string_len(&m.desc.name)
        + wire::string_len(&m.desc.description)
        + wire::string_len(&m.desc.unit)
        + wire::field_len(data_len(m, time))
}

fn write_metric(m: &Metric, time: u64, buf: &mut Vec<u8>) {
    wire::string(1, &m.desc.name, buf);
    wire::string(2, &m.desc.description, buf);
    wire::string(3, &m.desc.unit, buf);
    let data_tag = match m.desc.kind {
        MetricKind::Gauge => 5,
        MetricKind::Sum { .. } => 7,
    };
    wire::key(data_tag, LEN, buf);
    wire::varint(data_len(m, time) as u64, buf);
    for p in &m.points {
        wire::key(1, LEN, buf);
        wire::varint(point_len(p, time) as u64, buf);
        write_point(p, time, buf);
    }
    if let MetricKind::Sum {
        monotonic,
        temporality,
    } = m.desc.kind
    {
        let t = match temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as u64;
        wire::key(2, 0, buf);
        wire::varint(t, buf);
        if monotonic {
            wire::key(3, 0, buf);
            wire::varint(1, buf);
        }
    }
}

/// The few protobuf wire primitives the encoder needs.
mod wire {
    pub fn varint(mut v: u64, buf: &mut Vec<u8>) {
        while v >= 0x80 {
            buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        buf.push(v as u8);
    }

    pub fn varint_len(v: u64) -> usize {
        // 1 byte per 7 bits, at least one byte.
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    pub fn key(tag: u32, wire_type: u32, buf: &mut Vec<u8>) {
        varint(u64::from(tag << 3 | wire_type), buf);
    }

    /// Size of a length-delimited field whose payload is `len` bytes (every
    /// tag of the OTLP messages written here is below 16: one key byte).
    pub fn field_len(len: usize) -> usize {
        1 + varint_len(len as u64) + len
    }

    /// A string field; proto3 omits empty strings.
    pub fn string(tag: u32, s: &str, buf: &mut Vec<u8>) {
        if !s.is_empty() {
            key(tag, 2, buf);
            varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
    }

    pub fn string_len(s: &str) -> usize {
        if s.is_empty() { 0 } else { field_len(s.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_processors::model::{MetricDesc, Point, Resource};
    use smallvec::smallvec;
    use std::sync::Arc;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue::new(k.into(), v)
    }

    fn sample_batch() -> Batch {
        let desc = Arc::new(MetricDesc {
            name: "process.cpu.time".into(),
            description: "CPU".into(),
            unit: "s".into(),
            kind: MetricKind::COUNTER,
        });
        Batch {
            time_unix_nano: 42,
            common_attributes: Attributes::new(vec![
                kv("host.name", Value::Str("h".into())),
                kv("process.pid", Value::Int(0)),
            ]),
            resources: vec![Resource {
                identity: None,
                attributes: Attributes::new(vec![kv("process.pid", Value::Int(7))]),
                metrics: vec![Metric {
                    desc,
                    points: smallvec![Point {
                        attributes: Attributes::new(vec![kv(
                            "cpu.mode",
                            Value::Str("user".into())
                        )]),
                        start_time_unix_nano: 10,
                        value: Number::Double(1.5),
                    }],
                }],
            }],
        }
    }

    #[test]
    fn encodes_kinds_temporality_and_merged_attributes() {
        let req = to_request(&sample_batch());
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs.len(), 2, "own process.pid replaces the common one");
        assert_eq!(attrs[0].key, "host.name");
        assert_eq!(
            attrs[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(7))
        );
        let m = &rm.scope_metrics[0].metrics[0];
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!("expected a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points[0].time_unix_nano, 42);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
    }

    #[test]
    fn direct_encoding_decodes_to_the_same_request() {
        use prost::Message;
        let mut batch = sample_batch();
        // Every value kind, an empty description, a gauge, a delta sum.
        batch.resources[0].attributes = Attributes::new(vec![
            kv("s", Value::Str("x".repeat(200).into())),
            kv("i", Value::Int(-5)),
            kv("d", Value::Double(0.25)),
            kv("b", Value::Bool(false)),
            kv("t", Value::Bool(true)),
        ]);
        let mut gauge = batch.resources[0].metrics[0].clone();
        gauge.desc = Arc::new(MetricDesc {
            name: "g".into(),
            description: "".into(),
            unit: "1".into(),
            kind: MetricKind::Gauge,
        });
        gauge.points[0].value = Number::Int(i64::MIN);
        gauge.points[0].start_time_unix_nano = 0;
        batch.resources[0].metrics.push(gauge);
        let mut delta = batch.resources[0].metrics[0].clone();
        delta.desc = Arc::new(MetricDesc {
            kind: MetricKind::Sum {
                monotonic: false,
                temporality: Temporality::Delta,
            },
            ..(*delta.desc).clone()
        });
        batch.resources[0].metrics.push(delta);
        batch.resources.push(batch.resources[0].clone());

        let mut buf = Vec::new();
        encode_request(&batch, &mut buf);
        assert_eq!(buf.len(), encoded_len(&batch));
        let decoded = ExportMetricsServiceRequest::decode(buf.as_slice()).expect("valid protobuf");
        assert_eq!(decoded, to_request(&batch));
        assert_eq!(buf.len(), to_request(&batch).encoded_len());
    }
}

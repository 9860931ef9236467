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

#[cfg(test)]
mod tests {
    use super::*;
    use phoenix_processors::model::{MetricDesc, Point, Resource};
    use smallvec::smallvec;
    use std::sync::Arc;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue::new(k.into(), v)
    }

    #[test]
    fn encodes_kinds_temporality_and_merged_attributes() {
        let desc = Arc::new(MetricDesc {
            name: "process.cpu.time".into(),
            description: "CPU".into(),
            unit: "s".into(),
            kind: MetricKind::COUNTER,
        });
        let batch = Batch {
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
        };
        let req = to_request(&batch);
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
}

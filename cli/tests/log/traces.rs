//! OpenTelemetry end to end: the gateway, the relay and a projection worker, each its own
//! process exporting OTLP/HTTP to a receiver in this test that decodes the protobuf requests.
//! One HTTP command's trace must hold spans from all three, joined as the semantic
//! conventions say: server span → command → append; the relay's `create` span a child of the
//! command (its `publish` span linked to it); the worker's `process` span a child of the
//! `create` span named by the record's `traceparent`, with the projection's `apply` inside.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

use super::*;

#[derive(Debug, Clone)]
struct ReceivedSpan {
    service: String,
    resource: HashMap<String, String>,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    links: Vec<(String, String)>,
    attributes: HashMap<String, String>,
}

/// Listens for OTLP/HTTP protobuf exports; returns the endpoint and what arrived.
async fn receiver() -> (String, Arc<Mutex<Vec<ReceivedSpan>>>) {
    let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
    let store = spans.clone();
    let router = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).unwrap();
                let mut received = store.lock().unwrap();
                for resource in request.resource_spans {
                    let attributes: HashMap<String, String> = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.clone())
                        .filter_map(|a| match a.value?.value? {
                            AnyValue::StringValue(s) => Some((a.key, s)),
                            _ => None,
                        })
                        .collect();
                    let service = attributes.get("service.name").cloned().unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        received.push(ReceivedSpan {
                            service: service.clone(),
                            resource: attributes.clone(),
                            name: span.name,
                            kind: span.kind,
                            trace_id: hex::encode(&span.trace_id),
                            span_id: hex::encode(&span.span_id),
                            parent_span_id: hex::encode(&span.parent_span_id),
                            links: span
                                .links
                                .iter()
                                .map(|l| (hex::encode(&l.trace_id), hex::encode(&l.span_id)))
                                .collect(),
                            attributes: span
                                .attributes
                                .into_iter()
                                .filter_map(|a| {
                                    let value = match a.value?.value? {
                                        AnyValue::StringValue(s) => s,
                                        AnyValue::IntValue(i) => i.to_string(),
                                        AnyValue::BoolValue(b) => b.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    Some((a.key, value))
                                })
                                .collect(),
                        });
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (endpoint, spans)
}

// OTLP span kinds.
const SERVER: i32 = 2;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

#[tokio::test]
async fn one_commands_trace_spans_the_gateway_the_relay_and_a_worker() {
    let stack = Stack::start().await;
    let (endpoint, spans) = receiver().await;
    // Export within a fraction of a second instead of the default 5 s.
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let port = free_port();
    let spawn = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        stack.spawn_with(name, args, &[&otel[..], extra].concat())
    };
    let listen = format!("127.0.0.1:{port}");
    let gateway = spawn(
        "gateway",
        &["serve"],
        &[
            ("PLASMA_LISTEN", &listen),
            ("PLASMA_PROJECTIONS", "external"),
        ],
    );
    let _relay = spawn("relay", &["relay"], &[]);
    let worker = spawn("projector", &["project", "--read-model", "brands"], &[]);
    wait_for_log(&gateway, "serving on").await;

    // The caller's own trace context: the gateway continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let token = stack.admin_token();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{listen}/v1/brands"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"name": "Acme", "keywords": ["acme"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // Wait for the worker's apply span of this trace (the last link of the chain).
    let deadline = Instant::now() + Duration::from_secs(60);
    let trace = loop {
        let trace: Vec<ReceivedSpan> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        if trace.iter().any(|s| s.name == "apply brands") {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "the trace never reached the worker's apply span; got {trace:#?}\n--- gateway\n{}\n--- projector\n{}",
            gateway.output(),
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Whether `span` lies under `ancestor` (handlers' own spans may sit in between).
    let under = |span: &ReceivedSpan, ancestor: &ReceivedSpan| {
        let mut parent = span.parent_span_id.clone();
        while let Some(next) = trace.iter().find(|s| s.span_id == parent) {
            if next.span_id == ancestor.span_id {
                return true;
            }
            parent = next.parent_span_id.clone();
        }
        false
    };
    let one = |name: &str| {
        let found: Vec<&ReceivedSpan> = trace.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "{name} in {trace:#?}");
        found[0]
    };

    let server = one("POST /v1/brands");
    assert_eq!(server.service, "plasma-gateway");
    assert_eq!(server.kind, SERVER);
    assert_eq!(
        server.parent_span_id, caller_span,
        "continues the caller's trace"
    );
    assert_eq!(server.attributes["http.route"], "/v1/brands");
    assert_eq!(server.attributes["http.request.method"], "POST");
    assert_eq!(server.attributes["http.response.status_code"], "201");
    assert_eq!(server.attributes["plasma.tenant"], "acme");

    let command = one("command Brand");
    assert!(under(command, server));
    let append = one("append");
    assert!(under(append, command));
    assert_eq!(append.attributes["db.system.name"], "postgresql");

    let create = one("create plasma.brand.events");
    assert_eq!(create.service, "plasma-relay");
    assert_eq!(create.kind, PRODUCER);
    assert_eq!(create.parent_span_id, command.span_id);
    assert_eq!(create.attributes["messaging.system"], "kafka");
    assert_eq!(
        create.attributes["messaging.destination.name"],
        "plasma.brand.events"
    );
    assert!(create
        .attributes
        .contains_key("messaging.destination.partition.id"));
    // The batch's publish span is its own trace, linked to every record it carried.
    let publish = spans
        .lock()
        .unwrap()
        .iter()
        .find(|s| {
            s.name == "publish" && s.links.contains(&(trace_id.into(), create.span_id.clone()))
        })
        .cloned()
        .expect("a publish span linked to the create span");
    assert_eq!(publish.service, "plasma-relay");
    assert_eq!(publish.kind, PRODUCER);

    let process = one("process brands");
    assert_eq!(process.service, "plasma-projector");
    assert_eq!(process.kind, CONSUMER);
    assert_eq!(
        process.parent_span_id, create.span_id,
        "parented by the record's traceparent"
    );
    let apply = one("apply brands");
    assert_eq!(apply.parent_span_id, process.span_id);

    // OTEL_RESOURCE_ATTRIBUTES reaches every process's resource.
    for span in &trace {
        assert_eq!(
            span.resource
                .get("deployment.environment.name")
                .map(String::as_str),
            Some("test"),
            "{span:?}"
        );
    }
}

/// The rotel collector installed by scripts/install-deps.sh.
fn rotel_agent() -> PathBuf {
    let dir = std::env::var_os("PLASMA_ROTEL_DIR").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/plasma/tools/rotel-0.0.1a15")
        },
        PathBuf::from,
    );
    let agent = dir.join("rotel/rotel-agent");
    assert!(
        agent.exists(),
        "{} is missing: run scripts/install-deps.sh",
        agent.display()
    );
    agent
}

/// OTLP over gRPC to a real collector (rotel, which prints what it receives), from `plasma dev`
/// with JSON logs: the trace arrives with its service name, and the log line of the command
/// carries the trace id the caller sent and the tenant.
#[tokio::test]
async fn grpc_export_reaches_a_real_collector_and_json_logs_carry_the_trace() {
    let logs = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let collector_log = logs.path().join("rotel.log");
    let collector = Command::new(rotel_agent())
        .args([
            "start",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http}"),
        ])
        .stdout(std::fs::File::create(&collector_log).unwrap())
        .stderr(std::fs::File::create(logs.path().join("rotel.err")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _collector = Proc {
        name: "rotel".into(),
        child: Some(collector),
        log: collector_log.clone(),
    };

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let dev_log = logs.path().join("dev.log");
    let dev = Command::new(env!("CARGO_BIN_EXE_plasma"))
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{grpc}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("PLASMA_LOG_FORMAT", "json")
        .env("PLASMA_LOG", "info,plasma_gateway=debug,sqlx=warn")
        .env("PLASMA_EMBEDDERS", "none")
        .env_remove("PLASMA_CONFIG")
        .stdout(std::fs::File::create(&dev_log).unwrap())
        .stderr(std::fs::File::create(logs.path().join("dev.err")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let dev = Proc {
        name: "plasma dev".into(),
        child: Some(dev),
        log: dev_log.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let printed = std::fs::read_to_string(&dev_log).unwrap_or_default();
        let serving = std::fs::read_to_string(logs.path().join("dev.err"))
            .unwrap_or_default()
            .contains("\"message\":\"serving\"");
        if let (Some(line), true) = (
            printed
                .lines()
                .find(|l| l.starts_with("export PLASMA_TOKEN=")),
            serving,
        ) {
            break line.trim_start_matches("export PLASMA_TOKEN=").to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "plasma dev did not start: {printed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/brands"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = std::fs::read_to_string(&collector_log).unwrap_or_default();
        if received.contains("command Brand") && received.contains("apply brands") {
            assert!(
                received.contains("service.name: Str(plasma-dev)"),
                "{received}"
            );
            assert!(received.contains(trace_id), "{received}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector never got the trace:\n{received}\n--- dev\n{}",
            std::fs::read_to_string(logs.path().join("dev.err")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let json_logs = std::fs::read_to_string(logs.path().join("dev.err")).unwrap();
    let handled: Value = json_logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "command handled")
        .unwrap_or_else(|| panic!("no `command handled` line in\n{json_logs}"));
    assert_eq!(handled["trace_id"], trace_id, "{handled}");
    assert_eq!(handled["tenant"], "demo", "{handled}");
    assert_eq!(
        handled["span_id"].as_str().map(str::len),
        Some(16),
        "{handled}"
    );
    drop(dev);
}

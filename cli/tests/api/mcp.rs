//! The tool registry over MCP, driven by the official MCP Python SDK (PyPI `mcp` 2.3.0,
//! installed by scripts/install-mcp-client.sh): over streamable HTTP at `/v1/mcp` with the
//! gateway's bearer tokens, and over stdio from `plasma mcp`. Calls are tenant-scoped, a role
//! without write access cannot call a write tool, and no token gets no answer.

use std::path::PathBuf;
use std::process::Command;

use plasma_gateway::Role;
use serde_json::{json, Value};

use crate::helpers::{accepted, spawn_app, spawn_app_with, Backend, TestApp};

fn python() -> PathBuf {
    let tools = std::env::var_os("PLASMA_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/plasma/tools")
        });
    let python = tools.join("venv-mcp/bin/python");
    assert!(
        python.exists(),
        "the MCP client is missing: run scripts/install-mcp-client.sh (scripts/test.sh does)"
    );
    python
}

fn client() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py")
}

/// Runs the Python client; its one JSON line.
async fn run_client(args: Vec<String>, env: Vec<(String, String)>) -> Value {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(client())
            .args(&args)
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or_else(|_| {
        panic!(
            "the MCP client printed no JSON:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

async fn over_http(app: &TestApp, token: &str, tool: &str, args: Value) -> Value {
    run_client(
        vec![
            "http".into(),
            app.url("/v1/mcp"),
            token.into(),
            tool.into(),
            args.to_string(),
        ],
        Vec::new(),
    )
    .await
}

async fn brand_with_a_mention(app: &TestApp, token: &str) -> String {
    let brand = app.register_brand(token, "Acme").await["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post_json(
            &format!("/v1/brands/{brand}/mentions"),
            token,
            &json!({"mentions": [{"source": "news", "external_id": "1", "author": "ana",
                    "text": "Acme rocket skates brake well in the rain",
                    "published_at": "2026-11-20T10:00:00Z"}]}),
        )
        .await;
    let position = accepted(response, 200).await["last_position"]
        .as_i64()
        .unwrap();
    app.read(&format!("/v1/brands/{brand}/mentions"), token, position)
        .await;
    brand
}

async fn mcp_over_http_lists_the_registry_and_calls_tools_as_the_tokens_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = brand_with_a_mention(&app, &token).await;

    let out = over_http(&app, &token, "mentions.search", json!({"brand_id": brand})).await;
    assert_eq!(out["server"], "plasma", "{out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tools.contains(&"draft.publish") && tools.contains(&"research.search"));
    assert_eq!(
        out["schemas"]["mentions.search"]["required"],
        json!(["brand_id"])
    );
    assert_eq!(out["result"]["is_error"], false, "{out}");
    let mentions = &out["result"]["structured"]["mentions"];
    assert_eq!(mentions.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(
        mentions[0]["text"],
        "Acme rocket skates brake well in the rain"
    );

    // Another tenant asking about the same brand id sees nothing of it.
    let other = app.token("globex", &[Role::Admin]);
    let out = over_http(&app, &other, "mentions.search", json!({"brand_id": brand})).await;
    assert_eq!(out["result"]["structured"]["mentions"], json!([]), "{out}");

    // A viewer may read but not write.
    let viewer = app.token("acme", &[Role::Viewer]);
    let out = over_http(
        &app,
        &viewer,
        "draft.approve",
        json!({"draft_id": uuid::Uuid::now_v7(), "approver": "v"}),
    )
    .await;
    assert_eq!(out["result"]["is_error"], true);
    assert!(
        out["result"]["text"][0]
            .as_str()
            .unwrap()
            .contains("needs the commands"),
        "{out}"
    );
    // A tool's own refusal comes back as a tool error, not a protocol failure.
    let out = over_http(&app, &token, "mentions.search", json!({"brand_id": "nope"})).await;
    assert_eq!(out["result"]["is_error"], true, "{out}");

    // Without a valid token the server answers nothing but 401.
    for bad in ["", "not-a-token", &app.expired_token()] {
        let out = over_http(&app, bad, "noop", json!({})).await;
        assert!(out["failure"].is_string(), "{out}");
    }
    let response = app
        .client
        .post(app.url("/v1/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn plasma_mcp_serves_the_registry_on_stdio_for_the_tokens_tenant(backend: Backend) {
    let dir = plasma_testkit::temp_dir();
    let data_dir = dir.path().to_owned();
    let app = spawn_app_with(backend, |layer| {
        layer.store.data_dir = Some(data_dir.clone());
    })
    .await;
    let token = app.admin();
    let brand = brand_with_a_mention(&app, &token).await;
    let out = run_client(
        vec![
            "stdio".into(),
            "mentions.search".into(),
            json!({"brand_id": brand}).to_string(),
            "--".into(),
            env!("CARGO_BIN_EXE_plasma").into(),
            "mcp".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ],
        vec![
            ("PLASMA_TOKEN".into(), token.clone()),
            (
                "PLASMA_JWT_SECRET".into(),
                crate::helpers::TEST_SECRET.into(),
            ),
        ],
    )
    .await;
    assert_eq!(out["server"], "plasma", "{out}");
    assert_eq!(
        out["result"]["structured"]["mentions"][0]["text"],
        "Acme rocket skates brake well in the rain",
        "{out}"
    );
    // A refused token stops `plasma mcp` before it serves anything.
    let out = run_client(
        vec![
            "stdio".into(),
            "noop".into(),
            "{}".into(),
            "--".into(),
            env!("CARGO_BIN_EXE_plasma").into(),
            "mcp".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ],
        vec![
            ("PLASMA_TOKEN".into(), "forged".into()),
            (
                "PLASMA_JWT_SECRET".into(),
                crate::helpers::TEST_SECRET.into(),
            ),
        ],
    )
    .await;
    assert!(out["failure"].is_string(), "{out}");
    drop(dir);
}

plasma_testkit::on_both_backends!(
    mcp_over_http_lists_the_registry_and_calls_tools_as_the_tokens_tenant
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plasma_mcp_on_stdio() {
    plasma_mcp_serves_the_registry_on_stdio_for_the_tokens_tenant(Backend::Sqlite).await;
}

//! The OpenAI-compatible provider against a local server that speaks the chat-completions API
//! as the real services do: the `usage` field, `{"error": {...}}` bodies, 429 with
//! `Retry-After`, 5xx, and the bearer key.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use plasma_adapters::openai::{OpenAiChat, OpenAiSettings};
use plasma_domain::brand::VoiceGuidelines;
use plasma_domain::content::{
    Channel, DraftBrief, GenerationError, GenerationRequest, TextGenerator,
};
use serde_json::{json, Value};

/// What the server does with each request, in turn; the last one repeats.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    TooMany { retry_after: &'static str },
    Unavailable,
    BadRequest,
    Unauthorized,
}

struct Server {
    base: String,
    requests: Arc<Mutex<Vec<(HeaderMap, Value, Instant)>>>,
}

async fn server(script: Vec<Answer>) -> Server {
    let requests: Arc<Mutex<Vec<(HeaderMap, Value, Instant)>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let r = requests.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let (r, calls, script) = (r.clone(), calls.clone(), script.clone());
            async move {
                r.lock().unwrap().push((headers, body.0.clone(), Instant::now()));
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let error = |status: StatusCode, kind: &str, message: &str| {
                    (
                        status,
                        axum::Json(json!({"error": {"message": message, "type": kind, "param": null, "code": null}})),
                    )
                };
                match script[n.min(script.len() - 1)] {
                    Answer::Ok => {
                        let prompt = body.0["messages"].as_array().unwrap().last().unwrap()["content"]
                            .as_str()
                            .unwrap()
                            .to_owned();
                        axum::Json(json!({
                            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1_767_000_000,
                            "model": "local-model-0125",
                            "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": format!("  Echo: {prompt}\n")}}],
                            "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
                        }))
                        .into_response()
                    }
                    Answer::TooMany { retry_after } => {
                        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "Rate limit reached").into_response();
                        response.headers_mut().insert("retry-after", retry_after.parse().unwrap());
                        response
                    }
                    Answer::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The server is overloaded").into_response(),
                    Answer::BadRequest => error(StatusCode::BAD_REQUEST, "invalid_request_error", "The model `x` does not exist").into_response(),
                    Answer::Unauthorized => error(StatusCode::UNAUTHORIZED, "invalid_request_error", "Incorrect API key provided").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { base, requests }
}

fn client(base: &str, retries: u32) -> OpenAiChat {
    OpenAiChat::new(OpenAiSettings {
        base_url: base.to_owned(),
        model: "local-model".to_owned(),
        api_key: Some("sk-test".to_owned()),
        timeout: Duration::from_secs(5),
        max_retries: retries,
        max_retry_after: Duration::from_secs(2),
    })
    .unwrap()
}

fn prompt(text: &str) -> GenerationRequest {
    GenerationRequest {
        system: Some("Be brief.".into()),
        prompt: text.into(),
        max_tokens: Some(50),
        draft: None,
        seed: None,
        stop: Vec::new(),
    }
}

#[tokio::test]
async fn a_completion_carries_text_model_usage_and_the_key() {
    let s = server(vec![Answer::Ok]).await;
    let generation = client(&s.base, 0).generate(&prompt("hello")).await.unwrap();
    assert_eq!(generation.text, "Echo: hello");
    assert_eq!(generation.provider, "openai");
    assert_eq!(generation.model, "local-model-0125");
    assert_eq!(
        (
            generation.usage.prompt_tokens,
            generation.usage.completion_tokens
        ),
        (21, 4)
    );
    let requests = s.requests.lock().unwrap();
    let (headers, body, _) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "local-model");
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
}

#[tokio::test]
async fn a_draft_prompt_carries_the_brand_voice_and_the_channel_limit() {
    let s = server(vec![Answer::Ok]).await;
    let request = GenerationRequest {
        draft: Some(DraftBrief {
            brand: "Acme".into(),
            brief: "Launch day".into(),
            channel: Channel::Twitter,
            voice: VoiceGuidelines {
                tone: "warm".into(),
                banned_words: vec!["cheap".into()],
                required_phrases: vec!["Skate safe".into()],
            },
            feedback: vec!["lacks the required phrase `Skate safe`".into()],
        }),
        ..GenerationRequest::default()
    };
    client(&s.base, 0).generate(&request).await.unwrap();
    let body = s.requests.lock().unwrap()[0].1.clone();
    let system = body["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Tone: warm"), "{system}");
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.starts_with("Brief: Launch day")
            && user.contains("\"cheap\"")
            && user.contains("At most 280 characters")
            && user.contains("Skate safe"),
        "{user}"
    );
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_5xx_with_backoff() {
    let s = server(vec![
        Answer::TooMany { retry_after: "1" },
        Answer::Unavailable,
        Answer::Ok,
    ])
    .await;
    let generation = client(&s.base, 3).generate(&prompt("again")).await.unwrap();
    assert_eq!(generation.text, "Echo: again");
    let requests = s.requests.lock().unwrap();
    assert_eq!(requests.len(), 3);
    let waited = requests[1].2 - requests[0].2;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
}

#[tokio::test]
async fn retries_run_out_as_a_transient_failure_quoting_the_server() {
    let s = server(vec![Answer::TooMany { retry_after: "0" }]).await;
    let err = client(&s.base, 2).generate(&prompt("x")).await.unwrap_err();
    assert_eq!(
        err,
        GenerationError::Transient("HTTP 429: Rate limit reached (after 2 retries)".into())
    );
    assert_eq!(s.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_4xx_is_final_at_once_with_the_servers_message() {
    for (answer, expected) in [
        (Answer::BadRequest, "HTTP 400: The model `x` does not exist"),
        (Answer::Unauthorized, "HTTP 401: Incorrect API key provided"),
    ] {
        let s = server(vec![answer]).await;
        let err = client(&s.base, 3).generate(&prompt("x")).await.unwrap_err();
        assert_eq!(err, GenerationError::Terminal(expected.into()));
        assert_eq!(s.requests.lock().unwrap().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let err = client(&base, 1).generate(&prompt("x")).await.unwrap_err();
    assert!(matches!(err, GenerationError::Transient(m) if m.contains("cannot reach")));
}

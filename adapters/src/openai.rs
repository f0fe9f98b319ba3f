//! An OpenAI-compatible chat-completions client: the `openai` text-generation provider.
//!
//! `POST {base_url}/chat/completions` with the model and a system and a user message (and the
//! request's `max_tokens`, `stop` and `seed`). A 429 or a 5xx is retried (up to `max_retries`
//! times) after the server's `Retry-After` (seconds, capped) or an exponential backoff; a timeout
//! or a connection failure is retried too. Any other 4xx is final and reports the server's
//! `error.message` (a prompt longer than the model's context is one). Usage comes from the
//! response's `usage`.
//!
//! Streamed (`generate_streaming`), the request asks for server-sent events and the usage in the
//! last one (`stream_options.include_usage`); each `delta.content` goes to the sink as it
//! arrives (a server that answers a streamed request whole is read whole and its text handed
//! over in one piece). A server that sends no usage gets its content events counted as completion tokens
//! (one token per event is how llama.cpp's servers stream) and 0 prompt tokens. A stream that
//! breaks before `[DONE]` is a transient failure.

use std::time::Duration;

use async_trait::async_trait;
use plasma_domain::content::{
    Generation, GenerationError, GenerationRequest, TextGenerator, TextSink, Usage,
};
use serde_json::{json, Value};

/// Settings of the client.
#[derive(Clone)]
pub struct OpenAiSettings {
    /// E.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// Per attempt, connection included.
    pub timeout: Duration,
    pub max_retries: u32,
    /// The longest `Retry-After` honoured; longer ones are cut to it.
    pub max_retry_after: Duration,
}

impl std::fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct OpenAiChat {
    settings: OpenAiSettings,
    client: reqwest::Client,
}

impl OpenAiChat {
    pub fn new(settings: OpenAiSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("plasma/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { settings, client })
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.settings.base_url.trim_end_matches('/')
        )
    }

    fn body(&self, request: &GenerationRequest) -> Value {
        let (system, user) = match &request.draft {
            Some(brief) => {
                let (system, user) = brief.prompts();
                (Some(system), user)
            }
            None => (request.system.clone(), request.prompt.clone()),
        };
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": user}));
        let mut body = json!({"model": self.settings.model, "messages": messages});
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        body
    }

    /// The wait before retry number `retry` (1-based): the server's `Retry-After` when given.
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry_after
            .map(|d| d.min(self.settings.max_retry_after))
            .unwrap_or_else(|| Duration::from_millis(250u64 << retry.min(6)))
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The server's own words for an error response, from `{"error": {"message": …}}` when there.
fn error_message(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    format!("HTTP {status}: {message}")
}

impl OpenAiChat {
    async fn complete(
        &self,
        request: &GenerationRequest,
        sink: Option<&dyn TextSink>,
    ) -> Result<Generation, GenerationError> {
        let mut body = self.body(request);
        if sink.is_some() {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut retry = 0;
        loop {
            let mut call = self.client.post(self.url()).json(&body);
            if let Some(key) = &self.settings.api_key {
                call = call.bearer_auth(key);
            }
            let (error, wait) = match call.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let after = retry_after(&response);
                    if (200..300).contains(&status) {
                        let event_stream = response
                            .headers()
                            .get(reqwest::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("text/event-stream"));
                        match sink.filter(|_| event_stream) {
                            Some(sink) => {
                                match read_stream(response, sink, &self.settings.model).await {
                                    Ok(generation) => return Ok(generation),
                                    // Pieces already sent may be sent again by the retry.
                                    Err(error) => (error, None),
                                }
                            }
                            // Unstreamed, or a server that answered a streamed request
                            // whole (some ignore `stream`): the text in one piece.
                            None => {
                                let text = response.text().await.unwrap_or_default();
                                let generation = parse(&text, &self.settings.model)?;
                                if let Some(sink) = sink {
                                    sink.push(&generation.text);
                                }
                                return Ok(generation);
                            }
                        }
                    } else {
                        let text = response.text().await.unwrap_or_default();
                        let error = error_message(status, &text);
                        if status != 429 && status < 500 {
                            return Err(GenerationError::Terminal(error));
                        }
                        (error, after)
                    }
                }
                Err(err) if err.is_timeout() => ("timed out".to_owned(), None),
                Err(err) => (format!("cannot reach the provider: {err}"), None),
            };
            retry += 1;
            if retry > self.settings.max_retries {
                return Err(GenerationError::Transient(format!(
                    "{error} (after {} retries)",
                    self.settings.max_retries
                )));
            }
            tracing::warn!(%error, retry, "text generation failed; retrying");
            tokio::time::sleep(self.delay(retry, wait)).await;
        }
    }
}

/// Reads a chat-completions event stream to its `[DONE]`, handing each piece of text to `sink`.
async fn read_stream(
    mut response: reqwest::Response,
    sink: &dyn TextSink,
    requested_model: &str,
) -> Result<Generation, String> {
    let mut pending: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut model = None;
    let mut usage = None;
    // Servers that ignore `include_usage` (llama-cpp-python 0.3 does) send one token per event:
    // the events stand in for the completion's tokens then; the prompt's stay 0, unknown.
    let mut pieces = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err("the stream ended before [DONE]".into()),
            Err(e) => return Err(format!("the stream broke: {e}")),
        };
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                return Ok(Generation {
                    text: text.trim().to_owned(),
                    provider: "openai".to_owned(),
                    model: model.unwrap_or_else(|| requested_model.to_owned()),
                    usage: usage.unwrap_or(Usage {
                        prompt_tokens: 0,
                        completion_tokens: pieces,
                    }),
                    sampling: None,
                });
            }
            let event: Value = serde_json::from_str(data)
                .map_err(|e| format!("a stream event is not JSON: {e}"))?;
            if let Some(error) = event.pointer("/error/message").and_then(Value::as_str) {
                return Err(format!("the stream reported: {error}"));
            }
            if model.is_none() {
                model = event
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            if let Some(piece) = event
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                text.push_str(piece);
                pieces += 1;
                sink.push(piece);
            }
            if let Some(u) = event.get("usage").filter(|u| u.is_object()) {
                let count = |field: &str| u.get(field).and_then(Value::as_u64).unwrap_or(0);
                usage = Some(Usage {
                    prompt_tokens: count("prompt_tokens"),
                    completion_tokens: count("completion_tokens"),
                });
            }
        }
    }
}

#[async_trait]
impl TextGenerator for OpenAiChat {
    async fn generate(&self, request: &GenerationRequest) -> Result<Generation, GenerationError> {
        self.complete(request, None).await
    }

    async fn generate_streaming(
        &self,
        request: &GenerationRequest,
        sink: &dyn TextSink,
    ) -> Result<Generation, GenerationError> {
        self.complete(request, Some(sink)).await
    }

    fn describe(&self) -> (String, String) {
        ("openai".to_owned(), self.settings.model.clone())
    }
}

fn parse(text: &str, requested_model: &str) -> Result<Generation, GenerationError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| GenerationError::Terminal(format!("the answer is not JSON: {e}")))?;
    let content = value
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GenerationError::Terminal("the answer has no choices[0].message.content".into())
        })?;
    let count = |field: &str| {
        value
            .pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Generation {
        text: content.trim().to_owned(),
        provider: "openai".to_owned(),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(requested_model)
            .to_owned(),
        usage: Usage {
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
        },
        sampling: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_the_server_and_answers_carry_usage() {
        assert_eq!(
            error_message(
                400,
                r#"{"error": {"message": "bad model", "type": "invalid_request_error"}}"#
            ),
            "HTTP 400: bad model"
        );
        let g = parse(
            r#"{"model": "m-1", "choices": [{"message": {"role": "assistant", "content": " hi "}}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}"#,
            "m",
        )
        .unwrap();
        assert_eq!(g.text, "hi");
        assert_eq!(g.model, "m-1");
        assert_eq!(g.usage.prompt_tokens, 5);
        assert!(parse("{}", "m").is_err());
    }
}

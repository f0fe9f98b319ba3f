//! The OpenAI-compatible adapter against a real OpenAI-compatible server no one here wrote:
//! llama-cpp-python's server (scripts/install-llama-server.sh) serving SmolLM2-135M-Instruct
//! (scripts/install-models.sh) on a free loopback port, started and stopped by the test. Chat
//! completions with and without streaming, usage counts, stop sequences, and a prompt beyond
//! the context refused as final. (The failure shapes a real server will not produce on demand,
//! 429 with Retry-After and 5xx, are tested against a local fake in tests/openai.rs.)

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plasma_adapters::embedding::default_models_dir;
use plasma_adapters::openai::{OpenAiChat, OpenAiSettings};
use plasma_domain::content::{GenerationError, GenerationRequest, TextGenerator, TextSink};

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The context the server is started with: small, so one test prompt can exceed it.
const CONTEXT: usize = 512;

fn start() -> Server {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let tools = std::env::var_os("PLASMA_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/plasma/tools"));
    let python = tools.join("venv-llama/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-llama-server.sh",
        python.display()
    );
    let model = std::env::var_os("PLASMA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(default_models_dir)
        .join("smollm2-135m-instruct/model.gguf");
    assert!(model.is_file(), "run scripts/install-models.sh");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args(["--model_alias", "smollm2", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--n_ctx", &CONTEXT.to_string(), "--n_threads", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{port}/v1"),
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "the llama.cpp server exited ({status}):\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        if probe::get_ok(&format!("{}/models", server.base)) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "the llama.cpp server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A tiny blocking probe without reqwest's blocking feature.
mod probe {
    pub fn get_ok(url: &str) -> bool {
        let Some(rest) = url.strip_prefix("http://") else {
            return false;
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut stream) = std::net::TcpStream::connect(host) else {
            return false;
        };
        use std::io::{Read, Write};
        let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }
}

fn client(base: &str) -> OpenAiChat {
    OpenAiChat::new(OpenAiSettings {
        base_url: base.to_owned(),
        model: "smollm2".into(),
        api_key: None,
        timeout: Duration::from_secs(60),
        max_retries: 0,
        max_retry_after: Duration::from_secs(1),
    })
    .unwrap()
}

fn ask(prompt: &str, max_tokens: u32, stop: &[&str]) -> GenerationRequest {
    GenerationRequest {
        system: Some("You are a helpful assistant. Answer briefly.".into()),
        prompt: prompt.into(),
        max_tokens: Some(max_tokens),
        draft: None,
        seed: Some(7),
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl TextSink for Collect {
    fn push(&self, piece: &str) {
        self.0.lock().unwrap().push(piece.to_owned());
    }
}

#[tokio::test]
async fn the_adapter_talks_to_llama_cpps_openai_compatible_server() {
    let server = start();
    let llm = client(&server.base);

    // Without streaming: text, the model's name and usage counts.
    let answer = llm
        .generate(&ask("What is the capital of France?", 24, &[]))
        .await
        .unwrap();
    assert!(!answer.text.is_empty(), "{answer:?}");
    assert_eq!(answer.provider, "openai");
    assert_eq!(answer.model, "smollm2");
    assert!(answer.usage.prompt_tokens > 10, "{answer:?}");
    assert!(
        (1..=24).contains(&answer.usage.completion_tokens),
        "{answer:?}"
    );
    // The seed goes through: the same request, the same text.
    let again = llm
        .generate(&ask("What is the capital of France?", 24, &[]))
        .await
        .unwrap();
    assert_eq!(again.text, answer.text);

    // Streamed: several pieces that make the same text as unstreamed, and usage at the end.
    let sink = Collect::default();
    let streamed = llm
        .generate_streaming(&ask("What is the capital of France?", 24, &[]), &sink)
        .await
        .unwrap();
    let pieces = sink.0.lock().unwrap().clone();
    assert!(pieces.len() > 3, "{pieces:?}");
    assert_eq!(pieces.concat().trim(), streamed.text);
    assert_eq!(streamed.text, answer.text);
    // llama-cpp-python 0.3.36 ignores `stream_options.include_usage`: the adapter counts one
    // token per event, which is how it streams.
    assert_eq!(
        streamed.usage.completion_tokens,
        answer.usage.completion_tokens
    );

    // A stop sequence ends the text before it: the same request cut where its third word was.
    let free = llm
        .generate(&ask("Write a sentence about the sea.", 48, &[]))
        .await
        .unwrap();
    let third = free.text.split_whitespace().nth(2).unwrap().to_owned();
    let stopped = llm
        .generate(&ask("Write a sentence about the sea.", 48, &[&third]))
        .await
        .unwrap();
    let before = &free.text[..free.text.find(&third).unwrap()];
    assert_eq!(
        stopped.text,
        before.trim(),
        "stopped at {third:?}: {free:?}"
    );
    assert!(stopped.usage.completion_tokens < free.usage.completion_tokens);

    // A prompt beyond the context is refused for good, in the server's words.
    let long = "word ".repeat(CONTEXT * 2);
    match llm.generate(&ask(&long, 16, &[])).await {
        Err(GenerationError::Terminal(message)) => {
            assert!(message.starts_with("HTTP 400"), "{message}");
            assert!(message.to_lowercase().contains("context"), "{message}");
        }
        other => panic!("expected a final refusal, got {other:?}"),
    }
    drop(server);
}

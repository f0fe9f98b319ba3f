//! One way to keep a long-running component going: run it until the shutdown signal; when it
//! fails, log the cause chain, wait a backoff (100 ms doubling up to 5 s) and start it again.
//! The in-process projection runners of `plasma dev`/`serve`, `plasma project` and
//! `plasma relay` all run under it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a supervised component ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub component: String,
    /// How often it failed and was started again before the shutdown.
    pub restarts: u32,
}

/// The cause chain of an error, on one line.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Runs `attempt` (one start and run of the component, until it returns) again and again until
/// `shutdown` turns true or an attempt returns `Ok`. `attempt` gets the attempt's number, 0 first.
pub async fn supervise<E, F, Fut>(
    component: impl fmt::Display,
    mut shutdown: watch::Receiver<bool>,
    mut attempt: F,
) -> Exit
where
    E: std::error::Error + 'static,
    F: FnMut(u32, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let component = component.to_string();
    let mut restarts = 0u32;
    loop {
        match attempt(restarts, shutdown.clone()).await {
            Ok(()) => break,
            Err(error) => {
                if *shutdown.borrow() {
                    break;
                }
                restarts += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << (restarts - 1).min(6))
                    .min(MAX_BACKOFF);
                tracing::error!(
                    plasma.component = %component,
                    error.message = %error,
                    error.cause_chain = %cause_chain(&error),
                    restarts,
                    backoff_ms = backoff.as_millis() as u64,
                    "component failed; restarting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    Exit {
        component,
        restarts,
    }
}

/// A shutdown flag that turns true on ctrl-c or SIGTERM.
pub fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error.message = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error.message = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}

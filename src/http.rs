//! `/metrics` (Prometheus text, rendered by metrics-exporter-prometheus) and `/health` (JSON),
//! served by axum on a loopback address by default.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::health::{Health, HealthReport};
use crate::shutdown::Shutdown;

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// (16 bytes each, measured) until then; before this existed only a scrape of `/metrics` folded
/// them, so a relay nobody scraped grew without bound: about 500 samples (fsyncs, HDFS calls)
/// per million events at the e2e bench's settings, some 700 MiB a day at 1M events/s, more
/// with small files.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder once and returns its handle; starts its
/// upkeep.
pub fn recorder() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("static bucket list is non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Folds histogram samples into buckets every `UPKEEP_INTERVAL`, on a thread of its own for
/// the life of the process: the recorder is process-wide and never uninstalled, so this loop
/// never ends. (`install_recorder`, unlike the builder's HTTP listener, starts no upkeep.)
fn spawn_upkeep(handle: PrometheusHandle) {
    std::thread::Builder::new()
        .name("flumen-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        })
        .expect("spawning the metrics upkeep thread");
}

#[derive(Clone)]
struct AppState {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_handler))
        .with_state(AppState {
            metrics: recorder(),
            health,
        })
}

async fn metrics(State(s): State<AppState>) -> String {
    s.metrics.render()
}

async fn health_handler(State(s): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let r = s.health.report();
    let code = if r.status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(r))
}

/// Binds `addr` and serves until the shutdown notice; open requests finish first, and the
/// listener counts as running until the port is closed.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /health");
    // Built here, not in the task: building installs the recorder, and whatever is counted
    // before that is lost (the first rebalance was, when the task started late).
    let app = router(health);
    let running = shutdown.running();
    tokio::spawn(async move {
        let _running = running;
        let stop = async move { shutdown.recv().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

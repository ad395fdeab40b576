//! The lab's routes beside the tracker's: the status page at `/` and the supervisor's state at
//! `/api/world` (the [`WorldStatus`] that `testbed status` reads back), plus the VoD server's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::page;
use crate::lab::api::WorldStatus;
use crate::lab::Orchestrator;
use crate::tracker::Tracker;
use crate::vod::server::VodServer;

/// Every route a testbed serves on its one port: the tracker's API, the page, `/api/world`
/// and the VoD server.
pub fn router(orch: Arc<Orchestrator>, trk: Arc<Tracker>, vod: Arc<VodServer>) -> Router {
    crate::tracker::api_router(trk).merge(
        Router::new()
            .route("/", get(page::handler))
            .route("/api/world", get(api_world))
            .with_state(orch)
            .merge(crate::vod::server::router(vod)),
    )
}

async fn api_world(State(o): State<Arc<Orchestrator>>) -> Result<Json<WorldStatus>, StatusCode> {
    tokio::task::spawn_blocking(move || o.snapshot())
        .await
        .map(Json)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

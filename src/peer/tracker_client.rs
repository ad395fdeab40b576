//! The HTTP tracker client: one announce over HTTP with a timeout. The request and the answer
//! are [`crate::announce::request`]'s, which does no I/O.

use std::time::Duration;

use crate::announce::request::{parse_response, AnnounceResponse};
use crate::announce::Announce;

/// Announce once, with a timeout.
pub async fn announce(
    client: &reqwest::Client,
    announce_url: &str,
    req: &Announce,
) -> anyhow::Result<AnnounceResponse> {
    let url = req.url(announce_url);
    let resp = client
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        anyhow::bail!("tracker answered HTTP {status}");
    }
    Ok(parse_response(&body)?)
}

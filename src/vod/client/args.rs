//! `vod-client`'s command line. The old template's flags are kept (underscores and all), so
//! that the course's scripts run unchanged; `--security` is accepted and ignored.

use std::path::PathBuf;

use clap::Parser;

use crate::policy::{ChokerKind, Policy};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "vod-client",
    version,
    about = "Play a torrent while downloading it; fetch late pieces from the VoD server"
)]
pub struct Args {
    pub torrent: PathBuf,
    /// Where to save the file (default: its name in the current folder)
    #[arg(long)]
    pub saveas: Option<PathBuf>,
    /// Upload cap, KB/s (1 KB = 1024 B); 0 = none
    #[arg(
        long = "max_upload_rate",
        alias = "max-upload-rate",
        default_value_t = 20.0
    )]
    pub max_upload_rate: f64,
    /// Upload slots, the optimistic one included (BitTornado's `--max_uploads`; default 3 for
    /// the deadline policy, 4 otherwise)
    #[arg(long = "max_uploads", alias = "max-uploads")]
    pub max_uploads: Option<usize>,
    /// Accepted for compatibility with the old template; no effect
    #[arg(long)]
    pub security: Option<String>,
    /// Playback rate R, KB/s
    #[arg(long, default_value_t = 60.0)]
    pub rate: f64,
    /// Startup delay D, seconds
    #[arg(long, default_value_t = 6.0)]
    pub delay: f64,
    /// Prefetch P, seconds
    #[arg(long, default_value_t = 2.0)]
    pub prefetch: f64,
    /// VoD server URL for this torrent (e.g. http://127.0.0.1:6970/vod/HASH); none: late pieces are just late
    #[arg(long = "vod-server", alias = "vod_server")]
    pub vod_server: Option<String>,
    /// Report file (JSON), rewritten every second
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Piece picker, with its choker
    #[arg(long, value_enum, default_value_t = Policy::Deadline)]
    pub policy: Policy,
    /// Choker instead of the policy's (window for deadline, tit-for-tat otherwise); tyrant
    /// prices each peer's slot and needs --max_upload_rate
    #[arg(long, value_enum)]
    pub choker: Option<ChokerKind>,
    /// Seed this many seconds after playback ends, then exit
    #[arg(long, default_value_t = 0.0)]
    pub linger: f64,
    /// Name given to the VoD server (default: our peer id)
    #[arg(long)]
    pub client_id: Option<String>,
    /// Announce URL instead of the torrent's
    #[arg(long)]
    pub tracker: Option<String>,
    /// Address to listen on, dial from and announce from (default: any, as other clients do;
    /// in the lab's namespace my client is then 10.77.0.2)
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Log file (default: stderr, warnings only; RUST_LOG overrides)
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Seed of the policy's random choices (default: the lab's seed, which `testbed` exports
    /// as TESTBED_SEED when the config has one, so that a rerun of a seeded experiment makes
    /// the same choices; otherwise fresh each run)
    #[arg(long, env = "TESTBED_SEED")]
    pub rng_seed: Option<u64>,
}

impl Args {
    /// The numbers on the command line make sense (one line naming the flag if not).
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("--rate", self.rate),
            ("--delay", self.delay),
            ("--prefetch", self.prefetch),
            ("--linger", self.linger),
            ("--max_upload_rate", self.max_upload_rate),
        ] {
            if !v.is_finite() || v < 0.0 {
                anyhow::bail!("{name} {v}: must be a non-negative number");
            }
        }
        if self.rate <= 0.0 {
            anyhow::bail!("--rate must be positive");
        }
        if self.max_uploads == Some(0) {
            anyhow::bail!("--max_uploads 0: must be at least 1");
        }
        if self.choker == Some(ChokerKind::Tyrant) && self.max_upload_rate == 0.0 {
            anyhow::bail!(
                "--choker tyrant: it prices each slot out of an upload cap, and --max_upload_rate 0 is none; give a cap or another choker"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["vod-client"];
        v.extend_from_slice(extra);
        v.push("movie.torrent");
        Args::parse_from(v)
    }

    #[test]
    fn old_flags_parse_and_bad_numbers_are_named() {
        let a = args(&["--max_uploads", "2", "--security", "1", "--rate", "5"]);
        assert_eq!((a.max_uploads, a.rate), (Some(2), 5.0));
        assert!(a.check().is_ok());
        assert_eq!(args(&[]).max_uploads, None, "the policy chooses");
        assert_eq!(args(&[]).policy, Policy::Deadline);
        assert_eq!(args(&["--policy", "rarest"]).policy, Policy::Rarest);
        let bad = Args::try_parse_from(["vod-client", "--policy", "fastest", "m.torrent"]);
        assert!(bad.unwrap_err().to_string().contains("fastest"));
        for (flag, v, says) in [
            ("--max_uploads", "0", "--max_uploads 0"),
            ("--rate", "0", "--rate"),
            ("--delay", "-1", "--delay -1"),
            ("--prefetch", "NaN", "--prefetch NaN"),
        ] {
            let e = args(&[&format!("{flag}={v}")])
                .check()
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{flag} {v}: {e}");
        }
        let tyrant = |cap: &str| args(&["--choker", "tyrant", "--max_upload_rate", cap]).check();
        let e = tyrant("0").unwrap_err().to_string();
        assert!(e.contains("--choker tyrant"), "{e}");
        assert!(tyrant("60").is_ok());
    }
}

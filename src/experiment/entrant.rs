//! The contestants of a compare: a built-in policy of `vod-client`, or any my-client command
//! line (with or without the VoD server as a web seed), and the names the tables and
//! `runs.csv` know them by.

use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// One contestant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entrant {
    /// `vod-client --policy P`.
    Policy(Policy),
    /// A my-client command line, run by `sh -c` (placeholders and `TESTBED_*` as in `start`).
    Client(Line),
    /// The same, with the VoD server in my client's torrent as a BEP 19 web seed
    /// (`my_client.web_seed: true`): for a client that fetches from web seeds on its own.
    #[serde(rename = "web-seed-client")]
    WebSeedClient(Line),
}

/// A my-client command line, and the short name the user gave it (`--name`), if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LineForm")]
pub struct Line {
    pub cmd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A line as a Slurm plan holds it: a plain string in plans written before `--name`, which an
/// array still queued across a rebuild reads with the new `testbed`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LineForm {
    Cmd(String),
    Named { cmd: String, name: Option<String> },
}

impl From<LineForm> for Line {
    fn from(f: LineForm) -> Line {
        match f {
            LineForm::Cmd(cmd) => Line { cmd, name: None },
            LineForm::Named { cmd, name } => Line { cmd, name },
        }
    }
}

/// An unnamed line, for the tests' entrants.
#[cfg(test)]
impl From<&str> for Line {
    fn from(cmd: &str) -> Line {
        Line {
            cmd: cmd.into(),
            name: None,
        }
    }
}

impl Entrant {
    /// Its name in the tables, and the key `runs.csv` resumes by: a policy's name, the name
    /// given with `--name`, or else the command line itself.
    pub fn name(&self) -> String {
        match self {
            Entrant::Policy(p) => p.to_string(),
            Entrant::Client(l) => l.name.clone().unwrap_or_else(|| l.cmd.clone()),
            Entrant::WebSeedClient(l) => l
                .name
                .clone()
                .unwrap_or_else(|| format!("{} [web seed]", l.cmd)),
        }
    }

    /// A client entrant's command line, and whether it runs with the web seed.
    pub(super) fn line(&self) -> Option<(&Line, bool)> {
        match self {
            Entrant::Client(l) => Some((l, false)),
            Entrant::WebSeedClient(l) => Some((l, true)),
            Entrant::Policy(_) => None,
        }
    }
}

/// The entrants of the command line: the policies, the `--client` lines, then the
/// `--web-seed-client` lines, the lines named by `names` in that order (hyperfine's
/// `--command-name`). One line if there are more names than lines, or a name is empty or
/// taken twice (two entrants of one name would share their rows in `runs.csv`).
pub fn entrants(
    policies: Vec<Policy>,
    clients: Vec<String>,
    web_seed_clients: Vec<String>,
    names: Vec<String>,
) -> anyhow::Result<Vec<Entrant>> {
    let lines = clients.len() + web_seed_clients.len();
    if names.len() > lines {
        anyhow::bail!(
            "--name: {} names for {lines} --client/--web-seed-client entrants; each --name names one of them, in order",
            names.len()
        );
    }
    let mut names = names.into_iter();
    let mut line = |cmd: String| Line {
        cmd,
        name: names.next(),
    };
    let mut out: Vec<Entrant> = policies.into_iter().map(Entrant::Policy).collect();
    out.extend(clients.into_iter().map(|c| Entrant::Client(line(c))));
    out.extend(
        web_seed_clients
            .into_iter()
            .map(|c| Entrant::WebSeedClient(line(c))),
    );
    let mut seen = std::collections::BTreeSet::new();
    for e in &out {
        let name = e.name();
        if name.trim().is_empty() {
            anyhow::bail!("an entrant's name is empty (an empty --client line, or --name '')");
        }
        if name.contains(['\n', '\r']) {
            anyhow::bail!(
                "{name:?}: an entrant's name has a line break, and runs.csv keeps a run a line; give it a --name"
            );
        }
        if e.line().is_some() && <Policy as clap::ValueEnum>::from_str(&name, false).is_ok() {
            anyhow::bail!(
                "{name:?}: a client entrant named like a built-in policy would be read back as that policy (--from, the tables); give it another --name"
            );
        }
        if !seen.insert(name.clone()) {
            anyhow::bail!(
                "two entrants are named {name:?}: their runs would share one key in runs.csv; leave one out or --name them apart"
            );
        }
    }
    Ok(out)
}

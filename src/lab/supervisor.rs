//! The supervisor: the process that runs a testbed, until stopped (`testbed start`) or until
//! my client exits (`testbed run`).
//!
//! [`supervise`] prepares the process: it takes the run dir's lock (one testbed per run dir; a
//! dead supervisor's lock is gone with it, so a stale pid file never blocks), resets `run/`,
//! logs to `run/logs/tracker.log`, becomes a child subreaper, moves into a cgroup of its own
//! where it can ([`procs`]) and writes `run/testbed.pid`. Then a [`Supervisor`] runs its
//! steps, each a method:
//!
//! 1. [`make_torrents`](Supervisor::make_torrents): a torrent per file of `fresh-files/`;
//! 2. [`start_services`](Supervisor::start_services): the tracker, the status page,
//!    `/api/world` and the VoD server, in-process, on the host's port and (with the lab's
//!    namespace) on 10.77.0.1 inside;
//! 3. [`start_world`](Supervisor::start_world): every world client (file copies and forks off
//!    the runtime);
//! 4. [`start_my_client`](Supervisor::start_my_client): exec'd with the [`template`]d args
//!    and the `TESTBED_*` variables;
//! 5. [`wait_ready`](Supervisor::wait_ready): until every world client has announced (or its
//!    slot was given up after crashing);
//! 6. [`event_loop`](Supervisor::event_loop): replace world clients as they complete or
//!    crash; end on SIGTERM/SIGINT or, under [`Mode::Run`], when my client exits;
//! 7. [`shut_down`](Supervisor::shut_down): end every process of the run while the tracker
//!    still answers their `stopped` announces, then the HTTP server.
//!
//! Whatever happens, [`supervise`] ends every process of the run before it returns.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::{MyClient, MyClientState, Phase, RunInfo, StartState, TorrentInfo};
use super::config::{Addresses, Config, Source};
use super::netns;
use super::rundir::{PidInfo, RunDir};
use super::web;
use super::world::{SwarmFiles, World};
use super::{template, Mode, Orchestrator};
use crate::metainfo::{self, Torrent};
use crate::sys::cgroup::Cgroup;
use crate::sys::procs;
use crate::sys::spawn::{self, SpawnRequest};
use crate::tracker::access::AccessSink;
use crate::tracker::{self, Tracker, TrackerConfig};
use crate::util::{Exit, Locked};
use crate::vod::referee::Verdict;
use crate::vod::score::Outcome;
use crate::vod::server::VodServer;

/// Children's exits as the reaper reports them. Bounded by the reaper's channel (see
/// [`procs::reaper`]); the event loop drains it continuously.
type Exits = mpsc::Receiver<(i32, Exit)>;

/// Run the testbed in this process until stopped (or, under [`Mode::Run`], until my client
/// exits); returns what the run ended with.
pub fn supervise(source: &Source, my_client: Vec<String>, mode: Mode) -> anyhow::Result<Outcome> {
    let cfg = source.load()?;
    cfg.refuse_live()?;
    let rd = RunDir::new(&cfg.run_dir);
    let _lock = rd.lock()?;
    rd.reset()?;
    crate::util::rt::init_logging(Some(&rd.logs().join("tracker.log")), "info")?;
    let run_id =
        std::env::var(procs::RUN_ID_VAR).unwrap_or_else(|_| super::commands::start::new_run_id());
    let me = std::process::id() as i32;
    let sid = (nix::unistd::getsid(None).ok().map(|s| s.as_raw()) == Some(me)).then_some(me);
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let cgroup = match Cgroup::create(&run_id, me) {
        Ok(cg) => Some(cg),
        Err(e) => {
            eprintln!(
                "testbed: no cgroup for this run ({e}); relying on the run-id marker and session"
            );
            None
        }
    };
    // Before any thread: entering a namespace moves only the calling thread.
    let net = Network::prepare(&cfg)?;
    let base_url = format!("http://{}:{}", reach_host(&cfg), net.port);
    rd.write_pid(&PidInfo {
        pid: me,
        start_time: procs::start_time(me).unwrap_or(0),
        run_id: run_id.clone(),
        sid,
        cgroup: cgroup.as_ref().map(|c| c.path.clone()),
        url: base_url.clone(),
        port: net.port,
        netns: net.netns,
    })?;
    // The port may be the system's choice (`--port 0`): say it (start prints it from the state).
    eprintln!(
        "testbed: status page {base_url}/, run folder {}",
        rd.root.display()
    );
    if let Some(why) = &net.fallback {
        tracing::warn!("{why}");
        eprintln!("testbed: warning: {why}");
    }
    let rt = crate::util::rt::runtime(2)?;
    let sup = Supervisor {
        cfg: &cfg,
        rd: &rd,
        run_id: run_id.clone(),
        sid,
        base_url,
        mode,
        started: Instant::now(),
        net: Mutex::new(Some(net)),
    };
    let result = rt.block_on(sup.run(my_client));
    if let Err(e) = &result {
        StartState::write(&rd, Phase::Failed, Some(format!("{e:#}")), 0, 0);
    }
    // Whatever happened, nothing of the run outlives the supervisor.
    let left = procs::end_all(
        &run_id,
        sid,
        None,
        Duration::from_millis(1500),
        Instant::now() + Duration::from_secs(4),
    );
    if !left.is_empty() {
        eprintln!("testbed: processes {left:?} survived");
    }
    rt.shutdown_timeout(Duration::from_millis(500));
    if let Some(cg) = &cgroup {
        // We are inside it: leave it before removing it.
        if let Some(parent) = cg.path.parent() {
            let _ = std::fs::write(parent.join("cgroup.procs"), me.to_string());
        }
        cg.remove();
    }
    let _ = std::fs::remove_file(rd.pid_file());
    if result.is_ok() {
        StartState::write(&rd, Phase::Stopped, None, 0, 0);
    }
    result
}

/// `f(0)`, ..., `f(n - 1)` on this thread and one more, each index once; the first error.
fn on_two_threads(n: usize, f: impl Fn(usize) -> anyhow::Result<()> + Sync) -> anyhow::Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> anyhow::Result<()> {
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if k >= n {
                return Ok(());
            }
            f(k)?;
        }
    };
    std::thread::scope(|s| {
        let other = s.spawn(work);
        let mine = work();
        other.join().expect("worker thread").and(mine)
    })
}

/// Host that clients use to reach the tracker: the public host, else the bind address (with
/// 0.0.0.0 meaning this host).
fn reach_host(cfg: &Config) -> String {
    match (&cfg.tracker.public_host, cfg.tracker.bind) {
        (Some(h), _) => h.clone(),
        (None, ip) if ip.is_unspecified() => "127.0.0.1".into(),
        (None, IpAddr::V6(ip)) => format!("[{ip}]"),
        (None, ip) => ip.to_string(),
    }
}

/// The run's sockets and addressing, decided before any thread starts.
pub struct Network {
    /// How world clients are addressed (never `Auto`).
    pub addresses: Addresses,
    /// The tracker's port (the same inside the namespace).
    pub port: u16,
    /// The host's socket: the status page for people, and clients on other hosts.
    host: std::net::TcpListener,
    /// The socket inside the lab's namespace, for the clients there.
    inside: Option<std::net::TcpListener>,
    /// The namespace's inode, when the run has one.
    pub netns: Option<u64>,
    /// Why `auto` did not get a namespace.
    pub fallback: Option<String>,
    /// The link stage, with `network:` (see `crate::netem`), and the seed of its draws.
    netem: Option<(crate::netem::tun::Emulator, u64)>,
}

impl Network {
    /// Bind the tracker's port on the host, then (for `namespace`, or `auto` on one host)
    /// move this process into the lab's own network namespace and bind there too.
    pub fn prepare(cfg: &Config) -> anyhow::Result<Network> {
        let host = tracker::bind_std(SocketAddr::new(cfg.tracker.bind, cfg.tracker.port))?;
        let port = host.local_addr()?.port();
        let wanted = match cfg.addresses {
            // Other hosts: my client, or the world shards of other nodes and their tracker.
            Addresses::Auto if cfg.for_other_hosts() || cfg.remote_tracker.is_some() => {
                Addresses::Shared
            }
            Addresses::Auto => Addresses::Namespace,
            a => a,
        };
        let mut net = Network {
            addresses: wanted,
            port,
            host,
            inside: None,
            netns: None,
            fallback: None,
            netem: None,
        };
        if wanted != Addresses::Namespace {
            if cfg.network.is_some() {
                anyhow::bail!(
                    "network: emulates links between the lab's own addresses, but this run's \
                     world uses addresses: {wanted}: leave out network: or run on one host"
                );
            }
            return Ok(net);
        }
        // Under `auto`, tried in a child first: a failure after `unshare` cannot be undone,
        // so only a failed trial falls back; a failure for real is the end of this start.
        if cfg.addresses == Addresses::Auto {
            if let Err(e) = netns::probe() {
                // Never a run without the network it was asked for.
                if cfg.network.is_some() {
                    anyhow::bail!(
                        "network: needs a network namespace for the lab, and none can be made \
                         here ({e}): run as root or where user namespaces are allowed, or leave \
                         out network:"
                    );
                }
                net.addresses = Addresses::Loopback;
                net.fallback = Some(format!(
                    "no network namespace for the lab ({e}): world clients get 127.77.x.y \
                     addresses on this host, which libtorrent accepts and Transmission does not"
                ));
                return Ok(net);
            }
        }
        netns::enter().map_err(|e| anyhow::anyhow!("addresses: namespace: {e}"))?;
        net.inside = Some(tracker::bind_std(SocketAddr::new(
            netns::TRACKER.into(),
            port,
        ))?);
        net.netns = netns::current();
        if let Some(n) = &cfg.network {
            let seed = n.seed.or(cfg.seed).unwrap_or_else(rand::random);
            let plan = crate::netem::tun::Plan {
                prefix: netns::PREFIX,
                exempt: netns::TRACKER,
            };
            let stage =
                crate::netem::tun::Emulator::start(netns::LabLinks(n.clone(), seed), seed, plan)?;
            net.netem = Some((stage, seed));
        }
        Ok(net)
    }

    /// Where clients of the lab reach the tracker and the VoD server: inside the namespace,
    /// or as people do.
    fn lab_url(&self, base_url: &str) -> String {
        match self.inside {
            Some(_) => format!("http://{}:{}", netns::TRACKER, self.port),
            None => base_url.to_string(),
        }
    }
}

/// One supervised run: the config, where it lives, and how it ends.
pub struct Supervisor<'a> {
    cfg: &'a Config,
    rd: &'a RunDir,
    run_id: String,
    sid: Option<i32>,
    /// The tracker and page as people (and other hosts) reach them.
    base_url: String,
    mode: Mode,
    started: Instant,
    /// Taken by [`Supervisor::start_services`] (its sockets go to the server).
    net: Mutex<Option<Network>>,
}

/// The HTTP server of the run (tracker, page, `/api/world`, VoD) and how to end it.
struct Services {
    orch: Arc<Orchestrator>,
    /// The link stage, kept until every process of the run has ended.
    netem: Option<crate::netem::tun::Emulator>,
    server: JoinHandle<anyhow::Result<()>>,
    shutdown: Arc<tokio::sync::Notify>,
}

impl Supervisor<'_> {
    /// Every step, in order.
    async fn run(self, my_client: Vec<String>) -> anyhow::Result<Outcome> {
        StartState::write(self.rd, Phase::Starting, None, 0, 0);
        let swarms = self.make_torrents()?;
        let mine = my_swarm(self.cfg, &swarms)?;
        let info = self.run_info(&swarms, mine)?;
        let world = self.new_world(swarms)?;
        let services = self.start_services(info, world, &my_client).await?;
        let mut exits = self.start_world(&services.orch).await?;
        let warm_up = self.cfg.my_client.start_after;
        let (my_pid, early) = if self.mode == Mode::World {
            // Its clients announce to another testbed's tracker: that one sees them arrive.
            let n = services.orch.world.slots.locked().len();
            services.orch.set_phase(Phase::Ready);
            StartState::write(self.rd, Phase::Ready, None, n, 0);
            tracing::info!(
                "ready: {n} world clients of shard {} started",
                self.cfg.world.shard
            );
            (None, None)
        } else if my_client.is_empty() {
            (
                None,
                self.wait_ready(&services.orch, &mut exits, None).await?,
            )
        } else if warm_up > 0.0 {
            // My client joins a swarm that has already run for `start_after` seconds, as a
            // real viewer would, not a world born in the same instant.
            self.wait_ready(&services.orch, &mut exits, None).await?;
            if !self.warm_up(&services.orch, &mut exits, warm_up).await {
                drop(exits);
                return self.shut_down(services, None).await;
            }
            let pid = self.start_my_client(&services.orch, &my_client).await?;
            (Some(pid), None)
        } else {
            let pid = self.start_my_client(&services.orch, &my_client).await?;
            (
                Some(pid),
                self.wait_ready(&services.orch, &mut exits, Some(pid))
                    .await?,
            )
        };
        // My client may end before the world is ready (a bad argument, say): under `run`
        // that is the end; under `start` the world goes on until stopped.
        let my_exit = match (early, self.mode) {
            (Some(e), Mode::Run) => Some(e),
            (e, _) => self
                .event_loop(&services.orch, &mut exits, my_pid)
                .await
                .or(e),
        };
        // Nobody reads exits from here on: the reaper goes on reaping without queueing.
        drop(exits);
        self.shut_down(services, my_exit).await
    }

    /// Step 1: a torrent for every file of fresh-files, in `run/torrents/`.
    fn make_torrents(&self) -> anyhow::Result<Vec<SwarmFiles>> {
        make_torrents(self.cfg, self.rd, &self.announce_url())
    }

    /// Where clients of the lab announce: inside the namespace when there is one.
    fn announce_url(&self) -> String {
        match &self.cfg.remote_tracker {
            Some(url) => url.clone(),
            None => format!("{}/announce", self.lab_url()),
        }
    }

    fn lab_url(&self) -> String {
        match &*self.net.locked() {
            Some(n) => n.lab_url(&self.base_url),
            None => self.base_url.clone(),
        }
    }

    /// The `network:` section and the seed of its draws, when the link stage runs.
    fn network(&self) -> Option<(crate::netem::NetworkSection, u64)> {
        let seed = self.net.locked().as_ref()?.netem.as_ref()?.1;
        Some((self.cfg.network.clone()?, seed))
    }

    fn addresses(&self) -> Addresses {
        self.net
            .locked()
            .as_ref()
            .map_or(Addresses::Shared, |n| n.addresses)
    }

    fn run_info(&self, swarms: &[SwarmFiles], mine: usize) -> anyhow::Result<RunInfo> {
        run_info(
            self.cfg,
            self.rd,
            &Urls {
                run_id: self.run_id.clone(),
                base: self.base_url.clone(),
                lab: self.lab_url(),
                announce: self.announce_url(),
            },
            (self.addresses(), self.network().map(|(n, _)| n.my_client)),
            swarms,
            mine,
        )
    }

    /// The world's slots, laid out but not started.
    fn new_world(&self, swarms: Vec<SwarmFiles>) -> anyhow::Result<Arc<World>> {
        let world = new_world(
            self.cfg,
            self.rd,
            &self.run_id,
            (self.addresses(), self.network()),
            swarms,
            self.announce_url(),
        )?;
        Ok(Arc::new(world))
    }

    /// Step 2: the tracker, the status page, `/api/world` and the VoD server, on one listener.
    async fn start_services(
        &self,
        info: RunInfo,
        world: Arc<World>,
        my_client: &[String],
    ) -> anyhow::Result<Services> {
        let cfg = self.cfg;
        let trk = Tracker::new(tracker_config(cfg, self.rd.logs().join("tracker.log")))?;
        for s in &world.swarms {
            trk.register(&s.torrent);
        }
        let net = self
            .net
            .locked()
            .take()
            .context("the network was prepared once")?;
        let netem = net.netem.map(|(e, _)| e);
        let listener = tokio::net::TcpListener::from_std(net.host)?;
        let inside = net
            .inside
            .map(tokio::net::TcpListener::from_std)
            .transpose()?;
        let vod = VodServer::new(vod_files(&world.swarms), cfg.my_client.web_seed);
        {
            let vod = vod.clone();
            trk.add_status_section(
                "vod",
                Box::new(move || serde_json::to_value(vod.served()).unwrap_or_default()),
            );
        }
        let my = MyClient {
            state: match my_client.is_empty() {
                true => MyClientState::None,
                false => MyClientState::NotStarted,
            },
            command: my_client.to_vec(),
            ..Default::default()
        };
        let orch = Arc::new(Orchestrator::new(
            cfg,
            self.rd,
            info,
            world,
            (trk.clone(), vod.clone()),
            my,
            (Phase::Starting, self.started),
        ));
        let app = web::router(orch.clone(), trk.clone(), vod);
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tracker::serve_on(trk, listener, inside, app, async move {
                    shutdown.notified().await
                })
                .await
            })
        };
        Ok(Services {
            orch,
            netem,
            server,
            shutdown,
        })
    }

    /// Step 3: every world client, started on the blocking pool (partial copies and forks).
    async fn start_world(&self, orch: &Orchestrator) -> anyhow::Result<Exits> {
        let (exit_tx, exits) = mpsc::channel(spawn::REAPER_QUEUE);
        spawn::reaper(exit_tx);
        let world = orch.world.clone();
        let n = world.slots.locked().len();
        let t0 = Instant::now();
        // Every copy first, on both cores, while no client competes for them; then the
        // clients (at 500 clients, copying between spawns left the spawner waiting on a machine
        // busy with the clients already started).
        tokio::task::spawn_blocking(move || {
            on_two_threads(n, |k| world.prepare_slot(k))?;
            // Two at a time, one per spawner thread.
            on_two_threads(n, |k| world.spawn_slot(k).map(|_| ()))
        })
        .await??;
        tracing::info!(
            "world of {n} clients started in {:.2} s",
            t0.elapsed().as_secs_f64()
        );
        Ok(exits)
    }

    /// Step 4: my client, with its arguments filled in and the `TESTBED_*` variables.
    async fn start_my_client(
        &self,
        orch: &Orchestrator,
        my_client: &[String],
    ) -> anyhow::Result<i32> {
        let info = &orch.info;
        if let Some(dir) = info.saveas.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let (args, env) = my_invocation(self.cfg, info, my_client);
        let log = self.rd.logs().join("my-client.log");
        let started_unix = crate::util::unix_now();
        let pid = orch
            .world
            .spawner
            .spawn_async(SpawnRequest {
                program: PathBuf::from(&my_client[0]),
                args: args.iter().map(Into::into).collect(),
                env,
                log: log.clone(),
                cwd: None,
                arms_itself: false,
            })
            .await?;
        tracing::info!(
            "my client started (pid {pid}): {} {}",
            my_client[0],
            args.join(" ")
        );
        *orch.my.locked() = MyClient {
            command: std::iter::once(my_client[0].clone()).chain(args).collect(),
            pid: Some(pid),
            state: MyClientState::Running,
            exit: None,
            started_secs: Some(self.started.elapsed().as_secs_f64()),
            started_unix: Some(started_unix),
            ended_secs: None,
            log,
        };
        Ok(pid)
    }

    /// Step 5: ready once every world client has announced (or been given up after crashing).
    /// Returns how my client ended, if it did meanwhile.
    async fn wait_ready(
        &self,
        orch: &Arc<Orchestrator>,
        exits: &mut Exits,
        my_pid: Option<i32>,
    ) -> anyhow::Result<Option<Exit>> {
        let mut my_exit = None;
        let world = &orch.world;
        let n = world.slots.locked().len();
        let ready_by =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(50 * n as u64);
        let announced = loop {
            let ids = world.peer_ids();
            let announced = orch.tracker.with_swarms(|s| {
                ids.iter()
                    .filter(|id| {
                        s.values()
                            .any(|sw| sw.peers().iter().any(|p| &p.peer_id == *id))
                    })
                    .count()
            });
            if announced >= ids.len() {
                break ids.len();
            }
            if Instant::now() > ready_by {
                anyhow::bail!(
                    "only {announced} of {} world clients announced within the deadline; see {}",
                    ids.len(),
                    self.rd.logs().display()
                );
            }
            // Crashes are handled meanwhile (restarts with backoff, giving up).
            while let Ok((pid, exit)) = exits.try_recv() {
                if handle_exit(orch, my_pid, pid, exit) {
                    my_exit = Some(exit);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let failed = n - announced;
        if failed > 0 {
            tracing::error!("{failed} world client slot(s) crashed repeatedly and were given up");
        }
        orch.set_phase(Phase::Ready);
        StartState::write(self.rd, Phase::Ready, None, announced, failed);
        tracing::info!("ready: {announced} world clients announced");
        Ok(my_exit)
    }

    /// Let the world run `secs` seconds before my client starts (replacing clients as they
    /// end meanwhile). False when stopped meanwhile (SIGTERM, SIGINT).
    async fn warm_up(&self, orch: &Arc<Orchestrator>, exits: &mut Exits, secs: f64) -> bool {
        tracing::info!("warming the world up for {secs} s before my client starts");
        let until = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let signal = crate::util::rt::shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                s = &mut signal => {
                    tracing::info!("{s} while warming up: stopping");
                    return false;
                }
                Some((pid, exit)) = exits.recv() => {
                    handle_exit(orch, None, pid, exit);
                }
            }
        }
    }

    /// Step 6: replace world clients as they end, until a signal (or my client's exit under
    /// [`Mode::Run`]). Returns how my client ended, if it did.
    async fn event_loop(
        &self,
        orch: &Arc<Orchestrator>,
        exits: &mut Exits,
        my_pid: Option<i32>,
    ) -> Option<Exit> {
        let mut my_exit = None;
        let signal = crate::util::rt::shutdown_signal();
        tokio::pin!(signal);
        let mut progress = tokio::time::interval(Duration::from_secs(1));
        let show_progress = self.show_progress();
        loop {
            tokio::select! {
                _ = progress.tick(), if show_progress => {
                    let line = progress_line(&orch.info, &orch.vod).await;
                    eprint!("\r{line}\x1b[K");
                }
                Some((pid, exit)) = exits.recv() => {
                    if handle_exit(orch, my_pid, pid, exit) {
                        my_exit = Some(exit);
                        if self.mode == Mode::Run { break; }
                    }
                }
                s = &mut signal => { tracing::info!("{s}: stopping"); break; }
            }
        }
        my_exit
    }

    fn show_progress(&self) -> bool {
        self.mode == Mode::Run && std::io::IsTerminal::is_terminal(&std::io::stderr())
    }

    /// Step 7: end the children while the tracker still answers their `stopped` announces,
    /// then the HTTP server.
    async fn shut_down(
        &self,
        services: Services,
        my_exit: Option<Exit>,
    ) -> anyhow::Result<Outcome> {
        let orch = &services.orch;
        orch.set_phase(Phase::Stopping);
        orch.world.stopping.store(true, Ordering::Relaxed);
        let (rid, sid) = (self.run_id.clone(), self.sid);
        tokio::task::spawn_blocking(move || {
            procs::end_all(
                &rid,
                sid,
                None,
                Duration::from_millis(1500),
                Instant::now() + Duration::from_secs(3),
            )
        })
        .await?;
        if let Some(e) = &services.netem {
            let (c, most) = e.counts();
            tracing::info!(
                "netem: {} packets delivered, {} lost, {} dropped at a full download line; \
                 at most {most} held at once",
                c.delivered,
                c.lost,
                c.overflow
            );
        }
        services.shutdown.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(1), services.server).await;
        if self.show_progress() {
            eprintln!();
        }
        let referee = self.judge(orch).await;
        Ok(Outcome {
            engine: "real",
            my_exit,
            served: orch.vod.served(),
            my_size: orch.info.my_torrent().map_or(0, |t| t.size),
            run_id: self.run_id.clone(),
            referee,
        })
    }

    /// The referee's verdict on my client, from the world's records (complete now that every
    /// world client has ended) and the VoD server's log. `None` without a my client.
    async fn judge(&self, orch: &Arc<Orchestrator>) -> Option<Verdict> {
        let orch = orch.clone();
        tokio::task::spawn_blocking(move || orch.verdict())
            .await
            .ok()
            .flatten()
    }
}

/// One line for the terminal under `testbed run`: playback position, bytes from peers, server
/// bytes. The report is read off the runtime.
async fn progress_line(info: &RunInfo, vod: &VodServer) -> String {
    let path = info.report.clone();
    let r = tokio::task::spawn_blocking(move || crate::vod::Report::read(&path))
        .await
        .ok()
        .flatten();
    let kib = |b: u64| b as f64 / 1024.0;
    match r {
        Some(r) => format!(
            "t={:.0}s  playback {:.0}/{:.0} KiB  from peers {:.0} KiB  from server {:.0} KiB ({} pieces)",
            r.elapsed,
            kib(r.position),
            kib(r.size),
            kib(r.bytes_from_peers),
            kib(vod.total_bytes()),
            r.pieces_from_server
        ),
        None => format!("waiting for my client's report; from server {:.0} KiB", kib(vod.total_bytes())),
    }
}

/// A child ended: record my client's end (returns true), or have the world replace a client
/// (after its delay, on the blocking pool, unless the run is stopping by then).
fn handle_exit(orch: &Arc<Orchestrator>, my_pid: Option<i32>, pid: i32, exit: Exit) -> bool {
    if Some(pid) == my_pid {
        tracing::info!("my client (pid {pid}) ended: {exit}");
        let mut m = orch.my.locked();
        m.state = MyClientState::Exited;
        m.exit = Some(exit.to_string());
        m.ended_secs = Some(orch.started.elapsed().as_secs_f64());
        return true;
    }
    if let Some(respawn) = orch.world.on_exit(pid, exit) {
        let world = orch.world.clone();
        tokio::spawn(async move {
            tokio::time::sleep(respawn.delay).await;
            if world.stopping.load(Ordering::Relaxed) {
                return;
            }
            let w = world.clone();
            let k = respawn.slot;
            let r = tokio::task::spawn_blocking(move || {
                if let Some(dir) = &respawn.remove {
                    let _ = std::fs::remove_dir_all(dir);
                }
                w.start_slot(k)
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::error!(slot = k, "cannot restart world client: {e:#}");
            }
        });
    }
    false
}

/// Makes a torrent for every file of fresh-files, announcing to `announce`, in
/// `run/torrents/`.
pub(super) fn make_torrents(
    cfg: &Config,
    rd: &RunDir,
    announce: &str,
) -> anyhow::Result<Vec<SwarmFiles>> {
    let mut swarms = Vec::new();
    for f in super::fresh_files(&cfg.fresh_files)? {
        let bytes = metainfo::make_torrent(&f, announce, cfg.torrents.piece_length)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = rd.torrents().join(format!("{name}.torrent"));
        std::fs::write(&path, &bytes).with_context(|| format!("{}", path.display()))?;
        swarms.push(SwarmFiles {
            torrent: Arc::new(Torrent::from_bytes(&bytes)?),
            torrent_path: path,
            fresh: f,
        });
    }
    Ok(swarms)
}

/// The swarm my client joins: the config's `torrents.my_torrent`, else the largest file.
pub(super) fn my_swarm(cfg: &Config, swarms: &[SwarmFiles]) -> anyhow::Result<usize> {
    match &cfg.torrents.my_torrent {
        Some(n) => swarms
            .iter()
            .position(|s| &s.torrent.name == n)
            .with_context(|| {
                format!(
                    "torrents.my_torrent: {n} is not in {}",
                    cfg.fresh_files.display()
                )
            }),
        None => Ok((0..swarms.len())
            .max_by_key(|&i| swarms[i].torrent.total_length)
            .unwrap_or(0)),
    }
}

/// Where a run is reached: by people (`base`), by the lab's clients (`lab`, and the
/// `announce` URL).
pub(super) struct Urls {
    pub run_id: String,
    pub base: String,
    pub lab: String,
    pub announce: String,
}

/// What my client is given, and what the page and `status` show of the run. `net`: how the
/// world is addressed, and my client's emulated link.
pub(super) fn run_info(
    cfg: &Config,
    rd: &RunDir,
    urls: &Urls,
    net: (Addresses, Option<crate::netem::Link>),
    swarms: &[SwarmFiles],
    mine: usize,
) -> anyhow::Result<RunInfo> {
    let my = &swarms[mine];
    let base = &urls.base;
    let vod_url = format!("{}/vod/{}", urls.lab, my.torrent.info_hash);
    // With a web seed, my client gets its own copy of the torrent listing the VoD server.
    let torrent = if cfg.my_client.web_seed {
        let path = rd
            .torrents()
            .join("my-client")
            .join(my.torrent_path.file_name().unwrap_or_default());
        std::fs::create_dir_all(rd.torrents().join("my-client"))?;
        let bytes = metainfo::with_web_seed(&std::fs::read(&my.torrent_path)?, &vod_url)?;
        std::fs::write(&path, bytes).with_context(|| format!("{}", path.display()))?;
        path
    } else {
        my.torrent_path.clone()
    };
    Ok(RunInfo {
        run_id: urls.run_id.clone(),
        pid: std::process::id() as i32,
        base_url: base.clone(),
        tracker_url: urls.announce.clone(),
        status_url: format!("{base}/"),
        vod_url,
        addresses: net.0,
        my_link: net.1,
        my_info_hash: my.torrent.info_hash.hex(),
        torrent: std::path::absolute(&torrent)?,
        saveas: std::path::absolute(rd.downloads().join("my-client").join(&my.torrent.name))?,
        report: std::path::absolute(rd.reports().join("my-client.json"))?,
        torrents: swarms
            .iter()
            .map(|s| TorrentInfo {
                name: s.torrent.name.clone(),
                // Absolute, as `torrent` is, so that a user can open it from anywhere.
                path: std::path::absolute(&s.torrent_path)
                    .unwrap_or_else(|_| s.torrent_path.clone()),
                info_hash: s.torrent.info_hash.hex(),
                size: s.torrent.total_length,
                pieces: s.torrent.num_pieces(),
                piece_length: s.torrent.piece_length,
            })
            .collect(),
    })
}

/// My client's arguments (the command line's, else the config's template, placeholders
/// filled in) and its `TESTBED_*` variables.
pub(super) fn my_invocation(
    cfg: &Config,
    info: &RunInfo,
    my_client: &[String],
) -> (Vec<String>, Vec<(String, String)>) {
    let m = &cfg.my_client;
    let mut values: BTreeMap<&str, String> = BTreeMap::new();
    values.insert("torrent", info.torrent.display().to_string());
    values.insert("saveas", info.saveas.display().to_string());
    values.insert("tracker", info.tracker_url.clone());
    values.insert("vod_url", info.vod_url.clone());
    values.insert("rate", m.rate.to_string());
    values.insert("delay", m.delay.to_string());
    values.insert("prefetch", m.prefetch.to_string());
    values.insert("max_upload_rate", m.max_upload_rate.to_string());
    values.insert("report", info.report.display().to_string());
    let args: Vec<String> = if my_client.len() > 1 {
        my_client[1..]
            .iter()
            .map(|a| template::fill(a, &values))
            .collect()
    } else {
        template::render(&m.args, &values)
    };
    let mut env: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (format!("TESTBED_{}", k.to_uppercase()), v.clone()))
        .collect();
    // Not a placeholder (a config may have no seed): the default client seeds its own
    // random choices from it, so that a rerun of a seeded world is a rerun of my client too.
    if let Some(seed) = cfg.seed {
        env.push(("TESTBED_SEED".into(), seed.to_string()));
    }
    (args, env)
}

/// The world of `swarms`, laid out but not started: its clients addressed as `net` says (with
/// their emulated links, under `network:`), announcing to `tracker_url`.
pub(super) fn new_world(
    cfg: &Config,
    rd: &RunDir,
    run_id: &str,
    net: (Addresses, Option<(crate::netem::NetworkSection, u64)>),
    swarms: Vec<SwarmFiles>,
    tracker_url: String,
) -> anyhow::Result<World> {
    let (addresses, network) = net;
    let per_swarm = cfg.world.seeds + cfg.world.clients;
    if addresses != Addresses::Shared && swarms.len() * per_swarm > netns::MAX_CLIENTS {
        anyhow::bail!(
            "world: {} swarms of {per_swarm} clients need more than {} addresses",
            swarms.len(),
            netns::MAX_CLIENTS
        );
    }
    let world = World {
        cfg: cfg.world.clone(),
        addresses,
        shared_addr: cfg.tracker.bind,
        seed: cfg.seed.unwrap_or_else(rand::random),
        swarms,
        slots: Mutex::new(Vec::new()),
        spawner: spawn::Spawner::new(run_id),
        testbed_exe: match &cfg.world.command {
            Some(c) => c.clone(),
            None => std::env::current_exe()?,
        },
        exe_is_ours: cfg.world.command.is_none(),
        downloads: rd.downloads(),
        logs: rd.logs(),
        status: rd.status(),
        referee: rd.referee(),
        network,
        tracker_url,
        interval: cfg.tracker.interval,
        stopping: Default::default(),
    };
    world.layout();
    Ok(world)
}

/// The run's tracker: the config's interval, its access log in `log`.
pub(super) fn tracker_config(cfg: &Config, log: PathBuf) -> TrackerConfig {
    TrackerConfig {
        interval: Duration::from_secs(cfg.tracker.interval),
        min_interval: Duration::from_secs(cfg.tracker.interval.div_ceil(2)),
        peer_timeout: TrackerConfig::peer_timeout_for(Duration::from_secs(cfg.tracker.interval)),
        public_ip: cfg
            .tracker
            .public_host
            .as_ref()
            .and_then(|h| h.parse().ok()),
        access_log: Some(AccessSink::File(log)),
        ..Default::default()
    }
}

/// What the VoD server serves: every swarm's file, by its info hash.
pub(super) fn vod_files(swarms: &[SwarmFiles]) -> Vec<(String, PathBuf, u64)> {
    swarms
        .iter()
        .map(|s| {
            (
                s.torrent.info_hash.hex(),
                s.fresh.clone(),
                s.torrent.total_length,
            )
        })
        .collect()
}

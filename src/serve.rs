//! `wasmnet serve`: configuration (file < environment < flags), the state dir (database, token,
//! lock), the listeners, and graceful shutdown on SIGTERM/SIGINT.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use wasmnet_dns::DnsConfig;
use wasmnet_engine::cluster::{ClusterConfig, TlsFiles};
use wasmnet_engine::firewall::Backend;
use wasmnet_engine::ipam::PoolSpec;
use wasmnet_engine::{DefaultNetwork, Engine, EngineConfig};
use wasmnet_web::AppState;

use crate::serve_names::{names_settings, NamesArgs, NamesFile};

const DEFAULT_CONFIG: &str = "/etc/wasmnet/config.toml";
const DEFAULT_DOCKER_PLUGIN_SOCKET: &str = "/run/docker/plugins/wasmnet.sock";

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file [default: /etc/wasmnet/config.toml, if it exists].
    #[arg(long, env = "WASMNET_CONFIG")]
    config: Option<PathBuf>,
    /// Database, token and lock live here [default: /var/lib/wasmnet].
    #[arg(long, env = "WASMNET_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Runtime files: the socket, namespaces' bind mounts [default: /run/wasmnet].
    #[arg(long, env = "WASMNET_RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// The API's unix socket [default: RUN_DIR/wasmnet.sock].
    #[arg(long, env = "WASMNET_SOCKET")]
    socket: Option<PathBuf>,
    /// Also serve the API (and, later, the dashboard) on TCP, e.g. 127.0.0.1:7878; every
    /// request there needs the bearer token.
    #[arg(long, env = "WASMNET_LISTEN")]
    listen: Option<SocketAddr>,
    /// IPv4 pool for networks without a subnet: base=CIDR,size=N; repeatable, in order
    /// [default: Docker's, 172.17.0.0/16 … 192.168.0.0/16].
    #[arg(
        long = "default-pool",
        env = "WASMNET_DEFAULT_POOLS",
        value_delimiter = ' '
    )]
    default_pools: Vec<PoolSpec>,
    /// IPv6 pool, same syntax [default: base=fd57:4153:4d00::/40,size=64].
    #[arg(
        long = "default-pool-v6",
        env = "WASMNET_DEFAULT_POOLS_V6",
        value_delimiter = ' '
    )]
    default_pools_v6: Vec<PoolSpec>,
    /// Log filter (tracing's EnvFilter syntax), e.g. info or wasmnet=debug.
    #[arg(long, env = "WASMNET_LOG")]
    log: Option<String>,
    /// Which firewall enforces the rules: nftables (default) or iptables.
    #[arg(long, env = "WASMNET_FIREWALL_BACKEND")]
    firewall_backend: Option<Backend>,
    /// Host ports a policy may remap published ports to: FIRST-LAST[,FIRST-LAST…]
    /// [default: 1024-65535]. Never the daemon's own listening port.
    #[arg(long, env = "WASMNET_POLICY_PORT_RANGES")]
    policy_port_ranges: Option<String>,
    /// The Docker plugin's socket (network and IPAM driver); Docker names the plugin after the
    /// file, `wasmnet`. `off` serves none [default: /run/docker/plugins/wasmnet.sock].
    #[arg(long, env = "WASMNET_DOCKER_PLUGIN_SOCKET")]
    docker_plugin_socket: Option<PathBuf>,
    /// The network made at first start, which an endpoint naming no network joins; `off`
    /// makes none [default: bridge].
    #[arg(long, env = "WASMNET_DEFAULT_NETWORK")]
    default_network: Option<String>,
    /// The default network's bridge also answers to this name; `off` for none
    /// [default: wasmnet0].
    #[arg(long, env = "WASMNET_DEFAULT_NETWORK_BRIDGE")]
    default_network_bridge: Option<String>,
    /// How many flow records (drops, would-be drops, logged matches) are kept in memory, the
    /// newest [default: 10000].
    #[arg(long, env = "WASMNET_FLOW_BUFFER", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    flow_buffer: Option<u32>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    names: NamesArgs,
}

/// Overlay networks: the cluster store this host shares them through.
#[derive(Args, Debug, Default)]
pub struct ClusterArgs {
    /// etcd to share overlay networks through: etcd://HOST:PORT[,HOST:PORT…] (etcds:// for
    /// TLS). Without it, overlay networks cannot be created.
    #[arg(long, env = "WASMNET_CLUSTER")]
    cluster: Option<String>,
    /// This host's underlay address (its VXLAN endpoint), which the other hosts reach it at;
    /// required with --cluster.
    #[arg(long, env = "WASMNET_CLUSTER_ADVERTISE")]
    cluster_advertise: Option<Ipv4Addr>,
    /// This host's name in the cluster, unique per host [default: the hostname].
    #[arg(long, env = "WASMNET_NODE_NAME")]
    node_name: Option<String>,
    /// VXLAN's UDP port [default: 4789].
    #[arg(long, env = "WASMNET_VXLAN_PORT")]
    vxlan_port: Option<u16>,
    /// How long after this host stops answering its endpoints are withdrawn from the others,
    /// in seconds [default: 10].
    #[arg(long, env = "WASMNET_CLUSTER_LEASE_TTL")]
    cluster_lease_ttl: Option<u64>,
    /// CA certificate (PEM) to verify etcd with (etcds://).
    #[arg(long, env = "WASMNET_CLUSTER_CA")]
    cluster_ca: Option<PathBuf>,
    /// Client certificate (PEM), when etcd asks for one.
    #[arg(long, env = "WASMNET_CLUSTER_CERT")]
    cluster_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "WASMNET_CLUSTER_KEY")]
    cluster_key: Option<PathBuf>,
}

/// The config file; every key optional, named as the flags are (with underscores).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    state_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    listen: Option<SocketAddr>,
    default_address_pools: Option<Vec<PoolSpec>>,
    default_address_pools_v6: Option<Vec<PoolSpec>>,
    log: Option<String>,
    firewall_backend: Option<Backend>,
    policy_port_ranges: Option<String>,
    docker_plugin_socket: Option<PathBuf>,
    default_network: Option<String>,
    default_network_bridge: Option<String>,
    flow_buffer: Option<u32>,
    cluster: Option<String>,
    cluster_advertise: Option<Ipv4Addr>,
    node_name: Option<String>,
    vxlan_port: Option<u16>,
    cluster_lease_ttl: Option<u64>,
    cluster_ca: Option<PathBuf>,
    cluster_cert: Option<PathBuf>,
    cluster_key: Option<PathBuf>,
    names: Option<NamesFile>,
}

/// The settings in force, after merging.
#[derive(Debug)]
struct Settings {
    state_dir: PathBuf,
    run_dir: PathBuf,
    socket: PathBuf,
    listen: Option<SocketAddr>,
    docker_plugin_socket: Option<PathBuf>,
    engine: EngineConfig,
    dns: Option<DnsConfig>,
    log: String,
}

fn settings(args: ServeArgs) -> Result<Settings, String> {
    let mut file = read_config(args.config.as_deref())?;
    let (names, dns) = names_settings(args.names, file.names.take())?;
    let cluster = cluster_settings(args.cluster, &file)?;
    let default_net = default_network(&args.default_network, &args.default_network_bridge, &file);
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(|| "/var/lib/wasmnet".into());
    let run_dir = args
        .run_dir
        .or(file.run_dir)
        .unwrap_or_else(|| "/run/wasmnet".into());
    let socket = args
        .socket
        .or(file.socket)
        .unwrap_or_else(|| run_dir.join("wasmnet.sock"));
    let mut engine = EngineConfig::new(state_dir.join("wasmnet.db"), run_dir.clone());
    if let Some(p) = non_empty(args.default_pools).or(file.default_address_pools) {
        engine.pools_v4 = p;
    }
    if let Some(p) = non_empty(args.default_pools_v6).or(file.default_address_pools_v6) {
        engine.pools_v6 = p;
    }
    for (name, pools, v6) in [
        ("default pools", &engine.pools_v4, false),
        ("IPv6 default pools", &engine.pools_v6, true),
    ] {
        for p in pools {
            p.check()?;
            if p.base.network().is_ipv6() != v6 {
                return Err(format!("{name}: {p} is of the wrong IP family"));
            }
        }
    }
    engine.cluster = cluster;
    engine.default_network = default_net;
    engine.names = names;
    if let Some(b) = args.firewall_backend.or(file.firewall_backend) {
        engine.firewall = b;
    }
    if let Some(r) = args.policy_port_ranges.or(file.policy_port_ranges) {
        engine.policy_port_ranges = port_ranges(&r)?;
    }
    match args.flow_buffer.or(file.flow_buffer) {
        Some(n) if !(1..=1_000_000).contains(&n) => {
            return Err(format!("flow_buffer: {n} is not from 1 to 1000000"))
        }
        Some(n) => engine.flow_buffer = n as usize,
        None => {}
    }
    let log = args.log.or(file.log).unwrap_or_else(|| "info".into());
    let docker_plugin_socket = args
        .docker_plugin_socket
        .or(file.docker_plugin_socket)
        .unwrap_or_else(|| DEFAULT_DOCKER_PLUGIN_SOCKET.into());
    Ok(Settings {
        docker_plugin_socket: (docker_plugin_socket != Path::new("off"))
            .then_some(docker_plugin_socket),
        state_dir,
        run_dir,
        socket,
        listen: args.listen.or(file.listen),
        engine,
        dns,
        log,
    })
}

/// The default network's settings (name, bridge altname), `off` turning either off.
fn default_network(
    name: &Option<String>,
    bridge: &Option<String>,
    f: &FileConfig,
) -> Option<DefaultNetwork> {
    let d = DefaultNetwork::default();
    let name = name.clone().or(f.default_network.clone()).unwrap_or(d.name);
    let altname = match bridge.clone().or(f.default_network_bridge.clone()) {
        Some(b) if b == "off" => None,
        Some(b) => Some(b),
        None => d.altname,
    };
    (name != "off").then_some(DefaultNetwork { name, altname })
}

fn cluster_settings(a: ClusterArgs, f: &FileConfig) -> Result<Option<ClusterConfig>, String> {
    let Some(url) = a.cluster.or(f.cluster.clone()) else {
        return Ok(None);
    };
    let (endpoints, tls) = ClusterConfig::parse_url(&url)?;
    let advertise = a
        .cluster_advertise
        .or(f.cluster_advertise)
        .ok_or("--cluster needs --cluster-advertise: this host's address on the underlay")?;
    let node = match a.node_name.or(f.node_name.clone()) {
        Some(n) => n,
        None => nix::unistd::gethostname()
            .map_err(|e| format!("--node-name not given and no hostname: {e}"))?
            .to_string_lossy()
            .into_owned(),
    };
    let files = TlsFiles {
        ca: a.cluster_ca.or(f.cluster_ca.clone()),
        cert: a.cluster_cert.or(f.cluster_cert.clone()),
        key: a.cluster_key.or(f.cluster_key.clone()),
    };
    let has_files = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
    if has_files && !tls {
        return Err("--cluster-ca/--cluster-cert/--cluster-key need an etcds:// URL".into());
    }
    let ttl = a.cluster_lease_ttl.or(f.cluster_lease_ttl).unwrap_or(10);
    if !(2..=3600).contains(&ttl) {
        return Err(format!(
            "--cluster-lease-ttl {ttl}: between 2 and 3600 seconds"
        ));
    }
    Ok(Some(ClusterConfig {
        endpoints,
        tls: tls.then_some(files),
        node,
        advertise,
        vxlan_port: a.vxlan_port.or(f.vxlan_port).unwrap_or(4789),
        lease_ttl: std::time::Duration::from_secs(ttl),
    }))
}

/// `FIRST-LAST[,FIRST-LAST…]` (a single port stands for itself).
fn port_ranges(spec: &str) -> Result<Vec<std::ops::RangeInclusive<u16>>, String> {
    let bad = |part: &str| format!("--policy-port-ranges: {part:?} is not FIRST-LAST (1-65535)");
    spec.split(',')
        .map(|part| {
            let (a, b) = part
                .trim()
                .split_once('-')
                .unwrap_or((part.trim(), part.trim()));
            let (a, b): (u16, u16) = (
                a.parse().map_err(|_| bad(part))?,
                b.parse().map_err(|_| bad(part))?,
            );
            (a >= 1 && a <= b).then_some(a..=b).ok_or_else(|| bad(part))
        })
        .collect()
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn read_config(path: Option<&Path>) -> Result<FileConfig, String> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_CONFIG), false),
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| format!("config {}: {}", path.display(), e.message()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(format!("config {}: {e}", path.display())),
    }
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let s = settings(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&s.log)
                .map_err(|e| format!("--log {:?}: {e}", s.log))?,
        )
        .with_writer(std::io::stderr)
        .init();
    make_dir(&s.state_dir, 0o700)?;
    make_dir(&s.run_dir, 0o755)?;
    let _lock = lock_state_dir(&s.state_dir)?;
    // The TCP listener first: its port is one no policy may remap a published port onto.
    let tcp = bind_tcp(&s).await?;
    let mut cfg = s.engine.clone();
    cfg.reserved_ports
        .extend(tcp.as_ref().map(|(_, local, _)| local.port()));
    let engine = Engine::open(cfg)
        .await
        .map_err(|e| format!("opening {}: {e}", s.engine.database.display()))?;

    let unix = bind_socket(&s.socket)?;
    println!(
        "wasmnet {} serving the API on unix://{}",
        env!("CARGO_PKG_VERSION"),
        s.socket.display()
    );
    let tcp = tcp.map(|(listener, local, token)| {
        println!(
            "wasmnet serving the API on http://{local} (token: {token}, kept in {})",
            s.state_dir.join("token").display()
        );
        (listener, token)
    });
    announce(&s);
    let plugin = match &s.docker_plugin_socket {
        Some(path) => {
            let listener = bind_plugin_socket(path)?;
            println!("docker plugin: unix://{}", path.display());
            Some(listener)
        }
        None => None,
    };
    println!("database: {}", s.engine.database.display());
    // Under systemd (Type=notify): ready once every socket is bound, so units ordered after
    // wasmnet (docker.service) find the plugin socket. Without NOTIFY_SOCKET, nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "telling systemd wasmnet is ready");
    }

    // Names answer from here on; the servers stop with the daemon.
    let _dns = s
        .dns
        .clone()
        .map(|cfg| wasmnet_dns::start(engine.clone(), cfg));
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(listener) = plugin {
        spawn_docker_plugin(&engine, listener, stop_rx.clone());
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let state = AppState {
        engine: engine.clone(),
        shutdown: stop_rx,
    };
    let served = wasmnet_web::serve(state, Some(unix), tcp).await;
    engine.close().await;
    let _ = fs::remove_file(&s.socket);
    if let Some(path) = &s.docker_plugin_socket {
        let _ = fs::remove_file(path);
    }
    served.map_err(|e| format!("serving: {e}"))
}

/// The API's TCP listener, its address and the token, when `--listen` asks for one.
async fn bind_tcp(s: &Settings) -> Result<Option<(TcpListener, SocketAddr, String)>, String> {
    let Some(addr) = s.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let token = load_token(&s.state_dir)?;
    Ok(Some((listener, local, token)))
}

/// The settings worth a line at start.
fn announce(s: &Settings) {
    println!("firewall: {}", s.engine.firewall);
    if let Some(c) = &s.engine.cluster {
        println!(
            "cluster: {} as {:?} (VTEP {})",
            c.endpoints.join(","),
            c.node,
            c.advertise
        );
    }
}

/// Serves the Docker plugin until the daemon stops.
fn spawn_docker_plugin(
    engine: &std::sync::Arc<Engine>,
    listener: UnixListener,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let engine = engine.clone();
    tokio::spawn(async move {
        if let Err(e) = wasmnet_docker::serve(engine, listener, stopped).await {
            tracing::error!(error = %e, "serving the docker plugin");
        }
    });
}

async fn wait_for_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// One daemon per state dir: a second one would corrupt the invariants the first keeps.
fn lock_state_dir(dir: &Path) -> Result<nix::fcntl::Flock<fs::File>, String> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "{}: another wasmnet is using this state dir ({e})",
            dir.display()
        )
    })
}

/// Binds the socket (replacing a stale one: the state-dir lock proves no other daemon owns it),
/// mode 0660.
fn bind_socket(path: &Path) -> Result<UnixListener, String> {
    if let Some(parent) = path.parent() {
        make_dir(parent, 0o755)?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", path.display()))
        }
        _ => {}
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(listener)
}

/// The plugin socket is not covered by the state-dir lock (another daemon, of another state
/// dir, may serve it): a socket someone answers on is refused, a stale one replaced.
fn bind_plugin_socket(path: &Path) -> Result<UnixListener, String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "{}: another process serves this socket (give --docker-plugin-socket another path, or off)",
            path.display()
        ));
    }
    bind_socket(path)
}

/// The TCP token: generated at first start into STATE_DIR/token (mode 0600), then reused.
fn load_token(state_dir: &Path) -> Result<String, String> {
    let path = state_dir.join("token");
    match fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let token = wasmnet_engine::ids::new_id();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(file, "{token}").map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packaged config documents real keys with their defaults: uncommented, it parses
    /// and changes nothing.
    #[test]
    fn the_packaged_config_names_real_keys_and_their_defaults() {
        let text = include_str!("../packaging/config.toml");
        let live: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap()))
            .collect();
        assert!(live.lines().count() >= 8, "{live}");
        let f: FileConfig = toml::from_str(&live).unwrap();
        assert_eq!(
            f.docker_plugin_socket.as_deref(),
            Some(Path::new(DEFAULT_DOCKER_PLUGIN_SOCKET))
        );
        let d = default_network(&None, &None, &f).unwrap();
        assert_eq!(d, DefaultNetwork::default());
        let off = FileConfig {
            default_network: Some("off".into()),
            ..FileConfig::default()
        };
        assert_eq!(default_network(&None, &None, &off), None);
        let no_alt = default_network(&None, &Some("off".into()), &FileConfig::default()).unwrap();
        assert_eq!(no_alt.altname, None);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = std::env::temp_dir().join(format!("wasmnet-cfg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        fs::write(&file, "state_dir = \"/from/file\"\nrun_dir = \"/run/file\"\ndefault_address_pools = [{ base = \"10.0.0.0/8\", size = 24 }]\n").unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            state_dir: Some("/from/flag".into()),
            ..Default::default()
        };
        let s = settings(args).unwrap();
        assert_eq!(s.state_dir, PathBuf::from("/from/flag"));
        assert_eq!(s.run_dir, PathBuf::from("/run/file"));
        assert_eq!(s.socket, PathBuf::from("/run/file/wasmnet.sock"));
        assert_eq!(s.engine.pools_v4[0].to_string(), "base=10.0.0.0/8,size=24");
        fs::write(&file, "colour = \"blue\"\n").unwrap();
        let err = settings(ServeArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("colour"), "{err}");
        fs::write(
            &file,
            "default_address_pools = [{ base = \"fd00::/48\", size = 64 }]\n",
        )
        .unwrap();
        assert!(settings(ServeArgs {
            config: Some(file),
            ..Default::default()
        })
        .is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn policy_port_ranges_parse_or_say_what_is_wrong() {
        assert_eq!(port_ranges("1024-65535").unwrap(), vec![1024..=65535]);
        assert_eq!(
            port_ranges("8000-8999, 443").unwrap(),
            vec![8000..=8999, 443..=443]
        );
        for bad in ["", "0-10", "9-1", "a-b", "1-70000"] {
            let e = port_ranges(bad).unwrap_err();
            assert!(e.starts_with("--policy-port-ranges: "), "{bad}: {e}");
        }
    }
}

//! A Bolt server for the Neo4j store's tests, and a fresh database per test.
//!
//! Where the server comes from, in order:
//! 1. `TWINGRAPH_TEST_BOLT_URI` (with `TWINGRAPH_TEST_BOLT_USER`,
//!    `TWINGRAPH_TEST_BOLT_PASSWORD`): an external server; each test gets
//!    its own database through `CREATE DATABASE` (Neo4j Enterprise, or
//!    another server that allows it);
//! 2. when a Docker engine is reachable (`DOCKER_HOST`, or
//!    `/var/run/docker.sock` answers), a Neo4j 5 container through
//!    `testcontainers` (the enterprise image under its evaluation license,
//!    for `CREATE DATABASE`), removed when the test process ends;
//! 3. otherwise a local ArcadeDB with its Bolt plugin, from the Python
//!    package `arcadedb-jvm` (it bundles a Java runtime), installed into
//!    `target/tmp/arcadedb/venv` on first use and started on free loopback
//!    ports; each test gets its own database through ArcadeDB's HTTP API.
//!    The server stops when the test process ends.
//!
//! When no server can be had, the tests fail and say why: nothing is
//! skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use twingraph::dtdl::ModelSet;
use twingraph::store::StoreConfig;
use twingraph::store::bolt::{BoltConfig, BoltStore};

/// The `arcadedb-jvm` release the tests run against.
const ARCADEDB_PACKAGE: &str = "arcadedb-jvm==26.11.1.dev2";

const ROOT_PASSWORD: &str = "twingraph-tests";

#[derive(Debug)]
enum Server {
    External {
        uri: String,
        user: String,
        password: String,
    },
    Arcade {
        bolt: SocketAddr,
        http: SocketAddr,
    },
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

fn server() -> &'static Server {
    match SERVER.get_or_init(find_server) {
        Ok(s) => s,
        Err(why) => panic!("no Bolt server for the Neo4j store tests: {why}"),
    }
}

fn find_server() -> Result<Server, String> {
    if let Ok(uri) = std::env::var("TWINGRAPH_TEST_BOLT_URI") {
        return Ok(Server::External {
            uri,
            user: std::env::var("TWINGRAPH_TEST_BOLT_USER").unwrap_or_else(|_| "neo4j".into()),
            password: std::env::var("TWINGRAPH_TEST_BOLT_PASSWORD").unwrap_or_default(),
        });
    }
    if docker_reachable() {
        return start_neo4j_container();
    }
    start_arcadedb()
}

fn docker_reachable() -> bool {
    match std::env::var("DOCKER_HOST") {
        Ok(host) => !host.is_empty(),
        Err(_) => std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok(),
    }
}

fn start_neo4j_container() -> Result<Server, String> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{GenericImage, ImageExt};
    let container = GenericImage::new("neo4j", "5-enterprise")
        .with_exposed_port(7687.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Started."))
        .with_env_var("NEO4J_AUTH", format!("neo4j/{ROOT_PASSWORD}"))
        .with_env_var("NEO4J_ACCEPT_LICENSE_AGREEMENT", "eval")
        .with_startup_timeout(Duration::from_secs(300))
        .start()
        .map_err(|e| format!("a Docker engine answers, but no Neo4j container started: {e}"))?;
    let host = container
        .get_host()
        .map_err(|e| format!("the Neo4j container's host: {e}"))?;
    let port = container
        .get_host_port_ipv4(7687)
        .map_err(|e| format!("the Neo4j container's Bolt port: {e}"))?;
    // The container serves the whole test process; a shell removes it when
    // the process ends (a static is never dropped).
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; docker rm -f {} >/dev/null 2>&1",
            std::process::id(),
            container.id()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    std::mem::forget(container);
    Ok(Server::External {
        uri: format!("bolt://{host}:{port}"),
        user: "neo4j".into(),
        password: ROOT_PASSWORD.into(),
    })
}

fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The installed `arcadedb` package directory (installing it if needed).
fn arcadedb_package(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("venv");
    let find = || -> Option<PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.filter_map(Result::ok)
            .map(|d| d.path().join("site-packages").join("arcadedb"))
            .find(|p| p.join("jars").is_dir() && p.join("jre/bin/java").is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let lock = root.join("install.lock");
    // One installer at a time (other test binaries may run concurrently).
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if let Some(p) = find() {
            return Ok(p);
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("{} is held; remove it if stale", lock.display()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let installed = (|| {
        if let Some(p) = find() {
            return Ok(p);
        }
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating a Python virtual environment (python3 -m venv)",
        )?;
        let package = std::env::var("TWINGRAPH_TEST_ARCADEDB_PIP")
            .unwrap_or_else(|_| ARCADEDB_PACKAGE.into());
        run(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", &package]),
            &format!("pip install {package}"),
        )?;
        find()
            .ok_or_else(|| format!("{package} installed, but its jars or Java runtime are missing"))
    })();
    let _ = std::fs::remove_dir(&lock);
    installed
}

fn start_arcadedb() -> Result<Server, String> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("arcadedb");
    let pkg = arcadedb_package(&root)?;
    let (bolt, http) = (free_port()?, free_port()?);
    let data = root.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    launch_arcadedb(&pkg, &data, bolt, http, false)?;
    Ok(Server::Arcade { bolt, http })
}

/// Starts ArcadeDB on `data` (its PID in `data/java.pid`) and waits for its
/// ports. It lives as long as this test process (a shell watches it); when
/// it ends, `data` is removed unless `keep`.
fn launch_arcadedb(
    pkg: &Path,
    data: &Path,
    bolt: SocketAddr,
    http: SocketAddr,
    keep: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let log = data.join("server.log");
    let java = pkg.join("jre/bin/java");
    let classpath = format!("{}/*", pkg.join("jars").display());
    // The heap: the benchmark's 100,000-twin plant wants more than tests do.
    let heap = std::env::var("TWINGRAPH_TEST_ARCADEDB_HEAP").unwrap_or_else(|_| "2g".into());
    if !heap.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "TWINGRAPH_TEST_ARCADEDB_HEAP={heap:?} is not a Java heap size"
        ));
    }
    let cleanup = if keep { "" } else { "rm -rf \"$2\"" };
    let script = format!(
        "\"$0\" -Xmx{heap} -cp \"$1\" \
         -Darcadedb.server.rootPath=\"$2\" \
         -Darcadedb.server.rootPassword={ROOT_PASSWORD} \
         -Darcadedb.server.defaultDatabases='twins[root]' \
         -Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin \
         -Darcadedb.bolt.host=127.0.0.1 -Darcadedb.bolt.port={} \
         -Darcadedb.server.httpIncomingHost=127.0.0.1 -Darcadedb.server.httpIncomingPort={} \
         com.arcadedb.server.ArcadeDBServer >>\"$3\" 2>&1 & J=$!; echo $J >\"$2/java.pid\"; \
         while kill -0 {} 2>/dev/null && kill -0 $J 2>/dev/null; do sleep 1; done; \
         kill $J 2>/dev/null; wait $J; {cleanup}",
        bolt.port(),
        http.port(),
        std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&java)
        .arg(&classpath)
        .arg(data)
        .arg(&log)
        // ArcadeDB writes its `log/` folder into its working directory.
        .current_dir(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start ArcadeDB ({}): {e}", java.display()))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if TcpStream::connect(bolt).is_ok() && TcpStream::connect(http).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
            return Err(format!(
                "ArcadeDB did not open its ports within 120 s; log (last lines, newest first):\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A local ArcadeDB of one test's own, which the test can stop (as an
/// operator stops a database: SIGTERM) and start again on the same data.
/// Whatever `TWINGRAPH_TEST_BOLT_URI` says: a shared server cannot be
/// restarted under the other tests.
pub(crate) struct OwnArcade {
    pkg: PathBuf,
    data: PathBuf,
    bolt: SocketAddr,
    http: SocketAddr,
}

impl OwnArcade {
    pub(crate) fn start() -> OwnArcade {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("arcadedb");
        let started = (|| {
            let pkg = arcadedb_package(&root)?;
            static N: AtomicUsize = AtomicUsize::new(0);
            let data = root.join(format!(
                "own-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&data);
            let (bolt, http) = (free_port()?, free_port()?);
            launch_arcadedb(&pkg, &data, bolt, http, true)?;
            Ok::<_, String>(OwnArcade {
                pkg,
                data,
                bolt,
                http,
            })
        })();
        started.unwrap_or_else(|why| panic!("no ArcadeDB of the test's own: {why}"))
    }

    /// Connection settings of a new, empty database on it.
    pub(crate) fn database(&self, name: &str) -> BoltConfig {
        arcade_command(self.http, &format!("create database {name}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut config = BoltConfig::new(&format!("bolt://{}", self.bolt), "root", ROOT_PASSWORD);
        config.database = Some(name.to_owned());
        config
    }

    /// Stops the database process (SIGTERM) and waits until it is gone.
    pub(crate) fn stop(&self) {
        let pid = std::fs::read_to_string(self.data.join("java.pid")).unwrap_or_default();
        let pid = pid.trim();
        assert!(!pid.is_empty(), "ArcadeDB's PID is not known");
        let _ = Command::new("kill").args(["-TERM", pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "ArcadeDB did not stop in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts it again on its data and ports.
    pub(crate) fn restart(&self) {
        launch_arcadedb(&self.pkg, &self.data, self.bolt, self.http, true)
            .unwrap_or_else(|why| panic!("ArcadeDB did not start again: {why}"));
    }
}

impl Drop for OwnArcade {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// POSTs a server command to ArcadeDB's HTTP API.
fn arcade_command(http: SocketAddr, command: &str) -> Result<(), String> {
    let body = serde_json::json!({ "command": command }).to_string();
    let auth = base64(&format!("root:{ROOT_PASSWORD}"));
    let mut s = TcpStream::connect(http).map_err(|e| e.to_string())?;
    write!(
        s,
        "POST /api/v1/server HTTP/1.1\r\nHost: {http}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    if resp.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("ArcadeDB refused {command:?}: {resp}"))
    }
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Connection settings of a new, empty database on the test server.
pub async fn fresh_database() -> BoltConfig {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let server = tokio::task::spawn_blocking(server)
        .await
        .expect("the Bolt server starter");
    let mut config = match server {
        Server::External {
            uri,
            user,
            password,
        } => {
            let config = BoltConfig::new(uri, user, password);
            let graph = neo4rs::Graph::connect(
                neo4rs::ConfigBuilder::default()
                    .uri(uri.as_str())
                    .user(user.as_str())
                    .password(password.as_str())
                    .db("system")
                    .build()
                    .expect("config"),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {uri}: {e}"));
            graph
                .run(neo4rs::query(&format!(
                    "CREATE DATABASE {name} IF NOT EXISTS WAIT"
                )))
                .await
                .unwrap_or_else(|e| {
                    panic!("{uri} cannot create a database per test (CREATE DATABASE): {e}")
                });
            config
        }
        Server::Arcade { bolt, http } => {
            let (http, command) = (*http, format!("create database {name}"));
            tokio::task::spawn_blocking(move || arcade_command(http, &command))
                .await
                .expect("the database creator")
                .unwrap_or_else(|e| panic!("{e}"));
            BoltConfig::new(&format!("bolt://{bolt}"), "root", ROOT_PASSWORD)
        }
    };
    config.database = Some(name);
    config
}

/// A Neo4j store on a new, empty database.
pub async fn store(models: Arc<ModelSet>, config: StoreConfig) -> BoltStore {
    let bolt = fresh_database().await;
    let uri = bolt.uri.clone();
    BoltStore::connect(bolt, models, config)
        .await
        .unwrap_or_else(|e| panic!("cannot open the Neo4j store on {uri}: {e}"))
}

/// A TCP proxy in front of the Bolt server that can cut the line (close
/// every connection and refuse new ones) and restore it: Neo4j going away
/// and coming back, as the server sees it.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::Acquire) {
                    continue; // dropped: the connection is closed at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open2.lock().expect("lock").push(task.abort_handle());
            }
        });
        Proxy { addr, up, open }
    }

    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::Release);
        for t in self.open.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    pub(crate) fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }
}

/// The address a `bolt://host:port` URI names.
pub(crate) fn bolt_addr(uri: &str) -> SocketAddr {
    uri.trim_start_matches("bolt://")
        .parse()
        .unwrap_or_else(|e| panic!("{uri}: {e}"))
}

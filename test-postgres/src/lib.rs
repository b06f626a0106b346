//! A throwaway PostgreSQL server for the tests: started here, removed afterwards.
//!
//! PostgreSQL 15 binaries from `/usr/lib/postgresql/*/bin`; `initdb` into a temporary directory
//! with trust authentication; `postgres` on 127.0.0.1, a free port, its own socket directory
//! (never the system one) and `fsync=off`. The server refuses to run as root, so as root it runs
//! as the `postgres` user through `setpriv`, which execs: the PID held is the server's.
//! Servers left by a killed run (whose starting process is gone) are swept at the next start.
//! `cargo xtask test` runs one for every test; a test that stops its server (an outage) starts
//! its own.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

/// Temporary directories of this harness start with this.
const PREFIX: &str = "rc-pg-";

/// The PEM files a TLS server needs.
pub struct TlsFiles<'a> {
    /// The server's certificate.
    pub server_cert: &'a str,
    /// The server's private key.
    pub server_key: &'a str,
    /// The CA that client certificates must chain to (`cert` authentication).
    pub client_ca: &'a str,
}

/// A running throwaway server; stopped and removed when dropped.
pub struct PgServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Servers started by this process so far (their directories are `rc-pg-<pid>-<n>`).
static STARTED: AtomicU32 = AtomicU32::new(0);

fn bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "PostgreSQL binaries not found in /usr/lib/postgresql (install postgresql-15)"
                .to_owned()
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|dir| dir.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .ok_or_else(|| "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args` as the server's user: `setpriv` to `postgres` when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A new directory for a server, `rc-pg-<pid>-<n>` with its socket directory, owned by the
/// server's user.
fn server_dir() -> Result<PathBuf, String> {
    let dir = fresh_dir("")?;
    let socket = dir.join("socket");
    fs::create_dir_all(&socket).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if is_root() {
        // The server user must own its directories.
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run chown: {e}"))?;
        if !status.success() {
            return Err(format!("chown of {} failed", dir.display()));
        }
    }
    Ok(dir)
}

/// A new directory `rc-pg-<pid>-<n><suffix>` in the temporary directory: this harness's, so a
/// run that was killed has it swept at the next start.
fn fresh_dir(suffix: &str) -> Result<PathBuf, String> {
    let serial = STARTED.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{serial}{suffix}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs `command` (`what`, for errors) to make a server in `dir`; on failure removes `dir`
/// and says why.
fn run_in(dir: &Path, what: &str, command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let _ = fs::remove_dir_all(dir);
    Err(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Stops servers a killed run left behind (their starting process is gone) and removes their
/// directories.
pub fn sweep() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(owner) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .map(str::to_owned)
        else {
            continue;
        };
        if Path::new("/proc").join(&owner).exists() {
            continue; // its process still runs: not a leftover
        }
        // A PgBouncer a run left (one held in a test binary's static is never dropped).
        if let Ok(pid) = fs::read_to_string(path.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
        }
        if let Ok(pid_file) = fs::read_to_string(path.join("data/postmaster.pid"))
            && let Some(pid) = pid_file.lines().next()
        {
            let _ = Command::new("kill").args(["-QUIT", pid.trim()]).status();
            thread::sleep(Duration::from_millis(200));
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&path);
    }
}

impl PgServer {
    /// Sweeps leftovers, then starts a fresh server and waits until it accepts connections.
    pub fn start() -> Result<PgServer, String> {
        sweep();
        let bin = bin_dir()?;
        let dir = server_dir()?;
        let data = dir.join("data");
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
        ]);
        run_in(&dir, "initdb", &mut initdb)?;
        let port = free_port()?;
        let mut server = PgServer {
            dir,
            port,
            child: None,
        };
        server.run(&bin)?;
        Ok(server)
    }

    /// Starts the server process on the existing data directory and waits until it is ready.
    fn run(&mut self, bin: &Path) -> Result<(), String> {
        let data = self.dir.join("data");
        let socket = self.dir.join("socket");
        let port = self.port;
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
            ])
            .arg(&socket)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        self.child = Some(child);
        self.wait_ready(bin)
    }

    /// Stops the server (a fast shutdown: clients are disconnected), keeping its data, as an
    /// outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops the server as a crash would (an immediate shutdown: no clean end, nothing more
    /// sent to a standby), keeping its data.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.run(&bin_dir()?)
    }

    fn wait_ready(&self, bin: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ready = Command::new(bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        Err("the throwaway PostgreSQL server did not become ready in 20 s".to_owned())
    }

    /// Turns TLS on: writes the server's certificate and key and the CA that signs client
    /// certificates into the data directory, replaces `pg_hba.conf` with `hba` (its lines as
    /// they would be written there), and restarts the server to apply them.
    pub fn enable_tls(&mut self, files: &TlsFiles<'_>, hba: &str) -> Result<(), String> {
        let data = self.dir.join("data");
        let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
            use std::os::unix::fs::PermissionsExt;
            let path = data.join(name);
            fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
        };
        write("server.crt", files.server_cert, 0o644)?;
        write("server.key", files.server_key, 0o600)?;
        write("root.crt", files.client_ca, 0o644)?;
        write("pg_hba.conf", hba, 0o600)?;
        let conf = data.join("postgresql.conf");
        let mut settings = fs::read_to_string(&conf)
            .map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
        settings.push_str(
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
        );
        fs::write(&conf, settings).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown of {} failed", data.display()));
            }
        }
        self.restart()
    }

    /// Starts a streaming standby of this server (`pg_basebackup -R`), on a port of its own,
    /// and waits until it accepts connections.
    pub fn start_standby(&self) -> Result<PgServer, String> {
        let bin = bin_dir()?;
        let dir = server_dir()?;
        let mut backup = as_server_user(&bin.join("pg_basebackup"));
        backup.arg("-D").arg(dir.join("data")).args([
            "-R",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "--checkpoint=fast",
        ]);
        run_in(&dir, "pg_basebackup", &mut backup)?;
        let mut standby = PgServer {
            dir,
            port: free_port()?,
            child: None,
        };
        standby.run(&bin)?;
        Ok(standby)
    }

    /// Promotes this standby to a primary (`pg_ctl promote`, which waits for it).
    pub fn promote(&self) -> Result<(), String> {
        let promoted = as_server_user(&bin_dir()?.join("pg_ctl"))
            .arg("promote")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-t", "30"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl promote: {e}"))?;
        if promoted.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl promote failed: {}",
                String::from_utf8_lossy(&promoted.stderr)
            ))
        }
    }

    /// The directory of its Unix socket (local connections are trusted, in plaintext).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data is thrown away anyway.
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway PgBouncer in transaction pooling mode in front of a server: its own
/// configuration in a temporary directory, on a free port of 127.0.0.1, every user trusted.
/// Stopped and removed when dropped.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// What to do when PgBouncer is missing.
pub const PGBOUNCER_MISSING: &str =
    "pgbouncer is missing; install it with `.ci/install-pgbouncer` (Debian's pgbouncer)";

/// The PgBouncer binary, if installed.
pub fn pgbouncer_bin() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

impl PgBouncer {
    /// Starts PgBouncer in transaction pooling mode in front of the server on 127.0.0.1:
    /// `upstream_port`, with at most `pool_size` server connections per database and user, and
    /// waits until it accepts connections.
    pub fn start(upstream_port: u16, pool_size: u32) -> Result<PgBouncer, String> {
        let bin = pgbouncer_bin().ok_or_else(|| PGBOUNCER_MISSING.to_owned())?;
        let dir = fresh_dir("-pgbouncer")?;
        let port = free_port()?;
        let config = format!(
            "[databases]\n* = host=127.0.0.1 port={upstream_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {auth}\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits,options,application_name\n\
             logfile = {log}\npidfile = {pid}\nserver_reset_query =\n",
            auth = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
            pid = dir.join("pgbouncer.pid").display(),
        );
        fs::write(dir.join("pgbouncer.ini"), config)
            .and_then(|()| fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n"))
            .map_err(|e| format!("cannot write PgBouncer's configuration: {e}"))?;
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
        }
        // PgBouncer refuses to run as root.
        let child = as_server_user(&bin)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start pgbouncer: {e}"))?;
        let bouncer = PgBouncer {
            dir,
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(bouncer);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "pgbouncer did not listen within 10 s (its log: {})",
            bouncer.dir.join("pgbouncer.log").display()
        ))
    }

    /// The port clients connect to (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What to do when the Python peer is missing.
pub const PYTHON_PEER_MISSING: &str = "the Python peer (resilient-circuit 0.8.6 with psycopg) is missing; install it with `.ci/install-python-peer`";

/// The Python of the virtual environment `.ci/install-python-peer` makes (or the one
/// `RC_TEST_PYTHON_PEER` names), if it is there.
pub fn python_peer() -> Option<PathBuf> {
    let venv = match std::env::var_os("RC_TEST_PYTHON_PEER") {
        Some(venv) => PathBuf::from(venv),
        None => {
            PathBuf::from(std::env::var_os("HOME")?).join(".cache/resilient-circuit/python-peer")
        }
    };
    // Written by the installer once the package imports, so a half-made one does not count.
    let python = venv.join("bin/python");
    venv.join("installed").exists().then_some(python)
}

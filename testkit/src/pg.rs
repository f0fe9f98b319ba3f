use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use sqlx::{Connection, PgConnection};

/// The superuser initdb creates; trust auth on loopback only, so no password is needed.
const SUPERUSER: &str = "plasma";

/// A PostgreSQL cluster in a temp dir on a free loopback port, stopped and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    bin_dir: PathBuf,
    run_as: Option<String>,
    data_dir: PathBuf,
    port: u16,
    // Held for its Drop: the cluster's files live here.
    _dir: tempfile::TempDir,
}

impl PgCluster {
    /// initdb + pg_ctl start. Tuned for tests (fsync off): durability is not what tests measure.
    pub fn start() -> Result<Self> {
        Self::start_with(&["-c", "fsync=off", "-c", "full_page_writes=off"])
    }

    /// Starts a cluster passing extra `postgres` options (`-c name=value` pairs).
    pub fn start_with(options: &[&str]) -> Result<Self> {
        let bin_dir = bin_dir()?;
        let run_as = unprivileged_user()?;
        let dir = tempfile::Builder::new()
            .prefix("plasma-pg-")
            .tempdir()
            .context("creating the cluster's temp dir")?;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("sock");
        std::fs::create_dir_all(&socket_dir).context("creating the socket dir")?;
        if let Some(user) = &run_as {
            run(Command::new("chown").args(["-R", user]).arg(dir.path()))
                .context("handing the cluster dir to the unprivileged user")?;
        }
        let mut cluster = Self {
            bin_dir,
            run_as,
            data_dir,
            port: 0,
            _dir: dir,
        };
        let data = cluster.data_dir.to_string_lossy().into_owned();
        run(cluster.pg_command("initdb").args([
            "-D",
            &data,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]))
        .context("initdb failed")?;

        // A free port can be taken between our probe and postgres binding it; retry a few times.
        let log = cluster._dir.path().join("postgres.log");
        let mut last_error = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            let mut postgres_options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                cluster.port,
                socket_dir.display()
            );
            for option in options {
                postgres_options.push(' ');
                postgres_options.push_str(option);
            }
            let started = run(cluster.pg_command("pg_ctl").args([
                "-D",
                &data,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &postgres_options,
                "start",
            ]));
            match started {
                Ok(_) => return Ok(cluster),
                Err(err) => {
                    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = Some(err.context(format!("server log:\n{server_log}")));
                }
            }
        }
        match last_error {
            Some(err) => Err(err.context("pg_ctl start failed")),
            None => bail!("pg_ctl start failed"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of a database in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_command(&self, program: &str) -> Command {
        let program = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir.to_string_lossy().into_owned();
        // Immediate: a test cluster has nothing worth a clean checkpoint.
        let _ = run(self
            .pg_command("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "stop"]));
    }
}

/// A fresh database for one test, in the shared cluster named by `PLASMA_TEST_PG_URL` or in a
/// cluster of its own.
#[derive(Debug)]
pub struct TestPg {
    url: String,
    _cluster: Option<PgCluster>,
}

impl TestPg {
    /// Panics with the reason when PostgreSQL cannot be reached or started.
    pub async fn start() -> Self {
        match Self::try_start().await {
            Ok(pg) => pg,
            Err(err) => {
                panic!("PostgreSQL is needed by this test and could not be started: {err:#}")
            }
        }
    }

    async fn try_start() -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let (admin_url, cluster) = match std::env::var("PLASMA_TEST_PG_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let cluster = PgCluster::start()?;
                (cluster.url("postgres"), Some(cluster))
            }
        };
        let database = format!(
            "t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut admin)
            .await
            .context("creating the test database")?;
        let url = replace_database(&admin_url, &database)?;
        Ok(Self {
            url,
            _cluster: cluster,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

fn replace_database(url: &str, database: &str) -> Result<String> {
    let (base, _) = url
        .rsplit_once('/')
        .with_context(|| format!("`{url}` has no database part"))?;
    Ok(format!("{base}/{database}"))
}

fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PLASMA_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    for candidate in ["/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"] {
        if Path::new(candidate).join("initdb").exists() {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("no PostgreSQL server binaries found: install PostgreSQL (scripts/install-deps.sh) or set PLASMA_PG_BINDIR")
}

/// initdb and postgres refuse to run as root; as root, run them as an unprivileged user.
fn unprivileged_user() -> Result<Option<String>> {
    let uid = run(Command::new("id").arg("-u")).context("finding the current uid")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Ok(None);
    }
    let user = std::env::var("PLASMA_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
    if run(Command::new("id").arg(&user)).is_err() {
        bail!("running as root and user `{user}` does not exist: create it (useradd --system {user}) or set PLASMA_PG_USER to an unprivileged user");
    }
    Ok(Some(user))
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the probed port")?
        .port())
}

fn run(command: &mut Command) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

//! Services of one test's own, for tests that stop them (the shared ones serve every other test
//! running beside it): an Apache Kafka broker on its own ports and data folder, started by the
//! same `scripts/kafka/broker.sh` as the shared one, and a PostgreSQL cluster of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A private broker's ports, for listener lines of its extra properties.
pub struct ListenerPorts {
    pub plaintext: u16,
    pub controller: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn wait_for_port(what: &str, port: u16, log: &Path) {
    let started = Instant::now();
    while !port_open(port) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{what} did not listen on {port}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An Apache Kafka broker of this test's own. Dropping it kills it.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    pub port: u16,
    controller_port: u16,
    child: Option<Child>,
    /// Broker properties added to the script's (`KAFKA_EXTRA_PROPERTIES`) and options of the
    /// storage format (`KAFKA_FORMAT_ARGS`).
    extra_properties: Option<PathBuf>,
    format_args: String,
}

impl PrivateBroker {
    /// Starts a broker with fresh storage and waits until it listens.
    pub fn start() -> Self {
        Self::start_with(|_| String::new(), "")
    }

    /// Starts a broker whose properties also hold what `extra` writes, given the broker's
    /// PLAINTEXT and controller ports (for listener lines), with `format_args` added to its
    /// storage format; waits until its PLAINTEXT listener listens.
    pub fn start_with(extra: impl FnOnce(&ListenerPorts) -> String, format_args: &str) -> Self {
        let mut broker = Self {
            dir: tempfile::Builder::new().prefix("eventline-kafka-").tempdir().expect("a data folder"),
            port: free_port(),
            controller_port: free_port(),
            child: None,
            extra_properties: None,
            format_args: format_args.to_string(),
        };
        let properties = extra(&ListenerPorts { plaintext: broker.port, controller: broker.controller_port });
        if !properties.is_empty() {
            let path = broker.dir.path().join("extra.properties");
            std::fs::write(&path, properties).unwrap();
            broker.extra_properties = Some(path);
        }
        broker.start_again();
        broker
    }

    /// `host:port` for `EVENTLINE_KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) on the same ports and data, and waits until it listens.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker runs already");
        let log = self.dir.path().join("kafka.log");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("broker log");
        let child = Command::new(Path::new(ROOT).join("scripts/kafka/broker.sh"))
            .args(["run", self.dir.path().to_str().unwrap(), &self.port.to_string(), &self.controller_port.to_string()])
            // Small: the shared broker and the parallel tests' processes share the machine.
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx384m")
            .env("KAFKA_EXTRA_PROPERTIES", self.extra_properties.as_deref().unwrap_or(Path::new("")))
            .env("KAFKA_FORMAT_ARGS", &self.format_args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("scripts/kafka/broker.sh runs (scripts/services.sh up installs the broker)");
        self.child = Some(child);
        wait_for_port("the private broker", self.port, &log);
    }

    /// SIGKILL: the broker dies mid-stream, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("the broker is reaped");
        }
        let started = Instant::now();
        while port_open(self.port) {
            assert!(started.elapsed() < Duration::from_secs(10), "the killed broker still listens");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kafka.log")).unwrap_or_default()
    }

    /// Waits for a listener of the extra properties: the broker opens its listeners one after
    /// another, so the plaintext one listening says nothing of the others.
    pub fn wait_for_listener(&self, what: &str, port: u16) {
        wait_for_port(what, port, &self.dir.path().join("kafka.log"));
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of this test's own (`initdb` + `pg_ctl`, trusting local connections),
/// run as the `postgres` OS user when the test runs as root. Dropping it stops it.
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// Server settings beyond the port and socket (`-c name=value` each).
    settings: String,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let cluster = Self::init();
        cluster.start_again();
        cluster
    }

    /// A cluster that accepts only TLS connections (`hostssl` lines alone in `pg_hba.conf`), with
    /// this certificate chain and key (PEM files).
    pub fn start_tls_only(certificate: &Path, key: &Path) -> Self {
        let mut cluster = Self::init();
        let (cert_copy, key_copy) = (cluster.dir.join("server.crt"), cluster.dir.join("server.key"));
        std::fs::copy(certificate, &cert_copy).unwrap();
        std::fs::copy(key, &key_copy).unwrap();
        std::fs::write(
            Path::new(&cluster.data()).join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        cluster.hand_to_owner();
        // The server refuses a key others can read.
        let chmod = cluster.as_owner(Path::new("/bin/chmod"), "chmod", &["600", key_copy.to_str().unwrap()]);
        assert!(chmod.status.success(), "chmod failed: {}", String::from_utf8_lossy(&chmod.stderr));
        cluster.settings = format!(
            "-c listen_addresses=127.0.0.1,::1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert_copy.display(),
            key_copy.display()
        );
        cluster.start_again();
        cluster
    }

    /// A cluster that asks every TCP client for its password (SCRAM); only its local socket
    /// trusts, for [`PrivatePostgres::sql`].
    pub fn start_with_passwords() -> Self {
        let cluster = Self::init();
        std::fs::write(
            Path::new(&cluster.data()).join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        cluster.start_again();
        cluster
    }

    /// Runs SQL as the superuser over the cluster's socket; returns the rows, unaligned.
    pub fn sql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let socket_dir = self.dir.to_str().unwrap();
        let output = self.as_owner(
            &self.bin.join("psql"),
            "psql",
            &[
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                socket_dir,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        );
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn init() -> Self {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!("eventline-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = Self { dir, port: free_port(), bin, settings: "-c listen_addresses=127.0.0.1".to_string() };
        cluster.hand_to_owner();
        let data = cluster.data();
        let output = cluster.as_owner(
            &cluster.bin.join("initdb"),
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        );
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        cluster
    }

    /// The server URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start_again(&self) {
        let options = format!("-p {} {} -k {} -c fsync=off", self.port, self.settings, self.dir.display());
        let log = self.dir.join("postgres.log");
        let output = self.as_owner(
            &self.bin.join("pg_ctl"),
            "pg_ctl",
            &["start", "-w", "-D", &self.data(), "-l", log.to_str().unwrap(), "-o", &options],
        );
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the cluster at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) {
        let output =
            self.as_owner(&self.bin.join("pg_ctl"), "pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &self.data()]);
        assert!(output.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn data(&self) -> String {
        self.dir.join("data").to_str().unwrap().to_string()
    }

    /// PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
    fn hand_to_owner(&self) {
        if running_as_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres", self.dir.to_str().unwrap()]).status();
            assert!(status.expect("chown runs").success(), "cannot hand {} to postgres", self.dir.display());
        }
    }

    /// Runs `program` as the cluster's owner.
    fn as_owner(&self, program: &Path, what: &str, args: &[&str]) -> std::process::Output {
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what} runs: {e}"))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.as_owner(&self.bin.join("pg_ctl"), "pg_ctl", &["stop", "-m", "immediate", "-D", &self.data()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// The folder of the installed PostgreSQL server's programs (Debian keeps them out of PATH).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql (scripts/services.sh installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("pg_ctl under /usr/lib/postgresql/*/bin")
}

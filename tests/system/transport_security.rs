//! Encrypted, verified connections: PostgreSQL over TLS with `sslmode=verify-full` (the right CA
//! connects; another CA or another host name is refused with a clear error), and a database on
//! another machine refused before any connection unless it is verified or explicitly allowed.
//! Certificates come from a CA the test makes with `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{stderr, BIN};
use crate::private_services::{free_port, PrivateBroker, PrivatePostgres};

/// A certificate authority of one test's own, in a temporary folder.
pub struct TestCa {
    dir: tempfile::TempDir,
    name: String,
}

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", stderr(&output));
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let ca = Self { dir: tempfile::Builder::new().prefix("eventline-ca-").tempdir().unwrap(), name: name.into() };
        let subject = format!("/CN={name}");
        #[rustfmt::skip]
        openssl(&[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ], ca.dir.path());
        ca
    }

    /// The CA's certificate (PEM), what clients trust.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses); returns its
    /// certificate and its key (PKCS#8), PEM files.
    pub fn issue(&self, file_stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let alt_names: Vec<String> = names
            .iter()
            .map(|n| if n.parse::<std::net::IpAddr>().is_ok() { format!("IP:{n}") } else { format!("DNS:{n}") })
            .collect();
        let extensions = format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
            alt_names.join(",")
        );
        std::fs::write(dir.join(format!("{file_stem}.ext")), extensions).unwrap();
        let (key, csr, cert, ext) = (
            format!("{file_stem}.key"),
            format!("{file_stem}.csr"),
            format!("{file_stem}.crt"),
            format!("{file_stem}.ext"),
        );
        let subject = format!("/CN={}/O={}", names[0], self.name);
        #[rustfmt::skip]
        openssl(&[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", &key, "-out", &csr, "-subj", &subject,
        ], dir);
        #[rustfmt::skip]
        openssl(&[
            "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", &cert, "-days", "2", "-extfile", &ext,
        ], dir);
        (dir.join(cert), dir.join(key))
    }
}

/// Runs `eventline` with `env` and nothing else of the caller's environment that eventline or
/// libpq would read.
fn eventline(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (var, _) in std::env::vars() {
        if var.starts_with("EVENTLINE_") || var.starts_with("PG") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.args(args).env("EVENTLINE_CONNECT_TIMEOUT_SECS", "5");
    command.envs(env.iter().copied()).output().expect("eventline runs")
}

/// `eventline migrate` against `url`.
fn migrate(url: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra_env);
    eventline(&["migrate"], &env)
}

#[test]
fn postgres_over_tls_connects_to_the_verified_server_only() {
    let ca = TestCa::new("eventline test CA");
    let (certificate, key) = ca.issue("postgres", &["localhost"]);
    let server = PrivatePostgres::start_tls_only(&certificate, &key);
    let port = server.port;
    let trusted = ca.certificate();
    let trusted = trusted.to_str().unwrap();

    // The right CA and the certificate's name: connected, encrypted.
    let verified =
        format!("postgres://postgres@localhost:{port}/eventline_tls?sslmode=verify-full&sslrootcert={trusted}");
    let output = migrate(&verified, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let psql = Command::new("psql")
        .args([&verified.replace("localhost", "127.0.0.1").replace("verify-full", "require"), "-XAtc"])
        .arg("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "t", "{}", stderr(&psql));

    // The server takes nothing in plain text, so a downgrade cannot go unnoticed.
    let plain = migrate(&format!("postgres://postgres@127.0.0.1:{port}/eventline_tls?sslmode=disable"), &[]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(stderr(&plain).contains("no encryption"), "{}", stderr(&plain));

    // Another CA: refused, saying why.
    let stranger = TestCa::new("someone else's CA");
    let other = stranger.certificate();
    let output = migrate(&verified.replace(trusted, other.to_str().unwrap()), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let hint = "(sslrootcert names the CA to trust, and the URL's host must be a name the server's certificate holds)";
    assert!(
        stderr(&output)
            .contains(&format!("is not the server it should be: invalid peer certificate: UnknownIssuer {hint}")),
        "{}",
        stderr(&output)
    );

    // The right CA, but the server is not who the certificate names.
    let output = migrate(&verified.replace("localhost", "127.0.0.1"), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "is not the server it should be: invalid peer certificate: certificate not valid for name \"127.0.0.1\"; \
             certificate is only valid for DnsName(\"localhost\") {hint}"
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_database_on_another_machine_is_refused_before_connecting_unless_verified_or_allowed() {
    // Nothing listens there: the refusal comes before any connection.
    let url = "postgres://app:hunter2@db.eventline.invalid:5432/eventline?sslmode=require";
    let refused = migrate(url, &[]);
    assert_eq!(refused.status.code(), Some(78));
    assert_eq!(
        stderr(&refused),
        "error: invalid DATABASE_URL: host db.eventline.invalid is not on this machine and sslmode=require encrypts \
         but does not check who the server is: use sslmode=verify-full (with sslrootcert=<the CA's certificate \
         file> unless the system trusts the server's CA), or set EVENTLINE_DATABASE_ALLOW_INSECURE=true to accept it\n"
    );

    // Allowed: eventline tries (and here finds no such host), after a warning in the log.
    let allowed = migrate(url, &[("EVENTLINE_DATABASE_ALLOW_INSECURE", "true")]);
    assert_eq!(allowed.status.code(), Some(1), "{}", stderr(&allowed));
    let log = stderr(&allowed);
    assert!(
        log.contains(
            "Unverified connection to PostgreSQL on another machine: DATABASE_URL: host db.eventline.invalid is not \
             on this machine and sslmode=require encrypts but does not check who the server is, accepted because \
             EVENTLINE_DATABASE_ALLOW_INSECURE is true"
        ),
        "{log}"
    );
    assert!(log.contains("cannot reach PostgreSQL at"), "{log}");
    assert!(!log.contains("hunter2"), "the password never prints: {log}");
}

#[test]
fn kafka_over_sasl_ssl_needs_the_right_ca_host_name_and_password() {
    let ca = TestCa::new("eventline test CA");
    let (certificate, key) = ca.issue("kafka", &["localhost"]);
    // Kafka's PEM key store: the (unencrypted PKCS#8) key and its certificate in one file.
    let keystore = certificate.with_file_name("kafka-keystore.pem");
    let pem = std::fs::read_to_string(&key).unwrap() + &std::fs::read_to_string(&certificate).unwrap();
    std::fs::write(&keystore, pem).unwrap();
    let secure = free_port();
    let broker = PrivateBroker::start_with(
        |ports| {
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{secure},CONTROLLER://127.0.0.1:{c}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://localhost:{secure}\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT\n\
                 sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
                 org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 ssl.keystore.type=PEM\n\
                 ssl.keystore.location={}\n",
                keystore.display(),
                p = ports.plaintext,
                c = ports.controller,
            )
        },
        "--add-scram SCRAM-SHA-512=[name=eventline,password=the-right-password]",
    );
    broker.wait_for_listener("the SASL_SSL listener", secure);
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), "the-right-password\n").unwrap();
    let trusted = ca.certificate();
    let stranger = TestCa::new("someone else's CA");
    let (host_name, address) = (format!("localhost:{secure}"), format!("127.0.0.1:{secure}"));
    let settings = |brokers: &str, ca: &Path, password_file: &Path| -> Vec<(String, String)> {
        [
            ("EVENTLINE_KAFKA_BROKERS", brokers),
            ("EVENTLINE_NAMESPACE", "tls"),
            ("EVENTLINE_RDKAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("EVENTLINE_RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("EVENTLINE_RDKAFKA_SASL_USERNAME", "eventline"),
            ("EVENTLINE_RDKAFKA_SASL_PASSWORD_FILE", password_file.to_str().unwrap()),
            ("EVENTLINE_RDKAFKA_SSL_CA_LOCATION", ca.to_str().unwrap()),
            // The listener is on IPv4 only; `localhost` may resolve to ::1 first.
            ("EVENTLINE_RDKAFKA_BROKER_ADDRESS_FAMILY", "v4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let run = |args: &[&str], env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        eventline(args, &env)
    };

    let created = run(&["topics", "create", "--partitions", "1"], settings(&host_name, &trusted, password.path()));
    assert!(created.status.success(), "{}\nbroker log: {}", stderr(&created), broker.log());

    let wrong_password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong_password.path(), "not-the-password").unwrap();
    let handshake = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate \
                     could not be verified";
    let refusals = [
        ("another CA", settings(&host_name, &stranger.certificate(), password.path()), handshake),
        // The right CA, but the broker is not who the certificate names.
        ("another host name", settings(&address, &trusted, password.path()), handshake),
        (
            "a wrong password",
            settings(&host_name, &trusted, wrong_password.path()),
            "SASL authentication error: Authentication failed during authentication due to invalid credentials with \
             SASL mechanism SCRAM-SHA-512",
        ),
    ];
    for (what, env, expected) in refusals {
        let output = run(&["topics", "create", "--partitions", "1"], env);
        assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(&output));
        let error = stderr(&output).lines().find(|l| l.starts_with("error: ")).unwrap_or_default().to_string();
        assert!(error.starts_with("error: cannot reach the Kafka brokers at "), "{what}: {}", stderr(&output));
        assert!(error.contains("; the last failure: ") && error.contains(expected), "{what}: {error}");
        assert!(!stderr(&output).contains("the-right-password"), "{what}: the password never prints");
    }
}

#[test]
fn kafka_security_settings_librdkafka_refuses_stop_start_up() {
    let missing_ca = "/nonexistent/ca.pem";
    let refused: [(&[(&str, &str)], &str); 3] = [
        (
            &[("EVENTLINE_RDKAFKA_SECURITY_PROTOCOL", "sasl_sssl")],
            "Invalid value \"sasl_sssl\" for configuration property \"security.protocol\"",
        ),
        (
            &[("EVENTLINE_RDKAFKA_SECURITY_PROTOCOL", "ssl"), ("EVENTLINE_RDKAFKA_SSL_CA_LOCATION", missing_ca)],
            "ssl.ca.location failed: error:05880002:x509 certificate routines::system lib",
        ),
        (
            &[
                ("EVENTLINE_RDKAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                ("EVENTLINE_RDKAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
            ],
            "sasl.username and sasl.password must be set",
        ),
    ];
    for (env, reason) in refused {
        // Any command, before it connects anywhere: nothing listens at these addresses.
        let mut env = env.to_vec();
        env.extend([("EVENTLINE_KAFKA_BROKERS", "127.0.0.1:1"), ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/x")]);
        for command in [&["topics", "create"][..], &["migrate"], &["worker", "daily_activity"]] {
            let output = eventline(command, &env);
            assert_eq!(output.status.code(), Some(78), "{command:?} {env:?}: {}", stderr(&output));
            assert_eq!(
                stderr(&output),
                format!("error: invalid librdkafka settings (EVENTLINE_RDKAFKA_* or kafka.properties): {reason}\n"),
                "{command:?}"
            );
        }
    }
}

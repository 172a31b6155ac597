//! Encrypted, verified connections: PostgreSQL over TLS with `sslmode=verify-full` (the right CA
//! connects; another CA or another host name is refused with a clear error), and a database on
//! another machine refused before any connection unless it is verified or explicitly allowed.
//! Certificates come from a CA the test makes with `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::{stderr, BIN};
use crate::private_services::PrivatePostgres;

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

/// `eventline migrate` against `url`, with nothing else of the caller's environment that
/// eventline or libpq would read.
fn migrate(url: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for (var, _) in std::env::vars() {
        if var.starts_with("EVENTLINE_") || var.starts_with("PG") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.args(["migrate"]).env("DATABASE_URL", url).env("EVENTLINE_CONNECT_TIMEOUT_SECS", "5");
    command.envs(extra_env.iter().copied()).output().expect("eventline runs")
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

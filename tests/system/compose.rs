//! The Docker Compose stack cannot run here (no Docker engine), so it is checked offline: the
//! file must parse with docker-compose's own parser, and the services the README names must be
//! exactly the services it defines.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose(args: &[&str], file: &Path) -> std::process::Output {
    Command::new("docker-compose").arg("-f").arg(file).args(args).output().unwrap_or_else(|e| {
        panic!("docker-compose is needed to check docker-compose.yml (scripts/test.sh installs it): {e}")
    })
}

/// Service names in the README's "Docker Compose" table: rows starting with "| `name` |".
fn readme_services() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = readme.split("## Docker Compose").nth(1).expect("a Docker Compose section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(String::from)
        .collect()
}

#[test]
fn the_compose_file_parses_and_defines_the_services_the_readme_names() {
    let file = Path::new(ROOT).join("docker-compose.yml");
    let output = compose(&["config", "--services"], &file);
    assert!(output.status.success(), "docker-compose rejects the file: {}", String::from_utf8_lossy(&output.stderr));
    let defined: BTreeSet<String> = String::from_utf8(output.stdout).unwrap().lines().map(String::from).collect();
    let named = readme_services();
    assert!(!named.is_empty());
    assert_eq!(named, defined, "the README's service table and docker-compose.yml disagree");
    assert!(Path::new(ROOT).join("Dockerfile").exists(), "the compose file builds from the Dockerfile");
}

#[test]
fn the_compose_check_rejects_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, "services:\n  kafka:\n    image: [not, a, string]\n").unwrap();
    let output = compose(&["config", "-q"], &file);
    assert!(!output.status.success(), "a broken compose file must not pass");
}

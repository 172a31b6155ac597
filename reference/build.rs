//! Embeds every file under the repository's `schemas/` (the reference domains' registry) into the
//! reference application, so the registry its binary validates with is the one it was built and
//! tested against. `EVENTLINE_SCHEMAS_DIR` can point at another folder.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../schemas").canonicalize().expect("schemas/ exists");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code = String::from(
        "/// Every file under `schemas/`: (path relative to it, contents).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for (relative, absolute) in &files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        writeln!(code, "    ({relative:?}, include_str!({:?})),", absolute.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("embedded_schemas.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).expect("schemas/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("below the root").to_string_lossy().replace('\\', "/");
            files.push((relative, path));
        }
    }
}

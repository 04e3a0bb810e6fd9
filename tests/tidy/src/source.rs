//! The workspace's Rust sources as the rules see them: path, text, and whether the file is
//! test-only code.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories never walked.
const SKIPPED: &[&str] = &[
    "target",
    ".git",
    "node_modules",
    "fixtures",
    "corpus",
    "artifacts",
];

/// One `.rs` file of the repository.
pub struct Source {
    /// Path relative to the repository root, with `/` separators.
    pub path: String,
    pub text: String,
    /// Test-only code: under a `tests/` directory, named `tests.rs`, or a module its parent
    /// declares under `#[cfg(test)]`.
    pub test_only: bool,
}

impl Source {
    /// Lines that are code, not comments (a line comment or doc comment is skipped).
    pub fn code_lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.text
            .lines()
            .enumerate()
            .map(|(i, line)| (i + 1, line))
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under the given top-level directories.
pub fn all(tops: &[&str]) -> Vec<Source> {
    let root = root();
    let mut files = Vec::new();
    for top in tops {
        walk(&root.join(top), &mut files);
    }
    let test_modules = test_modules(&files);
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let rel = relative(&root, &path);
            let test_only = rel.contains("/tests/")
                || rel.ends_with("/tests.rs")
                || test_modules.iter().any(|m| {
                    rel == *m || rel.starts_with(&format!("{}/", m.trim_end_matches(".rs")))
                });
            Source {
                path: rel,
                text,
                test_only,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) && !name.starts_with('.') {
                walk(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn relative(root: &Path, path: &Path) -> String {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Modules declared `#[cfg(test)] mod name;`, as the paths of their files (`dir/name.rs` or
/// `dir/name/mod.rs` — returned as `dir/name.rs`, which also prefixes `dir/name/`).
fn test_modules(files: &[PathBuf]) -> BTreeSet<String> {
    let root = root();
    let mut modules = BTreeSet::new();
    for path in files {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let rel = relative(&root, path);
        let dir = module_dir(&rel);
        let mut cfg_test = false;
        for line in text.lines().map(str::trim) {
            if line == "#[cfg(test)]" {
                cfg_test = true;
                continue;
            }
            if cfg_test {
                if let Some(name) = declared_module(line) {
                    modules.insert(format!("{dir}{name}.rs"));
                }
            }
            if !line.starts_with("#[") {
                cfg_test = false;
            }
        }
    }
    modules
}

/// The directory where a file's child modules live.
fn module_dir(rel: &str) -> String {
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    match file {
        "mod.rs" | "lib.rs" | "main.rs" => prefix,
        _ => format!("{prefix}{}/", file.trim_end_matches(".rs")),
    }
}

fn declared_module(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    let name = rest.strip_prefix("mod ")?.strip_suffix(';')?;
    Some(name.trim())
}

//! The rules. Each test names the invariant it holds and how to mend a failure.

use std::fs;

use crate::source::{self, Source};

/// The crates whose sources the rules read.
const CRATES: &[&str] = &[
    "shared",
    "dataplane",
    "controlplane",
    "tests/mock-upstream",
    "tests/tidy",
    "fuzz",
];

/// The largest non-test source file, in lines.
const MAX_LINES: usize = 800;

fn sources() -> Vec<Source> {
    let all = source::all(CRATES);
    assert!(
        all.len() > 100,
        "tidy found only {} sources: is the walk rooted right?",
        all.len()
    );
    all
}

/// Known exceptions: files that break a rule today. The list may only shrink; an entry
/// that no longer breaks its rule fails the test so that it is removed.
fn check(rule: &str, offenders: Vec<String>, known: &[&str]) {
    let new: Vec<&String> = offenders
        .iter()
        .filter(|o| !known.contains(&o.as_str()))
        .collect();
    let mended: Vec<&&str> = known
        .iter()
        .filter(|k| !offenders.iter().any(|o| o == **k))
        .collect();
    assert!(
        new.is_empty(),
        "{rule}:\n  {}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        mended.is_empty(),
        "{rule}: these no longer break the rule; remove them from the known exceptions:\n  {}",
        mended.iter().map(|s| **s).collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let offenders = sources()
        .into_iter()
        .filter(|s| !s.text.starts_with("//!"))
        .map(|s| s.path)
        .collect();
    check(
        "a source file must start with a `//!` line saying what it is",
        offenders,
        &[],
    );
}

#[test]
fn non_test_source_files_stay_under_the_size_limit() {
    let offenders = sources()
        .into_iter()
        .filter(|s| {
            !s.test_only && !s.path.ends_with("db/schema.rs") && s.text.lines().count() > MAX_LINES
        })
        .map(|s| format!("{} ({} lines)", s.path, s.text.lines().count()))
        .collect();
    check(
        &format!("non-test source files over {MAX_LINES} lines: split them by concern"),
        offenders,
        &[],
    );
}

/// `pingora` (or one of its `pingora_*` crates) used as a path, not mentioned in a string.
fn uses_pingora(line: &str) -> bool {
    let mut rest = line;
    while let Some(at) = rest.find("pingora") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "pingora".len()..];
        let ident_start =
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '"' || c == '=');
        let path = after.starts_with("::") || (after.starts_with('_') && after.contains("::"));
        if ident_start && path {
            return true;
        }
        rest = after;
    }
    false
}

#[test]
fn pingora_is_used_only_in_the_proxy_glue() {
    let offenders = sources()
        .into_iter()
        .filter(|s| {
            s.path.starts_with("dataplane/src/") && !s.path.starts_with("dataplane/src/proxy/")
        })
        .filter(|s| s.code_lines().any(|(_, line)| uses_pingora(line)))
        .map(|s| s.path)
        .collect();
    check(
        "Pingora types belong in dataplane/src/proxy/ only",
        offenders,
        &[],
    );
}

#[test]
fn provider_adapters_do_no_io() {
    let forbidden = ["tokio", "std::fs", "crate::credentials"];
    let offenders = sources()
        .into_iter()
        .filter(|s| s.path.starts_with("dataplane/src/providers/") && !s.test_only)
        .filter(|s| {
            s.code_lines()
                .any(|(_, line)| forbidden.iter().any(|f| line.contains(f)))
        })
        .map(|s| s.path)
        .collect();
    // Credentials are resolved when the runtime snapshot is built (`crate::credentials`) and
    // handed to the adapters as `providers::Credential`.
    check(
        "providers/ must not import tokio, std::fs or credentials/ (adapters are pure)",
        offenders,
        &[],
    );
}

#[test]
fn diesel_query_dsl_stays_in_the_control_planes_db_module() {
    let offenders = sources()
        .into_iter()
        .filter(|s| {
            s.path.starts_with("controlplane/src/") && !s.path.starts_with("controlplane/src/db/")
        })
        .filter(|s| {
            s.code_lines()
                .any(|(_, line)| line.contains("diesel::") || line.contains("db::schema"))
        })
        .map(|s| s.path)
        .collect();
    check(
        "diesel's query DSL belongs in controlplane/src/db/",
        offenders,
        &[],
    );
}

/// The dependencies `shared` may have: data formats, hashing and crypto, time. Anything that
/// does I/O or brings a runtime (tokio, HTTP, databases, Redis, Pingora, actix) is refused.
const SHARED_DEPENDENCIES: &[&str] = &[
    "serde",
    "serde_json",
    "serde_yaml",
    "serde_path_to_error",
    "thiserror",
    "uuid",
    "hmac",
    "sha2",
    "subtle",
    "hex",
    "humantime",
    "chrono",
    "chrono-tz",
    "ring",
    "base64",
];

#[test]
fn shared_has_no_runtime_or_io_dependency() {
    let manifest = fs::read_to_string(source::root().join("shared/Cargo.toml")).unwrap_or_default();
    let offenders = dependency_names(&manifest, "[dependencies]")
        .into_iter()
        .filter(|name| !SHARED_DEPENDENCIES.contains(&name.as_str()))
        .collect();
    check(
        "shared holds contracts only: a new dependency must do no I/O and bring no runtime \
         (add it to SHARED_DEPENDENCIES in tests/tidy/src/rules.rs only if so)",
        offenders,
        &[],
    );
}

/// The names in one `[section]` of a Cargo manifest.
fn dependency_names(manifest: &str, section: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|line| line.trim() != section)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split_once('='))
        .filter_map(|(name, _)| name.trim().split('.').next().map(str::to_string))
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect()
}

#[test]
fn the_rules_see_what_they_should() {
    assert!(uses_pingora("use pingora::prelude::*;"));
    assert!(uses_pingora("fn f(s: &pingora_proxy::Session) {}"));
    assert!(!uses_pingora(r#"EnvFilter::new("info,pingora_core=warn")"#));
    assert!(!uses_pingora("let my_pingora = 1;"));
    let manifest = "[dependencies]\nserde = \"1\"\ntokio.workspace = true\n\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(
        dependency_names(manifest, "[dependencies]"),
        ["serde", "tokio"]
    );
}

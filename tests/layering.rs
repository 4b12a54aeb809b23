//! The layering promised in `src/lib.rs`, checked on the source text: the core never
//! imports an edge or the store, the store imports only the core, `interop` is used by
//! edges and the service but uses neither, and no edge imports another edge. The binary
//! (`main.rs`, `cli/`) is the composition root: it starts the edges, so it may name
//! them all; `config` gathers every module's settings section and only the binary reads it. Every
//! `crate::x` / `drscreen::x` path in a module counts, whether in a `use` or inline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const CORE: [&str; 7] = ["model", "preprocess", "engine", "grading", "review", "report", "pipeline"];
const EDGES: [&str; 3] = ["http", "dicom", "dips"];
const ALL: [&str; 14] = [
    "model",
    "preprocess",
    "engine",
    "grading",
    "review",
    "report",
    "pipeline",
    "store",
    "interop",
    "service",
    "config",
    "http",
    "dicom",
    "dips",
];

/// The modules `module` may import (besides itself).
fn allowed(module: &str) -> Option<BTreeSet<&'static str>> {
    let core: BTreeSet<&str> = CORE.into_iter().collect();
    let with = |extra: &[&'static str]| core.iter().copied().chain(extra.iter().copied()).collect::<BTreeSet<_>>();
    Some(match module {
        m if CORE.contains(&m) => core,
        // The settings gather every module's own section; only the binary reads them.
        "config" => ALL.into_iter().filter(|m| *m != "config").collect(),
        "store" => core,
        "interop" => with(&["store"]),
        "service" => with(&["store", "interop"]),
        // An edge may use everything below it, never another edge.
        m if EDGES.contains(&m) => with(&["store", "interop", "service"]),
        "cli" => ALL.into_iter().collect(),
        _ => return None,
    })
}

/// The top-level module a source file belongs to (`src/http/pages/case.rs` -> `http`;
/// the binary's `main.rs` and `cli/` are the `cli` edge).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    match first.as_str() {
        "lib" => None,
        "main" => Some("cli".into()),
        _ => Some(first),
    }
}

/// Modules a source text names through `crate::` or `drscreen::`, comments excluded.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for prefix in ["crate::", "drscreen::"] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                let name: String = rest[at + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                // `my_crate::x` is not `crate::x`.
                if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
                    out.insert(name);
                }
                rest = &rest[at + prefix.len()..];
            }
        }
    }
    out
}

/// Every forbidden arrow in `files` (path, module, imported module).
fn violations(src: &Path, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(src, path) else { continue };
        let Some(allowed) = allowed(&module) else {
            found.push(format!("{}: module `{module}` has no place in the layering (add it to tests/layering.rs)", path.display()));
            continue;
        };
        for target in imports(text) {
            if ALL.contains(&target.as_str()) && target != module && !allowed.contains(target.as_str()) {
                found.push(format!("{}: `{module}` imports `{target}`", path.display()));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 40, "expected the whole source tree, found {} files", files.len());
    let found = violations(&src, &files);
    assert!(found.is_empty(), "layering violations:\n{}", found.join("\n"));
}

#[test]
fn the_check_catches_forbidden_arrows() {
    let src = Path::new("/x/src");
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_string());
    let bad = [
        file("/x/src/grading/rules.rs", "use crate::store::Store;"),
        file("/x/src/report/agreement.rs", "fn f() { let _ = crate::http::router; }"),
        file("/x/src/http/v1.rs", "use crate::dicom::scp;"),
        file("/x/src/dicom/scp.rs", "use crate::http::AppState;"),
        file("/x/src/dips/sender.rs", "use crate::dicom::sender;"),
        file("/x/src/store/mod.rs", "use crate::service::CommitHook;"),
        file("/x/src/interop/sr.rs", "use crate::service::ScreeningService;"),
        file("/x/src/newthing/mod.rs", ""),
        file("/x/src/http/mod.rs", "pub review: crate::config::ReviewConfig,"),
        file("/x/src/service/mod.rs", "use crate::config::Config;"),
    ];
    let found = violations(src, &bad);
    assert_eq!(found.len(), 10, "{found:#?}");
    let good = [
        file("/x/src/http/v1.rs", "use crate::service::ScreeningService; // crate::dicom in a comment\nuse crate::interop::sr;"),
        file("/x/src/grading/rules.rs", "use crate::engine::Scored; use my_crate::http;"),
        file("/x/src/lib.rs", "pub mod http;"),
        file("/x/src/main.rs", "use drscreen::http::serve; use drscreen::dicom::start;"),
        file("/x/src/cli/serve.rs", "drscreen::dicom::start(); drscreen::http::serve();"),
    ];
    assert!(violations(src, &good).is_empty());
}

//! `drscreen grade`: files and folders in, one JSON line (or CSV rows) per exam out.
//! Exams come from an exams CSV (`path,exam_id,laterality`, extra columns ignored) or,
//! by default, one exam per folder with laterality read from file names (L/R, left/right,
//! OS/OD tokens). Unreadable files are reported with a reason and do not stop the rest;
//! the exit code is 1 when any file could not be graded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use drscreen::engine::EngineError;
use drscreen::grading::{ImageFinding, Laterality};
use drscreen::pipeline::Screener;
use serde::Serialize;

use crate::cli::GlobalArgs;

#[derive(Args)]
pub struct GradeArgs {
    /// Image files or folders (searched recursively for .jpg/.jpeg/.png/.tif/.tiff).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: OutputFormat,
    /// CSV with columns path,exam_id[,laterality] grouping images into exams
    /// (paths relative to the CSV's folder). Default: one exam per folder.
    #[arg(long)]
    pub exams: Option<PathBuf>,
    /// Write results here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

/// One input file and where it belongs.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub exam_id: String,
    pub laterality: Laterality,
}

/// Why a file was not graded.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub path: String,
    pub code: String,
    pub error: String,
}

const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "tif", "tiff"];

fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else if e
                        .extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
                    {
                        out.push(e);
                    }
                }
            }
        } else {
            // Named explicitly: graded (or reported) whatever its extension.
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Laterality from file-name tokens such as `_L_`, `-right`, `OD`.
pub fn laterality_from_name(path: &Path) -> Laterality {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_ascii_lowercase();
    for token in stem.split(|c: char| !c.is_ascii_alphanumeric()) {
        if let Some(l @ (Laterality::Left | Laterality::Right)) = Laterality::parse(token) {
            return l;
        }
    }
    Laterality::Unspecified
}

fn read_exams(csv_path: &Path) -> anyhow::Result<HashMap<PathBuf, (String, Laterality)>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::Reader::from_path(csv_path).with_context(|| format!("cannot read {}", csv_path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let path_col = col("path").context("exams CSV needs a 'path' column")?;
    let exam_col = col("exam_id").context("exams CSV needs an 'exam_id' column")?;
    let lat_col = col("laterality");
    let mut map = HashMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} row {}", csv_path.display(), line + 2))?;
        let path = base.join(record.get(path_col).unwrap_or_default());
        let lat_text = lat_col.and_then(|c| record.get(c)).unwrap_or_default();
        let laterality = Laterality::parse(lat_text)
            .with_context(|| format!("{} row {}: unknown laterality '{lat_text}'", csv_path.display(), line + 2))?;
        let key = std::fs::canonicalize(&path).unwrap_or(path);
        map.insert(key, (record.get(exam_col).unwrap_or_default().to_string(), laterality));
    }
    Ok(map)
}

/// Resolves exam membership for every input.
pub fn plan(paths: &[PathBuf], exams: Option<&Path>) -> anyhow::Result<Vec<Item>> {
    let files = expand(paths)?;
    let table = exams.map(read_exams).transpose()?;
    Ok(files
        .into_iter()
        .map(|path| {
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            let listed = table.as_ref().and_then(|t| t.get(&canonical)).cloned();
            let (exam_id, laterality) = listed.unwrap_or_else(|| {
                let folder = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
                (if folder.is_empty() { ".".into() } else { folder }, laterality_from_name(&path))
            });
            Item { path, exam_id, laterality }
        })
        .collect())
}

/// Grades every item, keeping at most half the engine's capacity in flight so the CLI
/// applies back-pressure instead of being refused. Results are in input order.
pub fn grade_items(screener: &Screener, items: &[Item]) -> Vec<Result<ImageFinding, Unreadable>> {
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let window = (screener.engine.config().queue_capacity / 2).max(1);
    let mut results: Vec<Option<Result<ImageFinding, Unreadable>>> = vec![None; items.len()];
    let mut pending: VecDeque<(usize, drscreen::engine::Ticket)> = VecDeque::new();
    let unreadable =
        |item: &Item, code: &str, error: String| Unreadable { path: item.path.display().to_string(), code: code.into(), error };
    let finish = |index: usize, ticket: drscreen::engine::Ticket, results: &mut Vec<Option<Result<ImageFinding, Unreadable>>>| {
        let item = &items[index];
        let outcome = match ticket.blocking_recv() {
            Ok(Ok(scored)) => Ok(screener.finding(&scored, item.laterality, Some(item.path.display().to_string()))),
            Ok(Err(e)) => Err(unreadable(item, e.code(), e.to_string())),
            Err(_) => Err(unreadable(item, "shutting_down", "the engine stopped".into())),
        };
        results[index] = Some(outcome);
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    };
    for (index, item) in items.iter().enumerate() {
        if pending.len() >= window
            && let Some((i, t)) = pending.pop_front()
        {
            finish(i, t, &mut results);
        }
        match std::fs::read(&item.path) {
            Ok(bytes) => loop {
                match screener.submit(bytes.clone()) {
                    Ok(ticket) => {
                        pending.push_back((index, ticket));
                        break;
                    }
                    Err(EngineError::QueueFull(_)) if !pending.is_empty() => {
                        if let Some((i, t)) = pending.pop_front() {
                            finish(i, t, &mut results);
                        }
                    }
                    Err(e) => {
                        results[index] = Some(Err(unreadable(item, e.code(), e.to_string())));
                        break;
                    }
                }
            },
            Err(e) => results[index] = Some(Err(unreadable(item, "unreadable_file", e.to_string()))),
        }
    }
    while let Some((i, t)) = pending.pop_front() {
        finish(i, t, &mut results);
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    results.into_iter().enumerate().map(|(i, r)| r.unwrap_or_else(|| Err(unreadable(&items[i], "internal", "no result".into())))).collect()
}

const CSV_HEADER: [&str; 15] = [
    "exam_id",
    "path",
    "laterality",
    "gradable",
    "quality_reasons",
    "grade",
    "dme",
    "referable_probability",
    "decision",
    "exam_outcome",
    "model_name",
    "model_version",
    "model_sha256",
    "error_code",
    "error",
];

/// One CSV row per image of the exam, graded or not, in `CSV_HEADER`'s columns.
fn write_csv_exam(
    w: &mut csv::Writer<Vec<u8>>,
    exam_id: &str,
    result: &drscreen::grading::ExamResult,
    unreadable: &[&Unreadable],
) -> anyhow::Result<()> {
    let m = &result.model;
    for f in &result.images {
        w.write_record([
            exam_id,
            f.source.as_deref().unwrap_or_default(),
            f.laterality.as_str(),
            &f.quality.gradable.to_string(),
            &f.quality.reasons.join(";"),
            &f.dr.as_ref().map(|d| d.grade.to_string()).unwrap_or_default(),
            &f.dme.as_ref().map(|d| d.present.to_string()).unwrap_or_default(),
            &f.dr.as_ref().map(|d| format!("{:.4}", d.referable_probability)).unwrap_or_default(),
            serde_json::to_value(f.decision)?.as_str().unwrap_or_default(),
            result.outcome.as_str(),
            &m.name,
            &m.version,
            &m.sha256,
            "",
            "",
        ])?;
    }
    for u in unreadable {
        w.write_record([
            exam_id,
            &u.path,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            result.outcome.as_str(),
            &m.name,
            &m.version,
            &m.sha256,
            &u.code,
            &u.error,
        ])?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ExamLine<'a> {
    exam_id: &'a str,
    #[serde(flatten)]
    result: &'a drscreen::grading::ExamResult,
    unreadable: Vec<&'a Unreadable>,
}

pub fn run(global: &GlobalArgs, args: GradeArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let items = plan(&args.paths, args.exams.as_deref())?;
    anyhow::ensure!(!items.is_empty(), "no images found in the given paths");
    let screener = crate::cli::start_screener(&config)?;
    let results = grade_items(&screener, &items);
    let mut exams: BTreeMap<&str, (Vec<ImageFinding>, Vec<&Unreadable>)> = BTreeMap::new();
    for (item, result) in items.iter().zip(&results) {
        let entry = exams.entry(item.exam_id.as_str()).or_default();
        match result {
            Ok(f) => entry.0.push(f.clone()),
            Err(u) => {
                eprintln!("drscreen: {}: {} ({})", u.path, u.error, u.code);
                entry.1.push(u);
            }
        }
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut csv_writer = match args.format {
        OutputFormat::Jsonl => None,
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(CSV_HEADER)?;
            Some(w)
        }
    };
    for (exam_id, (findings, unreadable)) in exams {
        let result = screener.exam(findings);
        match csv_writer.as_mut() {
            None => {
                let line = ExamLine { exam_id, result: &result, unreadable };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
            }
            Some(w) => write_csv_exam(w, exam_id, &result, &unreadable)?,
        }
    }
    if let Some(w) = csv_writer {
        out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("csv: {e}"))?)?;
    }
    out.flush()?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

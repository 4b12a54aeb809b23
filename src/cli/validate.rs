//! `drscreen validate LABELS.csv`: grades every listed image and writes the acceptance
//! report (Markdown, JSON, ROC and confusion-matrix PNGs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use drscreen::grading::Laterality;
use drscreen::report::validation::{self, LabelRow};

use super::grade::{Item, grade_items};
use crate::cli::GlobalArgs;

#[derive(Args)]
pub struct ValidateArgs {
    /// CSV with columns path,grade,dme,gradable[,laterality,exam_id]; paths relative to
    /// the CSV's folder.
    pub labels: PathBuf,
    /// Folder for report.md, report.json, roc.png and confusion.png.
    #[arg(long, default_value = "validation-report")]
    pub out: PathBuf,
}

pub fn read_labels(path: &Path) -> anyhow::Result<Vec<LabelRow>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    reader.deserialize().enumerate().map(|(i, r)| r.with_context(|| format!("{} row {}", path.display(), i + 2))).collect()
}

pub fn run(global: &GlobalArgs, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let rows = read_labels(&args.labels)?;
    anyhow::ensure!(!rows.is_empty(), "{} lists no images", args.labels.display());
    let base = args.labels.parent().unwrap_or(Path::new("."));
    let items: Vec<Item> = rows
        .iter()
        .map(|r| Item {
            path: base.join(&r.path),
            exam_id: r.exam_id.clone().unwrap_or_default(),
            laterality: r.laterality.as_deref().and_then(Laterality::parse).unwrap_or(Laterality::Unspecified),
        })
        .collect();
    let screener = crate::cli::start_screener(&config)?;
    let results = grade_items(&screener, &items);
    let pairs: Vec<(LabelRow, Option<_>)> = rows
        .into_iter()
        .zip(results)
        .map(|(row, r)| match r {
            Ok(f) => (row, Some(f)),
            Err(u) => {
                eprintln!("drscreen: {}: {} ({})", u.path, u.error, u.code);
                (row, None)
            }
        })
        .collect();
    let report = validation::evaluate(&screener.engine.model().identity, &pairs);
    report.write(&args.out).map_err(|e| anyhow::anyhow!(e))?;
    print!("{}", report.markdown());
    println!("written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

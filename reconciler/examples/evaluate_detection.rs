//! Path globs against the build graph on the labelled development set
//! (`docs/eval/detection/*.yaml`), side by side: micro precision, recall and F1 over
//! (commit, service) pairs, and exact-set matches, per repository and overall.
//!
//! Needs a local clone (a bare mirror is enough) of each repository, found as
//! `$PREVIEWD_EVAL_MIRRORS/<owner>+<name>/repo` (default `/work/.mirror`, where the tool library's
//! `fetch` puts them) or `$PREVIEWD_EVAL_MIRRORS/<name>`:
//!
//! ```sh
//! cargo run --release -p previewd --example evaluate_detection [-- --misses]
//! ```
#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use previewd::detect::eval::{GitTree, LabelledRepository, Score, commit_changes};
use previewd::detect::tree::SourceTree;
use previewd::detect::{self};

fn mirror(root: &Path, repository: &str) -> Option<PathBuf> {
    let (owner, name) = repository.split_once('/')?;
    [root.join(format!("{owner}+{name}")).join("repo"), root.join(name), root.join(format!("{owner}+{name}"))]
        .into_iter()
        .find(|p| p.join("HEAD").exists() || p.join(".git").exists())
        .map(|p| if p.join(".git").exists() { p.join(".git") } else { p })
}

fn row(name: &str, score: &Score) -> String {
    format!(
        "| {name} | {:.2} | {:.2} | {:.2} | {}/{} |",
        score.precision(),
        score.recall(),
        score.f1(),
        score.exact,
        score.cases
    )
}

fn main() -> ExitCode {
    let misses = std::env::args().any(|a| a == "--misses");
    let root = PathBuf::from(std::env::var("PREVIEWD_EVAL_MIRRORS").unwrap_or_else(|_| "/work/.mirror".to_owned()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/eval/detection");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect(),
        Err(err) => {
            eprintln!("evaluate_detection: {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    let (mut all_globs, mut all_graph) = (Score::default(), Score::default());
    let mut rows = Vec::new();
    for file in files {
        let set = match LabelledRepository::load(&file) {
            Ok(set) => set,
            Err(err) => {
                eprintln!("evaluate_detection: {err}");
                return ExitCode::FAILURE;
            }
        };
        let repo = match set.repository_config() {
            Ok(repo) => repo,
            Err(err) => {
                eprintln!("evaluate_detection: {err}");
                return ExitCode::FAILURE;
            }
        };
        let Some(git_dir) = mirror(&root, &set.repository) else {
            eprintln!("evaluate_detection: {}: no clone under {} (skipped)", set.repository, root.display());
            continue;
        };
        let (mut globs, mut graph) = (Score::default(), Score::default());
        for case in &set.cases {
            let prepared = commit_changes(&git_dir, &case.commit).and_then(|(changed, patch)| {
                let head = GitTree::open(&git_dir, &case.commit)?;
                let base = GitTree::open(&git_dir, &format!("{}^", case.commit))?;
                Ok((changed, patch, head, base))
            });
            let (changed, patch, head, base) = match prepared {
                Ok(p) => p,
                Err(err) => {
                    eprintln!("evaluate_detection: {} {}: {err}", set.repository, case.commit);
                    return ExitCode::FAILURE;
                }
            };
            let labelled: BTreeSet<String> = case.services.keys().cloned().collect();
            let by_globs: BTreeSet<String> =
                detect::detect(&repo, &changed, None, None, None).services.into_iter().collect();
            let detection = detect::detect(
                &repo,
                &changed,
                Some(&head as &dyn SourceTree),
                Some(&base as &dyn SourceTree),
                Some(&patch),
            );
            let by_graph: BTreeSet<String> = detection.services.iter().cloned().collect();
            globs.add(&by_globs, &labelled);
            graph.add(&by_graph, &labelled);
            if misses && by_graph != labelled {
                println!("{} {}", set.repository, &case.commit[..10]);
                println!("  changed:  {changed:?}");
                println!("  labelled: {labelled:?}\n  graph:    {by_graph:?}");
                for (service, reasons) in &detection.reasons {
                    if !labelled.contains(service) {
                        println!("  extra {service}: {}", reasons.first().map_or("", String::as_str));
                    }
                }
            }
        }
        rows.push(row(&format!("{} — path globs", set.repository), &globs));
        rows.push(row(&format!("{} — build graph", set.repository), &graph));
        all_globs.merge(&globs);
        all_graph.merge(&graph);
    }
    println!("| detection | precision | recall | F1 | exact |\n|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("{}", row("all — path globs", &all_globs));
    println!("{}", row("all — build graph", &all_graph));
    ExitCode::SUCCESS
}

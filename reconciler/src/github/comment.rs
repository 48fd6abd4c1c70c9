//! The one sticky PR comment per preview (pure): found again by a hidden marker and edited in
//! place, never repeated. It says where the preview is, what runs, what it costs, when it
//! expires and how to keep it — or why there is no preview.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::api::IssueComment;
use crate::crd::{Phase, PreviewEnvironmentStatus, ServiceSelection, TtlPrediction};
use crate::policy::Reason;

/// Identifies Previewd's comment among the PR's comments (invisible when rendered).
pub const MARKER: &str = "<!-- previewd:preview -->";

/// What the comment shows.
#[derive(Debug, Clone)]
pub enum View<'a> {
    Live {
        status: &'a PreviewEnvironmentStatus,
        head_sha: &'a str,
        /// A fork's newer head commit that waits for a maintainer's approval.
        awaiting_approval: Option<&'a str>,
        /// A newer head commit that waits for its build (or will not deploy).
        awaiting_build: Option<BuildWait<'a>>,
        /// Services the PR does not change, served from this baseline namespace.
        baseline: Option<(&'a str, Vec<&'a str>)>,
        /// Right-sized requests: applied (`Auto`) or suggested.
        sizing: Option<&'a crate::crd::Sizing>,
        labels: Labels<'a>,
        do_not_expire_label: &'a str,
        do_not_expire: bool,
        ttl_prediction: Option<&'a TtlPrediction>,
    },
    NotCreated {
        reason: Reason,
        labels: Labels<'a>,
    },
    Destroyed {
        reason: Option<Reason>,
        at: DateTime<Utc>,
        labels: Labels<'a>,
    },
}

/// A commit held by the build gate, as the comment tells it.
#[derive(Debug, Clone)]
pub struct BuildWait<'a> {
    pub sha: &'a str,
    /// The checks not finished yet.
    pub waiting_for: Vec<String>,
    /// Why it will not deploy (a failed check, or the timeout).
    pub failed: Option<&'a str>,
}

/// The policy labels the comment names.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub fork: &'a str,
    pub opt_out: &'a str,
    pub opt_in: &'a str,
}

/// The comment to keep on the PR: the first that starts with the marker. With `bot_only` (App
/// auth: the App comments as a bot) a person's comment quoting the marker does not count.
pub fn find(comments: Vec<IssueComment>, bot_only: bool) -> Option<IssueComment> {
    comments.into_iter().find(|c| {
        c.body.as_deref().is_some_and(|b| b.starts_with(MARKER))
            && (!bot_only || c.user.as_ref().and_then(|u| u.kind.as_deref()) == Some("Bot"))
    })
}

/// A commit's short form, as GitHub shows it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn hours(seconds: u64) -> String {
    match seconds / 3600 {
        1 => "1 hour".to_owned(),
        h => format!("{h} hours"),
    }
}

/// One reason in a table cell: the changed file in code, kept short, pipes escaped.
fn table_cell(reason: &str) -> String {
    let reason: String = reason.chars().take(120).collect::<String>().replace('|', "\\|").replace('`', "'");
    match reason.split_once(" -> ") {
        Some((file, how)) => format!("`{file}` → {how}"),
        None => reason,
    }
}

/// How the services were chosen, when the AI took part (its suggestions marked as such).
fn how_chosen(selection: &ServiceSelection) -> String {
    let Some(ai) = &selection.ai else { return String::new() };
    let from = match selection.by {
        crate::crd::SelectedBy::Graph | crate::crd::SelectedBy::GraphAndAi => "the build graph",
        _ => "the changed paths",
    };
    let mut out = String::new();
    match (&ai.error, ai.added.is_empty() && ai.removed.is_empty()) {
        (Some(_), _) => {
            let _ = writeln!(out, "<sub>Services chosen from {from} (AI detection unavailable).</sub>\n");
        }
        (None, true) => {
            let _ = writeln!(out, "<sub>Services chosen from {from}; AI detection agreed.</sub>\n");
        }
        (None, false) => {
            let mut changes = Vec::new();
            if !ai.added.is_empty() {
                changes.push(format!("added {}", ai.added.join(", ")));
            }
            if !ai.removed.is_empty() {
                changes.push(format!("left out {}", ai.removed.join(", ")));
            }
            let _ = writeln!(
                out,
                "<sub>Services chosen from {from}; AI detection {} ({}).</sub>\n",
                changes.join(" and "),
                ai.model
            );
        }
    }
    if !ai.tests.is_empty() {
        let suites: Vec<String> = ai.tests.iter().map(|t| format!("`{t}`")).collect();
        let _ = writeln!(out, "💡 Suggested test suites (AI suggestion): {}\n", suites.join(", "));
    }
    out
}

/// Why there is no preview, in words for the PR's author (also the answer to a `/preview`
/// that creates none).
pub fn reason_words(reason: Reason, labels: &Labels<'_>) -> String {
    why_not(reason, labels)
}

/// Why there is no preview, in words for the PR's author.
fn why_not(reason: Reason, labels: &Labels<'_>) -> String {
    let (fork_label, opt_out_label) = (labels.fork, labels.opt_out);
    match reason {
        Reason::ForkAwaitingLabel => format!(
            "This pull request comes from a fork, so its code is not deployed automatically. \
             A maintainer can add the `{fork_label}` label to deploy a preview."
        ),
        Reason::ForkLabelUntrusted => format!(
            "This pull request comes from a fork. The `{fork_label}` label deploys it only when someone \
             with write access to the repository adds it."
        ),
        Reason::ForkCommitUnapproved => format!(
            "This pull request comes from a fork, and no maintainer has approved its latest commit: an \
             approval covers the commit it was given for, not later pushes. A maintainer can remove and \
             add the `{fork_label}` label again to deploy it."
        ),
        Reason::ForkDenied => "Pull requests from forks get no preview in this repository.".to_owned(),
        Reason::Draft => "Draft pull requests get no preview. Mark it ready for review to get one.".to_owned(),
        Reason::OptedOut => format!("The `{opt_out_label}` label is set. Remove it to get a preview."),
        Reason::NotOptedIn => format!(
            "This repository deploys previews on request. Add the `{}` label, or comment `/preview`, to get one.",
            labels.opt_in
        ),
        Reason::NoServicesAffected => {
            "No service's files changed (only documentation or settings), so there is nothing to deploy.".to_owned()
        }
        Reason::Expired => "It expired after a period without activity. Push a commit to get a new one.".to_owned(),
        Reason::Destroyed => {
            "It was destroyed with `/preview destroy`. Comment `/preview` or push a commit to get a new one.".to_owned()
        }
        Reason::Merged => "The pull request was merged.".to_owned(),
        Reason::Closed => "The pull request was closed.".to_owned(),
        Reason::RepositoryNotConfigured => "This repository is not configured for previews.".to_owned(),
    }
}

/// Whether a missing comment should be created to explain `reason` (an author who opted out,
/// or a PR that closed, is not told about it in a new comment; an existing one is still edited).
pub fn explains(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ForkAwaitingLabel
            | Reason::ForkLabelUntrusted
            | Reason::ForkCommitUnapproved
            | Reason::ForkDenied
            | Reason::Draft
            | Reason::NoServicesAffected
    )
}

/// What the preview's database holds: table names come from the repository's schema at a
/// commit that passed the gates, and are shown as code.
fn seed_line(seed: &crate::crd::SeedStatus) -> String {
    use crate::crd::SeedState;
    let rows: u64 = seed.tables.iter().map(|t| t.rows).sum();
    let mut tables: Vec<String> = seed
        .tables
        .iter()
        .take(8)
        .map(|t| format!("`{}` {}", t.name.chars().filter(|c| *c != '`').take(63).collect::<String>(), t.rows))
        .collect();
    if seed.tables.len() > 8 {
        tables.push(format!("and {} more", seed.tables.len() - 8));
    }
    let detail = tables.join(", ");
    match seed.state {
        SeedState::Loading => format!("🌱 Loading synthetic data: {rows} rows ({detail})"),
        SeedState::Loaded => {
            format!("🌱 Synthetic data loaded: {rows} rows in {} tables ({detail})", seed.tables.len())
        }
        SeedState::Failed => format!("⚠️ Synthetic data not loaded: {}", table_cell(&seed.message)),
    }
}

/// The right-sized requests, as a collapsed table.
fn sizing_lines(sizing: &crate::crd::Sizing) -> String {
    use crate::sizing::{cpu_text, memory_text};
    let applied = sizing.mode == crate::config::SizingMode::Auto;
    let mut out = format!(
        "<details><summary>📐 Right-sizing: {} from the p95 of recent previews</summary>\n\n| Service | p95 CPU | p95 memory | Requests |\n|---|---|---|---|\n",
        if applied { "requests applied" } else { "suggested requests" }
    );
    for s in &sizing.services {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} / {} |",
            s.name,
            cpu_text(s.observed_cpu_millis),
            memory_text(s.observed_memory_bytes),
            cpu_text(s.cpu_millis),
            memory_text(s.memory_bytes)
        );
    }
    out.push_str("\n</details>\n\n");
    out
}

/// The comment's Markdown, the marker first.
pub fn render(view: &View<'_>) -> String {
    let mut out = format!("{MARKER}\n");
    match view {
        View::Live {
            status,
            head_sha,
            awaiting_approval,
            awaiting_build,
            baseline,
            sizing,
            labels,
            do_not_expire_label,
            do_not_expire,
            ttl_prediction,
        } => {
            let heading = match status.phase {
                Some(Phase::Ready) => "🟢 Preview ready",
                Some(Phase::Failed) => "🔴 Preview failed",
                Some(Phase::Pending) => "⏳ Preview queued",
                _ => "🟡 Preview deploying",
            };
            let _ = writeln!(out, "### {heading}\n");
            if let Some(waiting) = awaiting_approval {
                let _ = writeln!(
                    out,
                    "> ⏸️ Commit {} comes from a fork and waits for a maintainer's approval; the preview \
                     still runs the approved commit {}. A maintainer can remove and add the `{}` label again \
                     to deploy it.\n",
                    short(waiting),
                    short(head_sha),
                    labels.fork
                );
            }
            if let Some(wait) = awaiting_build {
                let running = if head_sha.is_empty() {
                    "nothing is deployed yet".to_owned()
                } else {
                    format!("the preview still runs {}", short(head_sha))
                };
                // Check names and reasons come from the configuration, not from the PR.
                let names = |checks: &[String]| checks.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
                let _ = match wait.failed {
                    Some(why) => writeln!(
                        out,
                        "> ❌ Commit {} will not deploy: {}; {running}. Push a fix, or re-run the check.\n",
                        short(wait.sha),
                        why
                    ),
                    None => writeln!(
                        out,
                        "> ⏳ Commit {} waits for its build ({}); {running}.\n",
                        short(wait.sha),
                        names(&wait.waiting_for)
                    ),
                };
            }
            if let Some(url) = &status.url {
                let _ = writeln!(out, "**{url}**\n");
            }
            if let Some(since) = status.asleep_since {
                let _ = writeln!(
                    out,
                    "> 😴 Asleep since {}: no activity, so its services were scaled to zero. Opening the URL \
                     offers to wake it; a push or `/preview wake` wakes it too.\n",
                    when(since)
                );
            }
            if !status.services.is_empty() {
                let selection = status.selection.as_ref();
                let changed = selection.map(|s| &s.changed).filter(|c| !c.is_empty());
                let reasons = selection.map(|s| &s.reasons).filter(|r| !r.is_empty() || changed.is_some());
                match reasons {
                    Some(_) => out.push_str("| Service | Status | Why |\n|---|---|---|\n"),
                    None => out.push_str("| Service | Status |\n|---|---|\n"),
                }
                for s in &status.services {
                    let state = if s.ready {
                        "✅ ready".to_owned()
                    } else {
                        format!("⏳ {}", s.health.as_deref().unwrap_or("waiting"))
                    };
                    match reasons {
                        Some(reasons) => {
                            let unchanged = changed.is_some_and(|c| !c.contains(&s.name));
                            let why = match reasons.get(&s.name).and_then(|r| r.first()) {
                                _ if unchanged => "unchanged by this PR: deployed for the whole app".to_owned(),
                                Some(reason) => table_cell(reason),
                                None => String::new(),
                            };
                            let _ = writeln!(out, "| {} | {state} | {why} |", s.name);
                        }
                        None => {
                            let _ = writeln!(out, "| {} | {state} |", s.name);
                        }
                    }
                }
                if let Some((namespace, services)) = baseline {
                    for service in services {
                        let row = format!("↪ baseline | not changed by this PR: `{service}.{namespace}` answers");
                        let _ = match reasons {
                            Some(_) => writeln!(out, "| {service} | {row} |"),
                            None => writeln!(out, "| {service} | ↪ baseline (`{namespace}`) |"),
                        };
                    }
                }
                out.push('\n');
            }
            if let Some(failed) = status.conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
                let _ = writeln!(out, "> {}\n", failed.message);
            }
            if let Some(seed) = &status.seed {
                let _ = writeln!(out, "{}\n", seed_line(seed));
            }
            if let Some(sizing) = sizing {
                out.push_str(&sizing_lines(sizing));
            }
            if let Some(cost) = &status.cost_estimate {
                // Not the accrued cost: it changes every minute, and each change would be an edit.
                let _ =
                    writeln!(out, "Estimated cost: ${:.2}/hour · ${:.2}/month\n", cost.hourly_usd, cost.monthly_usd);
            }
            if let Some(selection) = &status.selection {
                let _ = write!(out, "{}", how_chosen(selection));
            }
            if let Some(expires) = status.expires_at {
                let extend = if *do_not_expire {
                    format!("The `{do_not_expire_label}` label keeps it longer after each push.")
                } else {
                    format!("Add the `{do_not_expire_label}` label to keep it longer.")
                };
                let _ = writeln!(out, "Expires {} unless the PR sees activity. {extend}\n", when(expires));
                if let (Some(prediction), false) = (ttl_prediction, *do_not_expire) {
                    let _ = writeln!(
                        out,
                        "> 💡 Suggestion: this PR has been quiet ({}), so its preview idles out after {} instead of the usual time.\n",
                        prediction.reason,
                        hours(prediction.idle_seconds)
                    );
                }
            }
            let _ = writeln!(out, "<sub>Commit {} · Previewd</sub>", short(head_sha));
        }
        View::NotCreated { reason, labels } => {
            out.push_str("### ⚪ No preview\n\n");
            let _ = writeln!(out, "{}", why_not(*reason, labels));
        }
        View::Destroyed { reason, at, labels } => {
            let _ = writeln!(out, "### ⚫ Preview destroyed\n\nRemoved {}.", when(*at));
            if let Some(reason) = reason {
                let _ = writeln!(out, "\n{}", why_not(*reason, labels));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CostEstimate;
    use crate::crd::ServiceStatus;

    fn status() -> PreviewEnvironmentStatus {
        PreviewEnvironmentStatus {
            phase: Some(Phase::Deploying),
            url: Some("https://shop-pr-42.preview.example.com".into()),
            services: vec![
                ServiceStatus {
                    name: "web".into(),
                    ready: true,
                    health: Some("Healthy".into()),
                    sync: Some("Synced".into()),
                    revision: None,
                    message: None,
                },
                ServiceStatus {
                    name: "api".into(),
                    ready: false,
                    health: Some("Progressing".into()),
                    sync: None,
                    revision: None,
                    message: None,
                },
            ],
            cost_estimate: Some(CostEstimate {
                cpu: "1.25".into(),
                memory: "2.5Gi".into(),
                storage: "0Gi".into(),
                spot: false,
                hourly_usd: 0.05,
                monthly_usd: 36.5,
                accrued_usd: 0.12,
                estimated_monthly_cost: "$36.50".into(),
            }),
            expires_at: Some("2026-11-26T14:00:00Z".parse().unwrap()),
            ..PreviewEnvironmentStatus::default()
        }
    }

    /// A live preview's comment at commit ec26c3e, nothing waiting, no label.
    fn live<'a>(status: &'a PreviewEnvironmentStatus, sizing: Option<&'a crate::crd::Sizing>) -> View<'a> {
        View::Live {
            status,
            head_sha: "ec26c3e57ca3",
            awaiting_approval: None,
            awaiting_build: None,
            baseline: None,
            sizing,
            labels: Labels { fork: "preview-fork", opt_out: "no-preview", opt_in: "preview" },
            do_not_expire_label: "do-not-expire",
            do_not_expire: false,
            ttl_prediction: None,
        }
    }

    #[test]
    fn sizes_and_seeded_data_are_shown() {
        let mut s = status();
        s.seed = Some(crate::crd::SeedStatus {
            sha: "ec26c3e".into(),
            digest: "d".into(),
            job: "previewd-seed-d".into(),
            state: crate::crd::SeedState::Loaded,
            tables: vec![
                crate::crd::SeededTable { name: "customers".into(), rows: 20 },
                crate::crd::SeededTable { name: "or`ders".into(), rows: 5 },
            ],
            bytes: 100,
            message: String::new(),
            vocabulary: None,
        });
        let size = |mode| crate::crd::Sizing {
            mode,
            services: vec![crate::crd::ServiceSize {
                name: "api".into(),
                cpu_millis: 120,
                memory_bytes: 180 * 1024 * 1024,
                observed_cpu_millis: 100,
                observed_memory_bytes: 150 * 1024 * 1024,
            }],
        };
        for (mode, words) in [
            (crate::config::SizingMode::Auto, "requests applied"),
            (crate::config::SizingMode::Suggest, "suggested requests"),
        ] {
            let sizing = size(mode);
            let body = render(&live(&s, Some(&sizing)));
            for expected in [
                "🌱 Synthetic data loaded: 25 rows in 2 tables (`customers` 20, `orders` 5)",
                &format!("📐 Right-sizing: {words} from the p95 of recent previews"),
                "| api | 100m | 150Mi | 120m / 180Mi |",
            ] {
                assert!(body.contains(expected), "{expected:?} missing:\n{body}");
            }
        }
    }

    #[test]
    fn live_comment_shows_url_services_cost_and_expiry() {
        let s = status();
        let body = render(&live(&s, None));
        assert!(body.starts_with(MARKER));
        for expected in [
            "🟡 Preview deploying",
            "**https://shop-pr-42.preview.example.com**",
            "| web | ✅ ready |",
            "| api | ⏳ Progressing |",
            "$0.05/hour · $36.50/month\n",
            "Expires 2026-11-26 14:00 UTC",
            "Add the `do-not-expire` label",
            "Commit ec26c3e",
        ] {
            assert!(body.contains(expected), "{expected:?} missing:\n{body}");
        }
    }

    #[test]
    fn ai_choices_and_predictions_are_marked_as_suggestions() {
        let mut s = status();
        s.selection = Some(ServiceSelection {
            by: crate::crd::SelectedBy::PathsAndAi,
            head_sha: "ec26c3e".into(),
            changed_files: Some(3),
            note: None,
            ai: Some(crate::crd::AiVerdict {
                model: "gpt-4o-mini".into(),
                added: vec!["api".into()],
                tests: vec!["api-integration".into()],
                ..Default::default()
            }),
            reasons: Default::default(),
            changed: Vec::new(),
        });
        let prediction = TtlPrediction { idle_seconds: 7200, reason: "1 commits and 0 comments in 10 days".into() };
        let body = render(&View::Live {
            status: &s,
            head_sha: "ec26c3e57ca3",
            awaiting_approval: None,
            awaiting_build: None,
            baseline: None,
            sizing: None,
            labels: Labels { fork: "preview-fork", opt_out: "no-preview", opt_in: "preview" },
            do_not_expire_label: "do-not-expire",
            do_not_expire: false,
            ttl_prediction: Some(&prediction),
        });
        for expected in [
            "AI detection added api (gpt-4o-mini)",
            "Suggested test suites (AI suggestion): `api-integration`",
            "Suggestion: this PR has been quiet (1 commits and 0 comments in 10 days), so its preview idles out after 2 hours",
        ] {
            assert!(body.contains(expected), "{expected:?} missing:\n{body}");
        }
        // The label wins over a prediction, and the comment does not mention it then.
        let labelled = render(&View::Live {
            status: &s,
            head_sha: "ec26c3e57ca3",
            awaiting_approval: None,
            awaiting_build: None,
            baseline: None,
            sizing: None,
            labels: Labels { fork: "preview-fork", opt_out: "no-preview", opt_in: "preview" },
            do_not_expire_label: "do-not-expire",
            do_not_expire: true,
            ttl_prediction: Some(&prediction),
        });
        assert!(!labelled.contains("quiet"));
    }

    #[test]
    fn explains_why_there_is_no_preview() {
        let labels = Labels { fork: "preview-fork", opt_out: "no-preview", opt_in: "preview" };
        let body = render(&View::NotCreated { reason: Reason::ForkAwaitingLabel, labels });
        assert!(body.contains("A maintainer can add the `preview-fork` label"), "{body}");
        let body = render(&View::NotCreated { reason: Reason::OptedOut, labels });
        assert!(body.contains("`no-preview` label is set"), "{body}");
        let body = render(&View::Destroyed { reason: Some(Reason::Expired), at: Utc::now(), labels });
        assert!(body.contains("Preview destroyed") && body.contains("expired"), "{body}");
        // Every reason has words, and only the actionable ones open a new comment.
        for reason in Reason::ALL {
            assert!(!why_not(reason, &labels).is_empty());
        }
        assert!(explains(Reason::ForkAwaitingLabel) && !explains(Reason::OptedOut) && !explains(Reason::Merged));
        // An opt-in repository's PRs are not each told; an existing comment says how to ask.
        assert!(!explains(Reason::NotOptedIn));
        assert!(why_not(Reason::NotOptedIn, &labels).contains("Add the `preview` label"));
    }

    #[test]
    fn the_sticky_comment_is_found_by_its_marker() {
        let labels = Labels { fork: "f", opt_out: "o", opt_in: "i" };
        let ours = render(&View::Destroyed { reason: Some(Reason::Merged), at: Utc::now(), labels });
        let comment = |id, body: &str, kind: &str| IssueComment {
            id,
            body: Some(body.to_owned()),
            user: Some(super::super::api::User { login: "someone".into(), kind: Some(kind.into()) }),
        };
        let comments = vec![
            comment(1, "LGTM", "User"),
            comment(2, "quoting <!-- previewd:preview --> later", "User"),
            comment(3, &format!("{MARKER}\nforged"), "User"),
            comment(4, &ours, "Bot"),
            comment(5, "thanks", "User"),
        ];
        assert_eq!(find(comments.clone(), true).map(|c| c.id), Some(4));
        assert_eq!(find(comments, false).map(|c| c.id), Some(3), "with a token, any author");
        assert_eq!(find(vec![comment(1, "LGTM", "User")], false), None);
    }
}

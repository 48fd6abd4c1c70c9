//! The one sticky PR comment per preview (pure): found again by a hidden marker and edited in
//! place, never repeated. It says where the preview is, what runs, what it costs, when it
//! expires and how to keep it — or why there is no preview.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::crd::{Phase, PreviewEnvironmentStatus};
use crate::policy::Reason;

/// Identifies Previewd's comment among the PR's comments (invisible when rendered).
pub const MARKER: &str = "<!-- previewd:preview -->";

/// What the comment shows.
#[derive(Debug, Clone)]
pub enum View<'a> {
    Live { status: &'a PreviewEnvironmentStatus, head_sha: &'a str, do_not_expire_label: &'a str, do_not_expire: bool },
    NotCreated { reason: Reason, fork_label: &'a str, opt_out_label: &'a str },
    Destroyed { reason: &'a str, at: DateTime<Utc> },
}

/// The comment to keep on the PR: `None` if none of `comments` (id, body) is ours.
pub fn find<'a>(comments: impl IntoIterator<Item = (u64, &'a str)>) -> Option<u64> {
    comments.into_iter().find(|(_, body)| body.starts_with(MARKER)).map(|(id, _)| id)
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The comment's Markdown, the marker first.
pub fn render(view: &View<'_>) -> String {
    let mut out = format!("{MARKER}\n");
    match view {
        View::Live { status, head_sha, do_not_expire_label, do_not_expire } => {
            let heading = match status.phase {
                Some(Phase::Ready) => "🟢 Preview ready",
                Some(Phase::Failed) => "🔴 Preview failed",
                Some(Phase::Pending) => "⏳ Preview queued",
                _ => "🟡 Preview deploying",
            };
            let _ = writeln!(out, "### {heading}\n");
            if let Some(url) = &status.url {
                let _ = writeln!(out, "**{url}**\n");
            }
            if !status.services.is_empty() {
                out.push_str("| Service | Status |\n|---|---|\n");
                for s in &status.services {
                    let state = if s.ready {
                        "✅ ready".to_owned()
                    } else {
                        format!("⏳ {}", s.health.as_deref().unwrap_or("waiting"))
                    };
                    let _ = writeln!(out, "| {} | {state} |", s.name);
                }
                out.push('\n');
            }
            if let Some(failed) = status.conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
                let _ = writeln!(out, "> {}\n", failed.message);
            }
            if let Some(cost) = &status.cost_estimate {
                let _ = writeln!(
                    out,
                    "Estimated cost: ${:.2}/hour · ${:.2}/month · ${:.2} so far\n",
                    cost.hourly_usd, cost.monthly_usd, cost.accrued_usd
                );
            }
            if let Some(expires) = status.expires_at {
                let extend = if *do_not_expire {
                    format!("The `{do_not_expire_label}` label keeps it longer after each push.")
                } else {
                    format!("Add the `{do_not_expire_label}` label to keep it longer.")
                };
                let _ = writeln!(out, "Expires {} unless the PR sees activity. {extend}\n", when(expires));
            }
            let _ = writeln!(out, "<sub>Commit {} · Previewd</sub>", short(head_sha));
        }
        View::NotCreated { reason, fork_label, opt_out_label } => {
            out.push_str("### ⚪ No preview\n\n");
            let why = match reason {
                Reason::ForkAwaitingLabel => format!(
                    "This pull request comes from a fork, so its code is not deployed automatically. \
                     A maintainer can add the `{fork_label}` label to deploy a preview."
                ),
                Reason::ForkDenied => "Pull requests from forks get no preview in this repository.".to_owned(),
                Reason::Draft => "Draft pull requests get no preview. Mark it ready for review to get one.".to_owned(),
                Reason::OptedOut => format!("The `{opt_out_label}` label is set. Remove it to get a preview."),
                Reason::Closed | Reason::Merged => "The pull request is closed.".to_owned(),
                Reason::RepositoryNotConfigured => "This repository is not configured for previews.".to_owned(),
            };
            let _ = writeln!(out, "{why}");
        }
        View::Destroyed { reason, at } => {
            let _ = writeln!(out, "### ⚫ Preview destroyed\n\nRemoved {} ({reason}).", when(*at));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::service_status;
    use crate::crd::CostEstimate;

    fn status() -> PreviewEnvironmentStatus {
        PreviewEnvironmentStatus {
            phase: Some(Phase::Deploying),
            url: Some("https://shop-pr-42.preview.example.com".into()),
            services: vec![
                service_status("web", Some("Healthy"), Some("Synced")),
                service_status("api", Some("Progressing"), None),
            ],
            cost_estimate: Some(CostEstimate {
                hourly_usd: 0.05,
                monthly_usd: 36.5,
                accrued_usd: 0.12,
                monthly: "$36.50".into(),
            }),
            expires_at: Some("2026-11-26T14:00:00Z".parse().unwrap()),
            ..PreviewEnvironmentStatus::default()
        }
    }

    #[test]
    fn live_comment_shows_url_services_cost_and_expiry() {
        let s = status();
        let body = render(&View::Live {
            status: &s,
            head_sha: "ec26c3e57ca3",
            do_not_expire_label: "do-not-expire",
            do_not_expire: false,
        });
        assert!(body.starts_with(MARKER));
        for expected in [
            "🟡 Preview deploying",
            "**https://shop-pr-42.preview.example.com**",
            "| web | ✅ ready |",
            "| api | ⏳ Progressing |",
            "$0.05/hour · $36.50/month · $0.12 so far",
            "Expires 2026-11-26 14:00 UTC",
            "Add the `do-not-expire` label",
            "Commit ec26c3e",
        ] {
            assert!(body.contains(expected), "{expected:?} missing:\n{body}");
        }
    }

    #[test]
    fn explains_why_there_is_no_preview() {
        let body = render(&View::NotCreated {
            reason: Reason::ForkAwaitingLabel,
            fork_label: "preview-fork",
            opt_out_label: "no-preview",
        });
        assert!(body.contains("A maintainer can add the `preview-fork` label"), "{body}");
        let body = render(&View::NotCreated { reason: Reason::OptedOut, fork_label: "f", opt_out_label: "no-preview" });
        assert!(body.contains("`no-preview` label is set"), "{body}");
    }

    #[test]
    fn the_sticky_comment_is_found_by_its_marker() {
        let ours = render(&View::Destroyed { reason: "merged", at: Utc::now() });
        let comments = [(1, "LGTM"), (2, "quoting <!-- previewd:preview --> later"), (3, ours.as_str()), (4, "thanks")];
        assert_eq!(find(comments), Some(3));
        assert_eq!(find([(1, "LGTM")]), None);
    }
}

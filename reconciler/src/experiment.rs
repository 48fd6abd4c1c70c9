//! A/B experiments (pure): which arm a PR is in, and the comparison of the arms over recorded
//! previews, each measure with a 95% confidence interval.

use sha2::{Digest as _, Sha256};

use crate::config::{Arm, ExperimentConfig};
use crate::crd::{ExperimentArm, PreviewEnvironment, PreviewEnvironmentSpec};

/// The arm of PR `pr` of `repository`: a hash of (experiment, repository, PR) placed on the
/// arms' cumulative weights. The same PR always gets the same arm; renaming the experiment
/// deals the PRs again.
pub fn assign<'a>(experiment: &'a ExperimentConfig, repository: &str, pr: u64) -> Option<&'a Arm> {
    let total: u64 = experiment.arms.iter().map(|a| u64::from(a.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut hash = Sha256::new();
    hash.update(experiment.name.as_bytes());
    hash.update([0]);
    hash.update(repository.to_ascii_lowercase().as_bytes());
    hash.update([0]);
    hash.update(pr.to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 2^64 is a multiple of no weight sum worth worrying about: the bias is below 2^-40.
    let mut point = u64::from_be_bytes(first) % total;
    for arm in &experiment.arms {
        let weight = u64::from(arm.weight);
        if point < weight {
            return Some(arm);
        }
        point -= weight;
    }
    None
}

/// The record a PreviewEnvironment carries for PR `pr` (`None`: no experiment).
pub fn record(experiment: Option<&ExperimentConfig>, repository: &str, pr: u64) -> Option<ExperimentArm> {
    let experiment = experiment?;
    let arm = assign(experiment, repository, pr)?;
    Some(ExperimentArm { experiment: experiment.name.clone(), arm: arm.name.clone(), corrections: 0 })
}

/// The configured arm a PreviewEnvironment's record names (`None`: no experiment, or one
/// that ended or changed its arms).
pub fn arm_of<'a>(repo: &'a crate::config::RepositoryConfig, record: Option<&ExperimentArm>) -> Option<&'a Arm> {
    let (experiment, record) = (repo.experiment.as_ref()?, record?);
    (experiment.name == record.experiment).then(|| experiment.arms.iter().find(|a| a.name == record.arm)).flatten()
}

/// What one write of a PreviewEnvironment's spec adds to its arm's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub experiment: String,
    pub arm: String,
    /// The preview is new to the arm.
    pub created: bool,
    pub corrections: u32,
    /// A new AI answer's cost (a selection at a new commit, not from the cache).
    pub ai_usd: f64,
}

impl Delta {
    /// `None` when the spec is in no experiment or the write adds nothing.
    pub fn between(before: Option<&PreviewEnvironmentSpec>, after: &PreviewEnvironmentSpec) -> Option<Delta> {
        let arm = after.experiment.as_ref()?;
        let earlier = before.and_then(|b| b.experiment.as_ref()).filter(|e| e.experiment == arm.experiment);
        let selection = |s: &PreviewEnvironmentSpec| s.selection.as_ref().map(|x| (x.head_sha.clone(), x.ai.clone()));
        let fresh_answer = after.selection.as_ref().is_some_and(|_| before.and_then(selection) != selection(after));
        let ai_usd = if fresh_answer {
            after.selection.as_ref().and_then(|s| s.ai.as_ref()).map_or(0.0, |v| v.spend_micro_usd as f64 / 1e6)
        } else {
            0.0
        };
        let delta = Delta {
            experiment: arm.experiment.clone(),
            arm: arm.arm.clone(),
            created: earlier.is_none(),
            corrections: arm.corrections.saturating_sub(earlier.map_or(0, |e| e.corrections)),
            ai_usd,
        };
        (delta.created || delta.corrections > 0 || delta.ai_usd > 0.0).then_some(delta)
    }

    pub fn record(&self, metrics: &crate::metrics::ExperimentMetrics) {
        let labels = [self.experiment.as_str(), self.arm.as_str()];
        if self.created {
            metrics.previews.with_label_values(&labels).inc();
        }
        metrics.corrections.with_label_values(&labels).inc_by(u64::from(self.corrections));
        if self.ai_usd > 0.0 {
            metrics.ai_spend.with_label_values(&labels).inc_by(self.ai_usd);
        }
    }
}

/// A mean with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    /// Half the interval's width: the mean ± this.
    pub margin: f64,
}

impl Estimate {
    /// Student's t interval of the mean (none for no samples; no width for one).
    pub fn mean_of(samples: &[f64]) -> Option<Estimate> {
        let n = samples.len();
        if n == 0 {
            return None;
        }
        let mean = samples.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Estimate { n, mean, margin: f64::NAN });
        }
        let variance = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some(Estimate { n, mean, margin: t95(n - 1) * (variance / n as f64).sqrt() })
    }

    /// The Wilson score interval of a proportion (`hits` of `n`), as mean ± margin.
    pub fn proportion(hits: usize, n: usize) -> Option<Estimate> {
        if n == 0 {
            return None;
        }
        let (z, nf) = (1.959_964, n as f64);
        let p = hits as f64 / nf;
        let centre = (p + z * z / (2.0 * nf)) / (1.0 + z * z / nf);
        let margin = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / (1.0 + z * z / nf);
        Some(Estimate { n, mean: centre, margin })
    }
}

/// Two-sided 95% critical value of Student's t with `df` degrees of freedom.
fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// One arm's measures over its previews.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmReport {
    pub experiment: String,
    pub arm: String,
    pub previews: usize,
    /// Services deployed per preview.
    pub services: Option<Estimate>,
    /// Cost per preview-hour, in USD.
    pub hourly_usd: Option<Estimate>,
    /// AI spend per preview, in USD.
    pub ai_usd: Option<Estimate>,
    /// Share of previews whose selection was corrected (a `/preview services` override, or a
    /// later push that added services).
    pub corrected: Option<Estimate>,
    /// From creation to first Ready, in seconds (previews that were ready).
    pub seconds_to_ready: Option<Estimate>,
}

/// Compares the arms of `experiment` over the previews that recorded one of them; arms with no
/// previews are listed too, in configuration order.
pub fn report(experiment: &ExperimentConfig, previews: &[PreviewEnvironment]) -> Vec<ArmReport> {
    experiment
        .arms
        .iter()
        .map(|arm| {
            let mine: Vec<&PreviewEnvironment> = previews
                .iter()
                .filter(|pe| {
                    pe.spec.experiment.as_ref().is_some_and(|e| e.experiment == experiment.name && e.arm == arm.name)
                })
                .collect();
            let values = |f: &dyn Fn(&PreviewEnvironment) -> Option<f64>| -> Vec<f64> {
                mine.iter().filter_map(|pe| f(pe)).collect()
            };
            let services = values(&|pe| Some(pe.spec.services.len() as f64));
            let hourly = values(&|pe| pe.status.as_ref()?.cost_estimate.as_ref().map(|c| c.hourly_usd));
            let ai = values(&|pe| {
                let verdict = pe.spec.selection.as_ref().and_then(|s| s.ai.as_ref());
                Some(verdict.map_or(0.0, |v| v.spend_micro_usd as f64 / 1e6))
            });
            let ready = values(&|pe| {
                let status = pe.status.as_ref()?;
                let seconds = (status.ready_at? - status.created_at?).num_milliseconds() as f64 / 1000.0;
                (seconds >= 0.0).then_some(seconds)
            });
            let corrected =
                mine.iter().filter(|pe| pe.spec.experiment.as_ref().is_some_and(|e| e.corrections > 0)).count();
            ArmReport {
                experiment: experiment.name.clone(),
                arm: arm.name.clone(),
                previews: mine.len(),
                services: Estimate::mean_of(&services),
                hourly_usd: Estimate::mean_of(&hourly),
                ai_usd: Estimate::mean_of(&ai),
                corrected: Estimate::proportion(corrected, mine.len()),
                seconds_to_ready: Estimate::mean_of(&ready),
            }
        })
        .collect()
}

fn cell(estimate: Option<Estimate>, digits: usize, scale: f64) -> String {
    match estimate {
        None => "-".to_owned(),
        Some(e) if e.margin.is_nan() => format!("{:.digits$} (n=1)", e.mean * scale),
        Some(e) => format!("{:.digits$} ± {:.digits$}", e.mean * scale, e.margin * scale),
    }
}

/// Rows of cells as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let width = |i: usize| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0);
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len)).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The comparison as a table (means ± 95% confidence half-widths).
pub fn render(reports: &[ArmReport]) -> String {
    let mut rows = vec![
        [
            "EXPERIMENT",
            "ARM",
            "PREVIEWS",
            "SERVICES/PREVIEW",
            "USD/PREVIEW-HOUR",
            "AI USD/PREVIEW",
            "CORRECTED %",
            "SECONDS TO READY",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in reports {
        rows.push(vec![
            r.experiment.clone(),
            r.arm.clone(),
            r.previews.to_string(),
            cell(r.services, 2, 1.0),
            cell(r.hourly_usd, 4, 1.0),
            cell(r.ai_usd, 4, 1.0),
            cell(r.corrected, 1, 100.0),
            cell(r.seconds_to_ready, 0, 1.0),
        ]);
    }
    let mut out = columns(&rows);
    out.push_str("Means ± the half-width of their 95% confidence interval (Student's t; Wilson for the share).\n");
    out
}

/// The arms' counters over the window, from Prometheus (they count previews that are gone).
pub fn render_totals(totals: &crate::sizing::prometheus::Totals, window: std::time::Duration) -> String {
    let days = window.as_secs_f64() / 86_400.0;
    let mut rows = vec![
        ["EXPERIMENT", "ARM", "PREVIEWS", "CORRECTIONS", "CORRECTIONS/PREVIEW", "AI USD", "AI USD/PREVIEW"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for ((experiment, arm), values) in totals {
        let get = |name: &str| values.get(name).copied().unwrap_or(0.0);
        let previews = get("previewd_experiment_previews_total");
        let corrections = get("previewd_experiment_corrections_total");
        let spend = get("previewd_experiment_ai_spend_usd_total");
        let per = |x: f64| if previews > 0.0 { format!("{:.3}", x / previews) } else { "-".to_owned() };
        rows.push(vec![
            experiment.clone(),
            arm.clone(),
            format!("{previews:.0}"),
            format!("{corrections:.0}"),
            per(corrections),
            format!("{spend:.4}"),
            per(spend),
        ]);
    }
    let mut out = format!("From the metrics, over the last {days:.1} days:\n{}", columns(&rows));
    if totals.is_empty() {
        out.push_str("(no experiment counters in this window)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crd::{CostEstimate, PreviewEnvironmentStatus};
    use chrono::{TimeZone, Utc};

    fn config() -> Config {
        let text = include_str!("../../docs/examples/config.yaml").replace(
            "  - name: acme/shop\n",
            "  - name: acme/shop\n    experiment:\n      name: ai-detection\n      arms:\n        - {name: rules, weight: 1, detection: rules}\n        - {name: ai, weight: 3, detection: ai, model: gpt-4o-mini}\n        - {name: paused, weight: 0}\n",
        );
        Config::from_yaml(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn experiment(config: &Config) -> &ExperimentConfig {
        config.repositories[0].experiment.as_ref().unwrap_or_else(|| panic!("the example has no experiment"))
    }

    #[test]
    fn arms_are_assigned_deterministically_with_the_configured_weights() {
        let config = config();
        let experiment = experiment(&config);
        let arms = |repo: &str| -> Vec<String> {
            (1..=4000u64).map(|pr| assign(experiment, repo, pr).map(|a| a.name.clone()).unwrap_or_default()).collect()
        };
        let first = arms("acme/shop");
        assert_eq!(first, arms("acme/shop"), "the same PR gets the same arm");
        assert_eq!(first, arms("ACME/Shop"), "GitHub's names are case-insensitive");
        let share = |name: &str| first.iter().filter(|a| *a == name).count() as f64 / first.len() as f64;
        // Weights 1 : 3 : 0. The hash is fixed, so this is exact for these 4000 PRs; the
        // tolerance is five standard errors of a fair 3/4 draw.
        assert!((share("ai") - 0.75).abs() < 0.035, "ai: {}", share("ai"));
        assert!((share("rules") - 0.25).abs() < 0.035, "rules: {}", share("rules"));
        assert_eq!(share("paused"), 0.0, "a zero weight gets no PRs");
        // Another repository, or a renamed experiment, deals the PRs again.
        let moved = first.iter().zip(arms("acme/other")).filter(|(a, b)| *a != b).count();
        assert!(moved > 1000, "{moved} of 4000 moved");
        let mut renamed = experiment.clone();
        renamed.name = "ai-detection-2".into();
        let moved = (1..=4000u64)
            .filter(|pr| {
                assign(&renamed, "acme/shop", *pr).map(|a| &a.name)
                    != assign(experiment, "acme/shop", *pr).map(|a| &a.name)
            })
            .count();
        assert!(moved > 1000, "{moved} of 4000 moved");

        // The arm is recorded in the PreviewEnvironment, and kept across pushes.
        let mut event =
            previewd_events::PreviewEvent::from_json(include_str!("../../docs/examples/events/opened.json"))
                .unwrap_or_else(|e| panic!("{e}"));
        let crate::policy::Decision::Upsert(spec) = crate::policy::decide_offline(&event, &config) else {
            panic!("expected an upsert")
        };
        let recorded = spec.experiment.clone().unwrap_or_else(|| panic!("no arm recorded"));
        assert_eq!(recorded.experiment, "ai-detection");
        assert_eq!(Some(&recorded.arm), assign(experiment, "acme/shop", event.pull_request.number).map(|a| &a.name));
        let mut corrected = *spec;
        if let Some(e) = corrected.experiment.as_mut() {
            e.corrections = 2;
        }
        event.pull_request.head_sha = "1111111111111111111111111111111111111111".into();
        event.pull_request.updated_at += chrono::Duration::seconds(5);
        let decided = crate::policy::decide(&event, &config, Some(&corrected), crate::policy::Approval::None);
        let crate::policy::Decision::Upsert(pushed) = decided else { panic!("expected an upsert") };
        assert_eq!(pushed.experiment.map(|e| (e.arm, e.corrections)), Some((recorded.arm, 2)));
    }

    /// A recorded preview: its arm, services, cost, AI spend, corrections and time to ready.
    fn recorded(
        arm: &str,
        services: usize,
        hourly: f64,
        ai_micro: u64,
        corrections: u32,
        ready_after: Option<i64>,
    ) -> PreviewEnvironment {
        let created = Utc.with_ymd_and_hms(2026, 11, 1, 10, 0, 0).single().unwrap_or_default();
        let spec = PreviewEnvironmentSpec {
            repository: "acme/shop".into(),
            services: (0..services).map(|i| format!("s{i}")).collect(),
            experiment: Some(ExperimentArm { experiment: "ai-detection".into(), arm: arm.into(), corrections }),
            selection: Some(crate::crd::ServiceSelection {
                by: crate::crd::SelectedBy::Paths,
                head_sha: "abc".into(),
                changed_files: None,
                note: None,
                ai: (ai_micro > 0).then(|| crate::crd::AiVerdict { spend_micro_usd: ai_micro, ..Default::default() }),
                reasons: Default::default(),
                changed: Vec::new(),
            }),
            ..PreviewEnvironmentSpec::default()
        };
        let mut pe = PreviewEnvironment::new("p", spec);
        pe.status = Some(PreviewEnvironmentStatus {
            created_at: Some(created),
            ready_at: ready_after.map(|s| created + chrono::Duration::seconds(s)),
            cost_estimate: Some(CostEstimate {
                cpu: String::new(),
                memory: String::new(),
                storage: String::new(),
                spot: false,
                hourly_usd: hourly,
                monthly_usd: hourly * 730.0,
                accrued_usd: 0.0,
                estimated_monthly_cost: String::new(),
            }),
            ..Default::default()
        });
        pe
    }

    #[test]
    fn a_write_counts_a_new_preview_its_corrections_and_new_ai_spend_once() {
        let pe = recorded("ai", 2, 0.1, 3_000, 0, None);
        let created = Delta::between(None, &pe.spec).unwrap_or_else(|| panic!("a new preview counts"));
        assert!(created.created && created.corrections == 0 && (created.ai_usd - 0.003).abs() < 1e-12);
        assert_eq!(Delta::between(Some(&pe.spec), &pe.spec), None, "the same spec again adds nothing");
        let mut corrected = pe.spec.clone();
        if let Some(arm) = corrected.experiment.as_mut() {
            arm.corrections = 2;
        }
        let delta = Delta::between(Some(&pe.spec), &corrected).unwrap_or_else(|| panic!("corrections count"));
        assert_eq!(
            (delta.created, delta.corrections, delta.ai_usd),
            (false, 2, 0.0),
            "the same AI answer is not paid twice"
        );
        let metrics = crate::metrics::Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        created.record(&metrics.experiments);
        delta.record(&metrics.experiments);
        let text = metrics.render();
        assert!(
            text.contains("previewd_experiment_previews_total{arm=\"ai\",experiment=\"ai-detection\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("previewd_experiment_corrections_total{arm=\"ai\",experiment=\"ai-detection\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("previewd_experiment_ai_spend_usd_total{arm=\"ai\",experiment=\"ai-detection\"} 0.003"),
            "{text}"
        );
    }

    #[test]
    fn the_report_compares_arms_over_recorded_previews() {
        let config = config();
        let previews = vec![
            recorded("rules", 2, 0.10, 0, 1, Some(100)),
            recorded("rules", 4, 0.20, 0, 0, Some(300)),
            recorded("rules", 3, 0.15, 0, 1, None),
            recorded("ai", 1, 0.05, 2_000, 0, Some(60)),
            recorded("ai", 1, 0.05, 4_000, 0, Some(80)),
            recorded("ai", 2, 0.10, 3_000, 0, Some(100)),
            recorded("ai", 2, 0.10, 3_000, 0, Some(120)),
            // Another experiment's preview is not counted.
            {
                let mut other = recorded("ai", 9, 9.0, 9, 9, Some(9));
                if let Some(e) = other.spec.experiment.as_mut() {
                    e.experiment = "old".into();
                }
                other
            },
        ];
        let reports = report(experiment(&config), &previews);
        assert_eq!(
            reports.iter().map(|r| (r.arm.as_str(), r.previews)).collect::<Vec<_>>(),
            [("rules", 3), ("ai", 4), ("paused", 0)]
        );
        let (rules, ai) = (&reports[0], &reports[1]);
        let services = rules.services.unwrap_or_else(|| panic!("no estimate"));
        // Mean 3, sample sd 1, n 3: t(2) = 4.303, margin 4.303 / sqrt(3).
        assert!(
            (services.mean - 3.0).abs() < 1e-9 && (services.margin - 4.303 / 3f64.sqrt()).abs() < 1e-9,
            "{services:?}"
        );
        let ready = rules.seconds_to_ready.unwrap_or_else(|| panic!("no estimate"));
        assert_eq!((ready.n, ready.mean), (2, 200.0), "only previews that were ready");
        let spend = ai.ai_usd.unwrap_or_else(|| panic!("no estimate"));
        assert!((spend.mean - 0.003).abs() < 1e-12, "{spend:?}");
        assert_eq!(rules.ai_usd.map(|e| e.mean), Some(0.0), "no AI asked: no spend");
        // 2 of 3 corrected: Wilson's interval, centred below 2/3.
        let corrected = rules.corrected.unwrap_or_else(|| panic!("no estimate"));
        assert!(
            corrected.mean < 2.0 / 3.0
                && corrected.mean - corrected.margin > 0.0
                && corrected.mean + corrected.margin < 1.0,
            "{corrected:?}"
        );
        assert_eq!(ai.corrected.map(|e| e.mean - e.margin <= 0.0), Some(true));
        let hourly = ai.hourly_usd.unwrap_or_else(|| panic!("no estimate"));
        assert!((hourly.mean - 0.075).abs() < 1e-9);
        assert!(reports[2].services.is_none());
        let table = render(&reports);
        assert!(table.contains("ai-detection  ai      4         1.50 ± 0.92"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("ai-detection  paused  0 ") && l.ends_with('-')), "{table}");
    }
}

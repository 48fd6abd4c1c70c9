//! What previews cost (pure). Per preview, the sum of what its services request (CPU, memory,
//! storage) priced per the configuration:
//! `cpu_cores × cpuCoreHour + memory_GiB × memoryGbHour + storage_GiB × storageGbMonth / 730`,
//! compute discounted by `spotDiscount` when previews run on spot capacity. Across previews,
//! totals per repository and team and a monthly projection against the budget.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::{Config, Pricing, ServiceConfig};
use crate::crd::{CostEstimate, PreviewEnvironment, ServiceSize, Sizing};

/// Hours in a month as cloud providers bill them (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What a preview requests, summed over its services and their replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_cores: f64,
    pub memory_gib: f64,
    /// Persistent storage claimed (each service's `storage`, counted once).
    pub storage_gib: f64,
}

impl Usage {
    /// The requests of `services` (their quantities were parsed at config load).
    pub fn of<'a>(services: impl IntoIterator<Item = &'a ServiceConfig>) -> Usage {
        Usage::sized(services, None)
    }

    /// The requests of `services`, at their right-sized requests where `sizing` applies them.
    pub fn sized<'a>(services: impl IntoIterator<Item = &'a ServiceConfig>, sizing: Option<&Sizing>) -> Usage {
        let mut usage = Usage::default();
        for service in services {
            let r = &service.resources;
            let replicas = f64::from(r.replicas);
            let (cpu, memory_gib) = match applied(sizing, &service.name) {
                Some(size) => (size.cpu_millis as f64 / 1000.0, size.memory_bytes as f64 / crate::config::types::GIB),
                None => (r.requests.cpu.cores(), r.requests.memory.gib()),
            };
            usage.cpu_cores += cpu * replicas;
            usage.memory_gib += memory_gib * replicas;
            if let Some(storage) = &r.storage {
                usage.storage_gib += storage.gib();
            }
        }
        usage
    }
}

/// The size `sizing` applies to service `name` (only with `mode: Auto`).
pub fn applied<'a>(sizing: Option<&'a Sizing>, name: &str) -> Option<&'a ServiceSize> {
    sizing.filter(|s| s.mode == crate::config::SizingMode::Auto)?.services.iter().find(|s| s.name == name)
}

/// USD per hour for `usage` at `pricing` (`spot`: compute at the spot discount).
pub fn hourly(usage: Usage, pricing: &Pricing, spot: bool) -> f64 {
    let discount = if spot { 1.0 - pricing.spot_discount } else { 1.0 };
    let compute = usage.cpu_cores * pricing.cpu_core_hour + usage.memory_gib * pricing.memory_gb_hour;
    compute * discount + usage.storage_gib * pricing.storage_gb_month / HOURS_PER_MONTH
}

/// Rounds to cents, so the status changes only when the shown amount does.
fn cents(usd: f64) -> f64 {
    (usd * 100.0).round() / 100.0
}

/// Up to 2 decimals without trailing zeros: `1.5`, `0.25`, `3`.
fn short(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The estimate written to the PreviewEnvironment's status: requests, hourly and monthly
/// price, and what it has cost since `created_at` (at today's services).
pub fn estimate(
    usage: Usage,
    pricing: &Pricing,
    spot: bool,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CostEstimate {
    let per_hour = hourly(usage, pricing, spot);
    let hours = (now - created_at).num_seconds().max(0) as f64 / 3600.0;
    let monthly = per_hour * HOURS_PER_MONTH;
    CostEstimate {
        cpu: short(usage.cpu_cores),
        memory: format!("{}Gi", short(usage.memory_gib)),
        storage: format!("{}Gi", short(usage.storage_gib)),
        spot,
        // Four decimals: small previews cost fractions of a cent per hour.
        hourly_usd: (per_hour * 10_000.0).round() / 10_000.0,
        monthly_usd: cents(monthly),
        accrued_usd: cents(per_hour * hours),
        estimated_monthly_cost: format!("${monthly:.2}"),
    }
}

/// The estimate for a preview of `services` under `config`.
pub fn for_services<'a>(
    config: &Config,
    services: impl IntoIterator<Item = &'a ServiceConfig>,
    sizing: Option<&Sizing>,
    asleep: bool,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CostEstimate {
    let _span = tracing::info_span!("cost.calculate").entered();
    let mut usage = Usage::sized(services, sizing);
    // Asleep: no pods, no compute; its volumes stay.
    if asleep {
        usage.cpu_cores = 0.0;
        usage.memory_gib = 0.0;
    }
    estimate(usage, &config.pricing, config.spot.enabled, created_at, now)
}

/// One preview's line in the organisation's books.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub repository: String,
    pub team: Option<String>,
    pub hourly_usd: f64,
}

/// Sums across previews.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub previews: usize,
    pub hourly_usd: f64,
    /// What the running previews would cost over a month.
    pub monthly_projection_usd: f64,
    /// Hourly USD per repository.
    pub by_repository: BTreeMap<String, f64>,
    /// Hourly USD per team (`-` for repositories without one).
    pub by_team: BTreeMap<String, f64>,
}

pub fn totals<'a>(lines: impl IntoIterator<Item = &'a Line>) -> Totals {
    let mut totals = Totals::default();
    for line in lines {
        totals.previews += 1;
        totals.hourly_usd += line.hourly_usd;
        *totals.by_repository.entry(line.repository.clone()).or_default() += line.hourly_usd;
        *totals.by_team.entry(line.team.clone().unwrap_or_else(|| "-".to_owned())).or_default() += line.hourly_usd;
    }
    totals.monthly_projection_usd = totals.hourly_usd * HOURS_PER_MONTH;
    totals
}

/// The `previewd cost` table: every preview with its cost, totals per repository and team,
/// and the projection against the budget. Accrued cost is computed for `now`.
pub fn report(config: &Config, previews: &[PreviewEnvironment], now: DateTime<Utc>) -> String {
    let mut rows: Vec<(String, String, String, String, f64, f64, f64)> = Vec::new();
    let mut lines = Vec::new();
    for pe in previews {
        let name = pe.metadata.name.clone().unwrap_or_default();
        let status = pe.status.as_ref();
        let created = status.and_then(|s| s.created_at).unwrap_or(now);
        let repo = config.repository(&pe.spec.repository);
        // The status's estimate, or one from the spec when the controller has not written it.
        let hourly_usd = status.and_then(|s| s.cost_estimate.as_ref()).map(|c| c.hourly_usd).or_else(|| {
            let repo = repo?;
            let services: Vec<&ServiceConfig> = pe.spec.services.iter().filter_map(|s| repo.service(s)).collect();
            Some(hourly(Usage::of(services), &config.pricing, config.spot.enabled))
        });
        let hourly_usd = hourly_usd.unwrap_or(0.0);
        let hours = (now - created).num_seconds().max(0) as f64 / 3600.0;
        let phase = status.and_then(|s| s.phase).map_or_else(|| "-".to_owned(), |p| format!("{p:?}"));
        rows.push((
            name,
            pe.spec.repository.clone(),
            pe.spec.pr_number.to_string(),
            phase,
            hourly_usd,
            hourly_usd * HOURS_PER_MONTH,
            hourly_usd * hours,
        ));
        lines.push(Line {
            repository: pe.spec.repository.clone(),
            team: repo.and_then(|r| r.team.clone()),
            hourly_usd,
        });
    }
    rows.sort_by(|a, b| b.5.total_cmp(&a.5).then_with(|| a.0.cmp(&b.0)));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(7);
    let repo_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(10);
    let mut out = format!(
        "{:<width$}  {:<repo_width$}  {:>5}  {:<9}  {:>8}  {:>9}  {:>8}\n",
        "PREVIEW", "REPOSITORY", "PR", "PHASE", "$/HOUR", "$/MONTH", "ACCRUED"
    );
    for (name, repository, pr, phase, per_hour, per_month, accrued) in &rows {
        out.push_str(&format!(
            "{name:<width$}  {repository:<repo_width$}  {pr:>5}  {phase:<9}  {per_hour:>8.4}  {per_month:>9.2}  {accrued:>8.2}\n"
        ));
    }
    let totals = totals(&lines);
    for (title, groups) in [("repository", &totals.by_repository), ("team", &totals.by_team)] {
        out.push_str(&format!("\nBy {title}:\n"));
        for (key, per_hour) in groups {
            out.push_str(&format!(
                "  {key:<repo_width$}  ${per_hour:.4}/hour  ${:.2}/month\n",
                per_hour * HOURS_PER_MONTH
            ));
        }
    }
    out.push_str(&format!(
        "\nTotal: {} previews, ${:.4}/hour, ${:.2}/month projected",
        totals.previews, totals.hourly_usd, totals.monthly_projection_usd
    ));
    match config.budget.monthly_usd {
        Some(budget) => {
            let share = totals.monthly_projection_usd / budget * 100.0;
            let verdict = if totals.monthly_projection_usd > budget { "OVER BUDGET" } else { "within budget" };
            out.push_str(&format!(" of a ${budget:.2} budget ({share:.0}%, {verdict})\n"));
        }
        None => out.push_str(" (no budget configured)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pricing(spot_discount: f64) -> Pricing {
        Pricing { cpu_core_hour: 0.04, memory_gb_hour: 0.005, storage_gb_month: 0.10, spot_discount }
    }

    #[test]
    fn the_brief_formula_known_answers() {
        // 1.5 cores, 3 GiB, 10 GiB storage: 0.06 + 0.015 + 10 × 0.10 / 730.
        let usage = Usage { cpu_cores: 1.5, memory_gib: 3.0, storage_gib: 10.0 };
        let per_hour = hourly(usage, &pricing(0.0), false);
        assert!((per_hour - (0.06 + 0.015 + 1.0 / 730.0)).abs() < 1e-12, "{per_hour}");
        // Spot takes 60 % off compute, not storage.
        let spot = hourly(usage, &pricing(0.6), true);
        assert!((spot - (0.075 * 0.4 + 1.0 / 730.0)).abs() < 1e-12, "{spot}");
        let t0: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        let e = estimate(usage, &pricing(0.0), false, t0, t0 + chrono::Duration::hours(10));
        assert_eq!((e.cpu.as_str(), e.memory.as_str(), e.storage.as_str()), ("1.5", "3Gi", "10Gi"));
        assert_eq!(e.monthly_usd, 55.75);
        assert_eq!(e.estimated_monthly_cost, "$55.75");
        assert_eq!(e.accrued_usd, 0.76);
        assert_eq!(e.hourly_usd, 0.0764);
    }

    #[test]
    fn usage_sums_requests_times_replicas() {
        let config = Config::from_yaml(include_str!("../../docs/examples/config.yaml")).unwrap();
        let repo = config.repository("acme/shop").unwrap();
        let usage = Usage::of(&repo.services);
        let expected_cpu: f64 =
            repo.services.iter().map(|s| s.resources.requests.cpu.cores() * f64::from(s.resources.replicas)).sum();
        assert!((usage.cpu_cores - expected_cpu).abs() < 1e-9);
        assert!(usage.memory_gib > 0.0);
        assert_eq!(Usage::of([]), Usage::default());
    }

    #[test]
    fn totals_by_repository_and_team() {
        let line = |repository: &str, team: Option<&str>, hourly_usd| Line {
            repository: repository.into(),
            team: team.map(Into::into),
            hourly_usd,
        };
        let lines = [
            line("acme/shop", Some("checkout"), 0.1),
            line("acme/shop", Some("checkout"), 0.2),
            line("acme/docs", None, 0.05),
        ];
        let t = totals(&lines);
        assert_eq!(t.previews, 3);
        assert!((t.by_repository["acme/shop"] - 0.3).abs() < 1e-12);
        assert!((t.by_team["-"] - 0.05).abs() < 1e-12);
        assert!((t.monthly_projection_usd - 0.35 * 730.0).abs() < 1e-9);
    }

    #[test]
    fn the_report_lists_previews_and_totals() {
        let config = Config::from_yaml(include_str!("../../docs/examples/config.yaml")).unwrap();
        let t0: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        let preview = |name: &str, pr: u64, services: &[&str], hourly_usd: Option<f64>| {
            let mut pe = PreviewEnvironment::new(
                name,
                crate::crd::PreviewEnvironmentSpec {
                    repository: "acme/shop".into(),
                    pr_number: pr,
                    services: services.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                },
            );
            pe.status = Some(crate::crd::PreviewEnvironmentStatus {
                phase: Some(crate::crd::Phase::Ready),
                created_at: Some(t0),
                cost_estimate: hourly_usd.map(|h| CostEstimate {
                    hourly_usd: h,
                    ..estimate(Usage::default(), &config.pricing, false, t0, t0)
                }),
                ..Default::default()
            });
            pe
        };
        let previews =
            [preview("preview-shop-pr-1", 1, &["web"], Some(1.0)), preview("preview-shop-pr-2", 2, &["web"], None)];
        let text = report(&config, &previews, t0 + chrono::Duration::hours(2));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PREVIEW") && lines[0].contains("ACCRUED"), "{text}");
        assert!(lines[1].starts_with("preview-shop-pr-1") && lines[1].ends_with("  730.00      2.00"), "{text}");
        // No estimate in the status yet: priced from the spec's services.
        let web = Usage::of(config.repository("acme/shop").unwrap().service("web"));
        let web_hourly = hourly(web, &config.pricing, true);
        assert!(lines[2].contains(&format!("{web_hourly:.4}")), "{text}");
        assert!(text.contains("By team:\n  checkout"), "{text}");
        assert!(text.contains("Total: 2 previews") && text.contains("of a $2000.00 budget"), "{text}");
    }

    proptest! {
        #[test]
        fn cost_is_monotonic_and_zero_for_zero(
            cpu in 0.0f64..64.0, mem in 0.0f64..256.0, storage in 0.0f64..1000.0,
            more in 0.0f64..8.0, hours in 0i64..10_000, extra in 0i64..1000,
            discount in 0.0f64..0.95,
        ) {
            let p = pricing(discount);
            let base = Usage { cpu_cores: cpu, memory_gib: mem, storage_gib: storage };
            let h = hourly(base, &p, true);
            prop_assert!(h >= 0.0);
            for bigger in [
                Usage { cpu_cores: cpu + more, ..base },
                Usage { memory_gib: mem + more, ..base },
                Usage { storage_gib: storage + more, ..base },
            ] {
                prop_assert!(hourly(bigger, &p, true) >= h);
            }
            prop_assert!(hourly(base, &p, false) >= h, "spot never costs more");
            let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
            let a = estimate(base, &p, true, t0, t0 + chrono::Duration::hours(hours));
            let b = estimate(base, &p, true, t0, t0 + chrono::Duration::hours(hours + extra));
            prop_assert!(b.accrued_usd >= a.accrued_usd);
            prop_assert_eq!(hourly(Usage::default(), &p, true), 0.0);
            prop_assert_eq!(estimate(base, &p, true, t0, t0).accrued_usd, 0.0);
        }
    }
}

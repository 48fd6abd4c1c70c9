//! The organisation's books: each live preview's cost and state, kept as previews reconcile,
//! summed into the cost and environment gauges, and checked against the monthly budget.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cost::{self, Line};
use crate::metrics::Metrics;

/// A preview's state as `previewd_environments_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Failed,
    Destroying,
}

impl Standing {
    fn label(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Failed => "failed",
            Standing::Destroying => "destroying",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    line: Line,
    pr_number: u64,
    monthly_usd: f64,
    standing: Standing,
}

#[derive(Debug, Default)]
struct Inner {
    previews: HashMap<String, Entry>,
    over_budget: bool,
    /// When each live preview expires (unix seconds), for the cleanup SLO.
    expiries: HashMap<String, i64>,
}

/// The budget was crossed upwards by the last change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetExceeded {
    pub projection_usd: f64,
    pub budget_usd: f64,
}

#[derive(Debug)]
pub struct Books {
    inner: Mutex<Inner>,
    budget_usd: Option<f64>,
    metrics: Option<Metrics>,
}

impl Books {
    pub fn new(budget_usd: Option<f64>, metrics: Option<Metrics>) -> Books {
        if let Some(m) = &metrics {
            m.cost_budget.set(budget_usd.unwrap_or(0.0));
        }
        Books { inner: Mutex::default(), budget_usd, metrics }
    }

    /// Records a preview's cost and standing; says so when this pushed the projection over
    /// the budget.
    pub fn record(
        &self,
        name: &str,
        line: Line,
        pr_number: u64,
        monthly_usd: f64,
        standing: Standing,
    ) -> Option<BudgetExceeded> {
        let mut inner = self.inner.lock().ok()?;
        let entry = Entry { line, pr_number, monthly_usd, standing };
        // Most reconciles change nothing: the totals (a pass over every preview) stay as they are.
        if inner.previews.get(name) == Some(&entry) {
            return None;
        }
        inner.previews.insert(name.to_owned(), entry);
        self.refresh(&mut inner)
    }

    /// Marks a preview as being deleted (its cost still counts until it is gone).
    pub fn destroying(&self, name: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(entry) = inner.previews.get_mut(name) {
                entry.standing = Standing::Destroying;
            }
            self.refresh(&mut inner);
        }
    }

    /// When a live preview expires: the oldest expiry is a gauge, and the cleanup SLO counts
    /// the time it lies more than a grace in the past.
    pub fn expires(&self, name: &str, at: Option<chrono::DateTime<chrono::Utc>>) {
        if let Ok(mut inner) = self.inner.lock() {
            match at {
                Some(at) => inner.expiries.insert(name.to_owned(), at.timestamp()),
                None => inner.expiries.remove(name),
            };
            self.oldest_expiry(&inner);
        }
    }

    fn oldest_expiry(&self, inner: &Inner) {
        if let Some(m) = &self.metrics {
            // 0: no live preview (the SLO's rule reads 0 as nothing to clean up).
            m.environment_oldest_expiry.set(inner.expiries.values().min().copied().unwrap_or(0) as f64);
        }
    }

    /// A preview is gone.
    pub fn forget(&self, name: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.expiries.remove(name);
            self.oldest_expiry(&inner);
            if let (Some(entry), Some(m)) = (inner.previews.remove(name), &self.metrics) {
                let _ = m.environment_cost.remove_label_values(&[&entry.line.repository, &entry.pr_number.to_string()]);
            }
            self.refresh(&mut inner);
        }
    }

    pub fn totals(&self) -> cost::Totals {
        self.inner.lock().map(|inner| cost::totals(inner.previews.values().map(|e| &e.line))).unwrap_or_default()
    }

    fn refresh(&self, inner: &mut Inner) -> Option<BudgetExceeded> {
        let totals = cost::totals(inner.previews.values().map(|e| &e.line));
        let over = self.budget_usd.is_some_and(|b| totals.monthly_projection_usd > b);
        let crossed = (over && !inner.over_budget).then(|| BudgetExceeded {
            projection_usd: totals.monthly_projection_usd,
            budget_usd: self.budget_usd.unwrap_or(0.0),
        });
        inner.over_budget = over;
        if let Some(m) = &self.metrics {
            m.cost_projection.set(totals.monthly_projection_usd);
            m.cost_budget_exceeded.set(i64::from(over));
            m.cost_hourly.reset();
            let mut per_pair: HashMap<(&str, &str), f64> = HashMap::new();
            for entry in inner.previews.values() {
                let team = entry.line.team.as_deref().unwrap_or("-");
                *per_pair.entry((entry.line.repository.as_str(), team)).or_default() += entry.line.hourly_usd;
                m.environment_cost
                    .with_label_values(&[&entry.line.repository, &entry.pr_number.to_string()])
                    .set(entry.monthly_usd);
            }
            for ((repository, team), hourly) in per_pair {
                m.cost_hourly.with_label_values(&[repository, team]).set(hourly);
            }
            for standing in [Standing::Active, Standing::Failed, Standing::Destroying] {
                let count = inner.previews.values().filter(|e| e.standing == standing).count();
                m.environments.with_label_values(&[standing.label()]).set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        crossed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(hourly_usd: f64) -> Line {
        Line { repository: "acme/shop".into(), team: Some("checkout".into()), hourly_usd }
    }

    #[test]
    fn the_budget_alert_fires_once_per_crossing() {
        let metrics = Metrics::new().unwrap();
        // Budget $100/month = $0.137/hour.
        let books = Books::new(Some(100.0), Some(metrics.clone()));
        assert_eq!(books.record("a", line(0.1), 1, 73.0, Standing::Active), None);
        let crossed = books.record("b", line(0.1), 2, 73.0, Standing::Active).unwrap();
        assert!((crossed.projection_usd - 146.0).abs() < 1e-9);
        assert_eq!(books.record("b", line(0.1), 2, 73.0, Standing::Failed), None, "still over: no new alert");
        assert_eq!(metrics.cost_budget_exceeded.get(), 1);
        books.forget("b");
        assert_eq!(metrics.cost_budget_exceeded.get(), 0);
        assert!(books.record("c", line(0.1), 3, 73.0, Standing::Active).is_some(), "over again");

        let text = metrics.render();
        assert!(
            text.contains(r#"previewd_environment_cost_estimate_usd{pr_number="1",repository="acme/shop"} 73"#),
            "{text}"
        );
        assert!(!text.contains(r#"pr_number="2""#), "a removed preview's series goes with it");
        assert!(text.contains(r#"previewd_environments_total{status="active"} 2"#), "{text}");
        assert!(text.contains(r#"previewd_cost_hourly_usd{repository="acme/shop",team="checkout"} 0.2"#), "{text}");
        books.destroying("c");
        assert!(metrics.render().contains(r#"previewd_environments_total{status="destroying"} 1"#));
    }
}

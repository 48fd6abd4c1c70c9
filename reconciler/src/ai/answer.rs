//! The model's answer (pure): parsed strictly, checked against the repository's services and
//! test suites, and merged with the static path-glob mapping according to `ai.mode`.

use serde::Deserialize;

use crate::config::{AiMode, RepositoryConfig};

/// One service the model chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub name: String,
    pub confidence: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// Known services only, each once, in the model's order.
    pub services: Vec<Pick>,
    /// Known test suites only.
    pub tests: Vec<String>,
    /// Names the model gave that the repository does not have (dropped).
    pub dropped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    services: Vec<RawPick>,
    #[serde(default)]
    tests: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPick {
    name: String,
    confidence: f64,
    #[serde(default)]
    reason: String,
}

/// Parses the model's message. Only a JSON object of the requested shape is accepted (a
/// Markdown code fence around it is tolerated: models add them even when asked not to).
pub fn parse(content: &str, services: &[&str], test_suites: &[String]) -> Result<Answer, String> {
    let text = content.trim();
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|t| t.trim_end().strip_suffix("```"))
        .unwrap_or(text)
        .trim();
    let raw: RawAnswer = serde_json::from_str(text).map_err(|e| format!("not the requested JSON: {e}"))?;
    let mut answer = Answer::default();
    for pick in raw.services {
        let Some(known) = services.iter().find(|s| s.eq_ignore_ascii_case(pick.name.trim())) else {
            answer.dropped.push(pick.name);
            continue;
        };
        if answer.services.iter().any(|p| p.name == *known) {
            continue;
        }
        let confidence = if pick.confidence.is_finite() { pick.confidence.clamp(0.0, 1.0) } else { 0.0 };
        let reason: String = pick.reason.chars().take(200).collect();
        answer.services.push(Pick { name: (*known).to_owned(), confidence, reason });
    }
    for test in raw.tests {
        match test_suites.iter().find(|t| t.eq_ignore_ascii_case(test.trim())) {
            Some(known) if !answer.tests.contains(known) => answer.tests.push(known.clone()),
            Some(_) => {}
            None => answer.dropped.push(test),
        }
    }
    Ok(answer)
}

/// What a merge decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub services: Vec<String>,
    /// The AI's answer changed the static choice.
    pub ai_decided: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Merges the static choice with the AI's answer. `order` is the repository's service order,
/// `always` its services without paths (deployed with any other).
pub fn merge(
    static_services: &[String],
    answer: &Answer,
    mode: AiMode,
    min_confidence: f64,
    order: &[&str],
    always: &[&str],
) -> Merged {
    let confident: Vec<&str> =
        answer.services.iter().filter(|p| p.confidence >= min_confidence).map(|p| p.name.as_str()).collect();
    let chosen: Vec<&str> = match mode {
        AiMode::StaticOnly => static_services.iter().map(String::as_str).collect(),
        AiMode::AddOnly => static_services.iter().map(String::as_str).chain(confident.iter().copied()).collect(),
        // The AI decides only when every service it named clears the bar; it cannot empty a
        // preview the path globs would deploy.
        AiMode::DecideAbove if !answer.services.is_empty() && confident.len() == answer.services.len() => {
            confident.iter().copied().chain(always.iter().copied()).collect()
        }
        AiMode::DecideAbove => static_services.iter().map(String::as_str).collect(),
    };
    let services: Vec<String> = order.iter().filter(|s| chosen.contains(s)).map(|s| (*s).to_owned()).collect();
    let added: Vec<String> = services.iter().filter(|s| !static_services.contains(s)).cloned().collect();
    let removed: Vec<String> = static_services.iter().filter(|s| !services.contains(s)).cloned().collect();
    Merged { ai_decided: !added.is_empty() || !removed.is_empty(), services, added, removed }
}

/// [`merge`] in `repo`'s service order, its services without paths always coming along.
pub fn merge_for(
    repo: &RepositoryConfig,
    static_services: &[String],
    answer: &Answer,
    mode: AiMode,
    min_confidence: f64,
) -> Merged {
    let order: Vec<&str> = repo.services.iter().map(|s| s.name.as_str()).collect();
    let always: Vec<&str> = repo.services.iter().filter(|s| s.paths.is_empty()).map(|s| s.name.as_str()).collect();
    merge(static_services, answer, mode, min_confidence, &order, &always)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: [&str; 4] = ["web", "api", "worker", "postgres"];

    fn answer(json: &str) -> Answer {
        parse(json, &SERVICES, &["web-e2e".to_owned(), "api-integration".to_owned()]).unwrap()
    }

    #[test]
    fn parses_only_known_names_in_the_requested_shape() {
        let a = answer(
            r#"```json
            {"services": [{"name": "API", "confidence": 0.92, "reason": "handler changed"},
                          {"name": "billing", "confidence": 0.99, "reason": "made up"},
                          {"name": "api", "confidence": 0.5, "reason": "again"},
                          {"name": "web", "confidence": 7, "reason": "over one"}],
             "tests": ["api-integration", "load-test"]}
            ```"#,
        );
        assert_eq!(
            a.services.iter().map(|p| (p.name.as_str(), p.confidence)).collect::<Vec<_>>(),
            [("api", 0.92), ("web", 1.0)]
        );
        assert_eq!(a.tests, ["api-integration"]);
        assert_eq!(a.dropped, ["billing", "load-test"]);
        for bad in [
            "",
            "services: api",
            "[\"api\"]",
            r#"{"services": "api"}"#,
            r#"{"services": [{"name": "api"}]}"#,
            r#"{"services": [], "extra": 1}"#,
        ] {
            assert!(parse(bad, &SERVICES, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_modes_merge_as_configured() {
        let order = ["web", "api", "worker", "postgres"];
        let always = ["postgres"];
        let static_choice = vec!["api".to_owned(), "postgres".to_owned()];
        let ai = answer(
            r#"{"services": [{"name": "api", "confidence": 0.9, "reason": ""}, {"name": "worker", "confidence": 0.8, "reason": ""}]}"#,
        );
        let add = merge(&static_choice, &ai, AiMode::AddOnly, 0.7, &order, &always);
        assert_eq!(
            (add.services.as_slice(), add.added.as_slice(), add.ai_decided),
            (&["api".to_owned(), "worker".to_owned(), "postgres".to_owned()][..], &["worker".to_owned()][..], true)
        );
        // Below the bar, nothing is added.
        let unsure = merge(&static_choice, &ai, AiMode::AddOnly, 0.85, &order, &always);
        assert_eq!((unsure.services, unsure.ai_decided), (static_choice.clone(), false));
        // decideAbove: the AI's choice (with the always-on services) when all clear the bar...
        let only_worker = answer(r#"{"services": [{"name": "worker", "confidence": 0.9, "reason": ""}]}"#);
        let decided = merge(&static_choice, &only_worker, AiMode::DecideAbove, 0.7, &order, &always);
        assert_eq!(decided.services, ["worker", "postgres"]);
        assert_eq!(decided.removed, ["api"]);
        // ...else the path globs.
        assert_eq!(merge(&static_choice, &ai, AiMode::DecideAbove, 0.85, &order, &always).services, static_choice);
        assert_eq!(
            merge(&static_choice, &answer(r#"{"services": []}"#), AiMode::DecideAbove, 0.5, &order, &always).services,
            static_choice
        );
        assert_eq!(merge(&static_choice, &ai, AiMode::StaticOnly, 0.0, &order, &always).services, static_choice);
    }
}

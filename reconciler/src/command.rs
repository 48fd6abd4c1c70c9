//! `/preview` commands on a pull request (pure): what a comment asks for, checked against the
//! repository's configuration, and the short answers Previewd gives on the PR.

use std::time::Duration;

use crate::config::RepositoryConfig;

/// What a writer can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/preview`: create the preview (opt-in repositories; forks once the label approved them).
    Create,
    /// `/preview extend <duration>`: keep it at least this long from now (within `ttl.max`).
    Extend(Duration),
    /// `/preview redeploy`: apply everything again and have Argo CD sync it afresh.
    Redeploy,
    /// `/preview wake`: a sleeping preview (`ttl.sleepAfter`) scales back up.
    Wake,
    /// `/preview destroy`: remove it now.
    Destroy,
    /// `/preview services a,b`: deploy exactly these services for this PR from now on.
    Services(Vec<String>),
    /// `/preview help`.
    Help,
}

impl Command {
    /// A bounded label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Command::Create => "create",
            Command::Extend(_) => "extend",
            Command::Redeploy => "redeploy",
            Command::Wake => "wake",
            Command::Destroy => "destroy",
            Command::Services(_) => "services",
            Command::Help => "help",
        }
    }
}

/// Why a command is not understood; the text is the polite refusal posted on the PR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The longest extension one command asks for; `ttl.max` bounds it further.
const MAX_EXTENSION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Parses the `/preview ...` line carried by the queue message.
pub fn parse(line: &str, repo: &RepositoryConfig) -> Result<Command, Refusal> {
    let rest = line.trim().strip_prefix("/preview").unwrap_or("").trim();
    let (verb, argument) = match rest.split_once(char::is_whitespace) {
        Some((verb, argument)) => (verb, argument.trim()),
        None => (rest, ""),
    };
    let no_argument = |command: Command| {
        if argument.is_empty() {
            Ok(command)
        } else {
            Err(Refusal(format!("`/preview {verb}` takes nothing after it. {}", HINT)))
        }
    };
    match verb.to_ascii_lowercase().as_str() {
        "" => Ok(Command::Create),
        "redeploy" => no_argument(Command::Redeploy),
        "wake" => no_argument(Command::Wake),
        "destroy" => no_argument(Command::Destroy),
        "help" => no_argument(Command::Help),
        "extend" => extension(argument).map(Command::Extend),
        "services" => services(argument, repo).map(Command::Services),
        _ => Err(Refusal(format!("Sorry, I don't know `/preview {}`. {HINT}", sanitise(verb)))),
    }
}

const HINT: &str = "`/preview help` lists what I can do.";

fn extension(argument: &str) -> Result<Duration, Refusal> {
    let refuse = || Refusal(format!("`/preview extend` needs a duration such as `2h`, `3d` or `1w`. {HINT}"));
    if argument.is_empty() || argument.contains(char::is_whitespace) {
        return Err(refuse());
    }
    let duration = humantime_serde::re::humantime::parse_duration(argument).map_err(|_| refuse())?;
    if duration.is_zero() {
        return Err(refuse());
    }
    Ok(duration.min(MAX_EXTENSION))
}

fn services(argument: &str, repo: &RepositoryConfig) -> Result<Vec<String>, Refusal> {
    let mut chosen = Vec::new();
    for name in argument.split([',', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
        let Some(service) = repo.services.iter().find(|s| s.name.eq_ignore_ascii_case(name)) else {
            let known: Vec<&str> = repo.services.iter().map(|s| s.name.as_str()).collect();
            return Err(Refusal(format!(
                "Sorry, `{}` is not a service of this repository. Its services are: {}.",
                sanitise(name),
                known.join(", ")
            )));
        };
        if !chosen.contains(&service.name) {
            chosen.push(service.name.clone());
        }
    }
    if chosen.is_empty() {
        return Err(Refusal(format!(
            "`/preview services` needs service names, such as `/preview services web,api`. {HINT}"
        )));
    }
    // In the configuration's order, as every other selection is.
    chosen.sort_by_key(|name| repo.services.iter().position(|s| &s.name == name));
    Ok(chosen)
}

/// Someone else's text quoted back on the PR: short, one line, no Markdown or mentions.
fn sanitise(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(40).collect()
}

/// `/preview help`.
pub fn help(max_ttl: Duration) -> String {
    format!(
        "Previewd commands (for people with write access to this repository):\n\n\
         | command | what it does |\n|---|---|\n\
         | `/preview` | creates this PR's preview (in opt-in repositories; a fork also needs the fork label) |\n\
         | `/preview extend 2d` | keeps the preview at least that long from now (at most {} after it was created) |\n\
         | `/preview redeploy` | applies the preview again and has Argo CD sync it afresh |\n\
         | `/preview wake` | wakes a sleeping preview (it sleeps after a while without activity, where configured) |\n\
         | `/preview destroy` | removes the preview now (a later push brings it back unless the PR opts out) |\n\
         | `/preview services web,api` | deploys exactly these services for this PR |\n\
         | `/preview help` | this list |",
        humantime_serde::re::humantime::format_duration(max_ttl)
    )
}

/// The refusal for someone without write access.
pub const NOT_A_WRITER: &str = "Sorry, only people with write access to this repository can use `/preview` commands.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn repo() -> RepositoryConfig {
        let config =
            Config::from_yaml(include_str!("../../docs/examples/config.yaml")).unwrap_or_else(|e| panic!("{e}"));
        config.repositories.into_iter().next().unwrap_or_else(|| panic!("no repository"))
    }

    #[test]
    fn every_command_parses() {
        let repo = repo();
        let first = repo.services[0].name.clone();
        assert_eq!(parse("/preview", &repo), Ok(Command::Create));
        assert_eq!(parse("/preview   REDEPLOY", &repo), Ok(Command::Redeploy));
        assert_eq!(parse("/preview wake", &repo), Ok(Command::Wake));
        assert_eq!(parse("/preview destroy", &repo), Ok(Command::Destroy));
        assert_eq!(parse("/preview help", &repo), Ok(Command::Help));
        assert_eq!(parse("/preview extend 2d", &repo), Ok(Command::Extend(Duration::from_secs(2 * 86400))));
        assert_eq!(parse("/preview extend 1y", &repo), Ok(Command::Extend(MAX_EXTENSION)));
        let upper = first.to_ascii_uppercase();
        assert_eq!(parse(&format!("/preview services {upper}, {first}"), &repo), Ok(Command::Services(vec![first])));
    }

    #[test]
    fn anything_else_gets_a_polite_refusal_that_quotes_nothing_harmful() {
        let repo = repo();
        for bad in [
            "/preview deploy",
            "/preview extend",
            "/preview extend soon",
            "/preview extend 0s",
            "/preview extend 2d please",
            "/preview destroy now",
            "/preview services",
            "/preview services nope",
            "/preview @everyone <img src=x>",
        ] {
            let Err(Refusal(text)) = parse(bad, &repo) else { panic!("{bad} was accepted") };
            assert!(!text.contains('@') && !text.contains('<'), "{bad}: {text}");
        }
    }
}

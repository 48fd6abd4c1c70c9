//! `/preview` commands: who wrote it is checked with GitHub first, then the command is parsed
//! and carried out, and the comment is acknowledged (a 👍 reaction) or answered with a short
//! refusal (a 😕 reaction and a reply). Nothing is done for anyone without write access.

use chrono::{DateTime, Utc};
use previewd_events::CommandEvent;

use super::{Approvals, Ask, Intake, Outcome};
use crate::command::{self, Command, NOT_A_WRITER, Refusal};
use crate::config::RepositoryConfig;
use crate::crd::PreviewEnvironment;
use crate::policy::Reason;

/// How a command is acknowledged on the PR.
enum Answer {
    /// Done: a 👍 reaction, and a reply when there is something to say.
    Done(Option<String>),
    /// Not done: a 😕 reaction and this reply.
    Refused(String),
}

impl Intake {
    /// Carries out one `/preview` command.
    pub async fn handle_command(&self, event: &CommandEvent) -> Outcome {
        let Some(repo) = self.config.repository(&event.repository.full_name) else {
            return Outcome::Ignored { reason: Reason::RepositoryNotConfigured };
        };
        let writer = match (self.approvals, &self.github) {
            // `previewd render` and `previewd consume` into a folder: nobody to ask, nothing deployed.
            (Approvals::Assumed, _) => true,
            (Approvals::Checked, None) => false,
            (Approvals::Checked, Some(github)) => {
                match github.can_push(event.installation_id, &event.repository.full_name, &event.author).await {
                    Ok(allowed) => allowed,
                    // Fail closed, and try again: the message comes back.
                    Err(err) => return Outcome::Failed { error: format!("checking the commenter's access: {err}") },
                }
            }
        };
        tracing::info!(pr = event.number, author = %event.author, writer, "preview command received");
        let (outcome, answer) = if !writer {
            (Outcome::Noted { what: "command refused: no write access" }, Answer::Refused(NOT_A_WRITER.to_owned()))
        } else {
            match command::parse(&event.command, repo) {
                Ok(command) => {
                    tracing::info!(pr = event.number, command = command.label(), "preview command");
                    self.carry_out(repo, event, command).await
                }
                Err(Refusal(why)) => (Outcome::Noted { what: "command refused: not understood" }, Answer::Refused(why)),
            }
        };
        if !matches!(outcome, Outcome::Failed { .. }) {
            self.acknowledge(event, answer).await;
        }
        outcome
    }

    async fn carry_out(&self, repo: &RepositoryConfig, event: &CommandEvent, command: Command) -> (Outcome, Answer) {
        let name = self.name_of(repo, event.number);
        let existing = match self.store.get(&name).await {
            Ok(existing) => existing.filter(|pe| pe.metadata.deletion_timestamp.is_none()),
            Err(err) => return (Outcome::Failed { error: err.to_string() }, Answer::Done(None)),
        };
        let no_preview = || {
            (
                Outcome::Noted { what: "command refused: no preview" },
                Answer::Refused("There is no preview for this pull request yet. `/preview` creates one.".to_owned()),
            )
        };
        match command {
            Command::Help => (Outcome::Noted { what: "help" }, Answer::Done(Some(command::help(self.config.ttl.max)))),
            Command::Create => self.create(event, existing.is_some(), Vec::new()).await,
            Command::Services(services) => match existing {
                Some(pe) => {
                    let mut spec = pe.spec.clone();
                    // An experiment counts the override against the arm that chose before.
                    if let Some(arm) = spec.experiment.as_mut()
                        && services != spec.services
                    {
                        arm.corrections = arm.corrections.saturating_add(1);
                    }
                    spec.requested.get_or_insert_with(Default::default).services = services.clone();
                    match spec.awaiting_build.as_mut() {
                        // The waiting commit deploys these when it passes.
                        Some(waiting) => waiting.services = services,
                        None => spec.services = services,
                    }
                    if spec.awaiting_build.is_none() {
                        spec.selection = Some(crate::crd::ServiceSelection {
                            by: crate::crd::SelectedBy::Command,
                            head_sha: spec.head_sha.clone(),
                            changed_files: None,
                            note: Some(format!("named by {} with `/preview services`", event.author)),
                            ai: None,
                            reasons: Default::default(),
                            changed: Vec::new(),
                        });
                    }
                    (self.write(&pe, spec).await, Answer::Done(None))
                }
                None => self.create(event, false, services).await,
            },
            Command::Redeploy => match existing {
                Some(pe) => {
                    let mut spec = pe.spec.clone();
                    spec.requested.get_or_insert_with(Default::default).redeployed_at = Some(event.received_at);
                    (self.write(&pe, spec).await, Answer::Done(None))
                }
                None => no_preview(),
            },
            Command::Wake => match existing {
                Some(pe) => {
                    let mut spec = pe.spec.clone();
                    spec.requested.get_or_insert_with(Default::default).woken_at = Some(event.received_at);
                    (self.write(&pe, spec).await, Answer::Done(None))
                }
                None => no_preview(),
            },
            Command::Destroy => match existing {
                Some(pe) => match self.store.remove(&pe, Reason::Destroyed).await {
                    Ok(()) => (Outcome::Removed { name, reason: Reason::Destroyed }, Answer::Done(None)),
                    Err(err) => (Outcome::Failed { error: err.to_string() }, Answer::Done(None)),
                },
                None => no_preview(),
            },
            Command::Extend(by) => match existing {
                Some(pe) => {
                    let (until, capped) = self.extension(&pe, event.received_at, by);
                    let mut spec = pe.spec.clone();
                    spec.requested.get_or_insert_with(Default::default).extended_until = Some(until);
                    let when = until.format("%Y-%m-%d %H:%M UTC");
                    let reply = if capped {
                        format!("Extended until {when}, the longest a preview may live here (`ttl.max`).")
                    } else {
                        format!("Extended until {when}.")
                    };
                    (self.write(&pe, spec).await, Answer::Done(Some(reply)))
                }
                None => no_preview(),
            },
        }
    }

    /// `/preview` (or `/preview services` on a PR without a preview): the PR as GitHub has it
    /// now, through the same path as its events, with the writer's request as the way in.
    async fn create(&self, event: &CommandEvent, exists: bool, services: Vec<String>) -> (Outcome, Answer) {
        if exists {
            let reply = "This pull request already has a preview: `/preview redeploy` applies it again.";
            return (Outcome::Noted { what: "command refused: preview exists" }, Answer::Refused(reply.to_owned()));
        }
        let Some(github) = &self.github else {
            let reply = "Previewd cannot read this pull request from GitHub, so it cannot create a preview.";
            return (Outcome::Noted { what: "command refused: no GitHub" }, Answer::Refused(reply.to_owned()));
        };
        let pr = match github
            .pull_request_event(
                event.installation_id,
                &event.repository,
                event.number,
                &event.delivery_id,
                event.received_at,
            )
            .await
        {
            Ok(mut pr) => {
                pr.sender = event.author.clone();
                pr
            }
            Err(err) => {
                return (Outcome::Failed { error: format!("reading the pull request: {err}") }, Answer::Done(None));
            }
        };
        let ask = Ask { by: event.author.clone(), services };
        let outcome = Box::pin(self.handle_pr(&pr, Some(&ask))).await;
        let answer = match &outcome {
            Outcome::Removed { reason, .. } => Answer::Refused(format!(
                "No preview: {}.",
                crate::github::comment::reason_words(*reason, &crate::github::view::labels(&self.config))
                    .trim_end_matches('.')
            )),
            _ => Answer::Done(None),
        };
        (outcome, answer)
    }

    /// When `/preview extend <by>` keeps the preview until, and whether `ttl.max` cut it short.
    fn extension(&self, pe: &PreviewEnvironment, now: DateTime<Utc>, by: std::time::Duration) -> (DateTime<Utc>, bool) {
        let created = crate::controller::plan::created_at(pe, now);
        let span = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let wanted = now.checked_add_signed(span(by)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let limit = created.checked_add_signed(span(self.config.ttl.max)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        (wanted.min(limit), wanted > limit)
    }

    async fn write(&self, read: &PreviewEnvironment, spec: crate::crd::PreviewEnvironmentSpec) -> Outcome {
        let name = read.metadata.name.clone().unwrap_or_default();
        match self.write_spec(&name, Some(read), spec, true).await {
            Ok(()) => Outcome::Applied { name },
            Err(err) => Outcome::Failed { error: err.to_string() },
        }
    }

    /// The reaction, and the reply when there is one. A failure here is logged: the command
    /// itself is done, and doing it again would not help.
    async fn acknowledge(&self, event: &CommandEvent, answer: Answer) {
        let Some(github) = &self.github else {
            if let Answer::Refused(why) = &answer {
                tracing::info!(pr = event.number, %why, "preview command refused");
            }
            return;
        };
        let (reaction, reply) = match answer {
            Answer::Done(reply) => ("+1", reply),
            Answer::Refused(why) => ("confused", Some(format!("@{} {why}", event.author))),
        };
        let (installation, repository) = (event.installation_id, event.repository.full_name.as_str());
        if let Err(err) = github.react(installation, repository, event.comment_id, reaction).await {
            tracing::warn!(pr = event.number, error = %err, "could not react to the command");
        }
        if let Some(reply) = reply
            && let Err(err) = github.create_comment(installation, repository, event.number, &reply).await
        {
            tracing::warn!(pr = event.number, error = %err, "could not answer the command");
        }
    }
}

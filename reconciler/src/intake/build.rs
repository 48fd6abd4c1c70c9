//! The build gate's I/O: check results from the queue, what GitHub says when a wait begins,
//! and the resync that covers missed events and times waits out.

use chrono::Utc;
use previewd_events::CheckEvent;

use super::{Intake, Outcome};
use crate::config::BuildGate;
use crate::crd::{PreviewEnvironment, PreviewEnvironmentSpec};
use crate::gate;
use crate::policy::Reason;

impl Intake {
    /// What the checks of the waiting commit say now, read from GitHub (when it is configured)
    /// and recorded: a commit whose build finished before its PR event deploys at once.
    pub(super) async fn read_checks(&self, gate: &BuildGate, spec: &mut PreviewEnvironmentSpec) {
        let (Some(github), Some(sha)) = (&self.github, spec.awaiting_build.as_ref().map(|a| a.sha.clone())) else {
            return;
        };
        match github.check_states(spec.installation_id, &spec.repository, &sha, &gate.checks).await {
            Ok(states) => {
                gate::record(spec, gate, &sha, states);
            }
            // The check events and the resync still come.
            Err(err) => tracing::warn!(sha = %sha, error = %err, "could not read the commit's checks"),
        }
    }

    /// A finished check: recorded on every preview whose head waits for it.
    pub async fn handle_check(&self, check: &CheckEvent) -> Outcome {
        let Some(repo) = self.config.repository(&check.repository.full_name) else {
            return Outcome::Ignored { reason: Reason::RepositoryNotConfigured };
        };
        let Some(gate) = repo.build_gate.as_ref().filter(|g| g.names(&check.name)) else {
            return Outcome::Noted { what: "a check no build gate names" };
        };
        // Check runs name their PRs; statuses (and checks of forks) do not.
        let previews: Vec<PreviewEnvironment> = if check.pull_requests.is_empty() {
            match self.store.list(&repo.name).await {
                Ok(all) => all,
                Err(err) => return Outcome::Failed { error: err.to_string() },
            }
        } else {
            let mut found = Vec::new();
            for number in &check.pull_requests {
                match self.store.get(&self.name_of(repo, *number)).await {
                    Ok(pe) => found.extend(pe),
                    Err(err) => return Outcome::Failed { error: err.to_string() },
                }
            }
            found
        };
        let mut outcome = Outcome::Noted { what: "no preview waits for this commit" };
        for pe in previews {
            if pe.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let mut spec = pe.spec.clone();
            if !gate::record(&mut spec, gate, &check.sha, [(check.name.clone(), check.state)]) {
                continue;
            }
            let name = pe.metadata.name.clone().unwrap_or_default();
            tracing::info!(preview = %name, check = %check.name, state = check.state.as_str(), sha = %check.sha, "build gate check recorded");
            if let Err(err) = self.store.update(&pe, spec).await {
                return Outcome::Failed { error: err.to_string() };
            }
            outcome = Outcome::Applied { name };
        }
        outcome
    }

    /// Every waiting commit again: reads its checks from GitHub (events can be missed: a
    /// webhook outage, a check that finished before the PR was configured) and times out waits
    /// past the gate's timeout. Returns how many previews changed.
    pub async fn resync_build_gates(&self) -> Result<usize, String> {
        let mut changed = 0;
        for repo in self.config.repositories.iter() {
            let Some(gate) = &repo.build_gate else { continue };
            let previews = self.store.list(&repo.name).await.map_err(|e| e.to_string())?;
            for pe in previews.into_iter().filter(|pe| pe.spec.awaiting_build.is_some()) {
                if pe.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let mut spec = pe.spec.clone();
                self.read_checks(gate, &mut spec).await;
                gate::time_out(&mut spec, gate, Utc::now());
                if spec != pe.spec {
                    // A conflict means an event wrote it meanwhile: the next round sees that.
                    match self.store.update(&pe, spec).await {
                        Ok(()) => changed += 1,
                        Err(err) => {
                            tracing::info!(preview = ?pe.metadata.name, error = %err, "build gate resync skipped a preview")
                        }
                    }
                }
            }
        }
        Ok(changed)
    }
}

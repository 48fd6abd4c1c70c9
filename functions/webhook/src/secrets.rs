//! The webhook secrets at run time: fixed from the environment, or read from AWS Secrets
//! Manager once per container and refreshed periodically so a rotation reaches warm
//! containers without a redeploy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use tokio::sync::{Mutex, RwLock};

use crate::budget;
use crate::signature::{Secrets, SecretsError};

#[derive(Debug, thiserror::Error)]
pub enum SecretSourceError {
    #[error("webhook secret: {0}")]
    Invalid(#[from] SecretsError),
    #[error("reading webhook secret {arn} from Secrets Manager: {message}")]
    Fetch { arn: String, message: String },
    #[error("Secrets Manager secret {arn} has no SecretString (binary secrets are not supported)")]
    NotAString { arn: String },
    #[error("reading the webhook secret: {0}")]
    OverBudget(#[from] crate::budget::OverBudget),
}

#[derive(Debug)]
pub enum SecretSource {
    Static(Arc<Secrets>),
    Managed(ManagedSecrets),
}

impl SecretSource {
    /// The secrets to verify this request with.
    pub async fn current(&self) -> Arc<Secrets> {
        match self {
            SecretSource::Static(secrets) => Arc::clone(secrets),
            SecretSource::Managed(managed) => managed.current().await,
        }
    }
}

#[derive(Debug)]
pub struct ManagedSecrets {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    refresh_every: Duration,
    cached: RwLock<(Arc<Secrets>, Instant)>,
    /// Single flight: one refresh at a time; others keep using the cached value meanwhile.
    refreshing: Mutex<()>,
}

impl ManagedSecrets {
    /// Fetches the secret; a failure here stops the container from starting.
    pub async fn load(
        client: aws_sdk_secretsmanager::Client,
        arn: String,
        refresh_every: Duration,
    ) -> Result<ManagedSecrets, SecretSourceError> {
        let secrets = fetch(&client, &arn).await?;
        Ok(ManagedSecrets {
            client,
            arn,
            refresh_every,
            cached: RwLock::new((Arc::new(secrets), Instant::now())),
            refreshing: Mutex::new(()),
        })
    }

    pub async fn current(&self) -> Arc<Secrets> {
        let (secrets, fetched_at) = {
            let guard = self.cached.read().await;
            (Arc::clone(&guard.0), guard.1)
        };
        if fetched_at.elapsed() < self.refresh_every {
            return secrets;
        }
        let Ok(_flight) = self.refreshing.try_lock() else {
            return secrets;
        };
        // In the request's path: bounded, and on any failure the cached secret still verifies.
        match budget::within(budget::Budget::LAMBDA.secret_refresh, fetch(&self.client, &self.arn)).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.cached.write().await = (Arc::clone(&fresh), Instant::now());
                fresh
            }
            Err(err) => {
                // Keep verifying with the last good secrets; try again after the next period.
                tracing::warn!(error = %err, "webhook secret refresh failed; keeping the cached secret");
                self.cached.write().await.1 = Instant::now();
                secrets
            }
        }
    }
}

async fn fetch(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Result<Secrets, SecretSourceError> {
    let output = client.get_secret_value().secret_id(arn).send().await.map_err(|err| SecretSourceError::Fetch {
        arn: arn.to_owned(),
        message: DisplayErrorContext(&err).to_string(),
    })?;
    let value = output.secret_string().ok_or_else(|| SecretSourceError::NotAString { arn: arn.to_owned() })?;
    Ok(Secrets::parse(value)?)
}

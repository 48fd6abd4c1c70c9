//! The redeliver Lambda: GitHub never retries a failed webhook delivery by itself (it keeps
//! failed ones redeliverable for 3 days), so this scheduled function finds deliveries that
//! failed and have not succeeded since, and asks GitHub to deliver them again, a bounded number
//! of times each. See `docs/deploy-aws.md`.
#![forbid(unsafe_code)]

pub mod config;
pub mod github;
pub mod plan;
pub mod run;
pub mod state;

pub use run::{Redeliverer, Report};

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::config::{Config, CredentialSource};
use crate::github::{GitHub, GitHubError, credentials_from_json};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("reading GitHub credentials from {arn}: {message}")]
    Secret { arn: String, message: String },
    #[error(transparent)]
    GitHub(#[from] GitHubError),
}

/// Builds the function from its configuration; called once per container.
pub async fn from_config(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Redeliverer, StartError> {
    let credentials = match &config.credentials {
        CredentialSource::Inline(credentials) => credentials.clone(),
        CredentialSource::SecretArn(arn) => {
            let client = aws_sdk_secretsmanager::Client::new(sdk);
            let out =
                client.get_secret_value().secret_id(arn).send().await.map_err(|e| StartError::Secret {
                    arn: arn.clone(),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            let text = out
                .secret_string()
                .ok_or_else(|| StartError::Secret { arn: arn.clone(), message: "no SecretString".to_owned() })?;
            credentials_from_json(text)?
        }
    };
    let github = GitHub::new(&config.api_url, &credentials)?;
    let state = state::State::new(aws_sdk_dynamodb::Client::new(sdk), config.table_name.clone());
    Ok(Redeliverer::new(github, state, config))
}

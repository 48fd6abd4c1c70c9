//! The `lambda_http` edge: request -> [`Delivery`], [`Reply`] -> response, and building the
//! [`Webhook`] once per container from the environment.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use crate::config::{Backing, Config, ConfigError, SecretConfig};
use crate::handler::{Delivery, Webhook};
use crate::ledger::Ledger;
use crate::queue::EventQueue;
use crate::reply::Reply;
use crate::secrets::{ManagedSecrets, SecretSource, SecretSourceError};
use crate::signature::Secrets;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretSourceError),
    #[error("PREVIEWD_NATS_URL is for `previewd webhook-server`; the Lambda uses SQS and DynamoDB")]
    NotAws,
}

/// Reads the webhook's inputs from the request (headers are case-insensitive).
pub fn delivery(req: &Request) -> Delivery<'_> {
    Delivery::from_http(req.headers(), req.body().as_ref())
}

pub fn response(reply: &Reply) -> Response<Body> {
    reply.http_response().map(Body::Text)
}

/// Builds the webhook from the environment; any error here stops the container from starting.
pub async fn webhook_from_env(sdk: &aws_config::SdkConfig) -> Result<Webhook, StartError> {
    let config = Config::from_env()?;
    let secrets = match &config.secret {
        SecretConfig::Inline(list) => {
            SecretSource::Static(Arc::new(Secrets::parse(list).map_err(SecretSourceError::from)?))
        }
        SecretConfig::Arn(arn) => SecretSource::Managed(
            ManagedSecrets::load(aws_sdk_secretsmanager::Client::new(sdk), arn.clone(), config.secret_refresh).await?,
        ),
    };
    let Backing::Aws { queue_url, table_name } = config.backing.clone() else {
        return Err(StartError::NotAws);
    };
    let ledger =
        Ledger::new(aws_sdk_dynamodb::Client::new(sdk), table_name, config.claim_lease, config.dedupe_retention);
    let queue = EventQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url);
    Ok(Webhook::new(config, secrets, ledger, queue))
}

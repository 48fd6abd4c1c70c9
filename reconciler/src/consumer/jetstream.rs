//! The in-cluster front's queue: the JetStream stream the webhook server publishes to, read
//! through one durable pull consumer. Messages are settled by the reply subject JetStream gave
//! them (`+ACK`, `-NAK {"delay":…}`, `+WPI`, `+TERM`); the acknowledgement of a handled message
//! waits for the server's confirmation, so it is sent only after the cluster write and is
//! known to have landed. Delivery is unlimited (`max_deliver: -1`): a message that cannot be
//! handled yet is delayed, never dropped.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use futures::StreamExt;
use previewd_webhook::nats::{STREAM, connect_to_stream};

use super::ConsumerError;
use super::source::Received;

/// The durable consumer's name (one per installation: the reconciler's replicas share it).
pub const CONSUMER: &str = "previewd-reconciler";

#[derive(Debug, Clone)]
pub struct JetStreamSource {
    client: async_nats::Client,
    consumer: PullConsumer,
}

fn nats_error(operation: &'static str, err: impl std::fmt::Display) -> ConsumerError {
    ConsumerError::Queue { operation, message: err.to_string() }
}

impl JetStreamSource {
    /// Connects to `url`; creates the stream and the durable consumer when missing. A message
    /// handed out and neither settled nor extended comes back after `ack_wait`.
    pub async fn connect(url: &str, ack_wait: Duration) -> Result<JetStreamSource, ConsumerError> {
        let (client, stream) =
            connect_to_stream(url, "previewd-reconciler").await.map_err(|e| nats_error("stream", e))?;
        let config = pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 1_000,
            ..Default::default()
        };
        let consumer = stream.get_or_create_consumer(CONSUMER, config).await.map_err(|e| nats_error("consumer", e))?;
        Ok(JetStreamSource { client, consumer })
    }

    pub(super) fn describe(&self) -> String {
        format!("JetStream {STREAM}/{CONSUMER}")
    }

    /// Waits up to `wait` seconds for one message, then takes what else is there without
    /// waiting. Both are complete pull requests, so nothing is handed to an abandoned one.
    pub(super) async fn receive(&self, batch: i32, wait: i32) -> Result<Vec<Received>, ConsumerError> {
        let wait = Duration::from_secs(u64::try_from(wait.clamp(1, 20)).unwrap_or(20));
        let first = self.consumer.batch().max_messages(1).expires(wait).messages().await;
        let mut received = self.collect(first.map_err(|e| nats_error("fetch", e))?).await?;
        let rest = usize::try_from(batch.clamp(1, 100)).unwrap_or(1).saturating_sub(received.len());
        if !received.is_empty() && rest > 0 {
            let more = self.consumer.fetch().max_messages(rest).messages().await;
            received.extend(self.collect(more.map_err(|e| nats_error("fetch", e))?).await?);
        }
        Ok(received)
    }

    async fn collect(
        &self,
        mut messages: impl futures::Stream<Item = Result<async_nats::jetstream::Message, async_nats::Error>> + Unpin,
    ) -> Result<Vec<Received>, ConsumerError> {
        let mut received = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| nats_error("fetch", e))?;
            let (sequence, receives) = match message.info() {
                Ok(info) => (info.stream_sequence, u32::try_from(info.delivered).unwrap_or(u32::MAX)),
                Err(err) => {
                    tracing::warn!(error = %err, "a JetStream message without delivery info");
                    continue;
                }
            };
            let Some(reply) = message.reply.as_ref().map(|r| r.to_string()) else { continue };
            let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
            received.push(Received {
                id: sequence.to_string(),
                receipt: reply,
                body: String::from_utf8_lossy(&message.payload).into_owned(),
                group: previewd_webhook::nats::group_of(message.subject.as_str()).unwrap_or_default(),
                receives,
                traceparent: header(previewd_telemetry::TRACEPARENT),
            });
        }
        Ok(received)
    }

    async fn signal(&self, receipt: &str, kind: AckKind) -> Result<(), async_nats::PublishError> {
        self.client.publish(receipt.to_owned(), kind.into()).await
    }

    pub(super) async fn extend(&self, held: Vec<(String, String)>) {
        for (id, receipt) in held {
            if let Err(err) = self.signal(&receipt, AckKind::Progress).await {
                tracing::warn!(message_id = id, error = %err, "could not extend a message's ack wait");
            }
        }
        let _ = self.client.flush().await;
    }

    pub(super) async fn reject(&self, message: &Received) {
        if let Err(err) = self.signal(&message.receipt, AckKind::Term).await {
            tracing::warn!(message_id = message.id, error = %err, "could not terminate a malformed message");
        }
        let _ = self.client.flush().await;
    }

    pub(super) async fn delay(&self, message: &Received, delay: Duration) -> Result<(), ConsumerError> {
        self.signal(&message.receipt, AckKind::Nak(Some(delay))).await.map_err(|e| nats_error("NAK", e))?;
        self.client.flush().await.map_err(|e| nats_error("NAK", e))
    }

    /// Acknowledges each message and waits for the server to confirm it (a double ack);
    /// returns the ones it did not confirm.
    pub(super) async fn ack<'a>(&self, messages: &[&'a Received]) -> Vec<&'a Received> {
        let acks = messages.iter().map(|m| async move {
            let confirmed = tokio::time::timeout(
                Duration::from_secs(5),
                self.client.request(m.receipt.clone(), AckKind::Ack.into()),
            )
            .await;
            match confirmed {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => {
                    tracing::warn!(message_id = m.id, error = %err, "could not acknowledge a handled message");
                    Some(*m)
                }
                Err(_) => {
                    tracing::warn!(message_id = m.id, "no confirmation of an acknowledgement");
                    Some(*m)
                }
            }
        });
        futures::future::join_all(acks).await.into_iter().flatten().collect()
    }
}

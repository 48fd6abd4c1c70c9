//! Where the consumer's messages come from: the AWS front's SQS FIFO queue, or the in-cluster
//! front's JetStream stream. Both give the same promises the consumer relies on: each FIFO
//! group in order, a received message hidden from other consumers until it is settled or its
//! visibility (SQS) / ack wait (JetStream) runs out, and a heartbeat that extends it.

use std::time::Duration;

use super::ConsumerError;
use super::jetstream::JetStreamSource;
use super::sqs::SqsSource;

/// One received message.
#[derive(Debug)]
pub(super) struct Received {
    /// Unique per message: SQS's message id, or the stream sequence.
    pub(super) id: String,
    /// What settles it: SQS's receipt handle, or JetStream's reply subject.
    pub(super) receipt: String,
    pub(super) body: String,
    pub(super) group: String,
    /// How many times it was handed out, this time included.
    pub(super) receives: u32,
    /// The webhook's span (W3C), when the front exports traces.
    pub(super) traceparent: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Source {
    Sqs(SqsSource),
    JetStream(Box<JetStreamSource>),
}

impl Source {
    /// For the log lines: the queue URL, or the stream and consumer.
    pub(super) fn describe(&self) -> String {
        match self {
            Source::Sqs(s) => s.url.clone(),
            Source::JetStream(s) => s.describe(),
        }
    }

    /// Receives up to `batch` messages, waiting up to `wait` for the first.
    pub(super) async fn receive(
        &self,
        batch: i32,
        wait: i32,
        visibility: Duration,
    ) -> Result<Vec<Received>, ConsumerError> {
        match self {
            Source::Sqs(s) => s.receive(batch, wait, visibility).await,
            Source::JetStream(s) => s.receive(batch, wait).await,
        }
    }

    /// Keeps `held` (message id, receipt) hidden for another `visibility`.
    pub(super) async fn extend(&self, held: Vec<(String, String)>, visibility: Duration) {
        match self {
            Source::Sqs(s) => s.extend(held, visibility).await,
            Source::JetStream(s) => s.extend(held).await,
        }
    }

    /// A message that can never be read: SQS makes it visible at once (it reaches the DLQ
    /// quickly); JetStream terminates it (it stays in the stream for inspection).
    pub(super) async fn reject(&self, message: &Received) {
        match self {
            Source::Sqs(s) => s.reject(message).await,
            Source::JetStream(s) => s.reject(message).await,
        }
    }

    /// Hands `message` out again after `delay`.
    pub(super) async fn delay(&self, message: &Received, delay: Duration) -> Result<(), ConsumerError> {
        match self {
            Source::Sqs(s) => s.delay(message, delay).await,
            Source::JetStream(s) => s.delay(message, delay).await,
        }
    }

    /// Puts a copy of `message` at the end of its group (SQS only: a message near the
    /// receive limit would move to the DLQ; JetStream redelivers without a limit).
    pub(super) async fn resend(&self, message: &Received) -> Result<(), ConsumerError> {
        match self {
            Source::Sqs(s) => s.resend(message).await,
            Source::JetStream(s) => s.delay(message, Duration::ZERO).await,
        }
    }

    /// Settles handled messages; returns the ones that could not be settled.
    pub(super) async fn delete<'a>(&self, messages: &[&'a Received]) -> Result<Vec<&'a Received>, ConsumerError> {
        match self {
            Source::Sqs(s) => s.delete(messages).await,
            Source::JetStream(s) => Ok(s.ack(messages).await),
        }
    }
}

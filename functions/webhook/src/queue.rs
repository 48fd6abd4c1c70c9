//! SQS FIFO: one message per accepted delivery, grouped per PR, deduplicated by delivery id.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use previewd_events::Message;
use previewd_telemetry::TRACEPARENT;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS SendMessage: {0}")]
    Send(String),
    #[error("encoding the queue message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("SQS SendMessage: {0}")]
    OverBudget(#[from] crate::budget::OverBudget),
}

#[derive(Debug, Clone)]
pub struct EventQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl EventQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> EventQueue {
        EventQueue { client, url }
    }

    /// Enqueues `message`; returns the SQS message id. `traceparent` (W3C) travels as the
    /// message attribute of that name, so the reconciler continues the delivery's trace.
    pub async fn send(&self, message: &Message, traceparent: Option<&str>) -> Result<String, QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_json()?)
            .message_group_id(message.message_group_id())
            .message_deduplication_id(message.delivery_id());
        if let Some(value) = traceparent
            && let Ok(attribute) = MessageAttributeValue::builder().data_type("String").string_value(value).build()
        {
            request = request.message_attributes(TRACEPARENT, attribute);
        }
        let output = request
            .send()
            .instrument(tracing::info_span!("sqs.send_message"))
            .await
            .map_err(|err| QueueError::Send(DisplayErrorContext(&err).to_string()))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }
}

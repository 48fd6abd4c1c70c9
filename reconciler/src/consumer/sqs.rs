//! The AWS front's queue: SQS FIFO, long-polled; visibility timeouts hide a message while it
//! is handled.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
};

use super::ConsumerError;
use super::defer::visibility_seconds;
use super::source::Received;

#[derive(Debug, Clone)]
pub struct SqsSource {
    pub(super) client: aws_sdk_sqs::Client,
    pub(super) url: String,
}

fn sqs_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    err: &aws_sdk_sqs::error::SdkError<E, R>,
) -> ConsumerError {
    ConsumerError::Queue { operation, message: DisplayErrorContext(err).to_string() }
}

fn received(message: Message) -> Received {
    let attribute =
        |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name)).cloned().unwrap_or_default();
    Received {
        receives: attribute(MessageSystemAttributeName::ApproximateReceiveCount).parse().unwrap_or(1),
        group: attribute(MessageSystemAttributeName::MessageGroupId),
        traceparent: message
            .message_attributes()
            .and_then(|a| a.get(previewd_telemetry::TRACEPARENT))
            .and_then(|v| v.string_value().map(str::to_owned)),
        id: message.message_id.unwrap_or_default(),
        receipt: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
    }
}

impl SqsSource {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> SqsSource {
        SqsSource { client, url }
    }

    pub(super) async fn receive(
        &self,
        batch: i32,
        wait: i32,
        visibility: Duration,
    ) -> Result<Vec<Received>, ConsumerError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(batch.clamp(1, 10))
            .wait_time_seconds(wait.clamp(0, 20))
            .visibility_timeout(visibility_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names(previewd_telemetry::TRACEPARENT)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &e))?;
        Ok(output.messages.unwrap_or_default().into_iter().map(received).collect())
    }

    pub(super) async fn extend(&self, held: Vec<(String, String)>, visibility: Duration) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = held
            .into_iter()
            .filter_map(|(id, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .visibility_timeout(visibility_seconds(visibility))
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let result =
            self.client.change_message_visibility_batch().queue_url(&self.url).set_entries(Some(entries)).send().await;
        match result {
            Ok(output) if output.failed.is_empty() => {}
            // An entry settled meanwhile (deleted) fails harmlessly; anything else is worth
            // a line: that message may be handed to another consumer.
            Ok(output) => {
                for failed in &output.failed {
                    tracing::warn!(
                        message_id = failed.id,
                        code = failed.code,
                        "could not extend a message's visibility"
                    );
                }
            }
            Err(err) => tracing::warn!(error = %DisplayErrorContext(&err), "could not extend visibility"),
        }
    }

    pub(super) async fn reject(&self, message: &Received) {
        let _ = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&message.receipt)
            .visibility_timeout(0)
            .send()
            .await;
    }

    pub(super) async fn delay(&self, message: &Received, delay: Duration) -> Result<(), ConsumerError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&message.receipt)
            .visibility_timeout(visibility_seconds(delay))
            .send()
            .await
            .map_err(|e| sqs_error("ChangeMessageVisibility", &e))?;
        Ok(())
    }

    /// A new deduplication id: the copy is a new message to SQS, the same delivery to the
    /// consumer (its body, and so its delivery id, is unchanged).
    pub(super) async fn resend(&self, message: &Received) -> Result<(), ConsumerError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(&message.body)
            .message_group_id(&message.group)
            .message_deduplication_id(format!("resent-{}", message.id))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessage", &e))?;
        Ok(())
    }

    /// One batch delete; returns the entries SQS refused.
    pub(super) async fn delete<'a>(&self, messages: &[&'a Received]) -> Result<Vec<&'a Received>, ConsumerError> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&m.receipt).build().ok()
            })
            .collect();
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("DeleteMessageBatch", &e))?;
        Ok(output
            .failed
            .iter()
            .filter_map(|f| {
                tracing::warn!(code = f.code, sender_fault = f.sender_fault, "could not delete a handled message");
                f.id.parse::<usize>().ok().and_then(|i| messages.get(i).copied())
            })
            .collect())
    }
}

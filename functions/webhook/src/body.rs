//! Getting the JSON payload out of the request body.
//!
//! GitHub sends either `application/json` or `application/x-www-form-urlencoded` with the JSON
//! in a `payload` field. Base64-encoded bodies (API Gateway, Function URLs) are already decoded
//! by `lambda_http` before they reach this module. The signature covers the body as sent, so
//! this runs only after verification.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unsupported content type {0:?}: GitHub sends application/json or application/x-www-form-urlencoded")]
    UnsupportedContentType(String),
    #[error("form-encoded body has no `payload` field")]
    MissingFormPayload,
    #[error("body is empty")]
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
}

fn encoding(content_type: Option<&str>) -> Result<Encoding, BodyError> {
    // Parameters such as `; charset=utf-8` do not change how the body is read.
    let media = content_type.and_then(|ct| ct.split(';').next()).map(str::trim).unwrap_or("");
    if media.is_empty() || media.eq_ignore_ascii_case("application/json") {
        return Ok(Encoding::Json);
    }
    if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(Encoding::Form);
    }
    Err(BodyError::UnsupportedContentType(media.chars().take(100).collect()))
}

/// Returns the JSON payload bytes: borrowed for JSON bodies, decoded for form bodies.
pub fn json_payload<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<Cow<'a, [u8]>, BodyError> {
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    match encoding(content_type)? {
        Encoding::Json => Ok(Cow::Borrowed(body)),
        Encoding::Form => form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
            .ok_or(BodyError::MissingFormPayload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_borrowed_as_is() {
        let body = br#"{"a":1}"#;
        let payload = json_payload(Some("application/json; charset=utf-8"), body);
        assert!(matches!(payload, Ok(Cow::Borrowed(b)) if b == body));
    }

    #[test]
    fn missing_content_type_is_read_as_json() {
        assert_eq!(json_payload(None, b"{}").map(|p| p.into_owned()), Ok(b"{}".to_vec()));
    }

    #[test]
    fn form_payload_is_decoded() {
        let body = b"payload=%7B%22zen%22%3A%22a+b%22%7D&other=1";
        let payload = json_payload(Some("Application/X-WWW-Form-Urlencoded"), body);
        assert_eq!(payload.map(|p| p.into_owned()), Ok(br#"{"zen":"a b"}"#.to_vec()));
    }

    #[test]
    fn form_without_payload_is_an_error() {
        assert_eq!(json_payload(Some("application/x-www-form-urlencoded"), b"a=1"), Err(BodyError::MissingFormPayload));
    }

    #[test]
    fn other_types_and_empty_bodies_are_errors() {
        assert!(matches!(
            json_payload(Some("text/plain"), b"x"),
            Err(BodyError::UnsupportedContentType(t)) if t == "text/plain"
        ));
        assert_eq!(json_payload(Some("application/json"), b""), Err(BodyError::Empty));
    }
}

//! A local stand-in for an OpenAI-compatible chat-completions endpoint
//! (`POST /v1/chat/completions`): answers with the documented shapes (a `chat.completion`
//! with `usage`, or an `error` object), records every request body, and can be told how to
//! answer the next requests (content, an HTTP error, or a delay).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Reply {
    /// The assistant message's content.
    Content(String),
    /// An HTTP error with OpenAI's error object.
    Error(u16, &'static str),
    /// Wait this long, then answer with the default content.
    Delay(Duration),
}

#[derive(Default)]
pub struct OpenAiState {
    /// What to answer next (front first); the default content when empty.
    pub replies: VecDeque<Reply>,
    /// Answer when nothing else is queued.
    pub default_content: String,
    pub requests: Vec<Value>,
}

pub type Shared = Arc<Mutex<OpenAiState>>;

pub struct FakeOpenAi {
    pub state: Shared,
    /// The API base (ends in `/v1`).
    pub base_url: String,
}

impl FakeOpenAi {
    pub async fn start(default_content: &str) -> FakeOpenAi {
        let state: Shared =
            Arc::new(Mutex::new(OpenAiState { default_content: default_content.to_owned(), ..OpenAiState::default() }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeOpenAi { state, base_url }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, OpenAiState> {
        self.state.lock().unwrap()
    }

    pub fn reply(&self, reply: Reply) {
        self.lock().replies.push_back(reply);
    }

    pub fn requests(&self) -> usize {
        self.lock().requests.len()
    }
}

fn completion(model: &str, content: &str) -> Response {
    Json(json!({
        "id": "chatcmpl-previewd-test",
        "object": "chat.completion",
        "created": 1_764_201_600,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null
        }],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280}
    }))
    .into_response()
}

async fn complete(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let (reply, default) = {
        let mut s = state.lock().unwrap();
        s.requests.push(body);
        (s.replies.pop_front(), s.default_content.clone())
    };
    match reply {
        None => completion(&model, &default),
        Some(Reply::Content(content)) => completion(&model, &content),
        Some(Reply::Error(status, message)) => {
            let kind = if status == 429 { "rate_limit_exceeded" } else { "server_error" };
            (
                StatusCode::from_u16(status).unwrap(),
                Json(json!({"error": {"message": message, "type": kind, "param": null, "code": kind}})),
            )
                .into_response()
        }
        Some(Reply::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            completion(&model, &default)
        }
    }
}

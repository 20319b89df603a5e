//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status an OpenAI client expects ([`OpenAiError`]).

use crate::channels::web::WebChatError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer of the OpenAI-compatible API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenAiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl OpenAiError {
    /// A 400 naming the field at fault.
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    pub fn unauthenticated(status: StatusCode, message: impl Into<String>) -> Self {
        OpenAiError {
            status,
            message: message.into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// The model (agent group) does not exist, or the token's user may not use it: the
    /// same answer for both, so a caller learns nothing of groups it may not use.
    pub fn model_not_found(model: &str) -> Self {
        OpenAiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        OpenAiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: message.into(),
            kind: "timeout",
            param: None,
            code: Some("timeout"),
        }
    }

    pub fn server(status: StatusCode, message: impl Into<String>) -> Self {
        OpenAiError {
            status,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<WebChatError> for OpenAiError {
    fn from(error: WebChatError) -> Self {
        match &error {
            WebChatError::NotFound(_) => OpenAiError {
                status: StatusCode::NOT_FOUND,
                message: error.to_string(),
                kind: "invalid_request_error",
                param: None,
                code: None,
            },
            WebChatError::Forbidden(_) => OpenAiError {
                status: StatusCode::FORBIDDEN,
                message: error.to_string(),
                kind: "permission_error",
                param: None,
                code: None,
            },
            WebChatError::Invalid(_) => OpenAiError::invalid(error.to_string(), None),
            WebChatError::Conflict(_) => OpenAiError {
                status: StatusCode::CONFLICT,
                message: error.to_string(),
                kind: "invalid_request_error",
                param: Some("user"),
                code: None,
            },
            WebChatError::NotRouted(_) => {
                OpenAiError::server(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
            WebChatError::NotRunning => {
                OpenAiError::server(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
            WebChatError::Db(_) | WebChatError::Route(_) | WebChatError::Answer(_) => {
                OpenAiError::server(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
        }
    }
}

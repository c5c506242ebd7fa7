//! ARM's error body: `{"error": {"code", "message", "target"}}` with its HTTP status.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A refusal as ARM reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArmError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The property or parameter at fault, when there is one.
    pub target: Option<String>,
}

/// ARM's `ErrorResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl ArmError {
    pub fn bad_request(
        code: &'static str,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> ArmError {
        ArmError {
            status: 400,
            code,
            message: message.into(),
            target: Some(target.into()),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ArmError {
        ArmError {
            status: 404,
            code: "ResourceNotFound",
            message: message.into(),
            target: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> ArmError {
        ArmError {
            status: 409,
            code: "Conflict",
            message: message.into(),
            target: None,
        }
    }

    /// Azure's answer to a change of a cache while another change of it runs.
    pub fn busy(id: &str) -> ArmError {
        ArmError::conflict(format!(
            "The resource '{id}' is busy processing a previous update request or is undergoing system maintenance. As such, it is currently unable to accept the update request. Please try again later."
        ))
    }

    pub fn unauthorized() -> ArmError {
        ArmError {
            status: 401,
            code: "AuthenticationFailed",
            message: "Authentication failed. The 'Authorization' header is missing or does not carry the expected bearer token.".into(),
            target: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&ErrorResponse {
            error: self.detail(),
        })
        .expect("error bodies serialize")
    }

    /// The `error` object of the body (also what a failed operation reports).
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
            target: self.target.clone(),
        }
    }
}

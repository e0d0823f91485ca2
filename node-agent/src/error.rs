//! Why the agent refuses a dispatch; mapped to the wire's reject codes in one place.

use netpulse_proto::agent::RejectCode;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
}

impl From<netpulse_model::ModelError> for AgentError {
    fn from(e: netpulse_model::ModelError) -> AgentError {
        match e {
            netpulse_model::ModelError::Invalid(m) => AgentError::InvalidArgument(m),
        }
    }
}

impl AgentError {
    pub fn code(&self) -> RejectCode {
        match self {
            AgentError::InvalidArgument(_) => RejectCode::InvalidArgument,
            AgentError::ResourceExhausted(_) => RejectCode::ResourceExhausted,
            AgentError::Unavailable(_) => RejectCode::Unavailable,
            AgentError::AlreadyExists(_) => RejectCode::AlreadyExists,
            AgentError::NotFound(_) => RejectCode::NotFound,
        }
    }
}

//! The manager's API errors and their gRPC status codes: the one place they are mapped.

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<netpulse_model::ModelError> for ApiError {
    fn from(e: netpulse_model::ModelError) -> ApiError {
        match e {
            netpulse_model::ModelError::Invalid(m) => ApiError::InvalidArgument(m),
        }
    }
}

impl ApiError {
    /// An agent's (or a client stream's) status, kept with its code.
    pub fn from_agent(s: tonic::Status) -> ApiError {
        let m = s.message().to_string();
        match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ApiError::InvalidArgument(m),
            tonic::Code::NotFound => ApiError::NotFound(m),
            tonic::Code::AlreadyExists => ApiError::AlreadyExists(m),
            tonic::Code::FailedPrecondition => ApiError::FailedPrecondition(m),
            tonic::Code::ResourceExhausted => ApiError::ResourceExhausted(m),
            tonic::Code::Unauthenticated => ApiError::Unauthenticated(m),
            tonic::Code::PermissionDenied => ApiError::PermissionDenied(m),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ApiError::Unavailable(m)
            }
            _ => ApiError::Internal(m),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        let code = match &e {
            ApiError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            ApiError::NotFound(_) => tonic::Code::NotFound,
            ApiError::AlreadyExists(_) => tonic::Code::AlreadyExists,
            ApiError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            ApiError::ResourceExhausted(_) => tonic::Code::ResourceExhausted,
            ApiError::Unavailable(_) => tonic::Code::Unavailable,
            ApiError::Unauthenticated(_) => tonic::Code::Unauthenticated,
            ApiError::PermissionDenied(_) => tonic::Code::PermissionDenied,
            ApiError::Internal(_) => tonic::Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let s: tonic::Status =
            ApiError::InvalidArgument("port must be 1..=65535, got 70000".into()).into();
        assert_eq!(
            (s.code(), s.message()),
            (
                tonic::Code::InvalidArgument,
                "port must be 1..=65535, got 70000"
            )
        );
        let s: tonic::Status = ApiError::NotFound("job x not found".into()).into();
        assert_eq!(s.code(), tonic::Code::NotFound);
    }
}

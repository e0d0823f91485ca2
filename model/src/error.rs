use std::time::Duration;

/// Why a wire message could not become a domain value. The message names the field, what was
/// wrong and what is allowed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> ModelError {
    ModelError::Invalid(msg.into())
}

/// `0` means `default`; otherwise `1..=max` seconds.
pub(crate) fn seconds(name: &str, v: u32, max: u32, default: u32) -> Result<Duration, ModelError> {
    match v {
        0 => Ok(Duration::from_secs(default as u64)),
        v if v <= max => Ok(Duration::from_secs(v as u64)),
        v => Err(invalid(format!(
            "{name} must be 1..={max} (0 for {default}), got {v}"
        ))),
    }
}

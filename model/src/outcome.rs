use netpulse_proto::worker;

use crate::error_kind::ErrorKind;

/// How a job that reached a worker ended, from its result: the rule every reader of a result
/// shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Canceled { message: String },
    Failed { kind: ErrorKind, message: String },
}

impl Outcome {
    /// `ok` with no error is success; a cancel is `Canceled`; anything else fails, with the
    /// result's error kind or, when the device rejected a command and no job-level error was
    /// set, `command_rejected`.
    pub fn of(r: &worker::JobResult) -> Outcome {
        match &r.error {
            _ if r.ok => Outcome::Succeeded,
            Some(e) => match ErrorKind::from(e.kind()) {
                ErrorKind::Canceled => Outcome::Canceled {
                    message: e.message.clone(),
                },
                kind => Outcome::Failed {
                    kind,
                    message: e.message.clone(),
                },
            },
            None => Outcome::Failed {
                kind: ErrorKind::CommandRejected,
                message: "the device rejected a command; see results".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ok: bool, kind: Option<worker::ErrorKind>) -> worker::JobResult {
        worker::JobResult {
            ok,
            error: kind.map(|k| worker::Error {
                kind: k as i32,
                message: "m".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn results_have_one_reading() {
        assert_eq!(Outcome::of(&result(true, None)), Outcome::Succeeded);
        assert_eq!(
            Outcome::of(&result(false, Some(worker::ErrorKind::Canceled))),
            Outcome::Canceled {
                message: "m".into()
            }
        );
        assert_eq!(
            Outcome::of(&result(false, Some(worker::ErrorKind::ConnectTimeout))),
            Outcome::Failed {
                kind: ErrorKind::ConnectTimeout,
                message: "m".into()
            }
        );
        assert!(matches!(
            Outcome::of(&result(false, None)),
            Outcome::Failed {
                kind: ErrorKind::CommandRejected,
                ..
            }
        ));
    }
}

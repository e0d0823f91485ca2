//! Bulk submits: one request template for many devices, each device a job of its own.

use std::sync::Arc;

use netpulse_proto::api::{BulkRejection, ExecuteBulkRequest, ExecuteBulkResponse};

use crate::error::ApiError;
use crate::scheduler::Scheduler;

/// Most devices in one bulk request.
pub const MAX_BULK_DEVICES: usize = 10_000;
/// Submits of one bulk in flight at once: ten thousand at once would put ten thousand
/// placement claims and record writes in etcd's and the store's queues together, and the last
/// of them would time out (etcd answers "too many requests", the store "not keeping up").
const IN_FLIGHT: usize = 256;

/// Submits one job per device; a device's refusal does not stop the others.
pub async fn execute_bulk(
    s: &Arc<Scheduler>,
    req: ExecuteBulkRequest,
) -> Result<ExecuteBulkResponse, ApiError> {
    let template = req
        .template
        .ok_or_else(|| ApiError::InvalidArgument("template is required".into()))?;
    if template.wait {
        return Err(ApiError::InvalidArgument(
            "bulk submits do not wait: set template.wait to false and watch the jobs".into(),
        ));
    }
    if req.devices.is_empty() || req.devices.len() > MAX_BULK_DEVICES {
        return Err(ApiError::InvalidArgument(format!(
            "devices must hold 1..={MAX_BULK_DEVICES} entries, got {}",
            req.devices.len()
        )));
    }
    let failed =
        |e: tokio::task::JoinError| ApiError::Internal(format!("a bulk submit task failed: {e}"));
    let mut set = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(req.devices.len());
    for (index, d) in req.devices.into_iter().enumerate() {
        if set.len() >= IN_FLIGHT
            && let Some(r) = set.join_next().await
        {
            done.push(r.map_err(failed)?);
        }
        let mut r = template.clone();
        let mut c = r.connection.take().unwrap_or_default();
        if let Some(o) = d.connection {
            merge(&mut c, o);
        }
        r.connection = Some(c);
        if !d.commands.is_empty() || !d.config.is_empty() {
            r.commands = d.commands;
            r.config = d.config;
            r.command_specs.clear();
        }
        if !r.idempotency_key.is_empty() {
            r.idempotency_key = format!("{}/{index}", r.idempotency_key);
        }
        let s = s.clone();
        set.spawn(async move {
            let host = r
                .connection
                .as_ref()
                .map(|c| c.host.clone())
                .unwrap_or_default();
            (index, host, s.submit(r).await.map(|x| x.job))
        });
    }
    while let Some(r) = set.join_next().await {
        done.push(r.map_err(failed)?);
    }
    done.sort_by_key(|(i, _, _)| *i);
    let mut resp = ExecuteBulkResponse::default();
    for (index, host, r) in done {
        match r {
            Ok(job) => resp.jobs.push(job),
            Err(e) => resp.rejected.push(BulkRejection {
                index: index as u32,
                host,
                reason: e.to_string(),
            }),
        }
    }
    Ok(resp)
}

/// Overrides the template's connection with the fields the device sets.
fn merge(c: &mut netpulse_proto::api::Connection, o: netpulse_proto::api::Connection) {
    let text = |t: &mut String, v: String| {
        if !v.is_empty() {
            *t = v
        }
    };
    let num = |t: &mut u32, v: u32| {
        if v != 0 {
            *t = v
        }
    };
    // A device's own credential reference replaces the template's credentials, inline or not.
    if o.credential.is_some() {
        c.credential = o.credential;
        c.password.clear();
        c.secret.clear();
        c.private_key.clear();
        c.private_key_passphrase.clear();
    }
    text(&mut c.host, o.host);
    num(&mut c.port, o.port);
    text(&mut c.username, o.username);
    text(&mut c.password, o.password);
    text(&mut c.device_type, o.device_type);
    text(&mut c.secret, o.secret);
    num(&mut c.keepalive_seconds, o.keepalive_seconds);
    num(&mut c.connect_timeout_seconds, o.connect_timeout_seconds);
    num(&mut c.command_timeout_seconds, o.command_timeout_seconds);
    text(&mut c.private_key, o.private_key);
    text(&mut c.private_key_passphrase, o.private_key_passphrase);
    text(&mut c.prompt_pattern, o.prompt_pattern);
    c.legacy_algorithms |= o.legacy_algorithms;
    // A device's own jump host replaces the template's whole (a different bastion has a
    // different login).
    if o.jump_host.is_some() {
        c.jump_host = o.jump_host;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netpulse_proto::api::Connection;

    #[test]
    fn device_fields_override_the_template_only_where_set() {
        let mut c = Connection {
            host: "t".into(),
            port: 22,
            username: "admin".into(),
            password: "p".into(),
            device_type: "cisco_ios".into(),
            ..Default::default()
        };
        merge(
            &mut c,
            Connection {
                host: "192.0.2.7".into(),
                port: 2222,
                prompt_pattern: "^r7[>#]$".into(),
                private_key: "k".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            (c.prompt_pattern.as_str(), c.private_key.as_str()),
            ("^r7[>#]$", "k")
        );
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.username.as_str(),
                c.device_type.as_str()
            ),
            ("192.0.2.7", 2222, "admin", "cisco_ios")
        );
        let bastion = |host: &str| netpulse_proto::api::JumpHost {
            host: host.into(),
            username: "jump".into(),
            ..Default::default()
        };
        c.jump_host = Some(bastion("192.0.2.100"));
        merge(&mut c, Connection::default());
        assert_eq!(c.jump_host, Some(bastion("192.0.2.100")), "kept when unset");
        merge(
            &mut c,
            Connection {
                jump_host: Some(bastion("192.0.2.200")),
                ..Default::default()
            },
        );
        assert_eq!(c.jump_host, Some(bastion("192.0.2.200")), "replaced whole");
        let profile = netpulse_proto::api::CredentialRef {
            source: Some(netpulse_proto::api::credential_ref::Source::Profile(
                "core".into(),
            )),
        };
        merge(
            &mut c,
            Connection {
                credential: Some(profile.clone()),
                ..Default::default()
            },
        );
        assert_eq!(c.credential, Some(profile), "a device's reference");
        assert_eq!(
            (c.password.as_str(), c.private_key.as_str()),
            ("", ""),
            "replaces secrets"
        );
    }
}

//! Configuration lines from a Jinja2 template (`ExecuteRequest.config_template`, and the
//! `RenderTemplate` RPC), rendered here, at submit, with MiniJinja: a template that misses a
//! variable refuses the job before anything is recorded or sent, and the record keeps the
//! rendered lines (another replica that adopts the job needs no template).
//!
//! Strict: an undefined variable is an error, never an empty string. Block tags take their
//! line (`trim_blocks`, `lstrip_blocks`), and blank lines are dropped from the result. A render
//! is bounded by fuel, so that a request's template cannot keep the manager busy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use netpulse_proto::api::{ConfigTemplate, ExecuteRequest, RenderTemplateResponse};

use crate::error::ApiError;

/// Roughly instructions of the template machine: ample for any configuration, finite.
const FUEL: u64 = 2_000_000;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    env
}

fn invalid(m: String) -> ApiError {
    ApiError::InvalidArgument(m)
}

/// The template's text, from the request or the directory.
fn source(t: &ConfigTemplate, dir: Option<&Path>, at: &str) -> Result<String, ApiError> {
    match (t.inline_template.is_empty(), t.template_name.is_empty()) {
        (false, true) => {
            netpulse_model::template_size(at, &t.inline_template)?;
            Ok(t.inline_template.clone())
        }
        (true, false) => {
            let name = &t.template_name;
            netpulse_model::template_name(at, "manager's", name)?;
            let Some(dir) = dir else {
                return Err(ApiError::FailedPrecondition(format!(
                    "{at}.template_name {name:?}: this manager has no --config-templates-dir"
                )));
            };
            let path: PathBuf = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ApiError::NotFound(format!(
                    "{at}.template_name {name:?} is not in {}",
                    dir.display()
                )),
                _ => ApiError::Internal(format!("reading {}: {e}", path.display())),
            })
        }
        _ => Err(invalid(format!(
            "{at} takes one of inline_template and template_name"
        ))),
    }
}

/// Renders `t`: the lines, every variable it reads, and those missing from its variables.
pub fn render(
    t: &ConfigTemplate,
    dir: Option<&Path>,
    at: &str,
) -> Result<RenderTemplateResponse, ApiError> {
    let text = source(t, dir, at)?;
    let env = env();
    let template = env
        .template_from_str(&text)
        .map_err(|e| invalid(format!("{at} is not a valid template: {}", describe(&e))))?;
    let globals: BTreeSet<String> = env.globals().map(|(n, _)| n.to_string()).collect();
    let variables: BTreeSet<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !globals.contains(v))
        .collect();
    let given = t
        .variables
        .as_ref()
        .map(netpulse_proto::json::from_struct)
        .unwrap_or_default();
    let missing: Vec<String> = variables
        .iter()
        .filter(|v| given.get(v.as_str()).is_none())
        .cloned()
        .collect();
    let mut out = RenderTemplateResponse {
        variables: variables.into_iter().collect(),
        missing,
        lines: Vec::new(),
    };
    if !out.missing.is_empty() {
        return Ok(out);
    }
    let text = template
        .render(&given)
        .map_err(|e| invalid(format!("{at} did not render: {}", describe(&e))))?;
    out.lines = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    Ok(out)
}

/// An `ExecuteRequest` with its `config_template` rendered into `config`.
pub fn expand(mut req: ExecuteRequest, dir: Option<&Path>) -> Result<ExecuteRequest, ApiError> {
    let Some(t) = req.config_template.take() else {
        return Ok(req);
    };
    if !req.config.is_empty() {
        return Err(invalid(
            "give config or config_template, not both".to_string(),
        ));
    }
    let r = render(&t, dir, "config_template")?;
    if !r.missing.is_empty() {
        return Err(invalid(format!(
            "config_template uses variables the request does not give: {} (it reads: {})",
            r.missing.join(", "),
            r.variables.join(", ")
        )));
    }
    if r.lines.is_empty() {
        return Err(invalid(
            "config_template rendered no configuration lines".to_string(),
        ));
    }
    req.config = r.lines;
    Ok(req)
}

/// An error with its line, and what it says without the template's text around it.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{ListValue, Struct, Value, value::Kind};

    fn s(v: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(v.into())),
        }
    }

    fn vars(pairs: Vec<(&str, Value)>) -> Option<Struct> {
        Some(Struct {
            fields: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })
    }

    fn inline(text: &str, variables: Option<Struct>) -> ConfigTemplate {
        ConfigTemplate {
            inline_template: text.into(),
            variables,
            ..Default::default()
        }
    }

    const VLANS: &str = "hostname {{ hostname }}\n{% for v in vlans %}\nvlan {{ v.id }}\n name {{ v.name }}\n{% endfor %}\n";

    #[test]
    fn variables_and_loops_render_lines() {
        let vlan = |id: f64, name: &str| Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [
                    (
                        "id".to_string(),
                        Value {
                            kind: Some(Kind::NumberValue(id)),
                        },
                    ),
                    ("name".to_string(), s(name)),
                ]
                .into(),
            })),
        };
        let t = inline(
            VLANS,
            vars(vec![
                ("hostname", s("r1")),
                (
                    "vlans",
                    Value {
                        kind: Some(Kind::ListValue(ListValue {
                            values: vec![vlan(10.0, "users"), vlan(20.0, "voice")],
                        })),
                    },
                ),
            ]),
        );
        let r = render(&t, None, "t").unwrap();
        assert_eq!(
            r.lines,
            [
                "hostname r1",
                "vlan 10",
                " name users",
                "vlan 20",
                " name voice"
            ]
        );
        assert_eq!(r.variables, ["hostname", "vlans"]);
        assert!(r.missing.is_empty());
    }

    #[test]
    fn undefined_variables_are_named_and_refuse_the_job() {
        let t = inline(VLANS, vars(vec![("hostname", s("r1"))]));
        let r = render(&t, None, "t").unwrap();
        assert_eq!(
            (r.missing.clone(), r.lines.len()),
            (vec!["vlans".to_string()], 0)
        );
        let req = ExecuteRequest {
            config_template: Some(t),
            ..Default::default()
        };
        let e = expand(req, None).unwrap_err().to_string();
        assert!(e.contains("does not give: vlans"), "{e}");
        // A missing attribute of a given variable fails the render, with its line.
        let t = inline(
            "ntp server {{ ntp.primary }}\n",
            vars(vec![(
                "ntp",
                Value {
                    kind: Some(Kind::StructValue(Struct::default())),
                },
            )]),
        );
        let e = render(&t, None, "t").unwrap_err().to_string();
        assert!(e.contains("did not render") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn bad_templates_names_and_directories() {
        let e = render(&inline("{% for %}", None), None, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a valid template"), "{e}");
        let named = |n: &str| ConfigTemplate {
            template_name: n.into(),
            ..Default::default()
        };
        assert!(matches!(
            render(&named("x.j2"), None, "t"),
            Err(ApiError::FailedPrecondition(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            render(&named("x.j2"), Some(dir.path()), "t"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            render(&named("../x.j2"), Some(dir.path()), "t"),
            Err(ApiError::InvalidArgument(_))
        ));
        // Read at each use: a changed file renders its new text.
        std::fs::write(dir.path().join("x.j2"), "hostname {{ h }}\n").unwrap();
        let mut t = named("x.j2");
        t.variables = vars(vec![("h", s("a"))]);
        assert_eq!(
            render(&t, Some(dir.path()), "t").unwrap().lines,
            ["hostname a"]
        );
        std::fs::write(dir.path().join("x.j2"), "hostname {{ h }}-new\n").unwrap();
        assert_eq!(
            render(&t, Some(dir.path()), "t").unwrap().lines,
            ["hostname a-new"]
        );
        // A template that would run for ever runs out of fuel.
        let e = render(
            &inline("{% for i in range(100000000) %}x{% endfor %}", None),
            None,
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("did not render"), "{e}");
    }
}

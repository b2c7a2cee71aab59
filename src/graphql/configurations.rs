//! Configurations: named templates of desired values with immutable,
//! numbered versions (parameters, inheritance, diffs), over
//! [`crate::rollout::Rollouts`].

use async_graphql::Error;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, ResolverContext, TypeRef,
};
use serde_json::{Value, json};

use super::builder::Builder;
use super::context::{actor_of, json_arg, require, rollouts_of, str_arg};
use super::errors::{bad_request, rollout_error};
use super::record::{nested, record, records};
use crate::auth::Action;
use crate::rollout::config::{
    BaseRef, Configuration, ConfigurationSpec, Parameter, Version, VersionSpec,
};
use crate::twin::format_time;

fn version_json(name: &str, v: &Version) -> Value {
    json!({
        "configuration": name,
        "number": v.spec.number,
        "values": v.spec.values,
        "effectiveValues": v.effective,
        "parameters": v.parameters.values().collect::<Vec<_>>(),
        "base": v.spec.base,
        "description": v.spec.description,
        "publishedAt": format_time(v.published_at),
        "publishedBy": v.published_by,
    })
}

fn configuration_json(c: &Configuration) -> Value {
    json!({
        "name": c.spec.name,
        "target": c.spec.target,
        "priority": c.spec.priority,
        "description": c.spec.description,
        "createdAt": format_time(c.created_at),
        "createdBy": c.created_by,
        "versionCount": c.versions.len(),
        "remediationPerMinute": c.remediation_per_minute,
    })
}

/// The configuration named by the parent record.
fn with_parent<T>(
    ctx: &ResolverContext<'_>,
    f: impl FnOnce(&Configuration) -> T,
) -> Result<Option<T>, Error> {
    let name = ctx
        .parent_value
        .try_downcast_ref::<Value>()?
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let r = rollouts_of(ctx)?;
    let state = r.state();
    Ok(state.configurations.get(&name).map(f))
}

fn version_number(ctx: &ResolverContext<'_>, arg: &str) -> Result<u32, Error> {
    let n = ctx.args.try_get(arg)?.i64()?;
    u32::try_from(n).map_err(|_| bad_request(format!("{arg} must be a version number")))
}

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let configuration = record(
        "Configuration",
        "A named template of desired values for the twins of one Interface (subtypes included), with immutable, numbered versions.",
        &[
            ("name", s(TypeRef::STRING), "Unique name."),
            ("target", s(TypeRef::STRING), "DTMI of the Interface it targets."),
            ("priority", s(TypeRef::INT), "When assigned configurations set the same property, the highest priority wins (ties: the most recently assigned)."),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            ("createdAt", s("DateTime"), ""),
            ("createdBy", s(TypeRef::STRING), ""),
            ("versionCount", s(TypeRef::INT), "Versions published so far."),
            ("remediationPerMinute", TypeRef::named(TypeRef::FLOAT), "When set, drifted twins get their values again (at most this many a minute, each twin at most once a minute); see `setConfigurationRemediation`."),
        ],
    )
    .field(
        Field::new("versions", TypeRef::named_nn_list_nn("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let vs = with_parent(&ctx, |c| {
                    c.versions
                        .iter()
                        .map(|v| version_json(&c.spec.name, v))
                        .collect::<Vec<_>>()
                })?;
                Ok(Some(records(vs.unwrap_or_default())))
            })
        })
        .description("Every version, oldest first."),
    )
    .field(
        Field::new("version", TypeRef::named("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let n = version_number(&ctx, "number")?;
                let v = with_parent(&ctx, |c| c.version(n).map(|v| version_json(&c.spec.name, v)))?;
                Ok(v.flatten().map(FieldValue::owned_any))
            })
        })
        .argument(InputValue::new("number", TypeRef::named_nn(TypeRef::INT))),
    )
    .field(
        Field::new("latestVersion", TypeRef::named("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let v = with_parent(&ctx, |c| c.latest().map(|v| version_json(&c.spec.name, v)))?;
                Ok(v.flatten().map(FieldValue::owned_any))
            })
        }),
    )
    .field(
        Field::new("diff", TypeRef::named_nn_list_nn("ValueChange"), |ctx| {
            FieldFuture::new(async move {
                let (from, to) = (version_number(&ctx, "from")?, version_number(&ctx, "to")?);
                let changes = with_parent(&ctx, |c| c.diff(from, to))?
                    .unwrap_or_else(|| Ok(Vec::new()))
                    .map_err(|e| rollout_error(&e))?;
                let items: Vec<Value> = changes
                    .iter()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                    .collect();
                Ok(Some(records(items)))
            })
        })
        .description("What changes from version `from` to version `to` (effective values, leaf by leaf).")
        .argument(InputValue::new("from", TypeRef::named_nn(TypeRef::INT)))
        .argument(InputValue::new("to", TypeRef::named_nn(TypeRef::INT))),
    );
    let version = record(
        "ConfigurationVersion",
        "An immutable version of a configuration.",
        &[
            ("configuration", s(TypeRef::STRING), ""),
            ("number", s(TypeRef::INT), "1, 2, ..."),
            (
                "values",
                s("JSON"),
                "The desired values this version sets itself (a desired patch; `{\"$param\": name}` marks a parameter).",
            ),
            (
                "effectiveValues",
                s("JSON"),
                "Its base's effective values with its own merged over them.",
            ),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            ("publishedAt", s("DateTime"), ""),
            ("publishedBy", s(TypeRef::STRING), ""),
        ],
    );
    let version = version
        .field(nested(
            "parameters",
            TypeRef::named_nn_list_nn("ConfigurationParameter"),
            "parameters",
            "Every parameter in effect, inherited ones included.",
        ))
        .field(nested(
            "base",
            TypeRef::named("ConfigurationVersionRef"),
            "base",
            "The version it builds on.",
        ));
    let version_ref = record(
        "ConfigurationVersionRef",
        "A version of a configuration.",
        &[
            ("configuration", s(TypeRef::STRING), ""),
            ("version", s(TypeRef::INT), ""),
        ],
    );
    let parameter = record(
        "ConfigurationParameter",
        "A value filled per twin (`source`), else per rollout, else from `default`.",
        &[
            ("name", s(TypeRef::STRING), ""),
            ("default", TypeRef::named("JSON"), ""),
            (
                "source",
                TypeRef::named("JSON"),
                "`{\"from\": \"property\", \"path\", \"side\"}` or `{\"from\": \"related\", \"relationship\", \"incoming\", \"path\"}`.",
            ),
            ("description", TypeRef::named(TypeRef::STRING), ""),
        ],
    );
    let change = record(
        "ValueChange",
        "One difference between two versions.",
        &[
            ("path", s(TypeRef::STRING), "Dotted path of the value."),
            ("from", TypeRef::named("JSON"), "Absent: not set before."),
            ("to", TypeRef::named("JSON"), "Absent: not set after."),
        ],
    );
    let parameter_input = InputObject::new("ConfigurationParameterInput")
        .field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("default", TypeRef::named("JSON")))
        .field(InputValue::new("source", TypeRef::named("JSON")))
        .field(InputValue::new(
            "description",
            TypeRef::named(TypeRef::STRING),
        ));
    let ref_input = InputObject::new("ConfigurationVersionRefInput")
        .field(InputValue::new(
            "configuration",
            TypeRef::named_nn(TypeRef::STRING),
        ))
        .field(InputValue::new("version", TypeRef::named_nn(TypeRef::INT)));

    b.register(configuration);
    b.register(version);
    b.register(version_ref);
    b.register(parameter);
    b.register(change);
    b.register(parameter_input);
    b.register(ref_input);
    b.query(
        Field::new("configuration", TypeRef::named("Configuration"), |ctx| {
            FieldFuture::new(async move {
                let name = ctx.args.try_get("name")?.string()?;
                let state = rollouts_of(&ctx)?.state();
                Ok(state
                    .configurations
                    .get(name)
                    .map(|c| FieldValue::owned_any(configuration_json(c))))
            })
        })
        .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING))),
    );
    b.query(
        Field::new(
            "configurations",
            TypeRef::named_nn_list_nn("Configuration"),
            |ctx| {
                FieldFuture::new(async move {
                    let target = str_arg(&ctx, "target")?;
                    let state = rollouts_of(&ctx)?.state();
                    let items: Vec<Value> = state
                        .configurations
                        .iter()
                        .filter(|c| target.as_ref().is_none_or(|t| *t == c.spec.target))
                        .map(configuration_json)
                        .collect();
                    Ok(Some(records(items)))
                })
            },
        )
        .description(
            "Every configuration (of one target Interface when `target` is given), by name.",
        )
        .argument(InputValue::new("target", TypeRef::named(TypeRef::STRING))),
    );
    b.mutation(
        Field::new("setConfigurationRemediation", TypeRef::named_nn("Configuration"), |ctx| {
            FieldFuture::new(async move {
                let name = ctx.args.try_get("configuration")?.string()?.to_owned();
                let per_minute = match ctx.args.get("perMinute") {
                    Some(v) if !v.is_null() => Some(v.f64()?),
                    _ => None,
                };
                require(&ctx, Action::Configurations)?;
                let r = rollouts_of(&ctx)?;
                r.set_remediation(&name, per_minute, &actor_of(&ctx))
                    .await
                    .map_err(|e| rollout_error(&e))?;
                let state = r.state();
                let c = state
                    .configurations
                    .get(&name)
                    .ok_or_else(|| Error::new("the configuration vanished"))?;
                Ok(Some(FieldValue::owned_any(configuration_json(c))))
            })
        })
        .description("Automatic remediation: drifted twins of this configuration get its values again (a new desired version for their devices, recorded as events by `remediation`), at most `perMinute` a minute; null turns it off.")
        .argument(InputValue::new("configuration", TypeRef::named_nn(TypeRef::STRING)))
        .argument(InputValue::new("perMinute", TypeRef::named(TypeRef::FLOAT))),
    );
    b.mutation(
        Field::new(
            "createConfiguration",
            TypeRef::named_nn("Configuration"),
            |ctx| {
                FieldFuture::new(async move {
                    let priority = match ctx.args.get("priority") {
                        Some(v) if !v.is_null() => v.i64()?,
                        _ => 0,
                    };
                    let spec = ConfigurationSpec {
                        name: ctx.args.try_get("name")?.string()?.to_owned(),
                        target: ctx.args.try_get("target")?.string()?.to_owned(),
                        priority,
                        description: str_arg(&ctx, "description")?,
                    };
                    require(&ctx, Action::Configurations)?;
                    let r = rollouts_of(&ctx)?;
                    r.create_configuration(spec.clone(), &actor_of(&ctx))
                        .await
                        .map_err(|e| rollout_error(&e))?;
                    let state = r.state();
                    let c = state
                        .configurations
                        .get(&spec.name)
                        .ok_or_else(|| Error::new("the configuration vanished"))?;
                    Ok(Some(FieldValue::owned_any(configuration_json(c))))
                })
            },
        )
        .description(
            "Creates a configuration (publish versions with `publishConfigurationVersion`).",
        )
        .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .argument(
            InputValue::new("target", TypeRef::named_nn(TypeRef::STRING))
                .description("DTMI of the Interface it targets."),
        )
        .argument(InputValue::new("priority", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new(
            "description",
            TypeRef::named(TypeRef::STRING),
        )),
    );
    b.mutation(
        Field::new("publishConfigurationVersion", TypeRef::named_nn("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let name = ctx.args.try_get("configuration")?.string()?.to_owned();
                let values = json_arg(&ctx, "values")?.unwrap_or(Value::Null);
                let mut parameters = Vec::new();
                if let Some(list) = ctx.args.get("parameters").filter(|v| !v.is_null()) {
                    for (i, p) in list.list()?.iter().enumerate() {
                        let json = p.as_value().clone().into_json().map_err(|e| {
                            bad_request(format!("parameters[{i}]: {e}"))
                        })?;
                        let param: Parameter = serde_json::from_value(json).map_err(|e| {
                            bad_request(format!("parameters[{i}]: {e}"))
                        })?;
                        parameters.push(param);
                    }
                }
                let base = match ctx.args.get("base").filter(|v| !v.is_null()) {
                    Some(b) => {
                        let json = b.as_value().clone().into_json().map_err(|e| {
                            bad_request(format!("base: {e}"))
                        })?;
                        Some(serde_json::from_value::<BaseRef>(json).map_err(|e| {
                            bad_request(format!("base: {e}"))
                        })?)
                    }
                    None => None,
                };
                let spec = VersionSpec {
                    number: 0,
                    values,
                    parameters,
                    base,
                    description: str_arg(&ctx, "description")?,
                };
                require(&ctx, Action::Configurations)?;
                let r = rollouts_of(&ctx)?;
                let n = r
                    .publish_version(&name, spec, &actor_of(&ctx))
                    .await
                    .map_err(|e| rollout_error(&e))?;
                let state = r.state();
                let v = state
                    .configurations
                    .get(&name)
                    .and_then(|c| c.version(n))
                    .ok_or_else(|| Error::new("the version vanished"))?;
                Ok(Some(FieldValue::owned_any(version_json(&name, v))))
            })
        })
        .description("Publishes the next version of a configuration, validated against the target model (the error's `path` names the offending value). Versions are immutable.")
        .argument(InputValue::new("configuration", TypeRef::named_nn(TypeRef::STRING)))
        .argument(InputValue::new("values", TypeRef::named_nn("JSON")).description("Desired values (a desired patch); `{\"$param\": name}` marks a parameter."))
        .argument(InputValue::new("parameters", TypeRef::named_nn_list("ConfigurationParameterInput")))
        .argument(InputValue::new("base", TypeRef::named("ConfigurationVersionRefInput")).description("A version (of this or another configuration of the same or an ancestor Interface) to build on."))
        .argument(InputValue::new("description", TypeRef::named(TypeRef::STRING))),
    );
}

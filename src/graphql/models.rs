//! The model library in the API: the loaded DTDL Interfaces and
//! `uploadModels` (see [`super::upload`]).

use std::sync::Arc;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, TypeRef};
use serde_json::{Value, json};

use super::builder::{Builder, Recompiler};
use super::context::{actor_of, require, store_of};
use super::errors::bad_request;
use super::record::{SEQ_RENAMED, deprecated_alias, record, records};
use super::upload::ModelLibrary;
use crate::auth::Action;

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let model = record(
        "Model",
        "A loaded DTDL Interface.",
        &[
            ("id", s(TypeRef::ID), "Its DTMI."),
            ("displayName", TypeRef::named(TypeRef::STRING), ""),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            (
                "extends",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "Interfaces it extends directly.",
            ),
            (
                "ancestors",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "Every ancestor, nearest first.",
            ),
            (
                "definition",
                s("JSON"),
                "The resolved Interface, contents flattened.",
            ),
        ],
    );
    let upload_result = record(
        "ModelUploadResult",
        "What an upload added.",
        &[
            (
                "models",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "DTMIs of the Interfaces added.",
            ),
            (
                "seq",
                s("Long"),
                "Sequence number of the modelsChanged event.",
            ),
        ],
    )
    .field(deprecated_alias("sequence", s("Long"), "seq", SEQ_RENAMED));
    b.register(model);
    b.register(upload_result);
    b.query(
        Field::new("models", TypeRef::named_nn_list_nn("Model"), |ctx| {
            FieldFuture::new(async move {
                let set = store_of(&ctx)?.models();
                let mut ifaces: Vec<_> = set.interfaces().collect();
                ifaces.sort_by(|a, b| a.id.cmp(&b.id));
                let out = ifaces.into_iter().map(|i| {
                    json!({
                        "id": i.id,
                        "displayName": i.docs.display_name.get("en"),
                        "description": i.docs.description.get("en"),
                        "extends": i.extends,
                        "ancestors": i.ancestors,
                        "definition": serde_json::to_value(i).unwrap_or(Value::Null),
                    })
                });
                Ok(Some(records(out)))
            })
        })
        .description("The loaded DTDL Interfaces, by DTMI."),
    );
    b.mutation(
        Field::new("uploadModels", s("ModelUploadResult"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Models)?;
                let library = ctx.data::<Arc<ModelLibrary>>()?;
                let docs = ctx
                    .args
                    .try_get("models")?
                    .list()?
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_value()
                            .clone()
                            .into_json()
                            .map_err(|e| bad_request(format!("models[{i}]: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let done = super::upload::upload(
                    library,
                    store_of(&ctx)?,
                    docs,
                    &actor_of(&ctx),
                    ctx.data_opt::<Recompiler>().cloned(),
                )
                .await?;
                Ok(Some(FieldValue::owned_any(json!({
                    "models": done.models,
                    "seq": done.sequence,
                }))))
            })
        })
        .description("Adds DTDL Interfaces (each item a DTDL document). Models are immutable: only new DTMIs are accepted, so no existing twin can break. Checked together with the loaded models; all or nothing; kept across restarts.")
        .argument(InputValue::new("models", TypeRef::named_nn_list_nn("JSON"))),
    );
}

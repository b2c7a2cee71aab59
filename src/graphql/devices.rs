//! Device identities over [`crate::devices::Devices`]: `deviceIdentity`,
//! `deviceIdentities`, `registerDevice`, `rotateDeviceKey`, `disableDevice`, `enableDevice`,
//! `deleteDevice` and the `deviceConnectionChanged` subscription. Managing
//! identities needs the admin role (`Action::Devices`); reading them, a
//! view of their twin. Types and queries say `DeviceIdentity`: `Device`,
//! `device` and `devices` are what the typed schema calls the twins of a
//! DTDL Interface named Device, a common name that must keep its API.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, SubscriptionField,
    SubscriptionFieldFuture, TypeRef,
};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::builder::{Builder, Shutdown};
use super::connection::{Page, PageArgs, connection, with_page_arguments};
use super::context::{access_of, actor_of, require, store_of, str_arg};
use super::errors::{bad_request, device_error, error, error_with, store_error};
use super::record::{nested, record, twin_at_key};
use super::views::device_json;
use crate::auth::Action;
use crate::codes::Code;
use crate::devices::registry::Device;
use crate::devices::{Credentials, DeviceError, Devices};
use crate::records::{KeySlot, Record};
use crate::twin::{Change, format_time};

/// The device service of the schema.
fn devices_of<'a>(
    ctx: &async_graphql::dynamic::ResolverContext<'a>,
) -> Result<&'a Arc<Devices>, Error> {
    ctx.data_opt::<Arc<Devices>>().ok_or_else(|| {
        error(
            Code::DevicesUnconfigured,
            "this server does not serve device identities",
        )
    })
}

/// The device if the caller may see its twin; `DEVICE_NOT_FOUND` otherwise
/// (a device out of scope does not exist for the caller).
async fn visible(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
    id: &str,
) -> Result<Device, Error> {
    let devices = devices_of(ctx)?;
    let not_found = || device_error(&DeviceError::NotFound(id.to_owned()));
    let d = devices.get(id).ok_or_else(not_found)?;
    if let Some(a) = access_of(ctx) {
        let seen = a
            .store
            .contains(&d.spec.twin)
            .await
            .map_err(|e| store_error(&e))?;
        if !seen {
            return Err(not_found());
        }
    }
    Ok(d)
}

fn connection_string(host: &str, id: &str, key: &str) -> String {
    format!("HostName={host};DeviceId={id};SharedAccessKey={key}")
}

/// An enum argument's value name, if given.
fn enum_arg(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
    name: &str,
) -> Result<Option<String>, Error> {
    match ctx.args.get(name) {
        Some(v) if !v.is_null() => Ok(Some(v.enum_name()?.to_owned())),
        _ => Ok(None),
    }
}

fn key_slot(ctx: &async_graphql::dynamic::ResolverContext<'_>) -> Result<KeySlot, Error> {
    match enum_arg(ctx, "key")?.as_deref() {
        None | Some("PRIMARY") => Ok(KeySlot::Primary),
        Some("SECONDARY") => Ok(KeySlot::Secondary),
        Some(other) => Err(bad_request(format!("key: unknown slot {other}"))),
    }
}

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let device = record(
        "DeviceIdentity",
        "A device identity: the credentials one device connects with, to the device endpoint (MQTT, Azure IoT Hub's device protocol), for one twin.",
        &[
            ("id", s(TypeRef::ID), "The device id (the MQTT client id)."),
            ("twinId", s(TypeRef::ID), "The twin it is the device of."),
            ("status", s("DeviceIdentityStatus"), "DISABLED devices may not connect."),
            ("statusReason", TypeRef::named(TypeRef::STRING), "Why it was disabled."),
            ("connected", s(TypeRef::BOOLEAN), "Whether it is connected to a server now."),
            ("lastActivity", TypeRef::named("DateTime"), "When it last connected or disconnected."),
            ("enrollment", TypeRef::named(TypeRef::STRING), "The enrollment group that provisioned it."),
            ("registeredAt", s("DateTime"), ""),
            ("registeredBy", s(TypeRef::STRING), ""),
            ("updatedAt", s("DateTime"), "When its identity last changed (key, status)."),
        ],
    )
    .field(twin_at_key("twin", "twinId", "Its twin (null if out of the caller's view or deleted)."))
    .field(nested(
        "authentication",
        s("DeviceIdentityAuthentication"),
        "authentication",
        "How it proves who it is (never the keys: they are shown once).",
    ))
    .field(nested(
        "session",
        TypeRef::named("DeviceIdentitySession"),
        "session",
        "Its connection, while connected.",
    ));
    let auth = record(
        "DeviceIdentityAuthentication",
        "How a device proves who it is.",
        &[
            ("type", s("DeviceIdentityAuthenticationType"), ""),
            (
                "primaryThumbprint",
                TypeRef::named(TypeRef::STRING),
                "SHA-256, hex (X509_THUMBPRINT).",
            ),
            ("secondaryThumbprint", TypeRef::named(TypeRef::STRING), ""),
        ],
    );
    let conn = record(
        "DeviceIdentitySession",
        "A device's connection to one server.",
        &[
            (
                "protocol",
                s(TypeRef::STRING),
                "`mqtt` (over TLS or plain TCP) or `mqtt-ws`.",
            ),
            (
                "server",
                s(TypeRef::STRING),
                "The server it is connected to.",
            ),
            ("since", s("DateTime"), ""),
        ],
    );
    let registration = record(
        "DeviceIdentityRegistration",
        "A registered device and, for symmetric keys, its keys: shown this once, never again (rotate a key to get a new one).",
        &[
            ("primaryKey", TypeRef::named(TypeRef::STRING), "Base64, as IoT Hub shows device keys."),
            ("secondaryKey", TypeRef::named(TypeRef::STRING), ""),
            ("connectionString", TypeRef::named(TypeRef::STRING), "`HostName=...;DeviceId=...;SharedAccessKey=<primary>`, for the Azure IoT device SDKs."),
        ],
    )
    .field(nested("device", s("DeviceIdentity"), "device", ""));
    let rotation = record(
        "DeviceIdentityKeyRotation",
        "The new key of a slot, shown this once.",
        &[
            ("key", s(TypeRef::STRING), ""),
            ("slot", s("DeviceIdentityKeySlot"), ""),
            ("connectionString", s(TypeRef::STRING), ""),
        ],
    )
    .field(nested("device", s("DeviceIdentity"), "device", ""));
    let change = record(
        "DeviceIdentityConnectionChange",
        "A device connected or disconnected.",
        &[
            ("deviceId", s(TypeRef::ID), ""),
            ("connected", s(TypeRef::BOOLEAN), ""),
            ("protocol", TypeRef::named(TypeRef::STRING), ""),
            ("server", s(TypeRef::STRING), ""),
            (
                "reason",
                TypeRef::named(TypeRef::STRING),
                "Why it disconnected.",
            ),
            ("time", s("DateTime"), ""),
            ("seq", s(TypeRef::INT), "The event's sequence number."),
        ],
    );
    let auth_input = InputObject::new("DeviceIdentityAuthenticationInput")
        .description("How the device will authenticate; symmetric keys when absent.")
        .field(InputValue::new(
            "type",
            s("DeviceIdentityAuthenticationType"),
        ))
        .field(InputValue::new(
            "primaryThumbprint",
            TypeRef::named(TypeRef::STRING),
        ))
        .field(InputValue::new(
            "secondaryThumbprint",
            TypeRef::named(TypeRef::STRING),
        ));
    b.register(device);
    b.register(auth);
    b.register(conn);
    b.register(registration);
    b.register(rotation);
    b.register(change);
    b.register(auth_input);
    b.register(
        Enum::new("DeviceIdentityStatus")
            .item("ENABLED")
            .item("DISABLED"),
    );
    b.register(
        Enum::new("DeviceIdentityAuthenticationType")
            .item("SYMMETRIC_KEY")
            .item("ENROLLMENT_GROUP_KEY")
            .item("X509_THUMBPRINT")
            .item("X509_CA"),
    );
    b.register(
        Enum::new("DeviceIdentityKeySlot")
            .item("PRIMARY")
            .item("SECONDARY"),
    );
    let [devices_connection, devices_edge] = connection::<Value>(
        "DeviceIdentityConnection",
        "DeviceIdentityEdge",
        "DeviceIdentity",
        |_, d| Ok(FieldValue::borrowed_any(d)),
        "The device.",
        Vec::new(),
        Some((
            TypeRef::named_nn(TypeRef::INT),
            "Devices in the whole list (the caller's view; read whole).",
        )),
    );
    b.register(devices_connection);
    b.register(devices_edge);

    b.query(
        Field::new("deviceIdentity", TypeRef::named("DeviceIdentity"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                require(&ctx, Action::Read)?;
                match visible(&ctx, &id).await {
                    Ok(d) => Ok(Some(FieldValue::owned_any(device_json(
                        &d,
                        devices_of(&ctx)?,
                    )))),
                    Err(_) => Ok(None),
                }
            })
        })
        .description("A device identity (null if none, or its twin is out of the caller's view).")
        .argument(InputValue::new("id", s(TypeRef::ID))),
    );
    let max_page = b.limits.max_page;
    b.query(with_page_arguments(
        Field::new("deviceIdentities", s("DeviceIdentityConnection"), move |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let args = PageArgs::read(&ctx, max_page)?;
                let connected = match ctx.args.get("connected") {
                    Some(v) if !v.is_null() => Some(v.boolean()?),
                    _ => None,
                };
                let status = enum_arg(&ctx, "status")?;
                let twin = str_arg(&ctx, "twin")?;
                let devices = devices_of(&ctx)?;
                let mut items: Vec<Device> = devices
                    .registry()
                    .all()
                    .filter(|d| twin.as_ref().is_none_or(|t| *t == d.spec.twin))
                    .filter(|d| {
                        status.as_deref().is_none_or(|s| (s == "ENABLED") == d.enabled)
                    })
                    .filter(|d| {
                        connected.is_none_or(|c| {
                            c == (d.connection.is_some() || devices.hub().is_connected(&d.spec.id))
                        })
                    })
                    .cloned()
                    .collect();
                if let Some(a) = access_of(&ctx).filter(|a| !a.store.unscoped()) {
                    let twins: Vec<&str> = items.iter().map(|d| d.spec.twin.as_str()).collect();
                    let seen = a.store.filter(&twins).await.map_err(|e| store_error(&e))?;
                    items.retain(|d| seen.contains(&d.spec.twin));
                }
                let (after, before) = (args.after.clone(), args.before.clone());
                let page = Page::of_sorted(
                    items,
                    &args,
                    |d| d.spec.id.clone(),
                    |d| after.as_ref().is_none_or(|a| d.spec.id > *a),
                    |d| before.as_ref().is_none_or(|b| d.spec.id < *b),
                );
                Ok(Some(FieldValue::owned_any(
                    page.map(|d| device_json(&d, devices)),
                )))
            })
        })
        .description("Device identities in the caller's view, by id; a Relay connection (cursors are device ids).")
        .argument(InputValue::new("connected", TypeRef::named(TypeRef::BOOLEAN)))
        .argument(InputValue::new("status", TypeRef::named("DeviceIdentityStatus")))
        .argument(InputValue::new("twin", TypeRef::named(TypeRef::ID)).description("Only the device of this twin.")),
    ));

    b.mutation(
        Field::new("registerDevice", s("DeviceIdentityRegistration"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let credentials = credentials(&ctx)?;
                require(&ctx, Action::Devices)?;
                // The twin must be in the caller's view.
                let seen = store_of(&ctx)?
                    .twin(&twin)
                    .await
                    .map_err(|e| store_error(&e))?;
                if seen.is_none() {
                    return Err(store_error(&crate::store::StoreError::Twin(
                        crate::twin::TwinError::NotFound(twin),
                    )));
                }
                let devices = devices_of(&ctx)?;
                let (device, keys) = devices
                    .register(&id, &twin, credentials, &actor_of(&ctx))
                    .await
                    .map_err(|e| device_error(&e))?;
                let host = devices.hostname();
                Ok(Some(FieldValue::owned_any(json!({
                    "device": device_json(&device, devices),
                    "primaryKey": keys.as_ref().map(|k| k.primary.clone()),
                    "secondaryKey": keys.as_ref().map(|k| k.secondary.clone()),
                    "connectionString": keys.as_ref().map(|k| connection_string(host, &id, &k.primary)),
                }))))
            })
        })
        .description("Registers a device identity for a twin (admin). Symmetric-key devices get their keys in the answer, once; they connect with SAS tokens signed with either.")
        .argument(InputValue::new("id", s(TypeRef::ID)).description("1 to 128 ASCII letters, digits or -.%_*?!(),:=@$' (IoT Hub's rule)."))
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("authentication", TypeRef::named("DeviceIdentityAuthenticationInput"))),
    );
    b.mutation(
        Field::new("rotateDeviceKey", s("DeviceIdentityKeyRotation"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let slot = key_slot(&ctx)?;
                require(&ctx, Action::Devices)?;
                visible(&ctx, &id).await?;
                let devices = devices_of(&ctx)?;
                let key = devices
                    .rotate(&id, slot, &actor_of(&ctx))
                    .await
                    .map_err(|e| device_error(&e))?;
                let device = devices.get(&id).ok_or_else(|| {
                    device_error(&DeviceError::NotFound(id.clone()))
                })?;
                Ok(Some(FieldValue::owned_any(json!({
                    "key": key,
                    "slot": if slot == KeySlot::Primary { "PRIMARY" } else { "SECONDARY" },
                    "connectionString": connection_string(devices.hostname(), &id, &key),
                    "device": device_json(&device, devices),
                }))))
            })
        })
        .description("Replaces one of a device's keys (admin); the new key is in the answer, once. A device connected with the old key is disconnected.")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("key", TypeRef::named("DeviceIdentityKeySlot")).description("PRIMARY when absent.")),
    );
    for (name, enabled, doc) in [
        (
            "disableDevice",
            false,
            "Disables a device (admin): it may not connect, and a connected one is disconnected at once.",
        ),
        (
            "enableDevice",
            true,
            "Enables a disabled device again (admin).",
        ),
    ] {
        let mut f = Field::new(name, s("DeviceIdentity"), move |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let reason = str_arg(&ctx, "reason")?;
                require(&ctx, Action::Devices)?;
                visible(&ctx, &id).await?;
                let devices = devices_of(&ctx)?;
                let d = devices
                    .set_enabled(&id, enabled, reason, &actor_of(&ctx))
                    .await
                    .map_err(|e| device_error(&e))?;
                Ok(Some(FieldValue::owned_any(device_json(&d, devices))))
            })
        })
        .description(doc)
        .argument(InputValue::new("id", s(TypeRef::ID)));
        if !enabled {
            f = f.argument(InputValue::new("reason", TypeRef::named(TypeRef::STRING)));
        }
        b.mutation(f);
    }
    b.mutation(
        Field::new("deleteDevice", s(TypeRef::ID), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                require(&ctx, Action::Devices)?;
                visible(&ctx, &id).await?;
                devices_of(&ctx)?
                    .delete(&id, &actor_of(&ctx))
                    .await
                    .map_err(|e| device_error(&e))?;
                Ok(Some(FieldValue::value(id)))
            })
        })
        .description("Deletes a device identity (admin; its twin stays); a connected device is disconnected at once. Returns the id.")
        .argument(InputValue::new("id", s(TypeRef::ID))),
    );

    enrollment_groups(b);

    b.subscription(
        SubscriptionField::new("deviceConnectionChanged", s("DeviceIdentityConnectionChange"), |ctx| {
            SubscriptionFieldFuture::new(async move {
                let device = str_arg(&ctx, "device")?;
                let devices = devices_of(&ctx)?.clone();
                let rx = devices.changes();
                let closing = ctx.data::<Shutdown>()?.clone().triggered();
                let guard = access_of(&ctx)
                    .filter(|a| !a.store.unscoped())
                    .map(|a| a.store.clone());
                let stream = futures_util::stream::unfold(rx, move |mut rx| {
                    let (device, devices, guard) = (device.clone(), devices.clone(), guard.clone());
                    async move {
                        loop {
                            let e = match rx.recv().await {
                                Ok(e) => e,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    let err = super::errors::lagged(
                                        format!("the subscriber fell {n} events behind; query devices again"),
                                        None,
                                    );
                                    let (tx, closed) = tokio::sync::broadcast::channel(1);
                                    drop(tx);
                                    return Some((Err(err), closed));
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            };
                            let v = match &e.change {
                                Change::Record(Record::DeviceConnected { device: d, protocol, server }) => json!({
                                    "deviceId": d, "connected": true, "protocol": protocol, "server": server,
                                }),
                                Change::Record(Record::DeviceDisconnected { device: d, server, reason }) => json!({
                                    "deviceId": d, "connected": false, "server": server, "reason": reason,
                                }),
                                _ => continue,
                            };
                            let id = v["deviceId"].as_str().unwrap_or_default().to_owned();
                            if device.as_ref().is_some_and(|x| *x != id) {
                                continue;
                            }
                            if let Some(g) = &guard {
                                let twin = devices.get(&id).map(|d| d.spec.twin);
                                let Some(twin) = twin else { continue };
                                if !g.contains(&twin).await.unwrap_or(false) {
                                    continue;
                                }
                            }
                            let mut v = v;
                            v["time"] = json!(format_time(e.time));
                            v["seq"] = json!(e.seq);
                            return Some((Ok(FieldValue::owned_any(v)), rx));
                        }
                    }
                });
                Ok(stream.take_until(Box::pin(closing)))
            })
        })
        .description("Live: devices connecting and disconnecting (one device's, or every device in the caller's view).")
        .argument(InputValue::new("device", TypeRef::named(TypeRef::ID))),
    );
}

fn group_json(g: &crate::devices::registry::Enrollment) -> Value {
    json!({
        "name": g.spec.name,
        "parent": g.spec.parent,
        "relationship": g.spec.relationship,
        "models": g.spec.models,
        "attestation": if g.spec.ca_certificate.is_some() { "X509_CA" } else { "SYMMETRIC_KEY" },
        "caCertificate": g.spec.ca_certificate,
        "createdAt": format_time(g.created_at),
        "createdBy": g.created_by,
    })
}

/// Enrollment groups: zero-touch provisioning in the manner of the Device
/// Provisioning Service's group enrollments.
fn enrollment_groups(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let group = record(
        "DeviceEnrollmentGroup",
        "An enrollment group: a device that connects with a SAS token signed with the key derived from the group key for its id (HMAC-SHA256 of the id under the group key, as the Device Provisioning Service derives it), or with a client certificate whose common name is its id issued by the group's certificate authority, and announces its model (`model-id` in its MQTT user name) gets a twin of that model under `parent`, and its identity, on first connect.",
        &[
            ("name", s(TypeRef::STRING), ""),
            (
                "parent",
                s(TypeRef::ID),
                "The twin new twins are placed under.",
            ),
            (
                "relationship",
                s(TypeRef::STRING),
                "The relationship from the parent to each new twin.",
            ),
            (
                "models",
                TypeRef::named_nn_list_nn(TypeRef::STRING),
                "Models devices may announce (with their subtypes); empty: any model the server has.",
            ),
            (
                "attestation",
                s("DeviceEnrollmentAttestation"),
                "How its devices prove who they are: a key the group key derives, or a certificate its authority issued.",
            ),
            (
                "caCertificate",
                TypeRef::named(TypeRef::STRING),
                "The certificate authority (PEM) of an X509_CA group.",
            ),
            ("createdAt", s("DateTime"), ""),
            ("createdBy", s(TypeRef::STRING), ""),
        ],
    );
    b.register(
        Enum::new("DeviceEnrollmentAttestation")
            .item("SYMMETRIC_KEY")
            .item("X509_CA"),
    );
    let creation = record(
        "DeviceEnrollmentGroupCreation",
        "A new enrollment group and its key, shown this once.",
        &[(
            "groupKey",
            TypeRef::named(TypeRef::STRING),
            "Base64 (null for an X509_CA group). A device's key is base64(HMAC-SHA256(base64-decoded group key, device id)).",
        )],
    )
    .field(nested("group", s("DeviceEnrollmentGroup"), "group", ""));
    b.register(group);
    b.register(creation);
    b.query(
        Field::new(
            "deviceEnrollmentGroups",
            TypeRef::named_nn_list_nn("DeviceEnrollmentGroup"),
            |ctx| {
                FieldFuture::new(async move {
                    require(&ctx, Action::Devices)?;
                    let devices = devices_of(&ctx)?;
                    let groups: Vec<crate::devices::registry::Enrollment> =
                        devices.registry().groups().cloned().collect();
                    let mut out = Vec::new();
                    for g in groups {
                        let seen = match access_of(&ctx) {
                            Some(a) => a
                                .store
                                .contains(&g.spec.parent)
                                .await
                                .map_err(|e| store_error(&e))?,
                            None => true,
                        };
                        if seen {
                            out.push(FieldValue::owned_any(group_json(&g)));
                        }
                    }
                    Ok(Some(FieldValue::list(out)))
                })
            },
        )
        .description(
            "The enrollment groups whose parent is in the caller's view (admin), by name.",
        ),
    );
    b.mutation(
        Field::new(
            "createDeviceEnrollmentGroup",
            s("DeviceEnrollmentGroupCreation"),
            |ctx| {
                FieldFuture::new(async move {
                    let name = ctx.args.try_get("name")?.string()?.to_owned();
                    let parent = ctx.args.try_get("parent")?.string()?.to_owned();
                    let relationship =
                        str_arg(&ctx, "relationship")?.unwrap_or_else(|| "contains".to_owned());
                    let models: Vec<String> = match ctx.args.get("models") {
                        Some(v) if !v.is_null() => v
                            .list()?
                            .iter()
                            .map(|m| m.string().map(str::to_owned))
                            .collect::<Result<_, _>>()?,
                        _ => Vec::new(),
                    };
                    let ca = str_arg(&ctx, "caCertificate")?;
                    require(&ctx, Action::Devices)?;
                    let seen = store_of(&ctx)?
                        .twin(&parent)
                        .await
                        .map_err(|e| store_error(&e))?;
                    if seen.is_none() {
                        return Err(store_error(&crate::store::StoreError::Twin(
                            crate::twin::TwinError::NotFound(parent),
                        )));
                    }
                    let (group, key) = devices_of(&ctx)?
                        .create_group(&name, &parent, &relationship, models, ca, &actor_of(&ctx))
                        .await
                        .map_err(|e| device_error(&e))?;
                    Ok(Some(FieldValue::owned_any(json!({
                        "group": group_json(&group),
                        "groupKey": key,
                    }))))
                })
            },
        )
        .description("Creates an enrollment group (admin); its key is in the answer, once (none with `caCertificate`).")
        .argument(InputValue::new("name", s(TypeRef::STRING)))
        .argument(InputValue::new("parent", s(TypeRef::ID)))
        .argument(
            InputValue::new("relationship", TypeRef::named(TypeRef::STRING))
                .description("`contains` when absent."),
        )
        .argument(InputValue::new(
            "models",
            TypeRef::named_nn_list(TypeRef::STRING),
        ).description("Models devices may announce (with their subtypes); absent or empty: any loaded model."))
        .argument(
            InputValue::new("caCertificate", TypeRef::named(TypeRef::STRING))
                .description("A certificate authority (PEM; a root or an intermediate): the group takes devices whose certificate it issued, common name the device id, instead of keys derived from a group key."),
        ),
    );
    b.mutation(
        Field::new("deleteDeviceEnrollmentGroup", s(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move {
                let name = ctx.args.try_get("name")?.string()?.to_owned();
                require(&ctx, Action::Devices)?;
                let devices = devices_of(&ctx)?;
                let parent = devices
                    .registry()
                    .group(&name)
                    .map(|g| g.spec.parent.clone());
                let visible = match (&parent, access_of(&ctx)) {
                    (Some(p), Some(a)) => a.store.contains(p).await.map_err(|e| store_error(&e))?,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !visible {
                    return Err(device_error(&DeviceError::NotFound(format!(
                        "enrollment group {name}"
                    ))));
                }
                devices
                    .delete_group(&name, &actor_of(&ctx))
                    .await
                    .map_err(|e| device_error(&e))?;
                Ok(Some(FieldValue::value(name)))
            })
        })
        .description("Deletes an enrollment group (admin): the devices it provisioned stay registered but can no longer connect (their keys derived from it); connected ones are disconnected.")
        .argument(InputValue::new("name", s(TypeRef::STRING))),
    );
}

/// The credentials a registration asks for.
fn credentials(ctx: &async_graphql::dynamic::ResolverContext<'_>) -> Result<Credentials, Error> {
    let Some(v) = super::context::json_arg(ctx, "authentication")? else {
        return Ok(Credentials::SymmetricKey);
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match field("type").as_deref() {
        Some("SYMMETRIC_KEY") => Ok(Credentials::SymmetricKey),
        Some("X509_CA") => Ok(Credentials::X509Ca),
        Some("X509_THUMBPRINT") => Ok(Credentials::X509Thumbprint {
            primary: field("primaryThumbprint").ok_or_else(|| {
                error_with(
                    Code::InvalidDevice,
                    "authentication.primaryThumbprint: required for X509_THUMBPRINT",
                    |ext| ext.set("path", "authentication.primaryThumbprint"),
                )
            })?,
            secondary: field("secondaryThumbprint"),
        }),
        other => Err(bad_request(format!(
            "authentication.type: unknown {other:?}"
        ))),
    }
}

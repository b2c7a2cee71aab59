//! The devices connected to this server: one session each, found by device
//! and by twin. Desired changes reach them from one task that reads the
//! store's events (not one reader per device), and commands reach them as
//! direct method calls answered through the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::twin::event::{Entry, Side};
use crate::twin::{Change, Event};

/// What a session is asked to send its device.
#[derive(Debug)]
pub enum ToDevice {
    /// A desired-property notification: the changed values (`null`:
    /// removed, components marked `"__t": "c"`) at twin version `version`.
    Desired {
        version: u64,
        patch: Map<String, Value>,
    },
    /// A direct method call; the answer goes to `reply`.
    Method {
        name: String,
        payload: Value,
        reply: oneshot::Sender<MethodAnswer>,
    },
    /// End the connection (disabled, deleted, replaced by a newer one).
    Close { reason: &'static str },
}

/// A device's answer to a direct method.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodAnswer {
    pub status: i64,
    pub payload: Value,
}

/// Why a method call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("the twin's device is not connected")]
    Offline,
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),
}

/// How many messages wait for a session before desired notifications are
/// replaced by one full resend.
const QUEUE: usize = 64;

/// What the hub and a session share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Notifications were dropped (the queue was full): resend the whole
    /// desired state.
    pub resync: AtomicBool,
    pub wake: Notify,
}

struct Entry_ {
    session: u64,
    twin: String,
    tx: mpsc::Sender<ToDevice>,
    shared: Arc<Shared>,
}

/// A session's end of the hub.
#[derive(Debug)]
pub struct Attached {
    pub session: u64,
    pub rx: mpsc::Receiver<ToDevice>,
    pub shared: Arc<Shared>,
}

/// The connected devices.
#[derive(Default)]
pub struct Hub {
    inner: std::sync::Mutex<Sessions>,
    next: AtomicU64,
}

#[derive(Default)]
struct Sessions {
    by_device: HashMap<String, Entry_>,
    /// twin → device
    by_twin: HashMap<String, String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connected", &self.connected())
            .finish()
    }
}

impl Hub {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session of `device` (for `twin`); a session the device
    /// already had is told to close, as IoT Hub does when a device
    /// connects again.
    pub fn attach(&self, device: &str, twin: &str) -> Attached {
        let session = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let old = {
            let mut s = self.sessions();
            s.by_twin.insert(twin.to_owned(), device.to_owned());
            s.by_device.insert(
                device.to_owned(),
                Entry_ {
                    session,
                    twin: twin.to_owned(),
                    tx,
                    shared: shared.clone(),
                },
            )
        };
        if let Some(old) = old {
            let _ = old.tx.try_send(ToDevice::Close {
                reason: "replaced by a newer connection",
            });
        }
        Attached {
            session,
            rx,
            shared,
        }
    }

    /// Removes session `session` of `device` (not a newer one).
    pub fn detach(&self, device: &str, session: u64) {
        let mut s = self.sessions();
        if s.by_device
            .get(device)
            .is_some_and(|e| e.session == session)
            && let Some(e) = s.by_device.remove(device)
            && s.by_twin.get(&e.twin).is_some_and(|d| d == device)
        {
            s.by_twin.remove(&e.twin);
        }
    }

    /// Tells `device`'s session, if any, to close.
    pub fn kick(&self, device: &str, reason: &'static str) {
        let tx = self.sessions().by_device.get(device).map(|e| e.tx.clone());
        if let Some(tx) = tx {
            // A full queue: the session is busy; it closes when it reads this.
            let sent = tx.try_send(ToDevice::Close { reason });
            if sent.is_err() {
                tokio::spawn(async move {
                    let _ = tx.send(ToDevice::Close { reason }).await;
                });
            }
        }
    }

    /// How many devices are connected here.
    pub fn connected(&self) -> usize {
        self.sessions().by_device.len()
    }

    /// Whether `device` is connected here.
    pub fn is_connected(&self, device: &str) -> bool {
        self.sessions().by_device.contains_key(device)
    }

    /// Calls method `name` on the device of `twin` and waits for its answer.
    pub async fn call(
        &self,
        twin: &str,
        name: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<MethodAnswer, CallError> {
        let tx = {
            let s = self.sessions();
            s.by_twin
                .get(twin)
                .and_then(|d| s.by_device.get(d))
                .map(|e| e.tx.clone())
        };
        let tx = tx.ok_or(CallError::Offline)?;
        let (reply, answer) = oneshot::channel();
        let call = ToDevice::Method {
            name: name.to_owned(),
            payload,
            reply,
        };
        let answered = tokio::time::timeout(timeout, async move {
            tx.send(call).await.map_err(|_| CallError::Offline)?;
            answer.await.map_err(|_| CallError::Offline)
        });
        answered.await.map_err(|_| CallError::Timeout(timeout))?
    }

    /// Hands a committed event to the session of its twin's device: desired
    /// changes as notifications, a deleted twin as the end of the session.
    pub fn route(&self, e: &Event) {
        if let Change::TwinDeleted { twin, .. } = &e.change {
            let device = self.sessions().by_twin.get(twin).cloned();
            if let Some(d) = device {
                self.kick(&d, "its twin was deleted");
            }
            return;
        }
        let Some((twin, version, entries)) = e.change.desired() else {
            return;
        };
        let target = {
            let s = self.sessions();
            s.by_twin
                .get(twin)
                .and_then(|d| s.by_device.get(d))
                .map(|e| (e.tx.clone(), e.shared.clone()))
        };
        let Some((tx, shared)) = target else { return };
        let patch = desired_patch(entries);
        if tx.try_send(ToDevice::Desired { version, patch }).is_err() {
            shared.resync.store(true, Ordering::Release);
            shared.wake.notify_one();
        }
    }

    /// Every connected session must resend the whole desired state (the
    /// hub's reader fell behind the store's events).
    pub fn resync_all(&self) {
        for e in self.sessions().by_device.values() {
            e.shared.resync.store(true, Ordering::Release);
            e.shared.wake.notify_one();
        }
    }
}

/// The desired-property patch of a change's entries, as IoT Hub sends it:
/// values by name, a Component's under its name marked `"__t": "c"`,
/// `null` for a value removed.
pub fn desired_patch(entries: &[Entry]) -> Map<String, Value> {
    let mut patch = Map::new();
    for en in entries.iter().filter(|en| en.side == Side::Desired) {
        let value = en.value.clone().unwrap_or(Value::Null);
        match &en.component {
            None => {
                patch.insert(en.name.clone(), value);
            }
            Some(c) => {
                let comp = patch
                    .entry(c.clone())
                    .or_insert_with(|| serde_json::json!({"__t": "c"}));
                if let Some(m) = comp.as_object_mut() {
                    m.insert(en.name.clone(), value);
                }
            }
        }
    }
    patch
}

/// Runs [`Hub::route`] over the store's events until it closes.
pub async fn dispatch(
    hub: std::sync::Weak<Hub>,
    mut live: tokio::sync::broadcast::Receiver<Arc<Event>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let next = live.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match next {
            Ok(e) => hub.route(&e),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "devices: the hub fell behind the store's events; every connected device gets its whole desired state again"
                );
                hub.resync_all();
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(component: Option<&str>, name: &str, value: Option<Value>) -> Entry {
        Entry {
            side: Side::Desired,
            component: component.map(str::to_owned),
            name: name.to_owned(),
            value,
            source_time: None,
            ack: None,
            source: None,
        }
    }

    #[test]
    fn desired_patches_read_as_iot_hub_sends_them() {
        let patch = desired_patch(&[
            entry(None, "setpoint", Some(Value::from(21.5))),
            entry(Some("thermostat1"), "target", Some(Value::from(3))),
            entry(None, "mode", None),
        ]);
        assert_eq!(
            Value::Object(patch),
            serde_json::json!({"setpoint": 21.5, "mode": null,
                "thermostat1": {"__t": "c", "target": 3}})
        );
    }

    #[tokio::test]
    async fn a_newer_session_replaces_the_older_and_calls_reach_it() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.attach("d1", "t1");
        let mut b = hub.attach("d1", "t1");
        assert!(matches!(a.rx.recv().await, Some(ToDevice::Close { .. })));
        hub.detach("d1", a.session);
        assert!(
            hub.is_connected("d1"),
            "the older session's end keeps the newer"
        );
        let h = hub.clone();
        let call = tokio::spawn(async move {
            h.call("t1", "reboot", Value::Null, Duration::from_secs(5))
                .await
        });
        let Some(ToDevice::Method { name, reply, .. }) = b.rx.recv().await else {
            panic!("no call")
        };
        assert_eq!(name, "reboot");
        let _ = reply.send(MethodAnswer {
            status: 200,
            payload: Value::from("ok"),
        });
        assert_eq!(call.await.expect("joins").map(|a| a.status), Ok(200));
        assert_eq!(
            hub.call("t2", "reboot", Value::Null, Duration::from_secs(1))
                .await,
            Err(CallError::Offline)
        );
        let slow = hub
            .call("t1", "reboot", Value::Null, Duration::from_millis(20))
            .await;
        assert_eq!(slow, Err(CallError::Timeout(Duration::from_millis(20))));
        hub.detach("d1", b.session);
        assert_eq!(hub.connected(), 0);
    }
}

//! The binary rows of the embedded store's state file: twins (format 5)
//! and relationships (format 6).
//!
//! A twin row is read once per twin at every startup, so its size is what a
//! cold start reads from disk and its decoding what a warm one spends. The
//! JSON rows of earlier formats repeat every key and spell out every
//! timestamp (about 600 bytes for a demo pump); this row is the same state
//! in about a third of that, decoded without a JSON parser:
//!
//! - integers are LEB128 varints, signed ones zigzagged;
//! - times are deltas: the twin's update from its creation, a value's from
//!   the twin's update, a source time from the value's;
//! - texts are a varint length and UTF-8 bytes;
//! - a value is a tag byte (null, false, true, unsigned, signed, float,
//!   text) with its payload, and arrays and objects their JSON text (rare in
//!   telemetry and properties);
//! - configurations, rare and nested, are their JSON.
//!
//! Layout: tag `3`, the sequence number the row is as of, model, version,
//! created, updated, the root component, the named components, the
//! configurations. The id is the row's key and not repeated.
//!
//! A relationship row holds the outgoing relationships of one source (up
//! to [`RELS_PER_ROW`] of them; a source with more has several rows): one
//! row read per twin at startup instead of one per relationship, the
//! source (the key) written once. Layout: tag `4`, the sequence number,
//! the count, then per relationship a flags byte, the name (unless the
//! previous one's), the target as the length of the prefix it shares with
//! the source and the rest, the id (unless it is `{name}-{target}`, as
//! the demo's and most generated ids are), version, creation time (a delta
//! from the previous relationship's), update time (from its creation),
//! and the properties' JSON if it has any.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Number, Value};

use crate::twin::Micros;
use crate::twin::rels::{RelParts, RelRow};
use crate::twin::state::{Ack, ComponentState, Desired, DesiredSource, PropState, Reported, Twin};

/// The tag byte of a binary twin row.
pub const TWIN_ROW: u8 = 3;

/// The tag byte of a relationship row.
pub const RELS_ROW: u8 = 4;

/// The most relationships one row holds: a source with many (a site
/// containing thousands of areas) has several rows, so no row outgrows a
/// page of the store.
pub const RELS_PER_ROW: usize = 256;

/// Why a row could not be read.
#[derive(Debug)]
pub struct RowError(pub &'static str);

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// `twin` as of event `seq`, as a row (an error only if a nested value
/// would not serialize, which JSON values always do).
pub fn encode_twin(seq: u64, twin: &Twin) -> Result<Vec<u8>, RowError> {
    let mut w = Writer(Vec::with_capacity(192));
    w.0.push(TWIN_ROW);
    w.uint(seq);
    w.text(&twin.model);
    w.uint(twin.version);
    w.int(twin.created_at);
    w.int(twin.updated_at.wrapping_sub(twin.created_at));
    w.component(&twin.root, twin.updated_at)?;
    w.uint(twin.components.len() as u64);
    for (name, c) in &twin.components {
        w.text(name);
        w.component(c, twin.updated_at)?;
    }
    if twin.configurations.is_empty() {
        w.uint(0);
    } else {
        let json = serde_json::to_vec(&twin.configurations)
            .map_err(|_| RowError("configurations do not serialize"))?;
        w.bytes(&json);
    }
    Ok(w.0)
}

/// The sequence number and twin of a row made by [`encode_twin`] for `id`.
pub fn decode_twin(id: &str, row: &[u8]) -> Result<(u64, Twin), RowError> {
    let mut r = Reader(row);
    if r.byte()? != TWIN_ROW {
        return Err(RowError("not a binary twin row"));
    }
    let seq = r.uint()?;
    let model: Arc<str> = Arc::from(r.text()?);
    let version = r.uint()?;
    let created_at = r.int()?;
    let updated_at = created_at.wrapping_add(r.int()?);
    let root = r.component(updated_at)?;
    let mut components = BTreeMap::new();
    for _ in 0..r.uint()? {
        let name = r.text()?.to_owned();
        components.insert(name, r.component(updated_at)?);
    }
    let configurations = match r.bytes()? {
        [] => BTreeMap::new(),
        json => serde_json::from_slice(json).map_err(|_| RowError("bad configurations"))?,
    };
    if !r.0.is_empty() {
        return Err(RowError("bytes after the row"));
    }
    Ok((
        seq,
        Twin {
            id: Arc::from(id),
            model,
            version,
            created_at,
            updated_at,
            root,
            components,
            configurations,
        },
    ))
}

/// Relationship flags: the id is `{name}-{target}`; it has properties;
/// its name is the previous relationship's.
const DERIVED_ID: u8 = 1;
const PROPERTIES: u8 = 2;
const SAME_NAME: u8 = 4;

/// Relationships of `source` (at most [`RELS_PER_ROW`]) as of event `seq`,
/// as a row.
pub fn encode_rels(seq: u64, source: &str, rels: &[RelRow<'_>]) -> Result<Vec<u8>, RowError> {
    let mut w = Writer(Vec::with_capacity(8 + 24 * rels.len()));
    w.0.push(RELS_ROW);
    w.uint(seq);
    w.uint(rels.len() as u64);
    let mut name: Option<&str> = None;
    let mut created = 0i64;
    for r in rels {
        let derived = r.id.len() == r.name.len() + 1 + r.target.len()
            && r.id.starts_with(r.name)
            && r.id[r.name.len()..].starts_with('-')
            && r.id.ends_with(r.target);
        let mut flags = 0;
        if derived {
            flags |= DERIVED_ID;
        }
        if r.properties.is_some_and(|p| !p.is_empty()) {
            flags |= PROPERTIES;
        }
        if name == Some(r.name) {
            flags |= SAME_NAME;
        }
        w.0.push(flags);
        if flags & SAME_NAME == 0 {
            w.text(r.name);
        }
        name = Some(r.name);
        // The prefix shared with the source, cut back to a whole character.
        let mut shared = source
            .bytes()
            .zip(r.target.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        while !r.target.is_char_boundary(shared) {
            shared -= 1;
        }
        w.uint(shared as u64);
        w.text(&r.target[shared..]);
        if !derived {
            w.text(r.id);
        }
        w.uint(r.version);
        w.int(r.created_at.wrapping_sub(created));
        created = r.created_at;
        w.int(r.updated_at.wrapping_sub(r.created_at));
        if let Some(p) = r.properties.filter(|p| !p.is_empty()) {
            let json =
                serde_json::to_vec(p).map_err(|_| RowError("properties do not serialize"))?;
            w.bytes(&json);
        }
    }
    Ok(w.0)
}

/// Reads a row made by [`encode_rels`] for `source`, handing each
/// relationship to `each`; the sequence number the row is as of.
pub fn decode_rels(
    source: &str,
    row: &[u8],
    mut each: impl FnMut(RelParts<'_>),
) -> Result<u64, RowError> {
    let mut r = Reader(row);
    if r.byte()? != RELS_ROW {
        return Err(RowError("not a relationship row"));
    }
    let seq = r.uint()?;
    let count = r.uint()?;
    let mut name: Option<&str> = None;
    let mut created = 0i64;
    let mut target = Vec::new();
    let mut id = String::new();
    for _ in 0..count {
        let flags = r.byte()?;
        if flags & !(DERIVED_ID | PROPERTIES | SAME_NAME) != 0 {
            return Err(RowError("unknown relationship flags"));
        }
        let n = if flags & SAME_NAME != 0 {
            name.ok_or(RowError("no previous name"))?
        } else {
            r.text()?
        };
        name = Some(n);
        let shared = r.len()?;
        let prefix = source
            .as_bytes()
            .get(..shared)
            .ok_or(RowError("target prefix longer than the source"))?;
        target.clear();
        target.extend_from_slice(prefix);
        target.extend_from_slice(r.bytes()?);
        let t = std::str::from_utf8(&target).map_err(|_| RowError("target not UTF-8"))?;
        let i = if flags & DERIVED_ID != 0 {
            id.clear();
            id.push_str(n);
            id.push('-');
            id.push_str(t);
            id.as_str()
        } else {
            r.text()?
        };
        let version = r.uint()?;
        let created_at = created.wrapping_add(r.int()?);
        created = created_at;
        let updated_at = created_at.wrapping_add(r.int()?);
        let properties = if flags & PROPERTIES != 0 {
            Some(serde_json::from_slice(r.bytes()?).map_err(|_| RowError("bad properties"))?)
        } else {
            None
        };
        each(RelParts {
            source,
            id: i,
            name: n,
            target: t,
            properties,
            version,
            created_at,
            updated_at,
        });
    }
    if !r.0.is_empty() {
        return Err(RowError("bytes after the row"));
    }
    Ok(seq)
}

const REPORTED: u8 = 1;
const DESIRED: u8 = 2;
const SOURCE_TIME: u8 = 4;
const ACK: u8 = 8;
const SOURCE: u8 = 16;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UNSIGNED: u8 = 3;
const SIGNED: u8 = 4;
const FLOAT: u8 = 5;
const TEXT: u8 = 6;
const JSON: u8 = 7;

struct Writer(Vec<u8>);

impl Writer {
    fn uint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn int(&mut self, n: i64) {
        self.uint(((n << 1) ^ (n >> 63)) as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            None => self.uint(0),
            Some(s) => {
                self.uint(s.len() as u64 + 1);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn value(&mut self, v: &Value) -> Result<(), RowError> {
        match v {
            Value::Null => self.0.push(NULL),
            Value::Bool(false) => self.0.push(FALSE),
            Value::Bool(true) => self.0.push(TRUE),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.0.push(UNSIGNED);
                    self.uint(u);
                } else if let Some(i) = n.as_i64() {
                    self.0.push(SIGNED);
                    self.int(i);
                } else {
                    self.0.push(FLOAT);
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    self.0.extend_from_slice(&f.to_le_bytes());
                }
            }
            Value::String(s) => {
                self.0.push(TEXT);
                self.text(s);
            }
            other => {
                self.0.push(JSON);
                let json = serde_json::to_vec(other)
                    .map_err(|_| RowError("a value does not serialize"))?;
                self.bytes(&json);
            }
        }
        Ok(())
    }

    fn component(&mut self, c: &ComponentState, updated_at: Micros) -> Result<(), RowError> {
        self.uint(c.props.len() as u64);
        for (name, p) in c.props.iter() {
            self.text(name);
            let mut flags = 0;
            if let Some(r) = &p.reported {
                flags |= REPORTED;
                if r.source_time.is_some() {
                    flags |= SOURCE_TIME;
                }
                if r.ack.is_some() {
                    flags |= ACK;
                }
            }
            if let Some(d) = &p.desired {
                flags |= DESIRED;
                if d.source.is_some() {
                    flags |= SOURCE;
                }
            }
            self.0.push(flags);
            if let Some(r) = &p.reported {
                self.value(&r.value)?;
                self.int(r.last_updated.wrapping_sub(updated_at));
                self.uint(r.version);
                if let Some(t) = r.source_time {
                    self.int(t.wrapping_sub(r.last_updated));
                }
                if let Some(a) = &r.ack {
                    self.int(a.code);
                    self.uint(a.version);
                    self.opt_text(a.description.as_deref());
                }
            }
            if let Some(d) = &p.desired {
                self.value(&d.value)?;
                self.int(d.last_updated.wrapping_sub(updated_at));
                self.uint(d.version);
                if let Some(s) = &d.source {
                    self.text(&s.configuration);
                    self.uint(u64::from(s.version));
                    self.opt_text(s.rollout.as_deref());
                }
            }
        }
        Ok(())
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, RowError> {
        let (&b, rest) = self.0.split_first().ok_or(RowError("row ends early"))?;
        self.0 = rest;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, RowError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(RowError("varint too long"))
    }

    fn int(&mut self) -> Result<i64, RowError> {
        let n = self.uint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, RowError> {
        usize::try_from(self.uint()?).map_err(|_| RowError("length too large"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RowError> {
        if self.0.len() < n {
            return Err(RowError("row ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], RowError> {
        let n = self.len()?;
        self.take(n)
    }

    fn text(&mut self) -> Result<&'a str, RowError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| RowError("text not UTF-8"))
    }

    fn opt_text(&mut self) -> Result<Option<String>, RowError> {
        match self.len()? {
            0 => Ok(None),
            n => std::str::from_utf8(self.take(n - 1)?)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| RowError("text not UTF-8")),
        }
    }

    fn value(&mut self) -> Result<Value, RowError> {
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UNSIGNED => Value::Number(self.uint()?.into()),
            SIGNED => Value::Number(self.int()?.into()),
            FLOAT => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.take(8)?);
                Value::Number(
                    Number::from_f64(f64::from_le_bytes(b)).ok_or(RowError("float not finite"))?,
                )
            }
            TEXT => Value::String(self.text()?.to_owned()),
            JSON => {
                serde_json::from_slice(self.bytes()?).map_err(|_| RowError("bad JSON value"))?
            }
            _ => return Err(RowError("unknown value tag")),
        })
    }

    fn component(&mut self, updated_at: Micros) -> Result<ComponentState, RowError> {
        let mut c = ComponentState::default();
        for _ in 0..self.uint()? {
            let name = self.text()?;
            let flags = self.byte()?;
            let mut p = PropState::default();
            if flags & REPORTED != 0 {
                let value = self.value()?;
                let last_updated = updated_at.wrapping_add(self.int()?);
                let version = self.uint()?;
                let source_time = if flags & SOURCE_TIME != 0 {
                    Some(last_updated.wrapping_add(self.int()?))
                } else {
                    None
                };
                let ack = if flags & ACK != 0 {
                    Some(Box::new(Ack {
                        code: self.int()?,
                        version: self.uint()?,
                        description: self.opt_text()?,
                    }))
                } else {
                    None
                };
                p.reported = Some(Box::new(Reported {
                    value,
                    last_updated,
                    version,
                    source_time,
                    ack,
                }));
            }
            if flags & DESIRED != 0 {
                let value = self.value()?;
                let last_updated = updated_at.wrapping_add(self.int()?);
                let version = self.uint()?;
                let source = if flags & SOURCE != 0 {
                    Some(Box::new(DesiredSource {
                        configuration: self.text()?.to_owned(),
                        version: u32::try_from(self.uint()?)
                            .map_err(|_| RowError("configuration version too large"))?,
                        rollout: self.opt_text()?,
                    }))
                } else {
                    None
                };
                p.desired = Some(Box::new(Desired {
                    value,
                    last_updated,
                    version,
                    source,
                }));
            }
            *c.props.entry(name) = p;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin() -> Twin {
        let mut t: Twin = serde_json::from_value(json!({
            "id": "c1.e2",
            "model": "dtmi:twingraph:isa95:Pump;1",
            "version": 7,
            "createdAt": 1_796_479_702_314_614_i64,
            "updatedAt": 1_796_479_799_000_001_i64,
            "root": {"props": {
                "power": {"reported": {"value": 5.5, "lastUpdated": 1_796_479_799_000_001_i64, "version": 3,
                                        "sourceTime": 1_796_479_798_999_000_i64,
                                        "ack": {"code": 200, "version": 2, "description": "ok"}},
                          "desired": {"value": 7, "lastUpdated": 1_796_479_702_314_614_i64, "version": 2,
                                      "source": {"configuration": "speed", "version": 4, "rollout": "r1"}}},
                "count": {"reported": {"value": -3, "lastUpdated": -5, "version": 1}},
                "big": {"reported": {"value": u64::MAX, "lastUpdated": 0, "version": 1}},
                "tag": {"desired": {"value": "EAM-1", "lastUpdated": 1, "version": 1,
                                    "source": {"configuration": "c", "version": 1}}},
                "on": {"reported": {"value": true, "lastUpdated": 1, "version": 1,
                                     "ack": {"code": 500, "version": 1}}},
                "off": {"reported": {"value": false, "lastUpdated": 1, "version": 1}},
                "none": {"reported": {"value": null, "lastUpdated": 1, "version": 1}},
                "map": {"reported": {"value": {"a": [1, 2.5, "x"]}, "lastUpdated": 1, "version": 1}}
            }},
            "components": {"motor": {"props": {
                "rpm": {"reported": {"value": 1450.25, "lastUpdated": 2, "version": 1}}
            }}},
            "configurations": {"speed": {"version": 4, "priority": 10, "seq": 3, "values": {"power": 7}}}
        }))
        .expect("twin");
        t.id = Arc::from("c1.e2");
        t
    }

    #[test]
    fn a_row_reads_back_the_twin_it_was_made_of() {
        let t = twin();
        let row = encode_twin(42, &t).expect("encodes");
        let (seq, back) = decode_twin("c1.e2", &row).expect("decodes");
        assert_eq!(seq, 42);
        assert_eq!(back, t);
        let json = serde_json::to_vec(&t).expect("json");
        assert!(
            row.len() * 2 < json.len(),
            "row {} bytes, JSON {} bytes",
            row.len(),
            json.len()
        );
    }

    #[test]
    fn a_blank_twin_round_trips() {
        let t = Twin::blank("x", "dtmi:a:B;1");
        let (_, back) = decode_twin("x", &encode_twin(1, &t).expect("encodes")).expect("decodes");
        assert_eq!(back, t);
    }

    fn rels_round_trip(source: &str, rels: &[RelRow<'_>]) -> (usize, Vec<String>) {
        let row = encode_rels(9, source, rels).expect("encodes");
        let mut back = Vec::new();
        let seq = decode_rels(source, &row, |p| {
            back.push(format!(
                "{} {} {} {} {:?} {} {} {}",
                p.source,
                p.id,
                p.name,
                p.target,
                p.properties,
                p.version,
                p.created_at,
                p.updated_at
            ))
        })
        .expect("decodes");
        assert_eq!(seq, 9);
        (row.len(), back)
    }

    #[test]
    fn a_relationship_row_reads_back_its_relationships() {
        let props = json!({"medium": "water"})
            .as_object()
            .expect("object")
            .clone();
        let rel = |id, name, target, properties, created_at| RelRow {
            id,
            name,
            target,
            properties,
            version: 3,
            created_at,
            updated_at: created_at + 17,
        };
        let rels = [
            rel("feeds-c1.e2", "feeds", "c1.e2", None, 1_796_479_702_314_614),
            rel(
                "feeds-c1.e3",
                "feeds",
                "c1.e3",
                Some(&props),
                1_796_479_702_314_615,
            ),
            rel("my id", "contains", "c1.e4", None, -5),
            // Shares "é"'s first byte with the source, not the character.
            rel("monitors-è", "monitors", "è", None, 0),
            rel("monitors-éa", "monitors", "éa", None, 0),
        ];
        let (len, back) = rels_round_trip("é", &rels);
        let want: Vec<String> = rels
            .iter()
            .map(|r| {
                format!(
                    "é {} {} {} {:?} {} {} {}",
                    r.id,
                    r.name,
                    r.target,
                    r.properties.cloned(),
                    r.version,
                    r.created_at,
                    r.updated_at
                )
            })
            .collect();
        assert_eq!(back, want);
        assert!(len < 120, "{len} bytes");
        // The demo's shape: ids made of name and target, targets sharing
        // the source's cell prefix: a handful of bytes each.
        let targets: Vec<String> = (0..5).map(|i| format!("c10245.e{}", 20 + i)).collect();
        let ids: Vec<String> = targets.iter().map(|t| format!("feeds-{t}")).collect();
        let rels: Vec<RelRow<'_>> = ids
            .iter()
            .zip(&targets)
            .map(|(id, t)| rel(id, "feeds", t, None, 1_796_479_702_314_614))
            .collect();
        let (len, back) = rels_round_trip("c10245.e17", &rels);
        assert_eq!(back.len(), 5);
        assert!(len <= 5 * 8 + 20, "{len} bytes for five");
        assert_eq!(rels_round_trip("x", &[]).1, Vec::<String>::new());
    }

    #[test]
    fn damaged_relationship_rows_are_errors_not_panics() {
        let props = json!({"medium": "water"})
            .as_object()
            .expect("object")
            .clone();
        let rels = [RelRow {
            id: "a",
            name: "feeds",
            target: "c1.e2",
            properties: Some(&props),
            version: 1,
            created_at: 5,
            updated_at: 6,
        }];
        let row = encode_rels(1, "c1.e1", &rels).expect("encodes");
        for n in 0..row.len() {
            assert!(
                decode_rels("c1.e1", &row[..n], |_| {}).is_err(),
                "cut at {n}"
            );
        }
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode_rels("c1.e1", &longer, |_| {}).is_err());
        // A prefix longer than the source, or not a whole character of it.
        assert!(decode_rels("c", &row, |_| {}).is_err());
        let row = encode_rels(
            1,
            "éa",
            &[RelRow {
                target: "éb",
                ..rels[0]
            }],
        )
        .expect("encodes");
        assert!(decode_rels("éa", &row, |_| {}).is_ok());
        assert!(decode_rels("aé", &row, |_| {}).is_err(), "half of é");
        let mut bad_flags = row;
        bad_flags[3] = 0x80;
        assert!(decode_rels("éa", &bad_flags, |_| {}).is_err());
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let row = encode_twin(42, &twin()).expect("encodes");
        for n in 0..row.len() {
            assert!(decode_twin("c1.e2", &row[..n]).is_err(), "cut at {n}");
        }
        let mut longer = row.clone();
        longer.push(0);
        assert!(decode_twin("c1.e2", &longer).is_err());
        let mut bad_tag = row;
        bad_tag[0] = 9;
        assert!(decode_twin("c1.e2", &bad_tag).is_err());
    }
}

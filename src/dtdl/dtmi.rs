//! Digital Twin Model Identifiers (DTMIs): syntax per DTDL version.
//!
//! `dtmi:<segment>(:<segment>)*;<version>` where a segment is a letter
//! followed by letters, digits or underscores, not ending in an underscore.
//! DTDL v2 requires a version `1..=999_999_999` without leading zeros; v3
//! makes the version optional and allows a minor part (`;2.1`, minor up to
//! six digits).
//!
//! Segments that begin with an underscore are *system segments*: the parser
//! uses them for identifiers it generates (`dtmi:ex:pump:_contents:__speed;1`)
//! and a model author may not write them.

/// Why a string is not an acceptable DTMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmiError {
    /// Not of DTMI syntax at all.
    Syntax,
    /// Valid syntax only with system segments, which authors may not use.
    SystemSegment,
}

/// The DTDL language versions the engine understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V2 = 2,
    V3 = 3,
}

impl Version {
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// Checks `s` against the DTMI grammar of `version`.
///
/// `allow_system` admits system segments (identifiers the parser generates).
pub fn check(s: &str, version: Version, allow_system: bool) -> Result<(), DtmiError> {
    let rest = s.strip_prefix("dtmi:").ok_or(DtmiError::Syntax)?;
    let (path, ver) = match rest.split_once(';') {
        Some((p, v)) => (p, Some(v)),
        None => (rest, None),
    };
    match (ver, version) {
        (None, Version::V2) => return Err(DtmiError::Syntax),
        (None, Version::V3) => {}
        (Some(v), Version::V2) => {
            if !version_number(v, 9) {
                return Err(DtmiError::Syntax);
            }
        }
        (Some(v), Version::V3) => {
            let ok = match v.split_once('.') {
                Some((major, minor)) => version_number(major, 9) && version_number(minor, 6),
                None => version_number(v, 9),
            };
            if !ok {
                return Err(DtmiError::Syntax);
            }
        }
    }
    if path.is_empty() {
        return Err(DtmiError::Syntax);
    }
    let mut system = false;
    for segment in path.split(':') {
        match segment_kind(segment) {
            Some(Segment::User) => {}
            Some(Segment::System) => system = true,
            None => return Err(DtmiError::Syntax),
        }
    }
    if system && !allow_system {
        return Err(DtmiError::SystemSegment);
    }
    Ok(())
}

/// True if `s` is a DTMI in any supported version (used to classify strings).
pub fn is_dtmi_any(s: &str) -> bool {
    check(s, Version::V3, true).is_ok()
}

enum Segment {
    User,
    System,
}

fn segment_kind(seg: &str) -> Option<Segment> {
    let bytes = seg.as_bytes();
    let (&first, _) = bytes.split_first()?;
    let &last = bytes.last()?;
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        || last == b'_'
    {
        return None;
    }
    if first == b'_' {
        Some(Segment::System)
    } else if first.is_ascii_alphabetic() {
        Some(Segment::User)
    } else {
        None
    }
}

fn version_number(s: &str, max_digits: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= max_digits && b[0] != b'0' && b.iter().all(u8::is_ascii_digit)
}

/// Splits a DTMI into its path (`dtmi:a:b`) and version suffix (`;1`, possibly empty).
pub fn split_version(s: &str) -> (&str, &str) {
    match s.find(';') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// The DTMI path a device model repository stores it under:
/// `dtmi:com:example:Thermostat;1` → `dtmi/com/example/thermostat-1.json`.
pub fn repository_path(s: &str) -> String {
    let mut out = s.to_ascii_lowercase().replace(':', "/").replace(';', "-");
    out.push_str(".json");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_requires_a_single_part_version() {
        assert!(check("dtmi:foo:bar;1", Version::V2, false).is_ok());
        assert!(check("dtmi:foo:bar", Version::V2, false).is_err());
        assert!(check("dtmi:foo:bar;1.2", Version::V2, false).is_err());
    }

    #[test]
    fn v3_allows_missing_and_two_part_versions() {
        assert!(check("dtmi:foo:bar", Version::V3, false).is_ok());
        assert!(check("dtmi:foo:bar;1.2", Version::V3, false).is_ok());
        assert!(check("dtmi:foo:bar;1.0", Version::V3, false).is_err());
        assert!(check("dtmi:foo:bar;1.1234567", Version::V3, false).is_err());
    }

    #[test]
    fn rejects_bad_versions_and_segments() {
        for bad in [
            "dtmi:foo:bar;0",
            "dtmi:foo:bar;01",
            "dtmi:foo:bar;1234567890",
            "dtmi:foo:bar;",
            "dtmi:test:invalidId_;1",
            "dtmi:test:1seg;1",
            "dtmi:foo:bar.baz;1",
            "dtmi:foo::bar;1",
            "dtmi:;1",
            "urn:foo:bar:1",
        ] {
            assert_eq!(
                check(bad, Version::V3, false),
                Err(DtmiError::Syntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn system_segments_are_for_generated_ids_only() {
        let generated = "dtmi:ex:pump:_contents:__speed;1";
        assert_eq!(check(generated, Version::V2, true), Ok(()));
        assert_eq!(
            check(generated, Version::V2, false),
            Err(DtmiError::SystemSegment)
        );
    }

    #[test]
    fn repository_path_follows_the_dmr_convention() {
        assert_eq!(
            repository_path("dtmi:com:example:Thermostat;1"),
            "dtmi/com/example/thermostat-1.json"
        );
    }
}

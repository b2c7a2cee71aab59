//! Twin and relationship identifiers: user-chosen strings, non-empty, at
//! most 256 characters, without control characters.

use super::error::TwinError;

/// Longest identifier accepted, in characters.
pub const MAX_LEN: usize = 256;

pub fn check(id: &str) -> Result<(), TwinError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.chars().count() > MAX_LEN {
        "it is longer than 256 characters"
    } else if id.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(TwinError::InvalidId {
        id: id.chars().take(64).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_short_and_printable() {
        assert!(check("pump-17").is_ok());
        assert!(check("Halle 3 / Linie 2 / Pumpe 7").is_ok());
        assert!(check("").is_err());
        assert!(check(&"x".repeat(257)).is_err());
        assert!(check("a\nb").is_err());
    }
}

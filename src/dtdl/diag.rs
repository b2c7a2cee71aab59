//! Diagnostics: what is wrong with a model, where, and under which rule.
//!
//! Every diagnostic names the source file, the JSON path inside it, the DTMI
//! of the element concerned (when known), a stable rule code and a one-line
//! message. Codes are part of the CLI contract: tools branch on them, so a
//! code, once published, keeps its meaning.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Stable rule codes. Grouped by area; each is `snake_case`.
pub mod code {
    pub const JSON_SYNTAX: &str = "json_syntax";
    pub const JSON_DUPLICATE_MEMBER: &str = "json_duplicate_member";
    pub const ROOT_NOT_OBJECT_OR_ARRAY: &str = "root_not_object_or_array";
    pub const CONTEXT_MISSING: &str = "context_missing";
    pub const CONTEXT_INVALID: &str = "context_invalid";
    pub const CONTEXT_UNDEFINED_EXTENSION: &str = "context_undefined_extension";
    pub const KEYWORD_INVALID: &str = "keyword_invalid";
    pub const ID_INVALID: &str = "id_invalid";
    pub const ID_TOO_LONG: &str = "id_too_long";
    pub const ID_RESERVED: &str = "id_reserved";
    pub const ID_MISSING: &str = "id_missing";
    pub const ID_DUPLICATE: &str = "id_duplicate";
    pub const TYPE_MISSING: &str = "type_missing";
    pub const TYPE_INVALID: &str = "type_invalid";
    pub const TYPE_NOT_ALLOWED: &str = "type_not_allowed";
    pub const COTYPE_INVALID: &str = "cotype_invalid";
    pub const PROPERTY_UNKNOWN: &str = "property_unknown";
    pub const PROPERTY_DUPLICATE: &str = "property_duplicate";
    pub const PROPERTY_REQUIRED: &str = "property_required";
    pub const PROPERTY_COUNT: &str = "property_count";
    pub const VALUE_TYPE: &str = "value_type";
    pub const VALUE_TOO_LONG: &str = "value_too_long";
    pub const VALUE_PATTERN: &str = "value_pattern";
    pub const VALUE_RANGE: &str = "value_range";
    pub const VALUE_NOT_ALLOWED: &str = "value_not_allowed";
    pub const LITERAL_INVALID: &str = "literal_invalid";
    pub const LANGSTRING_INVALID: &str = "langstring_invalid";
    pub const REFERENCE_INVALID: &str = "reference_invalid";
    pub const REFERENCE_UNRESOLVED: &str = "reference_unresolved";
    pub const REFERENCE_WRONG_CLASS: &str = "reference_wrong_class";
    pub const REFERENCE_NOT_SHAREABLE: &str = "reference_not_shareable";
    pub const REFERENCE_VERSION: &str = "reference_version";
    pub const NAME_DUPLICATE: &str = "name_duplicate";
    pub const ENUM_VALUE_DUPLICATE: &str = "enum_value_duplicate";
    pub const ENUM_VALUE_SCHEMA: &str = "enum_value_schema";
    pub const EXTENDS_CYCLE: &str = "extends_cycle";
    pub const EXTENDS_TOO_DEEP: &str = "extends_too_deep";
    pub const EXTENDS_TOO_MANY: &str = "extends_too_many";
    pub const SCHEMA_CYCLE: &str = "schema_cycle";
    pub const SCHEMA_TOO_DEEP: &str = "schema_too_deep";
    pub const SCHEMA_NOT_ALLOWED: &str = "schema_not_allowed";
    pub const COMPONENT_NESTED: &str = "component_nested";
    pub const CONTENTS_TOO_MANY: &str = "contents_too_many";
    pub const UNIT_NOT_ALLOWED: &str = "unit_not_allowed";
    pub const COTYPE_PROPERTY: &str = "cotype_property";
    pub const ANNOTATION_TARGET: &str = "annotation_target";
    pub const OVERRIDE_TARGET: &str = "override_target";
    pub const INDEX_DUPLICATE: &str = "index_duplicate";
    pub const IO: &str = "io";
}

/// One finding about a model set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable rule code from [`code`].
    pub code: &'static str,
    /// The source document, as given (a file path, or a label for in-memory text).
    pub file: Arc<str>,
    /// JSON path of the offending value inside the document, e.g. `$[0].contents[2].schema`.
    pub path: String,
    /// DTMI of the element concerned, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmi: Option<String>,
    /// One line a person can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: [{}]", self.file, self.path, self.code)?;
        if let Some(id) = &self.dtmi {
            write!(f, " {id}:")?;
        }
        write!(f, " {}", self.message)
    }
}

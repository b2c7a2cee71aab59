//! `@context`: which DTDL version and which extensions are in force.
//!
//! The DTDL context must come before extensions (the IoT Central context,
//! which implies v2, may precede it); a later DTDL context replaces an
//! earlier one; a nested context may add extensions and, where a v3 property
//! accepts v2 elements, switch its subtree to v2. Unknown extension contexts
//! are accepted or rejected per `UndefinedExtensions`.

use super::{Ctx, JPath, Parser, UndefinedExtensions};
use crate::dtdl::diag::code;
use crate::dtdl::dtmi::{self, Version};
use crate::dtdl::json::Value;
use crate::dtdl::vocab::ContextId;

impl Parser {
    /// Processes an `@context` value. `outer` is the context in force around
    /// a nested `@context` (`None` for a top-level one); `may_switch` says
    /// whether a nested context may change the DTDL version (v3 properties
    /// that accept v2 elements).
    pub(super) fn context(
        &mut self,
        value: &Value,
        outer: Option<&Ctx>,
        may_switch: bool,
        path: &JPath<'_>,
    ) -> Option<Ctx> {
        let entries: Vec<(&Value, JPath<'_>)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (v, path.index(i)))
                .collect(),
            v => vec![(v, *path)],
        };
        let mut ctx = outer.cloned();
        let mut ok = true;
        let mut core_seen: Option<Version> = None;
        let mut extension_seen = false;
        for (entry, epath) in &entries {
            let Some(s) = entry.as_str() else {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!(
                        "an @context entry must be a string (a context DTMI), found {}",
                        entry.kind()
                    ),
                );
                ok = false;
                continue;
            };
            let known = ContextId::from_dtmi(s);
            if let Some(core) = known.filter(|k| !k.is_extension()) {
                // A later DTDL context replaces an earlier one (JSON-LD
                // semantics); it must still precede every extension.
                let version = core.version();
                if extension_seen && core_seen.is_some_and(|v| v != version) {
                    self.err(
                        code::CONTEXT_INVALID,
                        epath,
                        None,
                        format!("the DTDL context \"{s}\" must come before any extension context"),
                    );
                    ok = false;
                    continue;
                }
                core_seen = Some(version);
                match &ctx {
                    Some(c) if c.version == version => {}
                    Some(c) if outer.is_some() && !may_switch => {
                        self.err(
                            code::CONTEXT_INVALID,
                            epath,
                            None,
                            format!(
                                "a DTDL v{} element cannot be defined here, inside DTDL v{}",
                                version.number(),
                                c.version.number()
                            ),
                        );
                        ok = false;
                    }
                    _ => {
                        let mut contexts = vec![core];
                        // Affiliate contexts given before the DTDL context (IoT Central) stay.
                        if let Some(c) = &ctx {
                            contexts.extend(
                                c.contexts
                                    .iter()
                                    .copied()
                                    .filter(|x| x.version() == version && x.is_extension()),
                            );
                        }
                        ctx = Some(Ctx {
                            version,
                            contexts,
                            undefined_ext: false,
                        });
                    }
                }
                continue;
            }
            if known == Some(ContextId::IotCentral2) && ctx.is_none() {
                // The IoT Central context implies DTDL v2 and may precede the DTDL context.
                ctx = Some(Ctx {
                    version: Version::V2,
                    contexts: vec![ContextId::CoreV2, ContextId::IotCentral2],
                    undefined_ext: false,
                });
                continue;
            }
            extension_seen = true;
            let Some(c) = ctx.as_mut() else {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("the DTDL context must come first in @context, before \"{s}\""),
                );
                ok = false;
                continue;
            };
            if let Some(ext) = known {
                if ext.version() != c.version {
                    self.err(
                        code::CONTEXT_INVALID,
                        epath,
                        None,
                        format!("\"{s}\" is not available in DTDL v{}", c.version.number()),
                    );
                    ok = false;
                } else if !c.contexts.contains(&ext) {
                    c.contexts.push(ext);
                }
                continue;
            }
            // Not a known context: it must be a DTMI with a version.
            let versioned = dtmi::check(s, Version::V2, false).is_ok()
                || (s.contains(';') && dtmi::check(s, Version::V3, false).is_ok());
            if !versioned {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("@context entry \"{s}\" is not a DTMI with a version"),
                );
                ok = false;
                continue;
            }
            if s.starts_with("dtmi:dtdl:context;") {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("\"{s}\" is not a DTDL version this engine supports (2 or 3)"),
                );
                ok = false;
                continue;
            }
            let allowed = match self.undefined {
                UndefinedExtensions::Allow => true,
                UndefinedExtensions::Deny => false,
                UndefinedExtensions::VersionDefault => c.version == Version::V2,
            };
            if allowed {
                c.undefined_ext = true;
            } else {
                self.err(
                    code::CONTEXT_UNDEFINED_EXTENSION,
                    epath,
                    None,
                    format!("\"{s}\" is not a known DTDL extension; allow undefined extensions to accept it"),
                );
                ok = false;
            }
        }
        if outer.is_none() && core_seen.is_none() && ok {
            self.err(
                code::CONTEXT_MISSING,
                path,
                None,
                "@context must name the DTDL version, e.g. \"dtmi:dtdl:context;3\"".to_owned(),
            );
            return None;
        }
        if ok { ctx } else { None }
    }
}

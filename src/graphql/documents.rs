//! Parsed documents by query text. Clients send the same few documents over
//! and over (a dashboard's queries, a device's report mutation), and parsing
//! is a large part of a small request's own cost: ~30 µs for the 2-hop
//! traversal query of the benchmarks, where copying the parsed document
//! takes a few. The engine takes the copy instead of parsing again.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// Documents kept at most (the least recently used leave first).
const KEPT: usize = 256;

/// Longest query text kept, in bytes (GraphiQL's introspection query and
/// typical application queries are shorter): with [`KEPT`], bounds what a
/// client sending ever new documents can make the cache hold; longer
/// documents are parsed every time.
const LONGEST: usize = 4 * 1024;

/// The cache. Parsing does not depend on the schema, so it outlives reloads.
pub(super) struct Documents(Mutex<LruCache<String, ExecutableDocument>>);

impl Default for Documents {
    fn default() -> Self {
        let kept = std::num::NonZeroUsize::new(KEPT).expect("KEPT is not zero");
        Documents(Mutex::new(LruCache::new(kept)))
    }
}

impl Documents {
    fn lock(&self) -> MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `request` its parsed document: a copy of the kept one, else
    /// parsed now (and kept). A document that does not parse is left
    /// unparsed, for the engine to report why.
    pub(super) fn parse(&self, request: &mut Request) {
        if request.query.len() > LONGEST {
            return;
        }
        let kept = self.lock().get(&request.query).cloned();
        match kept {
            Some(doc) => request.set_parsed_query(doc),
            None => {
                if let Ok(doc) = request.parsed_query() {
                    let doc = doc.clone();
                    self.lock().put(request.query.clone(), doc);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(docs: &Documents, query: &str) -> Option<String> {
        let mut r = Request::new(query);
        docs.parse(&mut r);
        r.parsed_query().ok().map(|d| format!("{d:?}"))
    }

    #[test]
    fn documents_are_kept_by_text_and_copies_equal_a_fresh_parse() {
        let docs = Documents::default();
        let q = "query($id: ID!) { twin(id: $id) { id a: model } }";
        let fresh = format!(
            "{:?}",
            async_graphql::parser::parse_query(q).expect("parses")
        );
        assert_eq!(parsed(&docs, q).as_deref(), Some(fresh.as_str()));
        assert_eq!(docs.len(), 1);
        // The second time from the cache, the same document.
        assert_eq!(parsed(&docs, q).as_deref(), Some(fresh.as_str()));
        assert_eq!(docs.len(), 1);
        assert!(parsed(&docs, "{ twins { id } }").is_some());
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn bad_and_long_documents_are_not_kept_and_the_cache_is_bounded() {
        let docs = Documents::default();
        assert_eq!(parsed(&docs, "{ twin(id: "), None);
        assert_eq!(docs.len(), 0);
        let long = format!("{{ {} }}", "__typename ".repeat(LONGEST / 10));
        assert!(long.len() > LONGEST);
        assert!(parsed(&docs, &long).is_some());
        assert_eq!(docs.len(), 0);
        for i in 0..KEPT + 10 {
            assert!(parsed(&docs, &format!("{{ a{i}: __typename }}")).is_some());
        }
        assert_eq!(docs.len(), KEPT);
    }
}

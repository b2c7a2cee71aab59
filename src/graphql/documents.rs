//! Parsed documents by query text. Clients send the same few documents over
//! and over (a dashboard's queries, a device's report mutation), and parsing
//! is a large part of a small request's own cost: the 2-hop traversal query
//! of the benchmarks takes 17 µs to parse in a tight loop (~30 µs of CPU per
//! request under load, by `perf`), its parsed document 0.4 µs to copy. The
//! engine takes the copy instead of parsing again.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// Documents kept at most (the least recently used leave first).
const KEPT: usize = 256;

/// Longest query text kept, in bytes (GraphiQL's introspection query and
/// typical application queries are shorter); longer documents are parsed
/// every time.
const LONGEST: usize = 4 * 1024;

/// Query text kept in all, in bytes. A parsed document can take ~100 times
/// the memory of its text (4 KiB of `{ a a a … }` parsed to ~430 KiB,
/// measured by RSS), so this, not [`KEPT`], bounds what a client sending
/// ever new documents can make the cache hold: ~7 MB.
const TEXT_BUDGET: usize = 64 * 1024;

/// The cache. Parsing does not depend on the schema, so it outlives reloads.
pub(super) struct Documents(Mutex<Kept>);

struct Kept {
    docs: LruCache<String, ExecutableDocument>,
    /// Bytes of query text in `docs`.
    text: usize,
}

impl Default for Documents {
    fn default() -> Self {
        let kept = std::num::NonZeroUsize::new(KEPT).expect("KEPT is not zero");
        Documents(Mutex::new(Kept {
            docs: LruCache::new(kept),
            text: 0,
        }))
    }
}

impl Kept {
    fn put(&mut self, query: String, doc: ExecutableDocument) {
        let len = query.len();
        match self.docs.push(query, doc) {
            // The same text, parsed meanwhile by another request.
            Some((old, _)) if self.docs.contains(&old) => {}
            // The least recently used, pushed out by the count bound.
            Some((old, _)) => self.text = self.text - old.len() + len,
            None => self.text += len,
        }
        while self.text > TEXT_BUDGET {
            let Some((old, _)) = self.docs.pop_lru() else {
                break;
            };
            self.text -= old.len();
        }
    }
}

impl Documents {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives `request` its parsed document: a copy of the kept one, else
    /// parsed now (and kept). A document that does not parse is left
    /// unparsed, for the engine to report why.
    pub(super) fn parse(&self, request: &mut Request) {
        if request.query.len() > LONGEST {
            return;
        }
        let kept = self.lock().docs.get(&request.query).cloned();
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
        self.lock().docs.len()
    }

    #[cfg(test)]
    fn text(&self) -> usize {
        let kept = self.lock();
        assert_eq!(
            kept.text,
            kept.docs.iter().map(|(q, _)| q.len()).sum::<usize>(),
            "the text count matches what is kept"
        );
        kept.text
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
        assert!(docs.text() < TEXT_BUDGET);
        // The same text put twice (two requests parsing it at once) counts once.
        let q = "{ twin(id: \"x\") { id } }";
        let doc = async_graphql::parser::parse_query(q).expect("parses");
        let before = docs.text();
        let pushed_out = docs.lock().docs.peek_lru().map(|(k, _)| k.len());
        docs.lock().put(q.to_owned(), doc.clone());
        docs.lock().put(q.to_owned(), doc);
        assert_eq!(docs.len(), KEPT);
        assert_eq!(docs.text(), before - pushed_out.expect("full") + q.len());
    }

    #[test]
    fn the_text_kept_stays_within_its_budget() {
        let docs = Documents::default();
        // Documents of just under the longest kept (~4 KiB each).
        let big = |i: usize| format!("{{ b{i}: {} }}", "__typename ".repeat(LONGEST / 11 - 2));
        assert!(big(0).len() <= LONGEST && big(0).len() > LONGEST - 64);
        for i in 0..40 {
            assert!(parsed(&docs, &big(i)).is_some());
            assert!(docs.text() <= TEXT_BUDGET);
        }
        assert_eq!(docs.len(), TEXT_BUDGET / big(0).len());
        // The most recent are the ones kept.
        assert!(docs.lock().docs.contains(&big(39)));
        assert!(!docs.lock().docs.contains(&big(0)));
    }
}

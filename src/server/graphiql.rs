//! GraphiQL at `/`, from assets built into the binary
//! (`assets/graphiql/`, bundled from npm packages by
//! `tools/graphiql/build.sh`): no CDN at run time, and a
//! Content-Security-Policy that names no other origin.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

const SCRIPT: &[u8] = include_bytes!("../../assets/graphiql/graphiql.js");
const STYLE: &[u8] = include_bytes!("../../assets/graphiql/graphiql.css");
const LICENSES: &str = concat!(
    include_str!("../../assets/graphiql/graphiql.js.LEGAL.txt"),
    "\n",
    include_str!("../../assets/graphiql/graphiql.css.LEGAL.txt"),
);

/// The page: the bundle's style and script, versioned by the server's
/// version so a new release is never served from a stale cache.
const PAGE: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>twingraph · GraphiQL</title>
<link rel="stylesheet" href="graphiql/graphiql.css?v="#,
    env!("CARGO_PKG_VERSION"),
    r#"">
</head>
<body style="margin: 0">
<div id="graphiql" style="height: 100vh">Loading GraphiQL…</div>
<script src="graphiql/graphiql.js?v="#,
    env!("CARGO_PKG_VERSION"),
    r#""></script>
</body>
</html>
"#
);

/// Only this origin: scripts and styles from here (GraphiQL's editor sets
/// inline styles), fetches and WebSockets to here; never framed.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The routes of the page and its assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route(
            "/graphiql/graphiql.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/graphiql/graphiql.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        // Browsers ask; there is none (and no 404 in the console).
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(
            "/graphiql/licenses.txt",
            get(|| asset("text/plain; charset=utf-8", LICENSES.as_bytes())),
        )
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(PAGE),
    )
}

async fn asset(kind: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

//! `/graphql` over HTTP, as the GraphQL over HTTP specification says.
//!
//! - The response's media type follows `Accept`: `application/graphql-
//!   response+json` when the client accepts it (at least as much as
//!   `application/json`), else `application/json` (also for `*/*` and a
//!   missing `Accept`); a client accepting neither gets 406.
//! - POST takes `application/json` (UTF-8): one request or a batch (a JSON
//!   array). GET takes `query`, `operationName`, `variables` and
//!   `extensions` from the query string, and never runs a mutation (405).
//! - A body that is not JSON, or not a GraphQL request, is answered 400
//!   with a GraphQL-shaped error (`BAD_REQUEST` and what is wrong); a POST
//!   without a content type, or of another one, 415.
//! - A request error (the document does not parse or validate, variables
//!   do not coerce, a limit refuses it: no execution began) has no `data`
//!   entry; with `application/graphql-response+json` it is answered 400,
//!   everything else 200 (field errors come with the data).

use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, Request as GqlRequest};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::{Gate, Refusal};
use crate::codes::Code;
use crate::graphql::{Executed, LiveSchema};

const JSON: &str = "application/json";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The media type of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    GraphqlResponse,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::Json => "application/json; charset=utf-8",
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        }
    }
}

/// The media type `Accept` asks for; `None` when it accepts neither.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let (mut json, mut gql) = (None::<f32>, None::<f32>);
    for part in accept.split(',') {
        let mut params = part.split(';');
        let ty = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let best = |slot: &mut Option<f32>| *slot = Some(slot.map_or(q, |s| s.max(q)));
        match ty.as_str() {
            GRAPHQL_RESPONSE => best(&mut gql),
            JSON | "application/*" | "*/*" => best(&mut json),
            _ => {}
        }
    }
    match (gql.filter(|q| *q > 0.0), json.filter(|q| *q > 0.0)) {
        (Some(g), Some(j)) if g >= j => Some(Media::GraphqlResponse),
        (Some(_), None) => Some(Media::GraphqlResponse),
        (_, Some(_)) => Some(Media::Json),
        (None, None) => None,
    }
}

/// A request refused before it reached the schema: its code (and so its
/// HTTP status) and a message a person can act on.
struct Refused {
    code: Code,
    message: String,
}

impl Refused {
    fn new(code: Code, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }

    fn respond(self, media: Media) -> Response {
        let mut resp = super::refused(self.code, &self.message);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(media.content_type()),
        );
        if self.code == Code::MutationOverGet {
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        }
        resp
    }
}

/// What a request's operations came to.
enum Results {
    One(Box<Executed>),
    Many(Vec<Executed>),
}
use Results::{Many, One};

/// `/graphql` (GET and POST, one request or a batch): the caller is
/// admitted, charged one request per operation, and its access goes with
/// every operation.
pub(super) async fn graphql_http(schema: LiveSchema, gate: Gate, req: Request) -> Response {
    let Some(media) = negotiate(req.headers()) else {
        return Refused::new(
            Code::NotAcceptable,
            format!("the response is {JSON} or {GRAPHQL_RESPONSE}; accept one of them"),
        )
        .respond(Media::Json);
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let access = match gate.admit(authorization.as_deref()) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let get = req.method() == Method::GET;
    let batch = match read(req).await {
        Ok(b) => b,
        Err(r) => return r.respond(media),
    };
    let n = batch.iter().count();
    if n > gate.max_operations {
        return Refusal::Limit(format!(
            "a request may carry at most {} operations ({n} given)",
            gate.max_operations
        ))
        .into_response();
    }
    if get && batch.iter().any(is_mutation) {
        return Refused::new(
            Code::MutationOverGet,
            "mutations are sent with POST, never GET",
        )
        .respond(media);
    }
    if let Err(r) = gate.charge(access.as_ref(), n) {
        return r.into_response();
    }
    let batch = match access {
        Some(a) => batch.data(a),
        None => batch,
    };
    let results = match batch {
        BatchRequest::Single(r) => One(Box::new(schema.run(r).await)),
        BatchRequest::Batch(rs) => {
            Many(futures_util::future::join_all(rs.into_iter().map(|r| schema.run(r))).await)
        }
    };
    respond(media, results)
}

/// The GraphQL request(s) of an HTTP request.
async fn read(req: Request) -> Result<BatchRequest, Refused> {
    if req.method() == Method::GET {
        let query = req.uri().query().unwrap_or_default();
        let parsed = async_graphql::http::parse_query_string(query).map_err(|e| {
            Refused::new(
                Code::InvalidRequest,
                format!("the query string is not a GraphQL request: {e}"),
            )
        })?;
        if parsed.query.is_empty() {
            return Err(Refused::new(
                Code::InvalidRequest,
                "a GraphQL request needs a `query` parameter (the document)",
            ));
        }
        return Ok(BatchRequest::Single(parsed));
    }
    check_content_type(req.headers())?;
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Refused::new(
                    Code::BodyTooLarge,
                    "the request body is larger than the server takes (max_body_bytes)",
                )
            } else {
                Refused::new(
                    Code::InvalidRequest,
                    format!("the request body could not be read: {e}"),
                )
            }
        })?;
    parse_body(&body)
}

/// POST bodies must say they are JSON (in UTF-8, the only charset taken).
fn check_content_type(headers: &HeaderMap) -> Result<(), Refused> {
    let unsupported = |what: String| {
        Err(Refused::new(
            Code::UnsupportedMediaType,
            format!("{what}; send the request as Content-Type: {JSON}"),
        ))
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return unsupported("the request has no Content-Type".to_owned());
    };
    let value = value.to_str().unwrap_or_default();
    let mut params = value.split(';');
    let ty = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ty != JSON {
        return unsupported(format!("Content-Type {value:?} is not taken"));
    }
    for p in params {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
            && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return unsupported(format!("charset {} is not taken (UTF-8 only)", v.trim()));
        }
    }
    Ok(())
}

/// One request or a batch from a JSON body. A well-formed body is read
/// straight into requests; anything else is read again as plain JSON to
/// say what is wrong with it.
fn parse_body(body: &[u8]) -> Result<BatchRequest, Refused> {
    let batch = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Vec<GqlRequest>>(body)
            .ok()
            .filter(|rs| !rs.is_empty())
            .map(BatchRequest::Batch),
        _ => serde_json::from_slice::<GqlRequest>(body)
            .ok()
            .map(BatchRequest::Single),
    };
    match batch {
        // A missing `query` reads as empty: the diagnosis says which.
        Some(b) if b.iter().all(|r| !r.query.is_empty()) => Ok(b),
        _ => diagnose(body),
    }
}

/// A body that is not a well-formed request (or batch): each request is
/// checked for the shape of a GraphQL request, to say what is wrong.
fn diagnose(body: &[u8]) -> Result<BatchRequest, Refused> {
    let bad = |m: String| Refused::new(Code::InvalidRequest, m);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not JSON: {e}")))?;
    let one = |v: Value, at: &str| -> Result<GqlRequest, Refused> {
        let Value::Object(m) = &v else {
            return Err(bad(format!(
                "{at}a GraphQL request is a JSON object with `query`, and optionally `operationName`, `variables` and `extensions`"
            )));
        };
        match m.get("query") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(bad(format!("{at}`query` must be a string (the document)"))),
            None => {
                return Err(bad(format!(
                    "{at}a GraphQL request needs `query` (the document)"
                )));
            }
        }
        for (key, what) in [
            ("operationName", "a string"),
            ("variables", "an object"),
            ("extensions", "an object"),
        ] {
            let fits = match m.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(_)) => key == "operationName",
                Some(Value::Object(_)) => key != "operationName",
                Some(_) => false,
            };
            if !fits {
                return Err(bad(format!("{at}`{key}` must be {what} or null")));
            }
        }
        serde_json::from_value(v).map_err(|e| bad(format!("{at}not a GraphQL request: {e}")))
    };
    match value {
        Value::Array(items) if items.is_empty() => Err(bad(
            "the batch is empty: send a request, or an array of them".to_owned(),
        )),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| one(v, &format!("request {i}: ")))
            .collect::<Result<Vec<_>, _>>()
            .map(BatchRequest::Batch),
        v => one(v, "").map(BatchRequest::Single),
    }
}

/// Whether the request runs a mutation (by the operation it names, or its
/// only one). A document that does not parse runs nothing.
fn is_mutation(request: &GqlRequest) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let op = match &request.operation_name {
        Some(name) => doc
            .operations
            .iter()
            .find(|(n, _)| n.is_some_and(|n| n == name)),
        None => doc.operations.iter().next(),
    };
    op.is_some_and(|(_, o)| o.node.ty == OperationType::Mutation)
}

/// A result as the client reads it: without the `data` entry after a
/// request error.
struct AsSent<'a>(&'a Executed);

impl serde::Serialize for AsSent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = &self.0.response;
        let mut m = s.serialize_map(None)?;
        if !self.0.request_error {
            m.serialize_entry("data", &r.data)?;
        }
        if !r.errors.is_empty() {
            m.serialize_entry("errors", &r.errors)?;
        }
        if !r.extensions.is_empty() {
            m.serialize_entry("extensions", &r.extensions)?;
        }
        m.end()
    }
}

fn respond(media: Media, results: Results) -> Response {
    let encoded = match &results {
        One(r) => serde_json::to_vec(&AsSent(r)),
        Many(rs) => serde_json::to_vec(&rs.iter().map(AsSent).collect::<Vec<_>>()),
    };
    let (status, headers) = match &results {
        One(r) => {
            let status = if media == Media::GraphqlResponse && r.request_error {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            (status, r.response.http_headers.clone())
        }
        Many(rs) => (
            StatusCode::OK,
            rs.iter().fold(HeaderMap::new(), |mut acc, r| {
                acc.extend(r.response.http_headers.clone());
                acc
            }),
        ),
    };
    let body = match encoded {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "a GraphQL response could not be encoded");
            return Refused::new(Code::Internal, "the response could not be encoded")
                .respond(media);
        }
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(media.content_type()),
    );
    resp.headers_mut().extend(headers);
    resp
}

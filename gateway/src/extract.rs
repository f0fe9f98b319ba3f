//! Extractors whose failures are [`ApiError`]s, so a bad request is always answered in
//! problem+json with the field at fault:
//!
//! - [`Json`]: a JSON body (request DTOs use `#[serde(deny_unknown_fields)]`); malformed JSON,
//!   unknown or missing fields and wrong types are 400 `invalid_body` with the field's path
//!   (e.g. `mentions[3].published_at`); an oversized body is 413 `payload_too_large`.
//!   `Option<Json<T>>` takes an optional body: none at all is `None`.
//! - [`JsonOrYaml`]: the same, or YAML for documents people write by hand (workflow
//!   definitions); malformed YAML is 400 `invalid_body` too.
//! - [`PathId`]: a typed id from the path; 400 `invalid_id`.
//! - [`ReadQuery`]: query parameters, plus the `min_position` every query accepts; 400
//!   `invalid_query`.
//! - [`CommandMeta`]: `Idempotency-Key` and `X-Correlation-Id`; 400 `invalid_header`.

use std::str::FromStr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use http_body_util::BodyExt as _;
use plasma_domain::ids::{CommandId, CorrelationId, IdError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The name of the query parameter every read endpoint accepts.
pub const MIN_POSITION: &str = "min_position";
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub const CORRELATION_ID: &str = "X-Correlation-Id";

/// A JSON request body, deserialized strictly.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state.body_limit()).await?;
        parse_json(&bytes).map(Json)
    }
}

/// `Option<Json<T>>`: for commands whose body is optional (e.g. approving a draft, where the
/// approver defaults to the caller). No body — nothing at all, only whitespace, or JSON
/// `null` (what the document's nullable body allows) — is `None`,
/// with or without a JSON content type; a body that is there must be declared as JSON and is
/// parsed as strictly as [`Json`].
impl<T: DeserializeOwned> OptionalFromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        let declared_json = is_json(request.headers());
        let bytes = read_body(request, state.body_limit()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if !declared_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        if bytes.trim_ascii() == b"null" {
            return Ok(None);
        }
        parse_json(&bytes).map(|value| Some(Json(value)))
    }
}

/// A body in JSON or YAML (`application/yaml`, also `application/x-yaml` and `text/yaml`),
/// deserialized strictly. YAML is read into a JSON value first, so both forms meet the same
/// rules and name the same field paths; aliases are expanded within the parser's limits, so an
/// alias bomb is refused rather than expanded.
#[derive(Debug, Clone)]
pub struct JsonOrYaml<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonOrYaml<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let yaml = is_yaml(request.headers());
        if !yaml && !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(request, state.body_limit()).await?;
        if !yaml {
            return parse_json(&bytes).map(JsonOrYaml);
        }
        parse_yaml(&bytes).map(JsonOrYaml)
    }
}

/// Deserializes a JSON value as `T`, strictly, naming the offending field's path on failure.
pub fn from_value<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    integral_floats_to_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(body_error)
}

/// Deserializes YAML `bytes` as `T` by way of a JSON value.
pub fn parse_yaml<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |message: String| ApiError::InvalidBody {
        field: None,
        message: format!("malformed YAML: {message}"),
    };
    let text = std::str::from_utf8(bytes).map_err(|err| malformed(err.to_string()))?;
    let value: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|err| malformed(err.to_string()))?;
    from_value(value)
}

/// The whole body, refused with 413 `payload_too_large` past `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request.into_body();
    if let Some(declared) = declared.filter(|len| *len > limit as u64) {
        // Refuse before reading; read a modest excess anyway so the client, still
        // sending, gets to see the answer.
        if declared <= (limit as u64).saturating_mul(2) {
            drain(body, limit).await;
        }
        return Err(ApiError::PayloadTooLarge { limit });
    }
    read_limited(body, limit).await
}

/// How long a refused body is read on before the 413 goes out regardless.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The whole body, or 413 `payload_too_large` once it passes `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ApiError::InvalidBody {
            field: None,
            message: format!("the body could not be read: {err}"),
        })?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                drain(body, limit).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

/// Reads and discards up to `max` more bytes (for at most [`DRAIN_TIME`]). A client that sends
/// its whole body before reading the answer, as most do, then sees the 413 instead of a
/// connection reset; a larger body is cut off by closing the connection.
async fn drain(mut body: Body, max: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0;
        while read <= max {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
}

/// The body's media type, lowercased, without parameters (`charset=…`).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next().unwrap_or_default();
    Some(essence.trim().to_ascii_lowercase())
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|essence| {
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

fn is_yaml(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_deref(),
        Some("application/yaml" | "application/x-yaml" | "text/yaml")
    )
}

/// Deserializes `bytes` as `T`, naming the offending field's path on failure.
///
/// JSON Schema counts `260.0` as an integer, so integer fields accept integral numbers written
/// with a fraction or exponent: when the direct parse trips on a float, the body is read again
/// with every integral float turned into an integer (the common case pays nothing).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut deserializer);
    match parsed {
        Ok(value) => {
            deserializer.end().map_err(|err| ApiError::InvalidBody {
                field: None,
                message: format!("malformed JSON: {err}"),
            })?;
            Ok(value)
        }
        Err(err)
            if err
                .inner()
                .to_string()
                .starts_with("invalid type: floating point") =>
        {
            let mut value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|err| ApiError::InvalidBody {
                    field: None,
                    message: format!("malformed JSON: {err}"),
                })?;
            integral_floats_to_integers(&mut value);
            serde_path_to_error::deserialize(value).map_err(body_error)
        }
        Err(err) => Err(body_error(err)),
    }
}

/// Rewrites `2.0` or `1e3` as `2` or `1000` wherever they fit an i64 or u64 exactly.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                // 2^63 and 2^64 bound the integers a float can name exactly as i64/u64.
                if float.fract() == 0.0
                    && (-9.223_372_036_854_776e18..1.844_674_407_370_955_2e19).contains(&float)
                {
                    if float < 0.0 {
                        *value = Value::from(float as i64);
                    } else {
                        *value = Value::from(float as u64);
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

fn body_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidBody {
            field: None,
            message: format!("malformed JSON: {inner}"),
        },
        Category::Data => {
            let message = inner.to_string();
            ApiError::InvalidBody {
                field: Some(field_path(&path, &message)),
                message,
            }
        }
    }
}

/// The dotted path of the field a serde message is about. For unknown and missing fields serde
/// names the field only in the message ("missing field `name`"), so it is appended to the path
/// of the object it belongs to.
fn field_path(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let path = if path == "." { "" } else { path };
    match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) if !path.ends_with(name) => format!("{path}.{name}"),
        _ if path.is_empty() => ".".to_owned(),
        _ => path.to_owned(),
    }
}

/// A typed id taken from the one path parameter of the route.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: FromStr<Err = IdError> + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|rejection| ApiError::InvalidId {
                    field: "id".to_owned(),
                    message: rejection.body_text(),
                })?;
        parse_id(&raw, "id").map(PathId)
    }
}

/// Parses a typed id from a path segment; 400 `invalid_id` naming `field`.
pub fn parse_id<T: FromStr<Err = IdError>>(raw: &str, field: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|err: IdError| ApiError::InvalidId {
        field: field.to_owned(),
        message: err.to_string(),
    })
}

/// Several path parameters (e.g. `{aggregate_type}/{id}`), as strings to parse one by one.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| ApiError::InvalidId {
                field: "path".to_owned(),
                message: rejection.body_text(),
            })
    }
}

/// The query parameters of a read endpoint, strictly deserialized into `T` (use
/// `#[serde(deny_unknown_fields)]`), and the `min_position` every read endpoint accepts.
///
/// Pass `min_position` to `state.read().after(..)`: the queries then wait for it themselves.
#[derive(Debug, Clone)]
pub struct ReadQuery<T> {
    pub params: T,
    pub min_position: Option<i64>,
}

/// For read endpoints that take no parameters besides `min_position`.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl<T, S> FromRequestParts<S> for ReadQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default())
    }
}

/// Splits `min_position` off `query` and deserializes the rest as `T`.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<ReadQuery<T>, ApiError> {
    let mut min_position = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == MIN_POSITION {
            let position = value
                .parse::<i64>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| ApiError::InvalidQuery {
                    field: Some(MIN_POSITION.to_owned()),
                    message: format!(
                        "`min_position` must be a non-negative integer, not `{}`",
                        value.chars().take(40).collect::<String>()
                    ),
                })?;
            min_position = Some(position);
        } else {
            rest.append_pair(&key, &value);
        }
    }
    let rest = rest.finish();
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(rest.as_bytes()));
    let params = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        ApiError::InvalidQuery {
            field: Some(field_path(&path, &message)),
            message: format!("invalid query: {message}"),
        }
    })?;
    Ok(ReadQuery {
        params,
        min_position,
    })
}

/// The headers every command accepts.
#[derive(Debug, Clone, Copy)]
pub struct CommandMeta {
    /// From `Idempotency-Key` when given, else a fresh UUIDv7.
    pub command_id: CommandId,
    /// Whether the client chose the command id (and so may be retrying).
    pub idempotency_key: bool,
    pub correlation_id: Option<CorrelationId>,
}

impl CommandMeta {
    /// The id for an aggregate this command creates. With an `Idempotency-Key` it is derived
    /// from the key, so a retry lands on the same aggregate (and matches the first request);
    /// without one it is a fresh UUIDv7.
    pub fn new_aggregate_id(&self) -> Uuid {
        const NAMESPACE: Uuid = Uuid::from_u128(0x8d1c_44e2_97b3_4f0a_a6d5_3e9b_0c7f_2a18);
        if self.idempotency_key {
            Uuid::new_v5(
                &NAMESPACE,
                plasma_domain::AggregateId::as_uuid(&self.command_id).as_bytes(),
            )
        } else {
            Uuid::now_v7()
        }
    }
}

impl CommandMeta {
    /// The meta of a second command the same request issues (`purpose` tells them apart): its
    /// id is derived from this one's, so a retry of the request repeats both exactly.
    pub fn derived(&self, purpose: &str) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x3b9e_57d1_0c2a_4f86_b4e3_91d7_6a05_c2f8);
        let base = plasma_domain::AggregateId::as_uuid(&self.command_id);
        Self {
            command_id: CommandId::from_uuid(Uuid::new_v5(
                &NAMESPACE,
                format!("{base}/{purpose}").as_bytes(),
            )),
            idempotency_key: self.idempotency_key,
            correlation_id: self.correlation_id.or(Some(CorrelationId::from_uuid(base))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CommandMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let key = uuid_header(&parts.headers, IDEMPOTENCY_KEY)?;
        let correlation = uuid_header(&parts.headers, CORRELATION_ID)?;
        Ok(Self {
            command_id: CommandId::from_uuid(key.unwrap_or_else(Uuid::now_v7)),
            idempotency_key: key.is_some(),
            correlation_id: correlation.map(CorrelationId::from_uuid),
        })
    }
}

fn uuid_header(headers: &HeaderMap, name: &'static str) -> Result<Option<Uuid>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidHeader {
            header: name,
            message: format!("`{name}` must be a UUID"),
        })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn field_of(json: &str) -> Option<String> {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::InvalidBody { field, .. }) => field,
            other => panic!("expected invalid_body, got {other:?}"),
        }
    }

    #[test]
    fn integral_numbers_with_a_fraction_or_exponent_fill_integer_fields() {
        let body: Body =
            parse_json(br#"{"name": "a", "inner": [{"count": 260.0}, {"count": 1e3}]}"#).unwrap();
        let counts: Vec<u32> = body.inner.iter().map(|i| i.count).collect();
        assert_eq!(counts, [260, 1000]);
        assert_eq!(
            field_of(r#"{"name": "a", "inner": [{"count": 2.5}]}"#).as_deref(),
            Some("inner[0].count")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": [{"count": 5e27}]}"#).as_deref(),
            Some("inner[0].count")
        );
    }

    #[test]
    fn yaml_bodies_meet_the_json_rules_and_bad_yaml_is_an_invalid_body() {
        let body: Body = parse_yaml(b"name: a\ninner:\n  - count: 2\n  - count: 3.0\n").unwrap();
        assert_eq!((body.name.as_str(), body.inner.len()), ("a", 2));
        let field = |yaml: &str| match parse_yaml::<Body>(yaml.as_bytes()) {
            Err(ApiError::InvalidBody { field, message }) => (field, message),
            other => panic!("expected invalid_body, got {other:?}"),
        };
        assert_eq!(
            field("name: a\ninner: [{count: x}]\n").0.as_deref(),
            Some("inner[0].count")
        );
        assert_eq!(field("name: a\nnme: 1\n").0.as_deref(), Some("nme"));
        let (none, message) = field("name: [unclosed\n");
        assert!(
            none.is_none() && message.starts_with("malformed YAML"),
            "{message}"
        );
        assert!(field("\u{0}").1.starts_with("malformed YAML"));
        // An alias bomb is refused, not expanded.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(field(&bomb).1.starts_with("malformed YAML"));
    }

    #[test]
    fn body_errors_name_the_field_path() {
        assert_eq!(field_of(r#"{}"#).as_deref(), Some("name"));
        assert_eq!(field_of(r#"{"name": 5}"#).as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "a", "nme": 1}"#).as_deref(),
            Some("nme")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": [{"count": 1}, {"count": "x"}]}"#).as_deref(),
            Some("inner[1].count")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": [{}]}"#).as_deref(),
            Some("inner[0].count")
        );
        assert_eq!(
            field_of(r#"{"name": "a", "inner": [{"count": 1, "extra": 2}]}"#).as_deref(),
            Some("inner[0].extra")
        );
        assert_eq!(field_of(r#"{"name": "#), None);
        assert_eq!(field_of(r#"{"name": "a"} trailing"#), None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        limit: Option<u32>,
    }

    #[test]
    fn queries_split_off_min_position_and_name_bad_parameters() {
        let query = parse_query::<Params>("limit=5&min_position=42").unwrap();
        assert_eq!(query.params.limit, Some(5));
        assert_eq!(query.min_position, Some(42));
        match parse_query::<Params>("limit=lots") {
            Err(ApiError::InvalidQuery { field, .. }) => {
                assert_eq!(field.as_deref(), Some("limit"))
            }
            other => panic!("{other:?}"),
        }
        match parse_query::<Params>("limt=5") {
            Err(ApiError::InvalidQuery { field, .. }) => assert_eq!(field.as_deref(), Some("limt")),
            other => panic!("{other:?}"),
        }
        assert!(parse_query::<Params>("min_position=-1").is_err());
    }
}

//! Reading the read models: tenant-scoped queries the HTTP layer serves. Each read model's
//! module (`models/*`) owns its views and its queries; this module holds what they share: the
//! [`ReadModels`] handle, read-your-writes waiting, paging and column decoding.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::read_store::on_pool;
use crate::{ProjectionError, ReadStore};

/// A page request: at most `limit` items after the `after` cursor.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

/// Where a page starts: the sort instant (micros) and id of the previous page's last item.
/// Clients see it as an opaque string; it is parsed at the edge, before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    micros: i64,
    id: Uuid,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, ProjectionError> {
        raw.split_once('.')
            .and_then(|(us, id)| {
                Some(Self {
                    micros: us.parse().ok()?,
                    id: Uuid::parse_str(id).ok()?,
                })
            })
            .ok_or_else(|| ProjectionError::BadCursor(raw.chars().take(80).collect()))
    }

    pub(crate) fn key(self) -> (i64, Uuid) {
        (self.micros, self.id)
    }
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 500;

    pub(crate) fn limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }
}
/// One page of a keyset-paginated listing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Tenant-scoped queries over every read model. A cheap handle.
#[derive(Debug, Clone)]
pub struct ReadModels {
    pub(crate) store: ReadStore,
    /// The event store, to tell a `min_position` not written yet (answered at once) from one
    /// written but not yet applied (waited for).
    events: Option<plasma_commands::EventStore>,
    wait: Duration,
    /// Set by [`ReadModels::after`]: the position to wait for, and until when.
    min_position: Option<(i64, Instant)>,
    /// Tenants' graph snapshots, shared by every clone of this handle.
    pub(crate) graph_cache: std::sync::Arc<crate::models::graph::GraphCache>,
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

pub(crate) fn json_list(raw: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// Strictly decoded JSON from a TEXT column.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(raw).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

/// A wire name read back from a column, parsed with the enum's own `parse`.
pub(crate) fn parsed<T>(
    raw: &str,
    parse: fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, sqlx::Error> {
    parse(raw).ok_or_else(|| {
        sqlx::Error::Decode(
            format!(
                "unknown {what} `{}`",
                raw.chars().take(80).collect::<String>()
            )
            .into(),
        )
    })
}

pub(crate) fn index(value: i64) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

pub(crate) fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl ReadModels {
    /// How long a query with a `min_position` waits for its read models by default.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);

    pub fn new(store: ReadStore) -> Self {
        Self {
            store,
            events: None,
            wait: Self::DEFAULT_WAIT,
            min_position: None,
            graph_cache: Default::default(),
        }
    }

    /// The event store whose head bounds a meaningful `min_position`.
    pub fn with_event_store(mut self, events: plasma_commands::EventStore) -> Self {
        self.events = Some(events);
        self
    }

    /// How long a query with a `min_position` waits before giving up.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// These read models as a request with `min_position` sees them (read your writes): each
    /// query first waits until the read models it reads have applied that position, and fails
    /// with [`ProjectionError::NotYetConsistent`] once the configured wait has passed (one
    /// deadline for every query made through this view).
    pub fn after(&self, min_position: Option<i64>) -> Self {
        Self {
            min_position: min_position.map(|position| (position, Instant::now() + self.wait)),
            ..self.clone()
        }
    }

    pub fn store(&self) -> &ReadStore {
        &self.store
    }

    /// Waits until each of `read_models` has applied this view's `min_position`.
    pub(crate) async fn settle(&self, read_models: &[&str]) -> Result<(), ProjectionError> {
        let Some((position, deadline)) = self.min_position else {
            return Ok(());
        };
        // A position beyond the head may never be written: waiting for it would only delay
        // the answer. Checked once the read models turn out not to be there yet.
        if let Some(events) = &self.events {
            if !self.wait_for(read_models, position, Duration::ZERO).await? {
                let head = events.head().await?;
                if position > head {
                    return Err(ProjectionError::PositionNotWritten {
                        min_position: position,
                        head,
                    });
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.wait_for(read_models, position, left).await? {
            Ok(())
        } else {
            Err(ProjectionError::NotYetConsistent {
                min_position: position,
                waited: self.wait,
            })
        }
    }

    /// The position `projection` has applied up to (0 if it never ran).
    pub async fn position(&self, projection: &str) -> Result<i64, ProjectionError> {
        let position: Option<i64> = on_pool!(&self.store, |p| sqlx::query_scalar(
            "SELECT position FROM projection_checkpoints WHERE name = $1"
        )
        .bind(projection)
        .fetch_optional(p)
        .await
        .map_err(ProjectionError::db("reading a projection position"))?);
        Ok(position.unwrap_or(0))
    }

    /// Waits until every projection in `projections` has applied `position`; false on timeout.
    pub async fn wait_for(
        &self,
        projections: &[&str],
        position: i64,
        timeout: Duration,
    ) -> Result<bool, ProjectionError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut reached = true;
            for projection in projections {
                if self.position(projection).await? < position {
                    reached = false;
                    break;
                }
            }
            if reached {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A keyset cursor: the sort instant (micros) and id of the last item of a page.
pub(crate) fn cursor_for(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{}", at.timestamp_micros(), id.simple())
}

/// Cuts a page fetched with one extra row down to `limit`, and returns the cursor to the next
/// page when that extra row was there.
pub(crate) fn paginate<T>(
    items: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Option<String> {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|item| {
            let (at, id) = key(item);
            cursor_for(at, id)
        })
    } else {
        None
    }
}

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use serde::Serialize;
use sqlx::Row as _;
use uuid::Uuid;

use plasma_commands::RecordedEvent;
use plasma_domain::brand::Brand;
use plasma_domain::brand::BrandEvent;
use plasma_domain::ids::BrandId;
use plasma_domain::Context;
use plasma_domain::{AggregateId, TenantId};

use super::micros;
use crate::read_models::{from_micros, json_list, ReadModels};
use crate::read_store::on_pool;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Brands a tenant tracks, with their current keywords and competitors.
#[derive(Debug, Clone, Copy)]
pub struct BrandsProjection;

/// The read model's name: its checkpoint, its consumer group, `plasma project --read-model`.
pub const NAME: &str = "brands";

#[async_trait]
impl Projection for BrandsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Brand]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_brands"]
    }

    fn ddl(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS rm_brands{t} (
            tenant_id     TEXT    NOT NULL,
            brand_id      {uuid}  NOT NULL,
            name          TEXT    NOT NULL,
            keywords      TEXT    NOT NULL,
            competitors   TEXT    NOT NULL,
            archived      BOOLEAN NOT NULL,
            registered_at BIGINT  NOT NULL,
            version       BIGINT  NOT NULL,
            position      BIGINT  NOT NULL,
            PRIMARY KEY (tenant_id, brand_id)
        )"]
    }

    async fn apply(
        &self,
        tx: &mut ReadTx,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("rm_brands");
        for event in events.iter().filter(|e| e.aggregate_type == Brand::TYPE) {
            let tenant = event.tenant.as_str();
            let id = event.aggregate_id;
            let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
            let (sql, text) = match event.decode::<BrandEvent>()? {
                BrandEvent::BrandRegistered {
                    name,
                    keywords,
                    competitors,
                    at,
                    ..
                } => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant_id, brand_id, name, keywords, competitors, \
                         archived, registered_at, version, position) \
                         VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, $8) ON CONFLICT DO NOTHING"
                    );
                    on_tx!(tx, |c| sqlx::query(&sql)
                        .bind(tenant)
                        .bind(id)
                        .bind(name)
                        .bind(json(&keywords))
                        .bind(json(&competitors))
                        .bind(micros(at))
                        .bind(event.sequence)
                        .bind(event.position)
                        .execute(c)
                        .await
                        .map(|_| ())
                        .map_err(ProjectionError::db("projecting a brand"))?);
                    continue;
                }
                BrandEvent::BrandKeywordsChanged { keywords, .. } => {
                    ("keywords = $1", json(&keywords))
                }
                BrandEvent::BrandCompetitorsChanged { competitors, .. } => {
                    ("competitors = $1", json(&competitors))
                }
                BrandEvent::BrandArchived { .. } => ("archived = ($1 = 'true')", "true".to_owned()),
                // Alert rules are read from the brand itself; the row only follows its version.
                BrandEvent::BrandAlertRulesChanged { .. } => ("name = name || $1", String::new()),
            };
            let sql = format!(
                "UPDATE {table} SET {sql}, version = $2, position = $3 \
                 WHERE tenant_id = $4 AND brand_id = $5"
            );
            on_tx!(tx, |c| sqlx::query(&sql)
                .bind(&text)
                .bind(event.sequence)
                .bind(event.position)
                .bind(tenant)
                .bind(id)
                .execute(c)
                .await
                .map(|_| ())
                .map_err(ProjectionError::db("projecting a brand change"))?);
        }
        Ok(())
    }
}

// Queries.

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrandView {
    pub brand_id: Uuid,
    pub name: String,
    pub keywords: Vec<String>,
    pub competitors: Vec<String>,
    pub archived: bool,
    pub registered_at: DateTime<Utc>,
    pub version: i64,
}

impl ReadModels {
    pub async fn brands(&self, tenant: &TenantId) -> Result<Vec<BrandView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        self.brands_where(tenant, None).await
    }

    pub async fn brand(
        &self,
        tenant: &TenantId,
        brand: BrandId,
    ) -> Result<Option<BrandView>, ProjectionError> {
        self.settle(&[NAME]).await?;
        Ok(self
            .brands_where(tenant, Some(brand))
            .await?
            .into_iter()
            .next())
    }

    async fn brands_where(
        &self,
        tenant: &TenantId,
        brand: Option<BrandId>,
    ) -> Result<Vec<BrandView>, ProjectionError> {
        let filter = if brand.is_some() {
            " AND brand_id = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT brand_id, name, keywords, competitors, archived, registered_at, version \
             FROM rm_brands WHERE tenant_id = $1{filter} ORDER BY name, brand_id"
        );
        let brand = brand.map(|b| b.as_uuid());
        on_pool!(&self.store, |p| {
            let mut query = sqlx::query(&sql).bind(tenant.as_str());
            if let Some(brand) = brand {
                query = query.bind(brand);
            }
            let rows = query
                .fetch_all(p)
                .await
                .map_err(ProjectionError::db("querying brands"))?;
            rows.iter()
                .map(|r| {
                    let keywords: String = r.try_get("keywords")?;
                    let competitors: String = r.try_get("competitors")?;
                    Ok(BrandView {
                        brand_id: r.try_get("brand_id")?,
                        name: r.try_get("name")?,
                        keywords: json_list(&keywords),
                        competitors: json_list(&competitors),
                        archived: r.try_get("archived")?,
                        registered_at: from_micros(r.try_get("registered_at")?),
                        version: r.try_get("version")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(ProjectionError::db("decoding brands"))
        })
    }
}

use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use plasma_commands::RecordedEvent;
use plasma_domain::brand::Brand;
use plasma_domain::brand::BrandEvent;
use plasma_domain::Context;

use super::micros;
use crate::read_store::on_tx;
use crate::{Projection, ProjectionError, ReadTx, Tables};

/// Brands a tenant tracks, with their current keywords and competitors.
#[derive(Debug, Clone, Copy)]
pub struct BrandsProjection;

#[async_trait]
impl Projection for BrandsProjection {
    fn name(&self) -> &'static str {
        "brands"
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

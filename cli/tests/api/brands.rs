//! The brand endpoints' happy paths.

use serde_json::{json, Value};

use crate::helpers::{mention, spawn_app, Backend};

async fn registering_a_brand_answers_201_with_its_location_id_version_and_position(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let response = app
        .post_json(
            "/v1/brands",
            &token,
            &json!({
                "name": "Acme",
                "keywords": ["acme", " ACME ", "rocket skates"],
                "competitors": ["Globex"],
                "voice": {"tone": "playful", "banned_words": ["cheap"]}
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["aggregate_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/v1/brands/{id}"));
    assert_eq!(body["aggregate_type"], "Brand");
    assert_eq!(body["version"], 1);
    assert_eq!(body["events_appended"], 1);
    let position = body["position"].as_i64().unwrap();

    let view: Value = app
        .get(&format!("{location}?min_position={position}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["keywords"], json!(["acme", "rocket skates"]));
    assert_eq!(view["competitors"], json!(["Globex"]));
    let list: Value = app
        .get(&format!("/v1/brands?min_position={position}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn keywords_competitors_and_archiving_change_the_brand(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    let keywords: Value = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": ["anvil"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(keywords["version"], 2);
    // The same list again changes nothing and appends nothing.
    let again: Value = app
        .put_json(
            &format!("/v1/brands/{id}/keywords"),
            &token,
            &json!({"keywords": ["anvil"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["version"], 2);
    assert_eq!(again["events_appended"], 0);
    let competitors: Value = app
        .put_json(
            &format!("/v1/brands/{id}/competitors"),
            &token,
            &json!({"competitors": ["Initech", "Hooli"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(competitors["version"], 3);
    let response = app
        .client
        .post(app.url(&format!("/v1/brands/{id}/archive")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let archived: Value = response.json().await.unwrap();
    let position = archived["position"].as_i64().unwrap();
    let view: Value = app
        .get(&format!("/v1/brands/{id}?min_position={position}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["keywords"], json!(["anvil"]));
    assert_eq!(view["competitors"], json!(["Initech", "Hooli"]));
    assert_eq!(view["archived"], true);
    assert_eq!(view["version"], 4);
}

async fn ingested_mentions_can_be_listed_filtered_paged_flagged_and_escalated(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin();
    let brand = app.register_brand(&token, "Acme").await;
    let id = brand["aggregate_id"].as_str().unwrap();
    let mut mentions: Vec<Value> = (0..5).map(mention).collect();
    mentions[4]["text"] = json!("Terrible, awful skates. I hate them and Globex is better.");
    mentions[4]["source"] = json!("reddit");
    mentions.push(mention(0)); // a repeat within the request
    let bulk = app.ingest(&token, id, mentions).await;
    assert_eq!(bulk["requested"], 6);
    assert_eq!(bulk["ingested"], 5);
    assert_eq!(bulk["duplicates"], 1);
    let position = bulk["last_position"].as_i64().unwrap();

    let page = |query: String| {
        let app = &app;
        let token = &token;
        async move {
            let response = app
                .get(
                    &format!("/v1/brands/{id}/mentions?min_position={position}&{query}"),
                    token,
                )
                .await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let negative = page("sentiment=negative".into()).await;
    let items = negative["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["source"], "reddit");
    assert_eq!(items[0]["competitors_mentioned"], json!(["Globex"]));
    assert_eq!(
        page("source=twitter".into()).await["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let first = page("limit=2".into()).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(format!("limit=2&after={cursor}")).await;
    let third = page(format!(
        "limit=2&after={}",
        second["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_eq!(third["items"].as_array().unwrap().len(), 1);
    assert!(third["next_cursor"].is_null());

    let mention_id = items[0]["mention_id"].as_str().unwrap();
    let flagged: Value = app
        .post_json(
            &format!("/v1/mentions/{mention_id}/flag"),
            &token,
            &json!({"reason": "competitor shill"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(flagged["aggregate_type"], "Mention");
    assert_eq!(flagged["version"], 2);
    let escalated: Value = app
        .post_json(
            &format!("/v1/mentions/{mention_id}/escalate"),
            &token,
            &json!({"reason": "angry customer"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let position = escalated["position"].as_i64().unwrap();
    let view: Value = app
        .get(
            &format!("/v1/brands/{id}/mentions?min_position={position}&sentiment=negative"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["items"][0]["flagged"], true);
    assert_eq!(view["items"][0]["escalated"], true);
}

plasma_testkit::on_both_backends!(
    registering_a_brand_answers_201_with_its_location_id_version_and_position,
    keywords_competitors_and_archiving_change_the_brand,
    ingested_mentions_can_be_listed_filtered_paged_flagged_and_escalated,
);

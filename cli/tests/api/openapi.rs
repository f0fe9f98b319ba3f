//! `/openapi.json` and `/docs`: the document describes exactly the routes the router serves, and
//! the docs page renders from assets the app itself serves.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp};

/// Every route the gateway serves besides `/openapi.json` and `/docs`. A new route goes here
/// too; the test then checks the document lists it and the router answers it.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/v1/brands"),
    ("GET", "/v1/brands"),
    ("GET", "/v1/brands/{id}"),
    ("PUT", "/v1/brands/{id}/keywords"),
    ("PUT", "/v1/brands/{id}/competitors"),
    ("POST", "/v1/brands/{id}/archive"),
    ("POST", "/v1/brands/{id}/mentions"),
    ("GET", "/v1/brands/{id}/mentions"),
    ("GET", "/v1/brands/{id}/stats"),
    ("GET", "/v1/brands/{id}/timeline"),
    ("GET", "/v1/brands/{id}/share-of-voice"),
    ("GET", "/v1/brands/{id}/authors"),
    ("GET", "/v1/brands/{id}/sources"),
    ("GET", "/v1/brands/{id}/trending"),
    ("POST", "/v1/mentions/{id}/flag"),
    ("POST", "/v1/mentions/{id}/escalate"),
    ("GET", "/v1/brands/{id}/alert-rules"),
    ("PUT", "/v1/brands/{id}/alert-rules"),
    ("GET", "/v1/alerts"),
    ("GET", "/v1/alerts/{id}"),
    ("POST", "/v1/alerts/{id}/acknowledge"),
    ("POST", "/v1/alerts/{id}/resolve"),
    ("POST", "/v1/alerts/{id}/snooze"),
    ("GET", "/v1/deliveries/{id}"),
    ("POST", "/v1/deliveries/{id}/redeliver"),
    ("POST", "/v1/drafts"),
    ("GET", "/v1/drafts"),
    ("GET", "/v1/drafts/{id}"),
    ("POST", "/v1/drafts/{id}/generated"),
    ("POST", "/v1/drafts/{id}/revisions"),
    ("POST", "/v1/drafts/{id}/voice-check"),
    ("POST", "/v1/drafts/{id}/approve"),
    ("POST", "/v1/drafts/{id}/reject"),
    ("POST", "/v1/drafts/{id}/schedule"),
    ("POST", "/v1/drafts/{id}/publish"),
    ("POST", "/v1/agent-runs"),
    ("GET", "/v1/agent-runs"),
    ("GET", "/v1/agent-runs/{id}"),
    ("POST", "/v1/agent-runs/{id}/steps/{index}/start"),
    ("POST", "/v1/agent-runs/{id}/steps/{index}/complete"),
    ("POST", "/v1/agent-runs/{id}/steps/{index}/fail"),
    ("POST", "/v1/agent-runs/{id}/checkpoints"),
    ("POST", "/v1/agent-runs/{id}/pause"),
    ("POST", "/v1/agent-runs/{id}/resume"),
    ("POST", "/v1/agent-runs/{id}/complete"),
    ("POST", "/v1/agent-runs/{id}/fail"),
    ("POST", "/v1/agent-runs/{id}/input"),
    ("POST", "/v1/agent-runs/{id}/cancel"),
    ("POST", "/v1/agent-runs/{id}/fork"),
    ("GET", "/v1/agent-runs/{id}/timeline"),
    ("GET", "/v1/agent-runs/{id}/stream"),
    ("GET", "/v1/workflows"),
    ("PUT", "/v1/workflows/{name}"),
    ("GET", "/v1/workflows/{name}"),
    ("GET", "/v1/tools"),
    ("POST", "/v1/documents"),
    ("GET", "/v1/documents"),
    ("GET", "/v1/documents/{id}"),
    ("DELETE", "/v1/documents/{id}"),
    ("POST", "/v1/documents/{id}/chunk"),
    ("POST", "/v1/documents/{id}/entities"),
    ("POST", "/v1/research/search"),
    ("POST", "/v1/research/similar"),
    ("POST", "/v1/research/answer"),
    ("GET", "/v1/research/entities"),
    ("GET", "/v1/research/entities/{id}"),
    ("GET", "/v1/research/paths"),
    ("GET", "/v1/research/communities"),
    ("GET", "/v1/research/communities/{level}/{community}"),
    ("POST", "/v1/documents/{id}/embeddings"),
    ("POST", "/v1/research/embeddings"),
    ("GET", "/v1/audit/events"),
    ("GET", "/v1/audit/{aggregate_type}/{id}/events"),
    ("GET", "/v1/audit/{aggregate_type}/{id}/state"),
    ("POST", "/v1/admin/read-models/{name}/rebuild"),
    ("GET", "/v1/admin/read-models/{name}/rebuild"),
];

async fn openapi_document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.unwrap()
}

/// `(METHOD, path)` of every operation in the document.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// Every `$ref` in `value`, wherever it is.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

async fn the_openapi_document_is_openapi_3_1_and_lists_exactly_the_routes_the_router_serves(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let document = openapi_document(&app).await;
    let version = document["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "openapi {version}");
    assert!(document["info"]["title"].is_string());
    // `plasma openapi` prints the same document without a server, but for the embedding models
    // a search may name: a server lists the ones it has loaded (none here), the offline
    // document every model the platform knows.
    let mut offline = serde_json::to_value(plasma_gateway::routes::openapi_document()).unwrap();
    let mut served = document.clone();
    for schema in ["SearchRequest", "SimilarRequest", "AnswerRequest"] {
        let model = |d: &mut Value| {
            d["components"]["schemas"][schema]["properties"]["model"]["enum"].take()
        };
        assert_eq!(model(&mut served), serde_json::json!([null]));
        assert_eq!(
            model(&mut offline),
            serde_json::json!(["all-MiniLM-L6-v2", "wordllama-l2-supercat-256", null])
        );
    }
    assert_eq!(offline, served);

    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    let documented = operations(&document);
    let missing: Vec<_> = expected.difference(&documented).collect();
    let unexpected: Vec<_> = documented.difference(&expected).collect();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    assert!(
        unexpected.is_empty(),
        "not in the checked list: {unexpected:?}"
    );

    // Every documented operation is served: with a valid token, a route the router does not
    // have answers route_not_found (or 405), anything it has answers something else.
    let token = app.admin();
    for (method, path) in &documented {
        let concrete = path
            .replace("{aggregate_type}", "Draft")
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{index}", "0");
        let request = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .bearer_auth(&token);
        let request = if method == "GET" {
            request
        } else {
            request.json(&serde_json::json!({}))
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_ne!(status, 405, "{method} {concrete}: {body}");
        assert!(
            !body.contains("\"code\":\"route_not_found\""),
            "{method} {concrete} is documented but not served: {body}"
        );
    }

    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut found = Vec::new();
    refs(&document, &mut found);
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(schemas.contains_key(name), "dangling $ref {target}");
    }
    let problem = &schemas["Problem"]["properties"];
    for key in ["type", "title", "status", "detail", "code", "field"] {
        assert!(problem.get(key).is_some(), "Problem lacks `{key}`");
    }
    let bearer = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");

    let mut operation_ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(operation_ids.insert(id), "operationId {id} is not unique");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents no success"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().unwrap();
                    let is_problem = content.contains_key("application/problem+json");
                    // /ready answers its 503 with the readiness report itself.
                    assert!(
                        is_problem || path == "/ready",
                        "{method} {path} {status} is not problem+json"
                    );
                }
            }
            if path.starts_with("/v1/") {
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{"bearer": []}]),
                    "{method} {path}"
                );
                assert!(responses.contains_key("401"), "{method} {path}");
            } else {
                assert!(operation.get("security").is_none(), "{method} {path}");
            }
        }
    }
}

/// The `src` and `href` values of `html`.
fn asset_links(html: &str) -> Vec<String> {
    let mut links = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            if let Some(end) = rest.find('"') {
                links.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    links
}

async fn the_docs_page_answers_html_whose_assets_the_app_serves_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    // `/docs` redirects to `/docs/`, so the page's relative asset links resolve under it.
    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.url().clone();
    assert_eq!(page.path(), "/docs/");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");

    let links = asset_links(&html);
    assert!(links.len() >= 3, "{links:?}");
    let mut scripts = Vec::new();
    for link in &links {
        assert!(
            !link.starts_with("http:") && !link.starts_with("https:") && !link.starts_with("//"),
            "the docs page loads {link} from elsewhere"
        );
        let url = page.join(link).unwrap();
        assert_eq!(url.host_str(), page.host_str(), "{link}");
        let response = app.client.get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{url} is empty");
        if link.ends_with(".js") {
            scripts.push((link.clone(), body));
        }
    }
    // The initializer points the UI at this app's document, and nowhere else.
    let (_, initializer) = scripts
        .iter()
        .find(|(link, _)| link.contains("swagger-initializer"))
        .unwrap_or_else(|| panic!("no swagger-initializer.js in {links:?}"));
    let initializer = String::from_utf8_lossy(initializer);
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(!initializer.contains("https://"), "{initializer}");
    assert!(!initializer.contains("http://"), "{initializer}");
}

plasma_testkit::on_both_backends!(
    the_openapi_document_is_openapi_3_1_and_lists_exactly_the_routes_the_router_serves,
    the_docs_page_answers_html_whose_assets_the_app_serves_itself,
);

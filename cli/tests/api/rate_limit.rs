//! Per-tenant rate limiting.

use plasma_gateway::Role;

use crate::helpers::{problem, spawn_app_with, Backend};

async fn a_tenant_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |settings| {
        settings.rate_limit.per_second = Some(1);
        settings.rate_limit.burst = Some(3);
    })
    .await;
    let token = app.admin();
    for _ in 0..3 {
        assert_eq!(app.get("/v1/brands", &token).await.status(), 200);
    }
    let response = app.get("/v1/brands", &token).await;
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    problem(response, 429, "rate_limited").await;

    let other = app.token("someone-else", &[Role::Viewer]);
    assert_eq!(app.get("/v1/brands", &other).await.status(), 200);
    // Operations endpoints are not rate limited.
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

plasma_testkit::on_both_backends!(
    a_tenant_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not
);

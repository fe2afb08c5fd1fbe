//! Tenant statements run on lanes (`tenancy::lanes`): a tenant with one
//! statement at a time stays on one backend, a busy one spreads over the
//! pool, and a backend that touched too many schemas is replaced, so no
//! backend keeps the catalogs of thousands of schemas.

use tessera_server::tenancy::{Lanes, SchemaName};
use tessera_tests::spawn_app;

async fn pid(lanes: &Lanes, schema: &SchemaName) -> i32 {
    lanes.get(schema).await.unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

fn schema(slug: &str) -> SchemaName {
    SchemaName::from_stored(format!("t_{slug}")).unwrap()
}

#[tokio::test]
async fn a_quiet_tenant_stays_on_one_backend_and_a_busy_one_spreads() {
    let app = spawn_app().await;
    let mut settings = app.config.database.clone();
    settings.pool_size = 4;
    let lanes = Lanes::build(&settings, &app.database_url).unwrap();
    let acme = schema("acme");
    let first = pid(&lanes, &acme).await;
    for _ in 0..20 {
        assert_eq!(pid(&lanes, &acme).await, first, "one statement at a time: always the home lane");
    }
    let held = futures::future::join_all((0..4).map(|_| lanes.get(&acme))).await;
    let mut pids = Vec::new();
    for client in &held {
        pids.push(client.as_ref().unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "four at once get four lanes");
}

#[tokio::test]
async fn a_connection_that_touched_too_many_schemas_is_replaced() {
    let app = spawn_app().await;
    let mut settings = app.config.database.clone();
    settings.pool_size = 1;
    settings.max_schemas_per_connection = 2;
    let lanes = Lanes::build(&settings, &app.database_url).unwrap();
    let first = pid(&lanes, &schema("one")).await;
    assert_eq!(pid(&lanes, &schema("two")).await, first);
    assert_eq!(pid(&lanes, &schema("one")).await, first, "a schema seen before counts once");
    assert_eq!(pid(&lanes, &schema("three")).await, first, "the third schema is served");
    let next = pid(&lanes, &schema("one")).await;
    assert_ne!(next, first, "past its most, the connection was replaced");
    assert_eq!(pid(&lanes, &schema("two")).await, next, "and the new one starts counting afresh");
}

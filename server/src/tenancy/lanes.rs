//! The connections tenant statements run on, and which tenant uses which.
//!
//! Why: every PostgreSQL backend keeps the catalog of every schema it has
//! touched (about 190 KiB a schema under load) for as long as it lives, and
//! the statements it prepared for them (bounded by `tenancy::kept`;
//! docs/performance.md sections 11 and 11b); a pool whose every connection
//! serves every tenant holds tenants × connections of them (3.3 GiB for
//! 5,000 tenants on 16 connections). Here each connection is
//! a lane of its own, and each tenant has a fixed order of preference over
//! the lanes (rendezvous hashing of its schema): a tenant with one request
//! in flight uses its home lane only; one with `n` at once may use its `n`
//! first lanes, and one whose lanes stay busy for a second takes any. So a
//! quiet tenant is known to one backend, and a busy one still gets the
//! whole pool. On top, a connection that has touched more
//! than `database.max_schemas_per_connection` schemas is replaced when it
//! next goes out, which bounds each backend whatever the spread of the load.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, PoisonError,
    },
};

use deadpool_postgres::{Object, Pool, Timeouts};
use futures::TryStreamExt;
use tokio_postgres::{
    types::{ToSql, Type},
    Row, Statement,
};

use super::{
    kept::{Choice, Kept},
    SchemaName,
};
use crate::{
    config::DatabaseConfig,
    database::{build_lane, DbError, Touched},
};

/// How long a statement waits for its tenant's lanes before it takes any:
/// a safety valve for a lane held long (a large apply), not a way around
/// queueing. At 50 ms, statements under load spilled so often that every
/// backend touched every schema (1 GiB of backends over 1,000 tenants).
const SPILL_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Slots counting each tenant's statements in flight (tenants sharing a
/// slot only widen each other's choice of lanes a little).
const DEMAND_SLOTS: usize = 4096;

#[derive(Clone)]
pub struct Lanes {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Vec<Lane>,
    demand: Vec<AtomicUsize>,
    hasher: std::hash::RandomState,
    /// The parameter types of each tenant statement (as written, with
    /// `@tenant.`), learned when it is first prepared: every tenant schema
    /// has the same tables, so they hold for every tenant's copy, and a
    /// copy can then run unnamed in one round trip.
    param_types: std::sync::Mutex<HashMap<Box<str>, Arc<[Type]>>>,
}

/// Statement texts whose parameter types are remembered: far more than the
/// node's code writes, so the map is emptied only if something builds SQL
/// texts without end.
const MOST_PARAM_TYPES: usize = 4096;

struct Lane {
    pool: Pool,
    touched: Arc<Touched>,
    kept: Arc<Kept>,
}

/// A connection of a lane, held for one tenant's statement or transaction.
pub struct LaneClient {
    object: Object,
    lane: usize,
    inner: Arc<Inner>,
    /// A tenant's statement counts towards its demand; a batch does not.
    _demand: Option<Demand>,
}

/// A tenant statement ready to run on a lane connection: sending it needs
/// no further round trip.
pub enum Ready {
    Prepared(Statement),
    Unnamed(String, Arc<[Type]>),
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl std::ops::Deref for LaneClient {
    type Target = Object;

    fn deref(&self) -> &Object {
        &self.object
    }
}

impl LaneClient {
    /// Close the connection instead of returning it (it may be mid-transaction).
    pub fn discard(self) {
        let _ = Object::take(self.object);
    }

    /// `text` (tenant statement `template` qualified with a schema), ready
    /// to run here: prepared when this connection keeps it ([`Kept`]),
    /// else unnamed.
    pub async fn ready(&self, template: &str, text: String) -> Result<Ready, tokio_postgres::Error> {
        let known = self.inner.param_types.lock().unwrap_or_else(PoisonError::into_inner).get(template).cloned();
        let hash = self.inner.hasher.hash_one(&text);
        let choice = self.inner.lanes[self.lane].kept.choose(hash, &text, known.is_none(), std::time::Instant::now());
        match (choice, known) {
            // `choose` answers unnamed only when the types are known.
            (Choice::Unnamed, Some(types)) => Ok(Ready::Unnamed(text, types)),
            (choice, known) => {
                if let Choice::Prepare { close: Some(close) } = choice {
                    // Dropping the last handle closes it in PostgreSQL.
                    self.object.statement_cache.remove(&close, &[]);
                }
                self.prepare(template, &text, known.is_none()).await
            }
        }
    }

    /// Prepare `text` on this connection (kept in its cache); learn the
    /// parameter types of `template` when they are not known yet.
    async fn prepare(&self, template: &str, text: &str, learn: bool) -> Result<Ready, tokio_postgres::Error> {
        let statement = self.object.prepare_cached(text).await?;
        if learn {
            let mut types = self.inner.param_types.lock().unwrap_or_else(PoisonError::into_inner);
            if types.len() >= MOST_PARAM_TYPES {
                types.clear();
            }
            types.insert(template.into(), statement.params().into());
        }
        Ok(Ready::Prepared(statement))
    }

    /// Run a [`Ready`] statement: its rows and the number of rows it touched.
    /// The statement is sent on the first poll.
    pub async fn run(&self, ready: &Ready, params: Params<'_>) -> Result<(Vec<Row>, u64), tokio_postgres::Error> {
        let stream = match ready {
            Ready::Prepared(statement) => self.object.query_raw(statement, params.iter().copied()).await?,
            Ready::Unnamed(text, types) => {
                let typed = params.iter().copied().zip(types.iter().cloned());
                self.object.query_typed_raw(text, typed).await?
            }
        };
        futures::pin_mut!(stream);
        let rows: Vec<Row> = (&mut stream).try_collect().await?;
        let touched = stream.rows_affected().unwrap_or(rows.len() as u64);
        Ok((rows, touched))
    }
}

/// One statement (or transaction) of a tenant in flight, while it lives.
struct Demand {
    inner: Arc<Inner>,
    slot: usize,
}

impl Drop for Demand {
    fn drop(&mut self) {
        self.inner.demand[self.slot].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Lanes {
    /// `database.pool_size` lanes of one connection each.
    pub fn build(db: &DatabaseConfig, url: &str) -> Result<Self, DbError> {
        let lanes = (0..db.pool_size.max(1))
            .map(|_| {
                let touched = Arc::new(Touched::new(db.max_schemas_per_connection));
                let kept = Arc::new(Kept::new(db.max_cached_statements));
                let forget = kept.clone();
                let pool = build_lane(db, url, touched.clone(), Box::new(move || forget.forget()))?;
                Ok(Lane { pool, touched, kept })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let demand = (0..DEMAND_SLOTS).map(|_| AtomicUsize::new(0)).collect();
        let inner = Inner { lanes, demand, hasher: std::hash::RandomState::new(), param_types: Default::default() };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Close every lane: from now on each statement fails at once.
    pub fn close(&self) {
        self.inner.lanes.iter().for_each(|lane| lane.pool.close());
    }

    pub fn len(&self) -> usize {
        self.inner.lanes.len()
    }

    /// The lanes' connections together: open, idle, callers waiting.
    pub fn status(&self) -> (usize, usize, usize) {
        self.inner.lanes.iter().map(|lane| lane.pool.status()).fold((0, 0, 0), |(s, a, w), status| {
            (s + status.size, a + status.available, w + status.waiting)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lanes.is_empty()
    }

    fn key(&self, schema: &SchemaName) -> u64 {
        let mut hasher = self.inner.hasher.build_hasher();
        schema.as_str().hash(&mut hasher);
        std::hash::Hasher::finish(&hasher)
    }

    /// The tenant's lanes, most preferred first: the first `width` of them.
    fn preferred(&self, key: u64, width: usize) -> Vec<usize> {
        let mut scored: Vec<(u64, usize)> = (0..self.len()).map(|lane| (mix(key ^ mix(lane as u64 + 1)), lane)).collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        scored.into_iter().take(width).map(|(_, lane)| lane).collect()
    }

    /// `schema`'s home lane: where its statements go when it has one in flight.
    pub fn home(&self, schema: &SchemaName) -> usize {
        self.preferred(self.key(schema), 1)[0]
    }

    /// A connection for one statement or transaction of `schema`'s tenant:
    /// a free one among its first lanes (as many as it has statements in
    /// flight, this one included), else the first of them to come free, or
    /// after [`SPILL_AFTER`] the first of all lanes to come free.
    pub async fn get(&self, schema: &SchemaName) -> Result<LaneClient, DbError> {
        let key = self.key(schema);
        let slot = (key % DEMAND_SLOTS as u64) as usize;
        let in_flight = self.inner.demand[slot].fetch_add(1, Ordering::AcqRel) + 1;
        let demand = Demand { inner: self.inner.clone(), slot };
        let lanes = self.preferred(key, in_flight.min(self.len()));
        let (lane, object) = match tokio::time::timeout(SPILL_AFTER, self.first_free(&lanes)).await {
            Ok(got) => got?,
            // Its lanes are held long (a large apply, a slow statement): any lane will do.
            Err(_) => self.first_free(&self.preferred(key, self.len())).await?,
        };
        self.inner.lanes[lane].touched.add(key);
        Ok(LaneClient { object, lane, inner: self.inner.clone(), _demand: Some(demand) })
    }

    /// A connection of lane `lane`, for statements of several tenants whose
    /// home it is (a batch); each tenant's schema is in `schemas`.
    pub async fn get_lane(&self, lane: usize, schemas: &[&SchemaName]) -> Result<LaneClient, DbError> {
        let object = self.inner.lanes[lane].pool.get().await?;
        for schema in schemas {
            self.inner.lanes[lane].touched.add(self.key(schema));
        }
        Ok(LaneClient { object, lane, inner: self.inner.clone(), _demand: None })
    }

    /// The first of `lanes` with a free connection; when none has one, the
    /// first to free one.
    async fn first_free(&self, lanes: &[usize]) -> Result<(usize, Object), DbError> {
        let pool = |lane: usize| &self.inner.lanes[lane].pool;
        let now = Timeouts { wait: Some(std::time::Duration::ZERO), ..pool(lanes[0]).timeouts() };
        for &lane in lanes {
            if let Ok(object) = pool(lane).timeout_get(&now).await {
                return Ok((lane, object));
            }
        }
        let waits = lanes.iter().map(|&lane| Box::pin(async move { Ok::<_, deadpool_postgres::PoolError>((lane, pool(lane).get().await?)) }));
        let (got, _) = futures::future::select_ok(waits).await?;
        Ok(got)
    }
}

/// SplitMix64's finaliser: spreads lane scores evenly.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

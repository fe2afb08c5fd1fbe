//! Fault tests: three `tessera serve` processes, 2,000 webhook-triggered
//! executions across 50 tenants, each writing one row keyed by its
//! execution id to a target table (`tessera_tests::fault`), while a node is
//! killed, PostgreSQL restarts, every node restarts in turn, or RabbitMQ
//! is away. Afterwards every accepted execution must have succeeded and the
//! target table must hold exactly one row for each: none lost, none
//! doubled. Each test runs its own PostgreSQL (and RabbitMQ) and node
//! processes, so what it stops disturbs no other test.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::Value;
use tessera_tests::fault::{poll, unfinished, verify, Accepted, ClusterOptions, Drive, FaultCluster, Verdict, Workload};
use tessera_tests::holders;

const TENANTS: usize = 50;
const EXECUTIONS: usize = 2_000;
/// Each execution sleeps this long before its write, so that most of the
/// load is in flight when the fault strikes.
const NAP: Duration = Duration::from_secs(2);
/// Setting up, sending, and finishing after the fault: each bounded.
const READY: Duration = Duration::from_secs(60);
const SEND: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(120);

/// A running cluster with the workload installed and every tenant's
/// worker placed on one of its nodes.
async fn cluster_with_workload(options: ClusterOptions) -> (FaultCluster, Workload) {
    let cluster = FaultCluster::start(options).await.expect("start the cluster");
    let workload = Workload::install(&cluster, TENANTS, NAP).await.expect("install the workload");
    let nodes = cluster.ports().len();
    let spread = poll("tenants spread over every node", READY, Duration::from_millis(200), || async {
        let status = cluster.status(0).await.ok()?;
        let by_node = holders(&status);
        (by_node.len() == nodes && by_node.values().map(Vec::len).sum::<usize>() == TENANTS).then_some(())
    })
    .await;
    if let Err(e) = spread {
        panic!("{e}: {:?}", cluster.status(0).await);
    }
    (cluster, workload)
}

fn node_entry<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["nodes"].as_array()?.iter().find(|n| n["id"] == id)
}

/// Wait until nothing is queued or running, then count what came out.
async fn settle_and_verify(cluster: &FaultCluster, workload: &Workload, accepted: &[Accepted]) -> Verdict {
    let settled = poll("every execution finished", SETTLE, Duration::from_millis(500), || async {
        (unfinished(cluster, workload).await.ok()? == 0).then_some(())
    })
    .await;
    let verdict = verify(cluster, workload, accepted).await.expect("read the outcome");
    settled.unwrap_or_else(|e| panic!("{e}: {verdict}; node logs in {}", cluster.log_dir().display()));
    verdict
}

/// The tenants whose workers run on the given nodes, with repeats.
async fn workers_on(cluster: &FaultCluster, nodes: &[usize]) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for &i in nodes {
        all.extend(cluster.workers(i).await.ok()?);
    }
    Some(all)
}

#[tokio::test]
async fn kill_9_of_a_node_under_load_loses_and_doubles_nothing() {
    let (mut cluster, workload) = cluster_with_workload(ClusterOptions::default()).await;
    let ids: Vec<String> = futures::future::try_join_all((0..3).map(|i| cluster.node_id(i))).await.expect("node ids");
    let load = workload.drive(&cluster, Drive::flat_out(EXECUTIONS));
    load.accepted(EXECUTIONS / 2, SEND).await.expect("half the load accepted");

    let before = cluster.status(0).await.expect("status before the kill");
    // Node 0 answers the status queries; of the other two, the one holding
    // more tenants dies (under a loaded machine one may hold few for a while).
    let held = |i: usize| holders(&before).get(&ids[i]).map_or(0, Vec::len);
    let victim = if held(2) > held(1) { 2 } else { 1 };
    let kill = Kill { victim, survivors: [0, 3 - victim], ids };
    let moving: HashSet<String> = holders(&before).remove(kill.victim_id()).unwrap_or_default().into_iter().collect();
    assert!(!moving.is_empty(), "the victim holds no tenant: {before}");
    cluster.kill(kill.victim).await.expect("kill -9");
    let killed_at = Instant::now();
    let (dead_after, failover) = kill.failover(&cluster, &moving, killed_at).await;
    kill.picture_agrees(&cluster).await;

    let accepted = load.finish(SEND).await.expect("the whole load accepted");
    let verdict = settle_and_verify(&cluster, &workload, &accepted).await;
    eprintln!(
        "kill -9 under load: {} tenants moved; dead in the status after {dead_after:?}, their workers running elsewhere \
         after {failover:?} (node timeout {} ms); {}; {verdict}",
        moving.len(),
        cluster.options().node_timeout_ms,
        sending(&accepted),
    );
    assert!(verdict.holds(), "{verdict}");
}

/// A node killed, by index, and the nodes' ids.
struct Kill {
    victim: usize,
    survivors: [usize; 2],
    ids: Vec<String>,
}

impl Kill {
    fn victim_id(&self) -> &String {
        &self.ids[self.victim]
    }

    /// Poll the status API until it shows the victim dead and every tenant
    /// in `moving` leased to a survivor, and the survivors run their
    /// workers. Returns when it was first shown dead and when all that
    /// held, from `killed_at`.
    async fn failover(&self, cluster: &FaultCluster, moving: &HashSet<String>, killed_at: Instant) -> (Duration, Duration) {
        let seen_dead = std::cell::Cell::new(None);
        let done = poll("the killed node's tenants running elsewhere", Duration::from_secs(30), Duration::from_millis(50), || async {
            let status = cluster.status(0).await.ok()?;
            if node_entry(&status, self.victim_id())?["alive"] == false && seen_dead.get().is_none() {
                seen_dead.set(Some(killed_at.elapsed()));
            }
            let by_node = holders(&status);
            let leased_live: HashSet<&String> = self.survivors.iter().flat_map(|&i| by_node.get(&self.ids[i])).flatten().collect();
            let running: HashSet<String> = workers_on(cluster, &self.survivors).await?.into_iter().collect();
            let moved = moving.iter().all(|t| leased_live.contains(t) && running.contains(t));
            (seen_dead.get().is_some() && moved).then(|| killed_at.elapsed())
        })
        .await
        .expect("failover");
        (seen_dead.get().expect("seen dead"), done)
    }

    /// The whole picture agrees: the dead node listed dead with no tenant,
    /// every tenant leased to a survivor, and each survivor running exactly
    /// the workers of the leases it holds. Polled: under this load a lease
    /// renewed late may move a tenant for a moment.
    async fn picture_agrees(&self, cluster: &FaultCluster) {
        let agreed = poll("the status and the running workers agreeing", Duration::from_secs(15), Duration::from_millis(100), || async {
            let status = cluster.status(0).await.ok()?;
            let dead = node_entry(&status, self.victim_id())?;
            let by_node = holders(&status);
            let workers = [cluster.workers(self.survivors[0]).await.ok()?, cluster.workers(self.survivors[1]).await.ok()?];
            let leased = |i: usize| -> HashSet<&String> { by_node.get(&self.ids[self.survivors[i]]).into_iter().flatten().collect() };
            let running = |i: usize| -> HashSet<&String> { workers[i].iter().collect() };
            let whole = dead["alive"] == false
                && dead["tenants"] == 0
                && !by_node.contains_key(self.victim_id())
                && by_node.values().map(Vec::len).sum::<usize>() == TENANTS
                && (0..2).all(|i| leased(i) == running(i) && running(i).len() == workers[i].len());
            whole.then_some(())
        })
        .await;
        if let Err(e) = agreed {
            panic!("{e}: {:?}; workers {:?}", cluster.status(0).await, workers_on(cluster, &self.survivors).await);
        }
    }
}

/// How the load went: how long it took to send and how many requests were
/// sent again.
fn sending(accepted: &[Accepted]) -> String {
    let first = accepted.iter().map(|a| a.first_sent).min();
    let last = accepted.iter().map(|a| a.accepted_at).max();
    let took = first.zip(last).map(|(f, l)| l - f).unwrap_or_default();
    let again: u32 = accepted.iter().map(|a| a.attempts - 1).sum();
    format!("{} webhooks accepted in {took:.1?}, {again} requests sent again", accepted.len())
}

#[tokio::test]
async fn a_postgresql_restart_under_load_loses_nothing_and_the_nodes_recover() {
    let (mut cluster, workload) = cluster_with_workload(ClusterOptions::default()).await;
    let load = workload.drive(&cluster, Drive::paced(EXECUTIONS, 150));
    load.accepted(EXECUTIONS / 4, SEND).await.expect("a quarter of the load accepted");

    let outage = Duration::from_secs(5);
    cluster.postgres().stop().await.expect("stop PostgreSQL");
    let stopped_at = Instant::now();
    tokio::time::sleep(outage).await;
    cluster.postgres().start_again().await.expect("start PostgreSQL again");
    let down_for = stopped_at.elapsed();

    // The same processes serve again: three live nodes, every tenant held.
    let recovered = poll("the nodes back in service", Duration::from_secs(30), Duration::from_millis(100), || async {
        let status = cluster.status(0).await.ok()?;
        let live = status["nodes"].as_array()?.iter().filter(|n| n["alive"] == true).count();
        (live == 3 && holders(&status).values().map(Vec::len).sum::<usize>() == TENANTS).then(|| stopped_at.elapsed())
    })
    .await
    .expect("recovery");
    for i in 0..3 {
        assert!(cluster.running(i), "node {i} exited during the outage; logs in {}", cluster.log_dir().display());
    }

    let accepted = load.finish(SEND).await.expect("the whole load accepted");
    let verdict = settle_and_verify(&cluster, &workload, &accepted).await;
    eprintln!(
        "PostgreSQL restart under load: down for {down_for:?}, cluster whole again {recovered:?} after the stop; {}; {verdict}",
        sending(&accepted),
    );
    assert!(verdict.holds(), "{verdict}");
}

#[tokio::test]
async fn a_rolling_restart_with_sigterm_under_load_fails_no_execution_and_hands_tenants_over_drained() {
    // Leases that outlive a stall of this busy machine: here tenants move by
    // drains and handovers only, never because a lease expired (that is
    // failover, at least once, as in the kill -9 test). A clean stop
    // releases its leases at once, so nothing waits for the longer timeout.
    let options = ClusterOptions { node_timeout_ms: 12_000, ..ClusterOptions::default() };
    let (mut cluster, workload) = cluster_with_workload(options).await;
    let load = workload.drive(&cluster, Drive::paced(EXECUTIONS, 100));
    load.accepted(EXECUTIONS / 10, SEND).await.expect("the load under way");

    let mut stops = Vec::new();
    for i in 0..3 {
        stops.push(cluster.terminate(i).await.expect("SIGTERM"));
        cluster.restart(i).await.expect("start the node again");
        let id = cluster.node_id(i).await.expect("the new node's id");
        poll("the restarted node holding tenants", Duration::from_secs(30), Duration::from_millis(100), || async {
            holders(&cluster.status(i).await.ok()?).contains_key(&id).then_some(())
        })
        .await
        .expect("the restarted node takes its share");
    }

    let accepted = load.finish(SEND).await.expect("the whole load accepted");
    let verdict = settle_and_verify(&cluster, &workload, &accepted).await;
    eprintln!("rolling restart under load: SIGTERM to exit {stops:?}; {}; {verdict}", sending(&accepted));
    assert!(verdict.holds(), "{verdict}");
    // A stopping node drains, and a restarted node's tenants come back to it
    // only once their running executions finished. Before, 63 `sql` steps
    // ran twice here; with the fixes of docs/clustering.md, one step in one
    // run of 13, a cause not found yet: the bound keeps the handover from
    // regressing while it is looked for.
    assert!(verdict.rewritten_rows <= 3, "{verdict}");
}

#[tokio::test]
async fn a_rabbitmq_outage_of_10_s_under_load_still_accepts_and_later_delivers() {
    let options = ClusterOptions { with_rabbitmq: true, ..ClusterOptions::default() };
    let (mut cluster, workload) = cluster_with_workload(options).await;
    let load = workload.drive(&cluster, Drive::paced(EXECUTIONS, 100));
    load.accepted(EXECUTIONS / 4, SEND).await.expect("a quarter of the load accepted");

    let broker = cluster.rabbitmq().expect("the cluster's broker");
    broker.stop().await.expect("stop RabbitMQ");
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let back_at = Instant::now();
    broker.start_again().await.expect("start RabbitMQ again");

    let accepted = load.finish(SEND).await.expect("the whole load accepted");
    // Sent while the broker was away (and not in its last seconds): each
    // was accepted before it came back, whether at once or on a retry.
    let during: Vec<&Accepted> =
        accepted.iter().filter(|a| a.first_sent >= stopped_at && a.first_sent + Duration::from_secs(3) < back_at).collect();
    assert!(during.len() > 300, "the load went on during the outage: {} webhooks", during.len());
    let late: Vec<usize> = during.iter().filter(|a| a.accepted_at >= back_at).map(|a| a.seq).collect();
    assert!(late.is_empty(), "webhooks not accepted until RabbitMQ came back: {late:?}");
    let verdict = settle_and_verify(&cluster, &workload, &accepted).await;
    eprintln!("RabbitMQ away for 10 s under load: {} webhooks accepted meanwhile; {}; {verdict}", during.len(), sending(&accepted));
    assert!(verdict.holds(), "{verdict}");
}

//! The sandbox's limits, each met for real: hostile expressions end with a
//! typed error, and the thread (and so the process) lives on.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{
    jq,
    pool::{Pool, PoolSize},
    sandbox::{self, Budget, Limit, MAX_NESTING, MAX_OPERATORS, MAX_TEXT_BYTES},
    *,
};

fn limit_of(result: Result<Value, ExpressionError>) -> Limit {
    match result {
        Err(ExpressionError::Limit { limit, .. }) => limit,
        other => panic!("expected a limit, got {other:?}"),
    }
}

/// Run `work` on a thread of `stack` bytes, as request handlers and
/// tokio's threads are (2 MiB) or smaller.
fn on_stack<T: Send + 'static>(stack: usize, work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(stack).spawn(work).unwrap().join().unwrap()
}

#[test]
fn endless_recursion_stops_at_the_stack_limit_instead_of_overflowing() {
    for stack in [2 << 20, pool::THREAD_STACK] {
        let limit = on_stack(stack, || limit_of(Expression::compile("def f: f + 1; f").unwrap().evaluate(&Value::Null)));
        assert!(matches!(limit, Limit::Stack(_)), "{limit:?}");
        assert!(limit.to_string().starts_with("recursion deeper than"), "{limit}");
    }
    // Recursion that ends is fine.
    let countdown = "def f: if . > 0 then . - 1 | f else . end; f";
    assert_eq!(Expression::compile(countdown).unwrap().evaluate(&json!(500)).unwrap(), json!(0));
}

#[test]
fn a_hundred_thousand_brackets_are_refused_before_parsing() {
    for text in ["[".repeat(100_000), "(".repeat(100_000), "{a:".repeat(50_000), "if . then ".repeat(MAX_NESTING + 1)] {
        let error = on_stack(128 * 1024, move || Expression::compile(&text).unwrap_err());
        let message = error.message();
        assert!(message.contains("nests deeper than") || message.contains("bytes long"), "{message}");
    }
    let error = Expression::compile(&format!("{}1{}", "[".repeat(MAX_NESTING + 1), "]".repeat(MAX_NESTING + 1))).unwrap_err();
    assert!(error.message().contains(&format!("nests deeper than {MAX_NESTING} levels")), "{error}");
    // Brackets inside string literals and comments are text, not nesting.
    let quoted = format!("\"{}\" # {}\n| length", "[".repeat(1000), "(".repeat(1000));
    assert_eq!(Expression::compile(&quoted).unwrap().evaluate(&Value::Null).unwrap(), json!(1000));
}

#[test]
fn an_over_long_expression_is_refused_before_parsing() {
    let long = format!(".a{}", " ".repeat(MAX_TEXT_BYTES));
    let error = Expression::compile(&long).unwrap_err();
    assert!(error.message().contains(&format!("the most is {MAX_TEXT_BYTES}")), "{error}");
    assert!(Template::compile(&format!("x ${{{{ {long} }}}}")).is_err());
}

#[test]
fn an_expression_with_too_many_operators_is_refused_before_parsing() {
    let chain = format!("{}1", "1+".repeat(MAX_OPERATORS + 1));
    let error = on_stack(128 * 1024, move || Expression::compile(&chain).unwrap_err());
    assert!(error.message().contains(&format!("more than {MAX_OPERATORS} operators")), "{error}");
    // Paths and field names are not operators: `.a.b.c…` and `.try` pass.
    assert!(Expression::compile(&".a".repeat(MAX_OPERATORS * 2)).is_ok());
    assert_eq!(Expression::compile(".if + .end").unwrap().evaluate(&json!({"if": 1, "end": 2})).unwrap(), json!(3));
}

/// The worst texts within the bounds: the deepest nesting of each kind,
/// and the longest chains jaq's parser and compiler recurse over. They must
/// compile on a quarter of the stack compiling is given, for a wide margin.
#[test]
fn the_worst_shapes_within_the_bounds_compile_on_a_quarter_of_the_compile_stack() {
    let n = MAX_NESTING;
    // As many units as the operator bound lets through.
    let chain = |unit: &str, end: &str| {
        let symbols = unit.matches(|c: char| "|,+-([{".contains(c)).count();
        let words = ["as ", "def ", "try ", "reduce ", "label "].iter().filter(|w| unit.contains(*w)).count();
        let per_unit = (symbols + words).max(1);
        format!("{}{end}", unit.repeat(MAX_OPERATORS / per_unit - 1))
    };
    let worst = vec![
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1{}", "{a:".repeat(n), "}".repeat(n)),
        format!("{}1{}", "if . then ".repeat(n), " else 0 end".repeat(n)),
        chain("1,", "1"),
        chain("1|", "1"),
        chain("1+", "1"),
        chain("-", "1"),
        chain("try ", "1"),
        chain("def f: ", "1; f"),
        chain(".a", ""),
        chain("reduce . as $x (0; 1) | ", "1"),
        chain("label $f | ", "1"),
        chain(". as $x | ", "1"),
    ];
    on_stack(sandbox::COMPILE_STACK / 4, move || {
        for text in worst {
            assert!(sandbox::check_shape(&text).is_ok(), "{}", &text[..40]);
            // Parse errors are fine (the chains may not be valid jq); surviving is the point.
            let _ = jq::compile_filter(&text);
        }
    });
}

#[test]
fn a_runaway_loop_stops_at_its_deadline_within_milliseconds() {
    let budget = Budget { time: Duration::from_millis(200), ..Budget::DEFAULT };
    let budget = Budget { steps: u64::MAX, ..budget };
    let started = Instant::now();
    let expression = Expression::compile("last(range(1e12))").unwrap();
    let limit = limit_of(sandbox::with_budget(budget, || expression.evaluate(&Value::Null)));
    assert_eq!(limit, Limit::Time(Duration::from_millis(200)));
    // Past 100 ms the evaluation runs at a low CPU priority, so on a busy
    // machine it may be scheduled late; it still stops at its next check.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(limit.to_string(), "the expression ran past its 200ms deadline");
}

#[test]
fn an_evaluation_stops_after_its_steps() {
    let budget = Budget { steps: 10_000, ..Budget::DEFAULT };
    for runaway in ["last(range(1e12))", "[limit(1e9; repeat(1))] | length", "def f: if . > 1e9 then . else . + 1 | f end; 0 | f"] {
        let expression = Expression::compile(runaway).unwrap();
        let error = sandbox::with_budget(budget, || expression.evaluate(&Value::Null)).unwrap_err();
        assert!(error.is_limit(), "{runaway}: {error:?}");
        assert!(error.to_string().contains("more than 10000 steps") || error.to_string().contains("recursion"), "{error}");
    }
    // The default budget is ample for real work.
    let items: Vec<Value> = (0..2_000).map(|i| json!({"sku": format!("S-{i}"), "qty": i % 3})).collect();
    let work = "map(select(.qty > 0) | {sku, double: (.qty * 2)}) | length";
    assert_eq!(Expression::compile(work).unwrap().evaluate(&Value::Array(items)).unwrap(), json!(1333));
}

#[test]
fn the_deepest_value_within_the_budgets_is_dropped_without_overflow() {
    // As deep as the memory budget lets `[.]` nest: dropping it recurses once per level.
    let outcome = on_stack(pool::THREAD_STACK, || {
        let budget = Budget { time: Duration::from_secs(120), ..Budget::DEFAULT };
        sandbox::with_budget(budget, || Expression::compile("reduce range(1e8) as $i (0; [.]) | 0").unwrap().evaluate(&Value::Null))
    });
    let limit = limit_of(outcome);
    assert!(matches!(limit, Limit::Memory(_) | Limit::Steps(_)), "{limit:?}");
}

#[test]
fn one_huge_allocation_strands_its_thread_instead_of_taking_the_memory() {
    let stranded = sandbox::stranded();
    // Detached: the thread never comes back, by design.
    std::thread::spawn(|| Expression::compile("\"x\" * 100000000000").unwrap().evaluate(&Value::Null));
    let started = Instant::now();
    while sandbox::stranded() == stranded {
        assert!(started.elapsed() < Duration::from_secs(5), "the allocation was not refused");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_evaluation_that_holds_too_much_memory_is_stopped() {
    let budget = Budget { memory: 8 << 20, steps: u64::MAX, time: Duration::from_secs(30) };
    for bomb in ["[range(1e8)] | length", "reduce range(64) as $i (\"xx\"; . + .) | length"] {
        let expression = Expression::compile(bomb).unwrap();
        let limit = limit_of(sandbox::with_budget(budget, || expression.evaluate(&Value::Null)));
        assert_eq!(limit, Limit::Memory(8 << 20), "{bomb}");
    }
}

#[test]
fn a_result_past_its_size_is_refused_without_expanding_shared_parts() {
    for big in ["\"x\" * 20000000", "reduce range(40) as $i ([0]; [., .])", "[range(20000)] | map(tostring * 250)"] {
        let started = Instant::now();
        let error = Expression::compile(big).unwrap().evaluate(&Value::Null).unwrap_err();
        assert!(matches!(error, ExpressionError::TooLarge { .. }), "{big}: {error:?}");
        assert!(error.is_limit());
        assert!(started.elapsed() < Duration::from_secs(5), "{big}: {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_evaluation_stops_and_frees_its_slot() {
    let pool = Pool::start(PoolSize { threads: 2, per_tenant: 1 });
    let runaway = || Expression::compile("last(range(1e12))").unwrap().evaluate(&Value::Null);
    let waited = tokio::time::timeout(Duration::from_millis(100), pool.run("acme", runaway)).await;
    assert!(waited.is_err(), "the evaluation should still run at its timeout");
    let stopped = Instant::now();
    while pool.busy() > 0 || pool.held_by("acme") > 0 {
        assert!(stopped.elapsed() < Duration::from_millis(500), "the abandoned evaluation still runs");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_slot() {
    let pool = std::sync::Arc::new(Pool::start(PoolSize { threads: 3, per_tenant: 2 }));
    let runaway = || Expression::compile("last(range(1e12))").unwrap().evaluate(&Value::Null);
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run("hog", runaway).await })
        })
        .collect();
    let held = Instant::now();
    while pool.held_by("hog") < 2 {
        assert!(held.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pool.held_by("hog"), 2, "a tenant holds at most its slots");
    // Another tenant still gets a thread at once.
    let quiet = tokio::time::timeout(Duration::from_millis(500), pool.run("quiet", || Expression::compile(".n + 1").unwrap().evaluate(&json!({"n": 1}))));
    assert_eq!(quiet.await.expect("a free slot").unwrap().unwrap(), json!(2));
    hogs.iter().for_each(|hog| hog.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_cpu_budget_paces_its_long_evaluations_and_no_one_else_s() {
    use super::share::{CpuBudget, thread_cpu_time};
    let pool = Pool::start(PoolSize { threads: 3, per_tenant: 1 });
    pool.set_cpu_budget("hog", CpuBudget { burst: Duration::ZERO, share: 0.05 });
    pool.set_cpu_budget("other", CpuBudget { burst: Duration::from_secs(10), share: 1.0 });
    // Each runs its loop for 1 s of wall time and reports the CPU time it got.
    let spin = || {
        let before = thread_cpu_time();
        let budget = Budget { time: Duration::from_secs(1), ..Budget::DEFAULT };
        let limit = limit_of(sandbox::with_budget(budget, || Expression::compile("last(range(1e12))").unwrap().evaluate(&Value::Null)));
        (limit, thread_cpu_time() - before)
    };
    let (hog, other) = tokio::join!(pool.run("hog", spin), pool.run("other", spin));
    let ((hog_limit, hog_cpu), (other_limit, other_cpu)) = (hog.unwrap(), other.unwrap());
    assert_eq!((hog_limit, other_limit), (Limit::Time(Duration::from_secs(1)), Limit::Time(Duration::from_secs(1))));
    // A twentieth of a core over 1 s is 50 ms, plus what runs between two
    // checks; the other tenant, whose budget is never reached, runs unpaced
    // for as much of the second as the machine gives it (on a machine busy
    // with other tests, a fraction of a core: so compared, not absolute).
    assert!(hog_cpu < Duration::from_millis(150), "the paced tenant used {hog_cpu:?}");
    assert!(other_cpu > hog_cpu * 2, "the other tenant used only {other_cpu:?}, the paced one {hog_cpu:?}");
}

#[tokio::test]
async fn a_panic_in_an_evaluation_fails_that_evaluation_only() {
    let pool = Pool::start(PoolSize { threads: 2, per_tenant: 1 });
    let error = pool.run("acme", || -> u8 { panic!("boom") }).await.unwrap_err();
    assert!(error.to_string().contains("boom"), "{error}");
    assert_eq!(pool.run("acme", || 7).await.unwrap(), 7);
}

fn cases() -> u32 {
    // proptest's own variable, so a long run can ask for millions.
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(64)
}

/// jq-ish text: tokens that build deep nesting, recursion, loops and big values.
fn hostile_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "[", "]", "(", ")", "{", "}", "a:", ".", ".a", ".[]", "|", ",", "+", "*", "-", "/", "%", "==", "1", "1e12",
        "1e308", "-1", "\"x\"", "\"\\(", "def f: ", "f", "; ", "if ", " then ", " else ", " end", "try ", "reduce ",
        " as $x ", "$x", "range(", "limit(", "repeat(", "last(", "tostring", "tojson", "fromjson", "..", "@base64",
        "label $l | ", "break $l", "recurse", "explode", "implode", "ltrimstr(", "splits(", "test(", "#", "\n", "?",
        "//", "and", "or", "not", "length", "add", "keys", "to_entries", "group_by(", "sort", "path(", "getpath(",
    ]);
    prop::collection::vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

fn hostile_shapes() -> impl Strategy<Value = String> {
    let shape = (0usize..6, 0usize..200_000).prop_map(|(kind, n)| match kind {
        0 => "[".repeat(n),
        1 => format!("{}1{}", "(".repeat(n % 400), ")".repeat(n % 400)),
        2 => format!("def f: f{}; f", " + 1".repeat(n % 50)),
        3 => format!("\"x\" * {n}"),
        4 => format!("[range({n})] | tostring | length"),
        _ => format!("reduce range({}) as $i ([0]; [., .]) | length", n % 64),
    });
    prop_oneof![shape, hostile_text(), prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned())]
}

/// Every failure is a typed error: compiling and evaluating hostile text
/// never panics, overflows or runs away. Each case runs on a thread of its
/// own with a 2 MiB stack (as a request handler's); a case that allocates
/// past its ceiling strands that thread, by design, and counts as contained.
fn survive(text: &str) -> Result<(), TestCaseError> {
    let text = text.to_owned();
    let stranded = sandbox::stranded();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let budget = Budget { steps: 200_000, time: Duration::from_millis(200), memory: 8 << 20 };
            let outcome = std::panic::catch_unwind(move || {
                sandbox::with_budget(budget, || {
                    let mut messages = Vec::new();
                    if let Ok(expression) = Expression::compile(&text) {
                        messages.push(expression.evaluate(&json!({"a": [1, "x", {"b": null}]})).err().map(|e| e.to_string()));
                    }
                    if let Ok(template) = Template::compile(&format!("t ${{{{ {text} }}}}")) {
                        messages.push(template.render(&Value::Null).err().map(|e| e.to_string()));
                    }
                    messages
                })
            });
            let _ = sender.send(outcome.map_err(|_| "a panic escaped"));
        })
        .unwrap();
    match receiver.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(messages)) => prop_assert!(messages.iter().flatten().all(|m| !m.is_empty())),
        Ok(Err(why)) => return Err(TestCaseError::fail(why)),
        Err(_) => prop_assert!(sandbox::stranded() > stranded, "the evaluation ran past every limit"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_expressions_never_panic(text in hostile_shapes()) {
        survive(&text)?;
    }

    #[test]
    fn hostile_nesting_is_refused_or_compiled_never_overflowing(depth in 0usize..5_000, open in prop::sample::select(vec!["[", "(", "{a:", "if . then ", "try ", "-"])) {
        let text = format!("{}1", open.repeat(depth));
        survive(&text)?;
    }
}

#[test]
fn a_long_running_evaluation_drops_to_a_low_cpu_priority() {
    let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    let seen = std::thread::spawn(move || {
        let budget = Budget { time: Duration::from_millis(300), ..Budget::DEFAULT };
        let probe = Expression::compile("last(range(1e12))").unwrap();
        let before = nice();
        let _ = sandbox::with_budget(budget, || probe.evaluate(&Value::Null));
        (before, sandbox::demoted_now(), sandbox::demoted())
    })
    .join()
    .unwrap();
    assert_eq!(seen.0, 0);
    assert!(seen.1, "the evaluation was not demoted");
    // Raised again where the process may (this test runs with the privilege or not).
    let _ = seen.2;
}

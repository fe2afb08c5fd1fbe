//! The sandbox tenant jq runs in: bounds on the text before jaq parses it,
//! and a meter that stops an evaluation past its budget of steps, time,
//! stack or memory.
//!
//! Why a meter inside jaq: jaq evaluates by recursion and has no budget of
//! its own, so `def f: f+1; f` overflows the evaluating thread's stack (which
//! aborts the whole process) and `last(range(1e12))` runs for hours. jaq
//! looks up every filter it runs in its look-up table through the
//! [`HasLut`] trait of the data kind; [`Metered`] is a data kind whose
//! look-up ticks a thread-local [`Meter`] first. Past a budget the tick
//! unwinds out of jaq with a [`LimitHit`] panic, which the evaluation
//! catches at its boundary and turns into an [`ExpressionError::Limit`]
//! (jaq holds no state that outlives the evaluation, so unwinding through
//! it leaves nothing half-done). Natives that loop without looking a filter
//! up (`range`) tick themselves (see `jq::sandboxed_funs`).

use std::{
    alloc::{GlobalAlloc, Layout},
    cell::{Cell, RefCell},
    fmt,
    panic::{self, AssertUnwindSafe},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use jaq_core::data::{DataT, HasLut};
use jaq_json::Val;

/// The longest expression text, in bytes. Real expressions are a few
/// hundred bytes; the bound keeps the parser's and compiler's work (and
/// recursion over chains such as `1,1,1,…`) small.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// The deepest nesting of brackets, parentheses, braces and `if … end`
/// blocks in an expression, counted before jaq parses it.
pub const MAX_NESTING: usize = 128;
/// The most filter steps one evaluation may take. A step is one filter
/// applied to one value; mapping a 10,000-item array over a few filters
/// takes about 100,000.
pub const MAX_STEPS: u64 = 10_000_000;
/// The longest one evaluation may run, whatever its step's timeout.
pub const MAX_TIME: Duration = Duration::from_secs(5);
/// The most memory one evaluation may hold at once (where the process
/// counts allocations, see [`CountingAllocator`]). Checked on every step;
/// one step that allocates past twice this at once strands its thread
/// instead (see [`CountingAllocator`]).
pub const MAX_MEMORY: usize = 64 * 1024 * 1024;
/// The largest result of one evaluation, as compact JSON.
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
/// The most operators (`|`, `,`, `+`, `and`, `as`, `try`, `def`, an opening
/// bracket, …) in an expression. jaq's compiler recurses once per operator
/// of a chain such as `1+1+1…`, with up to 16 KiB of stack each in an
/// unoptimised build; real expressions have a few dozen.
pub const MAX_OPERATORS: usize = 1000;
/// The stack that compiling one expression runs on: four times what the
/// worst text within the bounds above needs in an unoptimised build (see
/// the tests), and committed by the OS only as used.
pub const COMPILE_STACK: usize = 64 * 1024 * 1024;
/// The most stack an evaluation's own recursion may use. The thread's
/// stack beyond it is for dropping what the evaluation built: a value
/// nested a million levels deep is dropped by recursion too.
pub const MAX_EVALUATION_STACK: usize = 64 * 1024 * 1024;
/// Stack left unused below an evaluation's limit, for what runs between two
/// ticks (jaq's iterator chains, natives) and for unwinding.
const STACK_RESERVE: usize = 512 * 1024;
/// An evaluation still running after this long drops its thread to a low
/// CPU priority ([`LOW_PRIORITY`]): the node's other work (requests, other
/// tenants' short evaluations, the database) goes first. Real expressions
/// take well under a millisecond.
const LONG_RUNNING: Duration = Duration::from_millis(100);
/// The nice value of a long-running evaluation's thread: about a tenth of
/// a normal thread's share of a busy CPU, so it still ends in its time.
const LOW_PRIORITY: libc::c_int = 10;
/// Ticks between two readings of the clock and of the cancel flag.
const CHECK_EVERY: u64 = 4096;

/// Which budget an evaluation ran past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Steps(u64),
    Time(Duration),
    /// Recursion deeper than the evaluation's stack (in bytes) allows.
    Stack(usize),
    Memory(usize),
    /// Whoever waited for the result stopped waiting (the step's timeout).
    Abandoned,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Steps(n) => write!(f, "more than {n} steps"),
            Self::Time(t) => write!(f, "the expression ran past its {} deadline", humantime::format_duration(*t)),
            Self::Stack(bytes) => write!(f, "recursion deeper than the {} KiB of stack an evaluation has", bytes / 1024),
            Self::Memory(bytes) => write!(f, "the expression held more than {} MiB of memory", bytes / (1024 * 1024)),
            Self::Abandoned => write!(f, "the evaluation was stopped because its step ended (timeout)"),
        }
    }
}

/// The panic payload that unwinds a metered evaluation.
struct LimitHit(Limit);

/// jaq's data kind for metered programs: the look-up table, and nothing else.
pub(super) struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = MeteredLut<'a>;
}

#[derive(Clone, Copy)]
pub(super) struct MeteredLut<'a>(pub &'a jaq_core::Lut<Metered>);

impl<'a> HasLut<'a, Metered> for MeteredLut<'a> {
    /// jaq calls this on every filter step (`Id::run`, `paths`, `update`).
    #[inline]
    fn lut(&self) -> &'a jaq_core::Lut<Metered> {
        tick();
        self.0
    }
}

/// The budget of the evaluation running on this thread. Outside an
/// evaluation every bound is out of reach, so a tick costs the same and
/// never stops anything.
struct Meter {
    fuel: Cell<u64>,
    stack_limit: Cell<usize>,
    max_live: Cell<isize>,
    deadline: Cell<Option<Instant>>,
    budget: Cell<Budget>,
    /// When the running evaluation counts as long-running (see [`LONG_RUNNING`]).
    demote_at: Cell<Option<Instant>>,
}

// `LIVE`: bytes allocated minus bytes freed on this thread, where the
// process's allocator is a [`CountingAllocator`]. Separate from the meter:
// the allocator must touch nothing that allocates or runs a destructor.
thread_local! {
    static METER: Meter = const {
        Meter {
            fuel: Cell::new(u64::MAX),
            stack_limit: Cell::new(0),
            max_live: Cell::new(isize::MAX),
            deadline: Cell::new(None),
            budget: Cell::new(Budget::UNLIMITED),
            demote_at: Cell::new(None),
        }
    };
    /// Whether this thread's CPU priority was lowered (see [`demoted`]).
    static DEMOTED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Past this many live bytes the allocator strands the thread (see `CountingAllocator`).
    static CEILING: Cell<isize> = const { Cell::new(isize::MAX) };
    /// Set by the evaluation pool: the flag its waiter raises when it stops waiting.
    static CANCEL: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// The limits one evaluation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub steps: u64,
    pub time: Duration,
    pub memory: usize,
}

impl Budget {
    pub const DEFAULT: Self = Self { steps: MAX_STEPS, time: MAX_TIME, memory: MAX_MEMORY };
    const UNLIMITED: Self = Self { steps: u64::MAX, time: Duration::MAX, memory: usize::MAX };
}

thread_local! {
    /// The budget evaluations on this thread get; tests lower it.
    static BUDGET: Cell<Budget> = const { Cell::new(Budget::DEFAULT) };
}

/// Run `work` with evaluations on this thread under `budget` instead of the default.
pub fn with_budget<T>(budget: Budget, work: impl FnOnce() -> T) -> T {
    let before = BUDGET.replace(budget);
    let _restore = Defer(Some(move || BUDGET.set(before)));
    work()
}

#[inline]
pub(super) fn tick() {
    METER.with(|meter| {
        let fuel = meter.fuel.get().wrapping_sub(1);
        meter.fuel.set(fuel);
        let here = stack_pointer();
        if fuel % CHECK_EVERY == 0 || here < meter.stack_limit.get() || LIVE.get() > meter.max_live.get() {
            check(meter, here);
        }
    })
}

#[cold]
fn check(meter: &Meter, here: usize) {
    let budget = meter.budget.get();
    if here < meter.stack_limit.get() {
        stop(Limit::Stack(STACK_GIVEN.get()));
    }
    if LIVE.get() > meter.max_live.get() {
        stop(Limit::Memory(budget.memory));
    }
    if meter.fuel.get() == 0 {
        stop(Limit::Steps(budget.steps));
    }
    // A tenant past its share of CPU naps here until it is back within it,
    // in short naps, each followed by a look at the deadline and cancel.
    loop {
        let now = Instant::now();
        if meter.deadline.get().is_some_and(|deadline| now >= deadline) {
            stop(Limit::Time(budget.time));
        }
        if meter.demote_at.get().is_some_and(|at| now >= at) {
            meter.demote_at.set(None);
            demote();
        }
        if CANCEL.with_borrow(|flag| flag.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))) {
            stop(Limit::Abandoned);
        }
        let nap = super::share::pace();
        if nap.is_zero() {
            return;
        }
        std::thread::sleep(nap);
    }
}

thread_local! {
    /// The stack the running evaluation was given, for the message.
    static STACK_GIVEN: Cell<usize> = const { Cell::new(0) };
}

fn stop(limit: Limit) {
    // Never a second panic while one unwinds: that would abort.
    if !std::thread::panicking() {
        panic::panic_any(LimitHit(limit));
    }
}

#[inline(always)]
fn stack_pointer() -> usize {
    let probe = 0u8;
    std::hint::black_box(&probe) as *const u8 as usize
}

/// Run one evaluation under this thread's budget: returns its value, or the
/// limit it ran past. Panics that are not limits go on unwinding.
pub(super) fn metered<T>(work: impl FnOnce() -> T) -> Result<T, Limit> {
    silence_limit_panics();
    let budget = BUDGET.get();
    // Stacks grow down: the evaluation may use what is left of this
    // thread's stack, less a reserve. Unknown (no OS support): a modest 1 MiB.
    let here = stack_pointer();
    let remaining = stacker::remaining_stack().unwrap_or(1024 * 1024 + STACK_RESERVE);
    let given = remaining.saturating_sub(STACK_RESERVE).min(MAX_EVALUATION_STACK);
    let saved = METER.with(|meter| {
        let saved = (meter.fuel.get(), meter.stack_limit.get(), meter.max_live.get(), meter.deadline.get(), meter.budget.get());
        meter.fuel.set(budget.steps);
        meter.stack_limit.set(here.saturating_sub(given));
        let memory = isize::try_from(budget.memory).unwrap_or(isize::MAX);
        meter.max_live.set(LIVE.get().saturating_add(memory));
        CEILING.set(LIVE.get().saturating_add(memory.saturating_mul(2)));
        let now = Instant::now();
        meter.deadline.set(now.checked_add(budget.time));
        meter.demote_at.set(now.checked_add(LONG_RUNNING));
        meter.budget.set(budget);
        saved
    });
    let given_before = STACK_GIVEN.replace(given);
    let _restore = Defer(Some(move || {
        STACK_GIVEN.set(given_before);
        CEILING.set(isize::MAX);
        METER.with(|meter| {
            meter.demote_at.set(None);
            let (fuel, stack_limit, max_live, deadline, budget) = saved;
            meter.fuel.set(fuel);
            meter.stack_limit.set(stack_limit);
            meter.max_live.set(max_live);
            meter.deadline.set(deadline);
            meter.budget.set(budget);
        })
    }));
    match panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<LimitHit>() {
            Ok(hit) => Err(hit.0),
            Err(other) => panic::resume_unwind(other),
        },
    }
}

/// Lower this thread's CPU priority (nice [`LOW_PRIORITY`]). Linux keeps
/// the nice value per thread.
fn demote() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread, no memory passed.
        let tid = unsafe { libc::gettid() };
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, LOW_PRIORITY) } == 0 {
            DEMOTED.set(true);
        }
    }
}

/// Was this thread's priority lowered by a long-running evaluation (and not raised since)?
#[cfg(test)]
pub(crate) fn demoted_now() -> bool {
    DEMOTED.get()
}

/// Was this thread's priority lowered by a long-running evaluation, and
/// could it not be raised again? Raising it back needs a privilege the node
/// may not have; a pool thread that stays demoted retires (the pool starts
/// a fresh one), so short evaluations always run at normal priority.
pub(crate) fn demoted() -> bool {
    if !DEMOTED.get() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `demote`.
        let tid = unsafe { libc::gettid() };
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 0) } == 0 {
            DEMOTED.set(false);
        }
    }
    DEMOTED.get()
}

/// Run `work` with this thread's evaluations stopping once `flag` is raised.
pub(crate) fn cancelled_by<T>(flag: Arc<AtomicBool>, work: impl FnOnce() -> T) -> T {
    let before = CANCEL.replace(Some(flag));
    let _restore = Defer(Some(move || {
        CANCEL.set(before);
    }));
    work()
}

/// Limits end evaluations by design: they must not print a panic message.
/// The previous hook is kept for every other panic.
fn silence_limit_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<LimitHit>().is_none() {
                previous(info);
            }
        }));
    });
}

/// Runs its closure when dropped, also while unwinding.
struct Defer<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Defer<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// Compile on a stack of [`COMPILE_STACK`] bytes, whatever thread calls:
/// jaq's parser and compiler recurse over the expression, and a request
/// handler's thread may have little stack left.
pub(super) fn on_compile_stack<T>(work: impl FnOnce() -> T) -> T {
    stacker::grow(COMPILE_STACK, work)
}

/// Why a text is refused before jaq parses it, and where (a byte offset).
pub(super) struct Refused {
    pub offset: usize,
    pub message: String,
}

/// Check the text's length, nesting and number of operators with one
/// linear scan, outside string literals and comments: jaq's parser and
/// compiler recurse once per nesting level and once per operator of a
/// chain (`1+1+1…`, `try try …`), so the bounds must hold before they run.
pub(super) fn check_shape(text: &str) -> Result<(), Refused> {
    if text.len() > MAX_TEXT_BYTES {
        let message = format!("the expression is {} bytes long; the most is {MAX_TEXT_BYTES}", text.len());
        return Err(Refused { offset: MAX_TEXT_BYTES, message });
    }
    let bytes = text.as_bytes();
    // Open scopes, innermost last: `(`, `[`, `{`, `i` for `if`, or `"` for a
    // string, which holds code again inside `\(`.
    let mut open: Vec<u8> = Vec::new();
    let (mut depth, mut operators) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let before = (depth, operators);
        if open.last() == Some(&b'"') {
            match byte {
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    open.push(b'(');
                    (depth, operators) = (depth + 1, operators + 1);
                    i += 1;
                }
                b'\\' => i += 1,
                b'"' => {
                    open.pop();
                }
                _ => {}
            }
        } else {
            match byte {
                b'"' => open.push(b'"'),
                b'#' => i = text[i..].find('\n').map_or(bytes.len(), |n| i + n),
                b'(' | b'[' | b'{' => {
                    open.push(byte);
                    (depth, operators) = (depth + 1, operators + 1);
                }
                // A mismatch is the parser's to report; only matching closers count.
                b')' | b']' | b'}' if matches!(open.last(), Some(b'(' | b'[' | b'{')) => {
                    open.pop();
                    depth -= 1;
                }
                b'|' | b',' | b'+' | b'-' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'!' | b'?' => {
                    // A run of operator characters (`//=`, `|=`, `==`) is one operator.
                    let run = bytes[i..].iter().take_while(|b| b"|,+-*/%<>=!?".contains(b)).count();
                    operators += 1;
                    i += run - 1;
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                    let word = bytes[i..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
                    let field = i > 0 && matches!(bytes[i - 1], b'.' | b'$' | b'@');
                    match &text[i..i + word] {
                        _ if field => {}
                        "if" => {
                            open.push(b'i');
                            (depth, operators) = (depth + 1, operators + 1);
                        }
                        "end" if open.last() == Some(&b'i') => {
                            open.pop();
                            depth -= 1;
                        }
                        "as" | "def" | "try" | "reduce" | "foreach" | "label" | "and" | "or" | "then" | "elif" | "else" => {
                            operators += 1
                        }
                        _ => {}
                    }
                    i += word - 1;
                }
                _ => {}
            }
        }
        if depth > before.0 && depth > MAX_NESTING {
            return Err(Refused { offset: i, message: format!("the expression nests deeper than {MAX_NESTING} levels") });
        }
        if operators > before.1 && operators > MAX_OPERATORS {
            return Err(Refused { offset: i, message: format!("the expression has more than {MAX_OPERATORS} operators") });
        }
        i += 1;
    }
    Ok(())
}

/// An allocator that counts, per thread, the bytes allocated and not yet
/// freed, so an evaluation's meter can stop one that holds too much memory.
/// The binary installs it around its allocator (`#[global_allocator]`);
/// without it the memory budget is not enforced.
///
/// The meter reads the count on each step, but one step may allocate a
/// lot at once (`"x" * 100000000000`, `tojson` of a value whose parts are
/// shared many times over). An allocation that would take an evaluation
/// past twice its memory budget is never made: an allocator can neither
/// fail (Rust aborts the process) nor unwind, so the thread sleeps for
/// good instead, holding what it had (at most twice the budget) and no
/// CPU. The tenant's slot on it stays taken, so a tenant can strand at
/// most its slots' worth of threads; the pool starts a thread in place of
/// each stranded one.
pub struct CountingAllocator<A>(pub A);

static STRANDED: AtomicUsize = AtomicUsize::new(0);

/// Threads stranded so far by an allocation past an evaluation's ceiling.
pub fn stranded() -> usize {
    STRANDED.load(Ordering::Relaxed)
}

/// Strand this thread if `more` bytes would take it past its ceiling.
#[inline]
fn guard(more: usize) {
    let over = LIVE.try_with(|live| live.get().saturating_add(more as isize) > CEILING.get()).unwrap_or(false);
    if over {
        STRANDED.fetch_add(1, Ordering::Relaxed);
        loop {
            // No allocation, no unwinding: a plain sleep.
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

// SAFETY: every call is passed to the wrapped allocator unchanged; the
// counter is a const-initialised thread-local `Cell` without destructor,
// which neither allocates nor unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        guard(layout.size());
        let pointer = unsafe { self.0.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        guard(layout.size());
        let pointer = unsafe { self.0.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(pointer, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        guard(new_size.saturating_sub(layout.size()));
        let moved = unsafe { self.0.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[inline]
fn count(bytes: isize) {
    // `try_with`: a thread being torn down has no counter left, and nothing to meter.
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_add(bytes)));
}

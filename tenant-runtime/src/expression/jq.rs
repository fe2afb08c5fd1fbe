//! [`Expression`]: one jq program, compiled once by jaq and evaluated any
//! number of times, from any task.

use std::{fmt, sync::Arc};

use jaq_core::{
    Compiler, Ctx, Cv, Exn, Native, ValXs, Vars,
    box_iter::box_once,
    compile::Undefined,
    load::{self, Arena, File, Loader},
    native::{Fun, run, v},
};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::Value;

use super::{
    ExpressionError, SourceKind,
    sandbox::{self, Limit, MAX_RESULT_BYTES, Metered, MeteredLut},
};

/// The most values one evaluation collects. jaq evaluates lazily, so a
/// generator that never ends (`repeat(1)`, `range(1e12)`) is stopped here
/// instead of filling memory; no real expression over integration data
/// needs this many separate outputs (one array output may be larger).
pub const MAX_OUTPUTS: usize = 10_000;

/// The deepest nesting of arrays and objects a result may have. Converting
/// a result is recursive; the bound keeps a pathological result
/// (`reduce range(1e6) as $i (0; [.])`) from overflowing the stack.
pub const MAX_DEPTH: usize = 256;

/// jaq's data kind: programs read no global data but their own look-up
/// table, and every look-up ticks the evaluation's meter (see `sandbox`).
type Data = Metered;
type Filter = jaq_core::Filter<Data>;

/// A compiled jq expression. Cloning is cheap (the compiled program is
/// shared), and it can be sent to and shared between tasks.
#[derive(Clone)]
pub struct Expression {
    text: Arc<str>,
    filter: Arc<Filter>,
}

// The engine shares compiled expressions across tasks; keep it possible.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Expression>();
};

impl Expression {
    /// Compile `text`, reporting the first syntax error or undefined name
    /// with its line and column in `text`.
    /// The text's length and nesting are bounded before jaq parses it
    /// (`sandbox::check_shape`), and jaq parses on a stack of known size.
    pub fn compile(text: &str) -> Result<Self, ExpressionError> {
        let syntax = |fault: Fault| ExpressionError::syntax(SourceKind::Expression, text, fault.offset, fault.message);
        sandbox::check_shape(text).map_err(|refused| syntax(Fault { offset: refused.offset, message: refused.message }))?;
        let filter = sandbox::on_compile_stack(|| compile_filter(text)).map_err(syntax)?;
        Ok(Self { text: text.into(), filter: Arc::new(filter) })
    }

    /// The source text, as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Run the expression on `input` and fold its outputs into one value:
    /// no output gives `null`, one output gives that value, several give an
    /// array of them in order. jq programs are generators; folding keeps
    /// every use site (a step's output, a template placeholder) one value,
    /// and `.items[]` then means the same as `[.items[]]`.
    pub fn evaluate(&self, input: &Value) -> Result<Value, ExpressionError> {
        let mut outputs = self.evaluate_all(input)?;
        Ok(match outputs.len() {
            0 => Value::Null,
            1 => outputs.pop().unwrap_or_default(),
            _ => Value::Array(outputs),
        })
    }

    /// Every output of the expression on `input`, in order, up to
    /// [`MAX_OUTPUTS`] values and [`MAX_RESULT_BYTES`] bytes of JSON. The
    /// first uncaught run-time error ends the evaluation, as in jq: values
    /// produced before it are dropped, so a step never goes on with half a
    /// result. The evaluation runs metered: past its budget of steps, time,
    /// stack or memory it ends with [`ExpressionError::Limit`].
    pub fn evaluate_all(&self, input: &Value) -> Result<Vec<Value>, ExpressionError> {
        let input = to_val(input);
        let outputs = sandbox::metered(|| self.run(input)).unwrap_or_else(|limit| Err(self.limit(limit)))?;
        // Converted outside the meter: the conversion is bounded by its own room.
        let mut room = MAX_RESULT_BYTES;
        let convert = |value: &Val| {
            from_val(value, MAX_DEPTH, &mut room).map_err(|overflow| match overflow {
                Overflow::Depth => self.too_deep(),
                Overflow::Size => ExpressionError::TooLarge { expression: self.to_string(), limit: MAX_RESULT_BYTES },
            })
        };
        outputs.iter().map(convert).collect()
    }

    fn run(&self, input: Val) -> Result<Vec<Val>, ExpressionError> {
        let ctx = Ctx::<Data>::new(MeteredLut(&self.filter.lut), Vars::new([]));
        let mut outputs = Vec::new();
        for output in self.filter.id.run((ctx, input)) {
            if outputs.len() == MAX_OUTPUTS {
                return Err(ExpressionError::TooManyOutputs { expression: self.to_string(), limit: MAX_OUTPUTS });
            }
            outputs.push(output.map_err(|exception| self.runtime_error(exception))?);
        }
        Ok(outputs)
    }

    fn limit(&self, limit: Limit) -> ExpressionError {
        ExpressionError::Limit { expression: self.to_string(), limit }
    }

    fn runtime_error(&self, exception: jaq_core::Exn<'_, Val>) -> ExpressionError {
        // `halt` is replaced by an error (see `sandboxed_funs`) and breaks
        // never escape a compiled program, so an exception is an error.
        let message = match exception.get_err() {
            Ok(error) => error.to_string(),
            Err(other) => format!("unexpected jq exception {other:?}"),
        };
        ExpressionError::Runtime { expression: self.to_string(), message }
    }

    fn too_deep(&self) -> ExpressionError {
        ExpressionError::TooDeep { expression: self.to_string(), limit: MAX_DEPTH }
    }
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression").field(&self.text).finish()
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Two expressions are equal when their source texts are.
impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Expression {}

/// jq's truth: everything but `false` and `null` is true.
pub fn is_truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

/// A syntax problem at a byte offset of the expression.
pub(super) struct Fault {
    offset: usize,
    message: String,
}

pub(super) fn compile_filter(text: &str) -> Result<Filter, Fault> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    // `Loader::new` refuses every `import`/`include`: expressions never read files.
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader.load(&arena, File { code: text, path: () }).map_err(|errors| load_fault(text, errors))?;
    Compiler::default().with_funs(sandboxed_funs()).compile(modules).map_err(|errors| compile_fault(text, errors))
}

/// The standard filters, minus those that reach outside the evaluation: a
/// tenant's expression must not read the server's environment (`env`,
/// `$ENV` is simply not defined), stop the process (`halt`, which jaq
/// implements as an exit) or write to its logs (`debug`, `stderr`). The
/// names stay defined so the standard definitions that use them compile.
fn sandboxed_funs() -> impl Iterator<Item = Fun<Data>> {
    let all = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
    all.map(|(name, arity, native): (&'static str, _, Native<Data>)| match name {
        "env" => run((name, arity, |_| box_once(Ok(Val::obj(Default::default()))))),
        "halt" => run((name, arity, |_| box_once(Err(jaq_core::Error::str("halt is not available").into())))),
        "debug_empty" | "stderr_empty" => run((name, arity, |_| Box::new(std::iter::empty()))),
        // jaq's `range/3` loops without looking a filter up, so without ticking.
        "range" if arity.len() == 3 => run::<Data>((name, v(3), metered_range as jaq_core::RunPtr<Data>)),
        _ => (name, arity, native),
    })
}

/// `range($from; $to; $by)`: `$from`, then each next value `$by` further,
/// while it has not passed `$to` (for `$by` 0: until it equals `$to`).
/// Each value ticks the evaluation's meter.
fn metered_range<'a>(mut cv: Cv<'a, Data>) -> ValXs<'a, Val> {
    use std::cmp::Ordering;
    let (by, to, from) = (cv.0.pop_var(), cv.0.pop_var(), cv.0.pop_var());
    let direction = by.partial_cmp(&Val::from(0isize)).unwrap_or(Ordering::Equal);
    let mut next: Option<Result<Val, jaq_core::Error<Val>>> = Some(Ok(from));
    Box::new(std::iter::from_fn(move || {
        sandbox::tick();
        let current = match next.take()? {
            Ok(current) => current,
            Err(error) => return Some(Err(Exn::from(error))),
        };
        let goes_on = match direction {
            Ordering::Greater => current < to,
            Ordering::Less => current > to,
            Ordering::Equal => current != to,
        };
        if !goes_on {
            return None;
        }
        next = Some(current.clone() + by.clone());
        Some(Ok(current))
    }))
}

/// Where `part` (a slice of `text`) starts; 0 when it is not in `text`,
/// as for an error inside a standard definition.
fn offset_in(text: &str, part: &str) -> usize {
    let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    let at = part.as_ptr() as usize;
    if (start..=end).contains(&at) { load::span(text, part).start } else { 0 }
}

fn load_fault(text: &str, errors: load::Errors<&str, ()>) -> Fault {
    let first = errors.into_iter().map(|(_, error)| error).find_map(|error| match error {
        load::Error::Lex(errors) => errors.into_iter().next().map(|(expect, at)| {
            // `at` is the rest of the text from where the lexer stopped.
            let found = at.chars().next().map_or("the end of the expression".to_owned(), |c| format!("`{c}`"));
            (format!("{}, found {found}", lex_expectation(&expect)), at)
        }),
        load::Error::Parse(errors) => errors.into_iter().next().map(|(expect, found)| {
            // `found` is the unexpected token's text in `text`, empty at the end.
            let shown = if found.is_empty() { "the end of the expression".to_owned() } else { format!("`{found}`") };
            (format!("expected {}, found {shown}", expect.as_str()), found)
        }),
        load::Error::Io(errors) => errors.into_iter().next().map(|(at, why)| (format!("cannot import: {why}"), at)),
    });
    match first {
        Some((message, at)) => Fault { offset: offset_in(text, at), message },
        None => Fault { offset: 0, message: "invalid jq expression".to_owned() },
    }
}

/// What the lexer expected, in words. (jaq's own `as_str` panics on
/// delimiters it does not list, so we describe them here.)
fn lex_expectation(expect: &load::lex::Expect<&str>) -> String {
    use load::lex::Expect;
    let what = match expect {
        Expect::Digit => "a digit",
        Expect::Ident => "an identifier",
        Expect::Delim(open) if open.ends_with('"') => "a closing quote",
        Expect::Delim("(") => "a closing parenthesis",
        Expect::Delim("[") => "a closing bracket",
        Expect::Delim("{") => "a closing brace",
        Expect::Delim(_) => "a closing delimiter",
        Expect::Escape => "a valid escape sequence",
        Expect::Unicode => "a 4-digit hexadecimal code point",
        _ => "a valid token",
    };
    format!("expected {what}")
}

fn compile_fault(text: &str, errors: jaq_core::compile::Errors<&str, ()>) -> Fault {
    let first = errors.into_iter().flat_map(|(_, errors)| errors).next();
    match first {
        Some((name, undefined)) => {
            let what = match undefined {
                Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
                other => format!("{} `{name}`", other.as_str()),
            };
            Fault { offset: offset_in(text, name), message: format!("undefined {what}") }
        }
        None => Fault { offset: 0, message: "invalid jq expression".to_owned() },
    }
}

/// serde_json's value as jaq's. Deserialising from a `Value` cannot fail:
/// every JSON value is a jaq value.
fn to_val(value: &Value) -> Val {
    Val::deserialize(value).unwrap_or_default()
}

/// Why a result cannot be converted.
enum Overflow {
    Depth,
    Size,
}

/// jaq's value as serde_json's, failing past `depth` levels of nesting or
/// once the result would take more than `room` bytes, counted as it is
/// built (so a value whose parts are shared many times over is not
/// expanded past the bound): its JSON text, and at least [`VALUE_BYTES`] for
/// each value, about what a small value takes in memory. jaq values are a superset of JSON; the
/// rest is mapped the way jq prints it: NaN and infinities become `null`,
/// byte strings are read as UTF-8 (lossily), and a non-string object key
/// becomes its compact JSON text.
fn from_val(value: &Val, depth: usize, room: &mut usize) -> Result<Value, Overflow> {
    let depth = depth.checked_sub(1).ok_or(Overflow::Depth)?;
    Ok(match value {
        Val::Null => take_room(room, VALUE_BYTES).map(|_| Value::Null)?,
        Val::Bool(b) => take_room(room, VALUE_BYTES).map(|_| Value::Bool(*b))?,
        Val::Num(number) => take_room(room, VALUE_BYTES).map(|_| from_num(number))?,
        Val::TStr(bytes) | Val::BStr(bytes) => {
            take_room(room, bytes.len() + VALUE_BYTES)?;
            Value::String(String::from_utf8_lossy(bytes).into_owned())
        }
        Val::Arr(items) => {
            take_room(room, items.len() + VALUE_BYTES)?;
            Value::Array(items.iter().map(|item| from_val(item, depth, room)).collect::<Result<_, _>>()?)
        }
        Val::Obj(entries) => {
            take_room(room, 2 * entries.len() + VALUE_BYTES)?;
            let mut object = serde_json::Map::new();
            for (key, item) in entries.iter() {
                let key = key_text(key);
                take_room(room, key.len() + 2)?;
                object.insert(key, from_val(item, depth, room)?);
            }
            Value::Object(object)
        }
    })
}

/// What each value of a result counts for at least (see [`from_val`]).
const VALUE_BYTES: usize = 16;

fn take_room(room: &mut usize, bytes: usize) -> Result<(), Overflow> {
    *room = room.checked_sub(bytes).ok_or(Overflow::Size)?;
    Ok(())
}

fn from_num(number: &jaq_json::Num) -> Value {
    use jaq_json::Num;
    match number {
        Num::Int(int) => Value::from(*int as i64),
        Num::Float(float) => serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number),
        // Big integers and decimal literals keep their digits where JSON can.
        Num::BigInt(_) | Num::Dec(_) => serde_json::from_str(&number.to_string()).unwrap_or(Value::Null),
    }
}

fn key_text(key: &Val) -> String {
    match key {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_string(),
    }
}

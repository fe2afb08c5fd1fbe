//! The typed scalar values of the definition format: names, durations, cron
//! expressions, time zones, jq expressions, templates and secrets.
//!
//! The types with rules parse their text once, on deserialisation, and keep
//! the parsed form, so code that holds one never re-checks it. Each type
//! also describes itself to the JSON Schema. Rules a regular expression can
//! express are a `pattern`, so editors see them too. Rules that need real
//! parsers (humantime, croner, chrono-tz) are a custom `format`, listed in
//! [`FORMATS`] for [`super::validate`] to enforce.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A custom JSON Schema `format`: its name and the check behind it. The check
/// returns why a value is rejected, so error messages can say more than
/// "does not match the format".
pub(crate) struct Format {
    pub name: &'static str,
    pub check: fn(&str) -> Result<(), String>,
}

/// Every custom format used by the schema. Editors treat unknown formats as
/// annotations; our validator enforces these.
pub(crate) const FORMATS: &[Format] = &[
    Format { name: Duration::FORMAT, check: Duration::check },
    Format { name: CronExpression::FORMAT, check: |text| CronExpression::parse(text).map(drop) },
    Format { name: TimeZone::FORMAT, check: |text| TimeZone::parse(text).map(drop) },
];

/// A regular expression the schema uses as a `pattern`, with the sentence
/// that explains it to a person.
pub(crate) struct Pattern {
    pub regex: &'static str,
    pub explanation: &'static str,
}

/// The patterns whose errors get a plain-language explanation.
pub(crate) const PATTERNS: &[Pattern] = &[
    Pattern { regex: Name::PATTERN, explanation: Name::EXPLANATION },
    Pattern { regex: StepName::PATTERN, explanation: StepName::EXPLANATION },
];

/// Does `text` start with a lowercase ASCII letter, continue with at most
/// 62 characters accepted by `rest`, and nothing else?
fn is_identifier(text: &str, rest: impl Fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    match bytes.split_first() {
        Some((first, tail)) => first.is_ascii_lowercase() && tail.len() <= 62 && tail.iter().all(|&b| rest(b)),
        None => false,
    }
}

/// The name of a resource (integration or connection), also used to refer to
/// one from another (`connection: orders-db`, `call.integration`). Names end
/// up in URLs and log lines, hence the DNS-label-like alphabet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub(crate) const PATTERN: &'static str = "^[a-z][a-z0-9-]{0,62}$";
    const EXPLANATION: &'static str = "a name starts with a lowercase letter and has only lowercase letters, digits and dashes, at most 63 characters";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let valid = is_identifier(&text, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid { Ok(Self(text)) } else { Err(format!("invalid name `{text}`: {}", Self::EXPLANATION)) }
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Name {
    fn schema_name() -> Cow<'static, str> {
        "Name".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
            "description": "A resource name: lowercase letters, digits and dashes, starting with a letter.",
            "examples": ["orders-sync"],
        })
    }
}

/// The name of a step, unique within its integration. Later steps read an
/// earlier step's output through jq (`.steps.fetch_orders.body`), where a dash
/// would parse as subtraction: hence underscores, not dashes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StepName(String);

impl StepName {
    pub(crate) const PATTERN: &'static str = "^[a-z][a-z0-9_]{0,62}$";
    const EXPLANATION: &'static str = "a step name starts with a lowercase letter and has only lowercase letters, digits and underscores, at most 63 characters";

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StepName {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let valid = is_identifier(&text, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid { Ok(Self(text)) } else { Err(format!("invalid step name `{text}`: {}", Self::EXPLANATION)) }
    }
}

impl From<StepName> for String {
    fn from(name: StepName) -> Self {
        name.0
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for StepName {
    fn schema_name() -> Cow<'static, str> {
        "StepName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": Self::PATTERN,
            "description": "A step name, unique in its integration: lowercase letters, digits and underscores, starting with a letter.",
            "examples": ["fetch_orders"],
        })
    }
}

/// A strictly positive span of time written the humantime way: `250ms`,
/// `30s`, `5m`, `1h 30m`. Zero is rejected everywhere: no timeout, delay,
/// interval or back-off of the format means anything at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration(std::time::Duration);

impl Duration {
    const FORMAT: &'static str = "tessera-duration";
    /// The longest duration a definition may hold anywhere (some fields have
    /// a lower maximum, see `semantic`): far beyond any sensible timeout,
    /// delay or interval, and far from where adding it to a clock overflows.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
    pub(crate) const MAX_TEXT: &'static str = "365days";

    /// Parse `text`, saying why it is not a valid duration. Any length is
    /// read, so a definition stored before the maximum existed still loads;
    /// applying one checks the maximum ([`Self::check`]), and the engine
    /// saturates wherever a duration meets a clock.
    pub fn parse(text: &str) -> Result<Self, String> {
        let duration = humantime::parse_duration(text).map_err(|e| format!("invalid duration `{text}`: {e}"))?;
        if duration.is_zero() {
            return Err(format!("invalid duration `{text}`: it must be greater than zero"));
        }
        Ok(Self(duration))
    }

    /// What applying a definition accepts: [`Self::parse`], at most [`Self::MAX`].
    pub(crate) fn check(text: &str) -> Result<(), String> {
        Self::parse(text)?.at_most(Self::MAX, Self::MAX_TEXT)
    }

    /// `Ok` when at most `max` (written `max_text`), else why not.
    pub(crate) fn at_most(self, max: std::time::Duration, max_text: &str) -> Result<(), String> {
        if self.0 <= max { Ok(()) } else { Err(format!("`{self}` is longer than the maximum of {max_text}")) }
    }

    /// Only for durations known to be positive, such as defaults.
    pub(crate) const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl TryFrom<String> for Duration {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Duration> for String {
    fn from(duration: Duration) -> Self {
        duration.to_string()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(duration: Duration) -> Self {
        duration.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": Self::FORMAT,
            "description": "A positive duration: a number and a unit (ms, s, m, h, d), possibly several: 250ms, 30s, 5m, 1h 30m. At most 365days (some fields allow less).",
            "examples": ["30s", "5m", "250ms"],
        })
    }
}

/// A cron expression with five fields (minute first) or six (second
/// first), as croner reads it, kept with its original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronExpression {
    text: String,
    parsed: croner::Cron,
}

impl CronExpression {
    const FORMAT: &'static str = "tessera-cron";

    /// Parse `text`, saying why it is not a valid cron expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = croner::Cron::from_str(text).map_err(|e| format!("invalid cron expression `{text}`: {e}"))?;
        Ok(Self { text: text.to_owned(), parsed })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed schedule, for computing the next tick.
    pub fn cron(&self) -> &croner::Cron {
        &self.parsed
    }
}

impl TryFrom<String> for CronExpression {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<CronExpression> for String {
    fn from(cron: CronExpression) -> Self {
        cron.text
    }
}

impl JsonSchema for CronExpression {
    fn schema_name() -> Cow<'static, str> {
        "CronExpression".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": Self::FORMAT,
            "description": "A cron expression: 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first.",
            "examples": ["0 */5 * * * *", "30 2 * * MON-FRI"],
        })
    }
}

/// An IANA time zone such as `Europe/Paris` or `UTC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    const FORMAT: &'static str = "tessera-timezone";
    pub const UTC: Self = Self(chrono_tz::Tz::UTC);

    /// Parse `text`, saying why it is not a known time zone.
    pub fn parse(text: &str) -> Result<Self, String> {
        text.parse()
            .map(Self)
            .map_err(|_| format!("unknown time zone `{text}` (use an IANA name such as Europe/Paris or UTC)"))
    }

    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self::UTC
    }
}

impl TryFrom<String> for TimeZone {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<TimeZone> for String {
    fn from(zone: TimeZone) -> Self {
        zone.0.name().to_owned()
    }
}

impl JsonSchema for TimeZone {
    fn schema_name() -> Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": Self::FORMAT,
            "description": "An IANA time zone name.",
            "examples": ["Europe/Paris", "UTC"],
        })
    }
}

/// A jq program, evaluated by the engine (with jaq) against the execution's
/// data: `.body.items`, `.steps.fetch_orders.body | length > 0`. Kept as
/// text; reading a file compiles it (see `expressions`) to report syntax
/// errors, and the engine compiles it again with [`crate::expression`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expression(String);

impl Expression {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for Expression {
    fn schema_name() -> Cow<'static, str> {
        "Expression".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A jq expression, evaluated against the execution's data.",
            "examples": [".body.items", ".steps.fetch_orders.body | length > 0"],
        })
    }
}

/// Text with embedded jq expressions between `${{` and `}}`:
/// `https://api.example.com/orders/${{ .order.id }}`. A template that is
/// exactly one `${{ … }}` yields that expression's JSON value rather than
/// text, so a body can pass whole objects through. `$${{` is a literal
/// `${{`. Compiled by [`crate::expression::Template`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(String);

impl Template {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for Template {
    fn schema_name() -> Cow<'static, str> {
        "Template".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Text with jq expressions between ${{ and }}.",
            "examples": ["https://api.example.com/orders/${{ .order.id }}"],
        })
    }
}

/// A credential (password, token, connection URL with a password in it).
/// `Debug` never shows it, so a connection can be logged safely. `Serialize`
/// does write it: the server encrypts connection specs before storing them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that uses it to authenticate.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "writeOnly": true,
            "description": "A secret value; stored encrypted and never shown back.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_alphabet() {
        for good in ["a", "orders-sync", "x1-2", &format!("a{}", "b".repeat(62))] {
            assert!(Name::try_from(good.to_owned()).is_ok(), "{good}");
        }
        for bad in ["", "Orders", "1abc", "-a", "a_b", "a.b", "café", &format!("a{}", "b".repeat(63))] {
            assert!(Name::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn step_names_use_underscores_not_dashes() {
        assert!(StepName::try_from("fetch_orders".to_owned()).is_ok());
        assert!(StepName::try_from("fetch-orders".to_owned()).is_err());
        assert!(StepName::try_from("_x".to_owned()).is_err());
    }

    /// The hand-written checks and the schema's regular expressions must
    /// agree, or the schema would accept what deserialisation then rejects.
    #[test]
    fn identifier_checks_agree_with_their_schema_patterns() {
        let name = jsonschema::validator_for(&serde_json::json!({"pattern": Name::PATTERN})).unwrap();
        let step = jsonschema::validator_for(&serde_json::json!({"pattern": StepName::PATTERN})).unwrap();
        let long = format!("a{}", "b".repeat(62));
        let too_long = format!("{long}c");
        for text in ["a", "a-b", "a_b", "A", "9a", "a9", "", "a b", "é", "a\n", long.as_str(), too_long.as_str()] {
            let value = serde_json::Value::from(text);
            assert_eq!(Name::try_from(text.to_owned()).is_ok(), name.is_valid(&value), "Name {text:?}");
            assert_eq!(StepName::try_from(text.to_owned()).is_ok(), step.is_valid(&value), "StepName {text:?}");
        }
    }

    #[test]
    fn durations_are_humantime_and_positive() {
        assert_eq!(Duration::parse("250ms").unwrap().get(), std::time::Duration::from_millis(250));
        assert_eq!(Duration::parse("1h 30m").unwrap().get(), std::time::Duration::from_secs(5400));
        assert!(Duration::parse("0s").unwrap_err().contains("greater than zero"));
        assert!(Duration::parse("5 minutez").unwrap_err().contains("unknown time unit"));
        assert!(Duration::parse("30").is_err());
    }

    #[test]
    fn applied_durations_have_a_maximum_but_stored_ones_still_read() {
        assert!(Duration::check("365days").is_ok());
        let error = Duration::check("366days").unwrap_err();
        assert!(error.contains("longer than the maximum of 365days"), "{error}");
        assert!(Duration::check("300000000000y").unwrap_err().contains("maximum"));
        assert!(Duration::parse("300000000000y").is_ok(), "a stored definition with it must still load");
    }

    #[test]
    fn durations_print_back_as_they_parse() {
        for text in ["250ms", "30s", "5m", "1h 30m", "2days"] {
            let duration = Duration::parse(text).unwrap();
            assert_eq!(Duration::parse(&duration.to_string()).unwrap(), duration);
        }
    }

    #[test]
    fn cron_accepts_five_or_six_fields() {
        assert!(CronExpression::parse("*/5 * * * *").is_ok());
        assert!(CronExpression::parse("0 */5 * * * *").is_ok());
        assert!(CronExpression::parse("61 * * * *").is_err());
        assert!(CronExpression::parse("every monday").is_err());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(TimeZone::parse("Europe/Paris").unwrap().tz(), chrono_tz::Europe::Paris);
        assert!(TimeZone::parse("Europe/Pariss").is_err());
        assert!(TimeZone::parse("CEST").is_err());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secret: Secret = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"hunter2\"");
    }
}

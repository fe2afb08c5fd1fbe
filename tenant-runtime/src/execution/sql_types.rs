//! JSON ↔ PostgreSQL values for the `sql` step: each parameter converted
//! to the type PostgreSQL inferred for it when the statement was prepared,
//! each column read by its type. Anything else is a clear error that names
//! the parameter or column and says how to cast it.

use std::{error::Error, str::FromStr};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use rust_decimal::{prelude::ToPrimitive, Decimal};
use serde_json::Value;
use tokio_postgres::{
    types::{to_sql_checked, IsNull, ToSql, Type},
    Row,
};

use super::io::IoError;
use crate::expression::to_text;

type Param = Box<dyn ToSql + Sync + Send>;

/// SQL NULL, whatever the parameter's type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut tokio_postgres::types::private::BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Parameter `$index` (1-based) of PostgreSQL type `ty` from `value`.
pub(super) fn to_param(index: usize, ty: &Type, value: &Value) -> Result<Param, IoError> {
    let wrong = |message: String| IoError::InvalidParameter { index, expected: ty.name().to_string(), message };
    let got = |value: &Value| format!("expected {}, got {}", expected(ty), kind_of(value));
    if value.is_null() {
        return Ok(Box::new(Null));
    }
    let param: Param = match *ty {
        Type::BOOL => Box::new(value.as_bool().ok_or_else(|| wrong(got(value)))?),
        Type::INT2 => Box::new(integer::<i16>(value).ok_or_else(|| wrong(got(value)))?),
        Type::INT4 => Box::new(integer::<i32>(value).ok_or_else(|| wrong(got(value)))?),
        Type::INT8 => Box::new(integer::<i64>(value).ok_or_else(|| wrong(got(value)))?),
        Type::FLOAT4 => Box::new(value.as_f64().ok_or_else(|| wrong(got(value)))? as f32),
        Type::FLOAT8 => Box::new(value.as_f64().ok_or_else(|| wrong(got(value)))?),
        Type::NUMERIC => Box::new(decimal(value).ok_or_else(|| wrong(got(value)))?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => match value {
            Value::Array(_) | Value::Object(_) => return Err(wrong(format!("{} (use `tojson` for its JSON text)", got(value)))),
            scalar => Box::new(to_text(scalar)),
        },
        Type::JSON | Type::JSONB => Box::new(tokio_postgres::types::Json(value.clone())),
        Type::UUID => Box::new(parsed(value, |s| uuid::Uuid::parse_str(s).ok()).ok_or_else(|| wrong(got(value)))?),
        Type::TIMESTAMPTZ => Box::new(parsed(value, timestamptz).ok_or_else(|| wrong(got(value)))?),
        Type::TIMESTAMP => Box::new(parsed(value, timestamp).ok_or_else(|| wrong(got(value)))?),
        Type::DATE => Box::new(parsed(value, |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).ok_or_else(|| wrong(got(value)))?),
        _ => {
            return Err(wrong(format!(
                "the sql step cannot send this type; cast the parameter in the statement, e.g. `${index}::text::{}`",
                ty.name()
            )));
        }
    };
    Ok(param)
}

/// What a parameter of `ty` must be, in words.
fn expected(ty: &Type) -> &'static str {
    match *ty {
        Type::BOOL => "a boolean",
        Type::INT2 | Type::INT4 | Type::INT8 => "an integer in range",
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => "a number",
        Type::UUID => "a UUID string",
        Type::TIMESTAMPTZ => "an RFC 3339 timestamp string (2024-05-01T12:00:00Z)",
        Type::TIMESTAMP => "a timestamp string (2024-05-01T12:00:00)",
        Type::DATE => "a date string (2024-05-01)",
        _ => "text",
    }
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", super::io::excerpt(s, 40)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn integer<T: TryFrom<i64>>(value: &Value) -> Option<T> {
    T::try_from(value.as_i64()?).ok()
}

fn decimal(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
}

fn parsed<T>(value: &Value, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    parse(value.as_str()?)
}

fn timestamptz(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn timestamp(text: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"].iter().find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
}

/// Column `i` of `row` as JSON, by its type.
pub(super) fn column_value(row: &Row, i: usize) -> Result<Value, IoError> {
    let column = &row.columns()[i];
    let read_failed =
        |e: tokio_postgres::Error| IoError::InvalidResponse(format!("column `{}` cannot be read: {e}", column.name()));
    macro_rules! get {
        ($t:ty) => {
            row.try_get::<_, Option<$t>>(i).map_err(read_failed)?
        };
    }
    let value = match *column.type_() {
        Type::BOOL => get!(bool).map(Value::from),
        Type::INT2 => get!(i16).map(Value::from),
        Type::INT4 => get!(i32).map(Value::from),
        Type::INT8 => get!(i64).map(Value::from),
        Type::OID => get!(u32).map(Value::from),
        Type::FLOAT4 => get!(f32).map(|f| number(f64::from(f))),
        Type::FLOAT8 => get!(f64).map(number),
        Type::NUMERIC => get!(Decimal).map(decimal_json),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => get!(String).map(Value::from),
        Type::JSON | Type::JSONB => get!(Value),
        Type::UUID => get!(uuid::Uuid).map(|u| Value::from(u.to_string())),
        Type::TIMESTAMPTZ => get!(DateTime<Utc>).map(|t| Value::from(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
        Type::TIMESTAMP => get!(NaiveDateTime).map(|t| Value::from(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string())),
        Type::DATE => get!(NaiveDate).map(|d| Value::from(d.format("%Y-%m-%d").to_string())),
        Type::TIME => get!(NaiveTime).map(|t| Value::from(t.format("%H:%M:%S%.f").to_string())),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => get!(Vec<Option<String>>).map(Value::from),
        Type::INT4_ARRAY => get!(Vec<Option<i32>>).map(Value::from),
        Type::INT8_ARRAY => get!(Vec<Option<i64>>).map(Value::from),
        ref other => {
            return Err(IoError::InvalidResponse(format!(
                "column `{}` has type {}, which the sql step cannot read; cast it in the statement (`{}::text`)",
                column.name(),
                other.name(),
                column.name()
            )));
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

/// A float as JSON; NaN and infinities have no JSON form and become null.
fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
}

/// A numeric as a JSON number: an integer when it has no fraction, a
/// double otherwise (cast to text in the statement for every digit).
fn decimal_json(d: Decimal) -> Value {
    let d = d.normalize();
    match (d.scale(), d.to_i64()) {
        (0, Some(i)) => Value::from(i),
        _ => d.to_f64().map(number).unwrap_or_else(|| Value::from(d.to_string())),
    }
}

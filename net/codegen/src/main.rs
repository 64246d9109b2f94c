//! Generates `sluice-codec`'s message types from Kafka's message JSON schemas.
//!
//! Usage: `codegen <schema-dir> <out-dir>`. Reads every `*.json` under
//! `schema-dir` (Kafka's `common/message/`), writes one Rust module per
//! request, response or header schema into `out-dir`, plus `mod.rs` with
//! `ApiKey`, `RequestBody` and `ResponseBody`. Output is deterministic, so a
//! regeneration from the same schemas is a no-op diff. No schema text (the
//! `about` strings) is copied into the output: only names, types and versions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Highest version number we treat as "and later" for `N+` ranges.
const VERSION_MAX: i16 = i16::MAX;

/// An inclusive version range; `None` means no versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Versions(Option<(i16, i16)>);

impl Versions {
    const NONE: Versions = Versions(None);

    fn parse(text: &str) -> Result<Versions> {
        let text = text.trim();
        if text == "none" {
            return Ok(Versions::NONE);
        }
        if let Some(lo) = text.strip_suffix('+') {
            return Ok(Versions(Some((lo.parse()?, VERSION_MAX))));
        }
        if let Some((lo, hi)) = text.split_once('-') {
            return Ok(Versions(Some((lo.parse()?, hi.parse()?))));
        }
        let v = text.parse()?;
        Ok(Versions(Some((v, v))))
    }

    fn is_empty(self) -> bool {
        self.0.is_none()
    }

    /// `self` minus `other`, where the result must be one range.
    fn minus(self, other: Versions) -> Result<Versions> {
        let (Some((a, b)), Some((c, d))) = (self.0, other.0) else {
            return Ok(self);
        };
        if d < a || c > b {
            return Ok(self);
        }
        if c <= a && d >= b {
            return Ok(Versions::NONE);
        }
        if c > a && d >= b {
            return Ok(Versions(Some((a, c - 1))));
        }
        if c <= a && d < b {
            return Ok(Versions(Some((d + 1, b))));
        }
        bail!("version range {self:?} minus {other:?} is not one range")
    }

    /// A Rust boolean expression over `version` that is true inside the range.
    fn cond(self) -> Cond {
        match self.0 {
            None => Cond::Never,
            Some((0, VERSION_MAX)) => Cond::Always,
            Some((lo, VERSION_MAX)) => Cond::Expr(format!("version >= {lo}")),
            Some((lo, hi)) if lo == hi => Cond::Expr(format!("version == {lo}")),
            Some((0, hi)) => Cond::Expr(format!("version <= {hi}")),
            Some((lo, hi)) => Cond::Expr(format!("({lo}..={hi}).contains(&version)")),
        }
    }
}

impl Versions {
    /// A Rust boolean expression over `version` that is true outside the
    /// range (for a range that is neither empty nor everything).
    fn negated_cond(self) -> String {
        match self.0 {
            Some((lo, VERSION_MAX)) => format!("version < {lo}"),
            Some((lo, hi)) if lo == hi => format!("version != {lo}"),
            Some((0, hi)) => format!("version > {hi}"),
            Some((lo, hi)) => format!("!({lo}..={hi}).contains(&version)"),
            None => "true".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cond {
    Always,
    Never,
    Expr(String),
}

impl Cond {
    /// As a value usable as a `bool` argument.
    fn value(&self) -> String {
        match self {
            Cond::Always => "true".into(),
            Cond::Never => "false".into(),
            Cond::Expr(e) => e.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    I8,
    I16,
    I32,
    I64,
    U16,
    F64,
    Bool,
    Str,
    Bytes,
    Records,
    Uuid,
    Struct(String),
    Array(Box<Ty>),
}

impl Ty {
    fn parse(text: &str) -> Ty {
        if let Some(inner) = text.strip_prefix("[]") {
            return Ty::Array(Box::new(Ty::parse(inner)));
        }
        match text {
            "int8" => Ty::I8,
            "int16" => Ty::I16,
            "int32" => Ty::I32,
            "int64" => Ty::I64,
            "uint16" => Ty::U16,
            "float64" => Ty::F64,
            "bool" => Ty::Bool,
            "string" => Ty::Str,
            "bytes" => Ty::Bytes,
            "records" => Ty::Records,
            "uuid" => Ty::Uuid,
            other => Ty::Struct(other.to_string()),
        }
    }

    fn rust(&self) -> String {
        match self {
            Ty::I8 => "i8".into(),
            Ty::I16 => "i16".into(),
            Ty::I32 => "i32".into(),
            Ty::I64 => "i64".into(),
            Ty::U16 => "u16".into(),
            Ty::F64 => "f64".into(),
            Ty::Bool => "bool".into(),
            Ty::Str => "String".into(),
            Ty::Bytes => "::bytes::Bytes".into(),
            Ty::Records => "crate::Records".into(),
            Ty::Uuid => "::uuid::Uuid".into(),
            Ty::Struct(name) => name.clone(),
            Ty::Array(inner) => format!("Vec<{}>", inner.rust()),
        }
    }

    fn is_int(&self) -> bool {
        matches!(self, Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::U16)
    }
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    rust_name: String,
    ty: Ty,
    versions: Versions,
    nullable: Versions,
    tagged: Versions,
    tag: Option<u32>,
    default: Option<String>,
    /// Field-level override of the message's flexible versions.
    flexible: Option<Versions>,
}

impl Field {
    /// Option-wrapped in Rust: nullable in some version, or a `records` field.
    fn is_option(&self) -> bool {
        !self.nullable.is_empty() || self.ty == Ty::Records
    }

    fn rust_type(&self) -> String {
        if self.is_option() {
            format!("Option<{}>", self.ty.rust())
        } else {
            self.ty.rust()
        }
    }
}

#[derive(Debug, Clone)]
struct StructDef {
    name: String,
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Schema {
    file_stem: String,
    kind: String,
    name: String,
    api_key: Option<i16>,
    valid: Versions,
    flexible: Versions,
    latest_unstable: bool,
    /// The top-level struct first, then nested and common structs.
    structs: Vec<StructDef>,
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None => false,
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    match out.as_str() {
        "type" | "match" | "ref" | "self" | "struct" | "enum" | "fn" | "mod" | "use" | "move"
        | "loop" | "where" | "impl" | "trait" | "in" | "as" | "box" | "crate" | "dyn" | "let"
        | "mut" | "pub" | "return" | "static" | "super" | "async" | "await" | "const" | "if"
        | "else" | "for" | "while" | "break" | "continue" | "extern" | "yield" | "try" => {
            format!("r#{out}")
        }
        _ => out,
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_fields(
    fields: &[Value],
    structs: &mut BTreeMap<String, StructDef>,
    order: &mut Vec<String>,
    renames: &BTreeMap<&str, &str>,
) -> Result<Vec<Field>> {
    let mut out = Vec::new();
    for f in fields {
        let name = str_field(f, "name")
            .context("field without name")?
            .to_string();
        let ty_text = str_field(f, "type").context("field without type")?;
        let ty = Ty::parse(ty_text);
        if let Some(sub) = f.get("fields").and_then(Value::as_array) {
            let struct_name = ty_text.trim_start_matches("[]").to_string();
            let sub_fields = parse_fields(sub, structs, order, renames)?;
            if structs.contains_key(&struct_name) {
                bail!("struct {struct_name} defined twice");
            }
            order.push(struct_name.clone());
            structs.insert(
                struct_name.clone(),
                StructDef {
                    name: struct_name,
                    fields: sub_fields,
                },
            );
        }
        let versions =
            Versions::parse(str_field(f, "versions").context("field without versions")?)?;
        let nullable = match str_field(f, "nullableVersions") {
            Some(text) => Versions::parse(text)?,
            None => Versions::NONE,
        };
        let tagged = match str_field(f, "taggedVersions") {
            Some(text) => Versions::parse(text)?,
            None => Versions::NONE,
        };
        let tag = match f.get("tag") {
            Some(v) => Some(u32::try_from(v.as_u64().context("tag not a number")?)?),
            None => None,
        };
        if !tagged.is_empty() && tag.is_none() {
            bail!("tagged field {name} without a tag");
        }
        let default = match f.get("default") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let flexible = match str_field(f, "flexibleVersions") {
            Some(text) => Some(Versions::parse(text)?),
            None => None,
        };
        let rust_name = renames
            .get(name.as_str())
            .map_or_else(|| snake_case(&name), |r| (*r).to_string());
        out.push(Field {
            name,
            rust_name,
            ty,
            versions,
            nullable,
            tagged,
            tag,
            default,
            flexible,
        });
    }
    Ok(out)
}

fn parse_schema(path: &Path) -> Result<Option<Schema>> {
    let text = fs::read_to_string(path)?;
    let json: Value = serde_json::from_str(&strip_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    let kind = str_field(&json, "type").context("no type")?.to_string();
    if !matches!(kind.as_str(), "request" | "response" | "header") {
        return Ok(None);
    }
    let name = str_field(&json, "name").context("no name")?.to_string();
    let api_key = json
        .get("apiKey")
        .and_then(Value::as_i64)
        .map(i16::try_from)
        .transpose()?;
    let valid = Versions::parse(str_field(&json, "validVersions").context("no validVersions")?)?;
    let flexible = Versions::parse(str_field(&json, "flexibleVersions").unwrap_or("none"))?;
    let latest_unstable = json
        .get("latestVersionUnstable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // The two headers get the short names the rest of sluice uses.
    let mut renames = BTreeMap::new();
    if name == "RequestHeader" {
        renames.insert("RequestApiKey", "api_key");
        renames.insert("RequestApiVersion", "api_version");
    }
    let mut structs = BTreeMap::new();
    let mut order = Vec::new();
    let empty = Vec::new();
    let top_fields = parse_fields(
        json.get("fields")
            .and_then(Value::as_array)
            .unwrap_or(&empty),
        &mut structs,
        &mut order,
        &renames,
    )?;
    if let Some(common) = json.get("commonStructs").and_then(Value::as_array) {
        for cs in common {
            let cs_name = str_field(cs, "name")
                .context("common struct without name")?
                .to_string();
            let fields = parse_fields(
                cs.get("fields").and_then(Value::as_array).unwrap_or(&empty),
                &mut structs,
                &mut order,
                &renames,
            )?;
            if structs.contains_key(&cs_name) {
                bail!("common struct {cs_name} defined twice");
            }
            order.push(cs_name.clone());
            structs.insert(
                cs_name.clone(),
                StructDef {
                    name: cs_name,
                    fields,
                },
            );
        }
    }
    let mut all = vec![StructDef {
        name: name.clone(),
        fields: top_fields,
    }];
    for struct_name in order {
        all.push(structs.remove(&struct_name).expect("registered above"));
    }
    // Every referenced struct type must be defined in the same file.
    for s in &all {
        for f in &s.fields {
            let mut ty = &f.ty;
            while let Ty::Array(inner) = ty {
                ty = inner;
            }
            if let Ty::Struct(n) = ty {
                if !all.iter().any(|d| &d.name == n) {
                    bail!(
                        "{}: field {} has undefined struct type {n}",
                        path.display(),
                        f.name
                    );
                }
            }
        }
    }
    let file_stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("file name")?
        .to_string();
    Ok(Some(Schema {
        file_stem,
        kind,
        name,
        api_key,
        valid,
        flexible,
        latest_unstable,
        structs: all,
    }))
}

/// Emits Rust for one schema file.
struct Gen<'a> {
    schema: &'a Schema,
    out: String,
}

fn parse_int(text: &str) -> Result<i128> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let value = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16)?
    } else {
        digits.parse::<i128>()?
    };
    Ok(if neg { -value } else { value })
}

fn rust_str_literal(s: &str) -> String {
    format!("{s:?}")
}

impl Gen<'_> {
    fn flex_cond(&self, field: Option<&Field>) -> Cond {
        let versions = field
            .and_then(|f| f.flexible)
            .unwrap_or(self.schema.flexible);
        versions.cond()
    }

    fn is_struct_default_derivable(&self, s: &StructDef) -> Result<bool> {
        for f in &s.fields {
            if !self.default_is_plain(f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the field's default equals `Default::default()` of its type.
    fn default_is_plain(&self, f: &Field) -> Result<bool> {
        Ok(self.default_expr(f)? == self.plain_default(f))
    }

    fn plain_default(&self, f: &Field) -> String {
        if f.is_option() {
            return "None".into();
        }
        self.plain_default_of(&f.ty)
    }

    fn plain_default_of(&self, ty: &Ty) -> String {
        match ty {
            t if t.is_int() => "0".into(),
            Ty::F64 => "0.0".into(),
            Ty::Bool => "false".into(),
            Ty::Str => "String::new()".into(),
            Ty::Bytes => "::bytes::Bytes::new()".into(),
            Ty::Records => "crate::Records::new()".into(),
            Ty::Uuid => "::uuid::Uuid::nil()".into(),
            Ty::Struct(name) => format!("{name}::default()"),
            Ty::Array(_) => "Vec::new()".into(),
            _ => unreachable!("all types covered"),
        }
    }

    /// The schema default for a field as a Rust expression.
    fn default_expr(&self, f: &Field) -> Result<String> {
        let default = f.default.as_deref();
        if f.ty == Ty::Records {
            return Ok("None".into());
        }
        if f.is_option() {
            if default == Some("null") {
                return Ok("None".into());
            }
            let inner = self.non_null_default(f, default)?;
            return Ok(format!("Some({inner})"));
        }
        if default == Some("null") {
            bail!("field {} defaults to null but is never nullable", f.name);
        }
        self.non_null_default(f, default)
    }

    fn non_null_default(&self, f: &Field, default: Option<&str>) -> Result<String> {
        let Some(text) = default else {
            return Ok(self.plain_default_of(&f.ty));
        };
        Ok(match &f.ty {
            t if t.is_int() => {
                let v = parse_int(text).with_context(|| format!("default of {}", f.name))?;
                let (min, max): (i128, i128) = match t {
                    Ty::I8 => (i8::MIN.into(), i8::MAX.into()),
                    Ty::I16 => (i16::MIN.into(), i16::MAX.into()),
                    Ty::I32 => (i32::MIN.into(), i32::MAX.into()),
                    Ty::I64 => (i64::MIN.into(), i64::MAX.into()),
                    Ty::U16 => (u16::MIN.into(), u16::MAX.into()),
                    _ => unreachable!("is_int"),
                };
                if v < min || v > max {
                    bail!("default {text} of {} out of range", f.name);
                }
                let rust_ty = t.rust();
                if v == min && min != 0 {
                    format!("{rust_ty}::MIN")
                } else if v == max {
                    format!("{rust_ty}::MAX")
                } else {
                    v.to_string()
                }
            }
            Ty::F64 => {
                let v: f64 = text
                    .parse()
                    .with_context(|| format!("default of {}", f.name))?;
                format!("{v:?}")
            }
            Ty::Bool => match text.to_ascii_lowercase().as_str() {
                "true" => "true".into(),
                "false" => "false".into(),
                other => bail!("bool default {other} of {}", f.name),
            },
            Ty::Str if text.is_empty() => "String::new()".into(),
            Ty::Str => format!("String::from({})", rust_str_literal(text)),
            Ty::Uuid | Ty::Bytes | Ty::Struct(_) | Ty::Array(_) => {
                if text.is_empty() {
                    self.plain_default_of(&f.ty)
                } else {
                    bail!("unsupported default {text} for {}", f.name)
                }
            }
            _ => bail!("unsupported default {text} for {}", f.name),
        })
    }

    /// Expression (returning `Result<T, DecodeError>`) that decodes one
    /// non-null value of `ty` from decoder `d`.
    fn read_value(&self, ty: &Ty, d: &str, flex: &str) -> String {
        match ty {
            Ty::I8 => format!("{d}.i8()"),
            Ty::I16 => format!("{d}.i16()"),
            Ty::I32 => format!("{d}.i32()"),
            Ty::I64 => format!("{d}.i64()"),
            Ty::U16 => format!("{d}.u16()"),
            Ty::F64 => format!("{d}.f64()"),
            Ty::Bool => format!("{d}.bool()"),
            Ty::Uuid => format!("{d}.uuid()"),
            Ty::Str => format!("{d}.string({flex})"),
            Ty::Bytes => format!("{d}.bytes({flex})"),
            Ty::Records => format!("{d}.records({flex})"),
            Ty::Struct(name) => format!("{name}::decode({d}, version)"),
            Ty::Array(inner) => {
                let e = self.read_value(inner, "d", flex);
                format!("{d}.array({flex}, |d| {e})")
            }
        }
    }

    /// Expression (returning `Result<FieldType, DecodeError>`) for a field.
    fn read_field(&self, f: &Field, flex: &str) -> Result<String> {
        if !f.is_option() {
            return Ok(self.read_value(&f.ty, "dec", flex));
        }
        let nullable = f.nullable.cond().value();
        Ok(match &f.ty {
            Ty::Str => format!("dec.opt_string({flex}, {nullable})"),
            Ty::Bytes => format!("dec.opt_bytes({flex}, {nullable})"),
            Ty::Records => format!("dec.opt_records({flex}, {nullable})"),
            Ty::Array(inner) => {
                let e = self.read_value(inner, "d", flex);
                format!("dec.opt_array({flex}, {nullable}, |d| {e})")
            }
            Ty::Struct(name) => {
                format!("dec.opt_struct({nullable}, |d| {name}::decode(d, version))")
            }
            other => bail!("nullable {other:?} field {} unsupported", f.name),
        })
    }

    /// Statement that encodes one non-null value with encoder `e`; `val` is
    /// the value as a place (`self.x` or `*item`), `r` a reference to it.
    fn write_value(&self, ty: &Ty, e: &str, val: &str, r: &str, flex: &str) -> String {
        match ty {
            Ty::I8 => format!("{e}.i8({val})"),
            Ty::I16 => format!("{e}.i16({val})"),
            Ty::I32 => format!("{e}.i32({val})"),
            Ty::I64 => format!("{e}.i64({val})"),
            Ty::U16 => format!("{e}.u16({val})"),
            Ty::F64 => format!("{e}.f64({val})"),
            Ty::Bool => format!("{e}.bool({val})"),
            Ty::Uuid => format!("{e}.uuid({r})"),
            Ty::Str => format!("{e}.string({r}, {flex})"),
            Ty::Bytes => format!("{e}.bytes({r}, {flex})"),
            Ty::Records => format!("{e}.records(Some({r}), {flex}, false)"),
            Ty::Struct(_) => format!("{}.encode({e}, version)", r.trim_start_matches('&')),
            Ty::Array(inner) => {
                let w = self.write_value(inner, "e", "*item", "item", flex);
                format!("{e}.array({r}, {flex}, |e, item| {w})")
            }
        }
    }

    fn write_field(&self, f: &Field, flex: &str) -> Result<String> {
        let v = format!("self.{}", f.rust_name);
        if !f.is_option() {
            return Ok(self.write_value(&f.ty, "enc", &v, &format!("&{v}"), flex));
        }
        let nullable = f.nullable.cond().value();
        Ok(match &f.ty {
            Ty::Str => format!("enc.opt_string({v}.as_deref(), {flex}, {nullable})"),
            Ty::Bytes => format!("enc.opt_bytes({v}.as_ref(), {flex}, {nullable})"),
            Ty::Records => format!("enc.records({v}.as_ref(), {flex}, {nullable})"),
            Ty::Array(inner) => {
                let w = self.write_value(inner, "e", "*item", "item", flex);
                format!("enc.opt_array({v}.as_deref(), {flex}, {nullable}, |e, item| {w})")
            }
            Ty::Struct(_) => {
                format!("enc.opt_struct({v}.as_ref(), {nullable}, |e, s| s.encode(e, version))")
            }
            other => bail!("nullable {other:?} field {} unsupported", f.name),
        })
    }

    /// A boolean expression: the field differs from its default (so a tagged
    /// field must be written).
    fn differs_from_default(&self, f: &Field) -> Result<String> {
        let v = format!("self.{}", f.rust_name);
        let default = self.default_expr(f)?;
        Ok(match default.as_str() {
            "None" => format!("{v}.is_some()"),
            "false" => v.clone(),
            "true" => format!("!{v}"),
            "String::new()" | "Vec::new()" | "::bytes::Bytes::new()" | "crate::Records::new()" => {
                format!("!{v}.is_empty()")
            }
            "::uuid::Uuid::nil()" => format!("!{v}.is_nil()"),
            d if f.ty.is_int() || f.ty == Ty::F64 => format!("{v} != {d}"),
            d => format!("{v} != {d}"),
        })
    }

    /// A non-default sample value for tests.
    fn sample_value(&self, ty: &Ty, seed: usize, avoid: Option<&str>) -> String {
        let n = (seed % 60) + 2;
        match ty {
            t if t.is_int() => {
                let mut v = n;
                if avoid == Some(&v.to_string()) {
                    v += 1;
                }
                v.to_string()
            }
            Ty::F64 => format!("{}.5", n),
            Ty::Bool => {
                if avoid == Some("true") {
                    "false".into()
                } else {
                    "true".into()
                }
            }
            Ty::Str => format!("String::from(\"s{n}\")"),
            Ty::Bytes => format!("::bytes::Bytes::from_static(&[{n}, 1, 2])"),
            // Two chunks, so round trips check that chunking does not show
            // on the wire.
            Ty::Records => "crate::Records::from(vec![::bytes::Bytes::from(vec![0x5a_u8; 300]), ::bytes::Bytes::from(vec![0x5a_u8; 20])])".into(),
            Ty::Uuid => {
                format!("::uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_{n:04x}_0000_0000_0001)")
            }
            Ty::Struct(name) => format!("{name}::populated(version)"),
            Ty::Array(inner) => {
                let a = self.sample_value(inner, seed, None);
                let b = self.sample_value(inner, seed + 1, None);
                format!("vec![{a}, {b}]")
            }
            _ => unreachable!("all types covered"),
        }
    }

    fn emit_struct(&mut self, s: &StructDef) -> Result<()> {
        let flex = self.flex_cond(None);
        let derive_default = self.is_struct_default_derivable(s)?;
        let w = &mut String::new();
        writeln!(
            w,
            "#[derive(Debug, Clone, PartialEq{})]",
            if derive_default { ", Default" } else { "" }
        )?;
        writeln!(w, "pub struct {} {{", s.name)?;
        for f in &s.fields {
            let mut doc = format!("`{}`: versions {}", f.name, describe(f.versions));
            if !f.nullable.is_empty() {
                write!(doc, ", nullable {}", describe(f.nullable))?;
            }
            if !f.tagged.is_empty() {
                write!(
                    doc,
                    ", tag {} in {}",
                    f.tag.unwrap_or(0),
                    describe(f.tagged)
                )?;
            }
            if let Some(d) = &f.default {
                write!(doc, ", default `{d}`")?;
            }
            writeln!(w, "    /// {doc}.")?;
            writeln!(w, "    pub {}: {},", f.rust_name, f.rust_type())?;
        }
        writeln!(w, "}}\n")?;

        if !derive_default {
            writeln!(w, "impl Default for {} {{", s.name)?;
            writeln!(w, "    fn default() -> Self {{")?;
            writeln!(w, "        Self {{")?;
            for f in &s.fields {
                writeln!(w, "            {}: {},", f.rust_name, self.default_expr(f)?)?;
            }
            writeln!(w, "        }}\n    }}\n}}\n")?;
        }

        // Decode.
        let mut body = String::new();
        let flex_value = match &flex {
            Cond::Expr(e) => {
                writeln!(body, "        let flexible = {e};")?;
                "flexible".to_string()
            }
            other => other.value(),
        };
        let mut tagged_fields = Vec::new();
        for f in &s.fields {
            let fflex = match f.flexible {
                Some(v) => v.cond().value(),
                None => flex_value.clone(),
            };
            let regular = f.versions.minus(f.tagged)?;
            if !f.tagged.is_empty() {
                tagged_fields.push(f);
            }
            let read = self.read_field(f, &fflex)?;
            let default = self.default_expr(f)?;
            let binding = if f.tagged.is_empty() {
                "let"
            } else {
                "let mut"
            };
            match regular.cond() {
                Cond::Always => writeln!(body, "        {binding} {} = {read}?;", f.rust_name)?,
                Cond::Never => writeln!(body, "        {binding} {} = {default};", f.rust_name)?,
                Cond::Expr(e) => writeln!(
                    body,
                    "        {binding} {} = if {e} {{ {read}? }} else {{ {default} }};",
                    f.rust_name
                )?,
            }
        }
        let tagged_block = if tagged_fields.is_empty() {
            "        dec.skip_tagged_fields()?;\n".to_string()
        } else {
            let mut t = String::new();
            writeln!(t, "        for _ in 0..dec.tagged_count()? {{")?;
            writeln!(t, "            let (tag, region) = dec.tagged_field()?;")?;
            for (i, f) in tagged_fields.iter().enumerate() {
                let read = self.read_field(f, &flex_value)?;
                let cond = match f.tagged.cond() {
                    Cond::Always => String::new(),
                    Cond::Expr(e) => format!(" && {e}"),
                    Cond::Never => unreachable!("tagged fields have tagged versions"),
                };
                let kw = if i == 0 { "if" } else { "} else if" };
                writeln!(
                    t,
                    "            {kw} tag == {}{cond} {{",
                    f.tag.expect("checked at parse")
                )?;
                writeln!(t, "                {} = {read}?;", f.rust_name)?;
            }
            writeln!(t, "            }}")?;
            writeln!(t, "            dec.leave_region(region);")?;
            writeln!(t, "        }}")?;
            t
        };
        match &flex {
            Cond::Always => body.push_str(&tagged_block),
            Cond::Never => {}
            Cond::Expr(_) => {
                writeln!(body, "        if flexible {{")?;
                for line in tagged_block.lines() {
                    writeln!(body, "    {line}")?;
                }
                writeln!(body, "        }}")?;
            }
        }
        write!(body, "        Ok(Self {{")?;
        if s.fields.is_empty() {
            writeln!(body, "}})")?;
        } else {
            writeln!(body)?;
            for f in &s.fields {
                writeln!(body, "            {},", f.rust_name)?;
            }
            writeln!(body, "        }})")?;
        }
        let version_param = if uses_ident(&body, "version") {
            "version"
        } else {
            "_version"
        };
        let dec_param = if uses_ident(&body, "dec") {
            "dec"
        } else {
            "_dec"
        };
        writeln!(w, "impl {} {{", s.name)?;
        writeln!(
            w,
            "    pub fn decode({dec_param}: &mut crate::Decoder, {version_param}: i16) -> Result<Self, crate::DecodeError> {{"
        )?;
        w.push_str(&body);
        writeln!(w, "    }}\n")?;

        // Encode.
        let mut body = String::new();
        if let Cond::Expr(e) = &flex {
            writeln!(body, "        let flexible = {e};")?;
        }
        for f in &s.fields {
            let fflex = match f.flexible {
                Some(v) => v.cond().value(),
                None => flex_value.clone(),
            };
            let regular = f.versions.minus(f.tagged)?;
            let write = self.write_field(f, &fflex)?;
            match regular.cond() {
                Cond::Always => writeln!(body, "        {write};")?,
                Cond::Never => {}
                Cond::Expr(e) => writeln!(body, "        if {e} {{ {write}; }}")?,
            }
        }
        let mut t = String::new();
        if tagged_fields.is_empty() {
            writeln!(t, "        enc.uvarint(0);")?;
        } else {
            writeln!(t, "        let mut tagged_count = 0;")?;
            let mut conds = Vec::new();
            for f in &tagged_fields {
                let mut c = self.differs_from_default(f)?;
                if let Cond::Expr(e) = f.tagged.cond() {
                    c = format!("{e} && {c}");
                }
                writeln!(t, "        if {c} {{ tagged_count += 1; }}")?;
                conds.push(c);
            }
            writeln!(t, "        enc.uvarint(tagged_count);")?;
            let mut sorted: Vec<_> = tagged_fields.iter().zip(conds).collect();
            sorted.sort_by_key(|(f, _)| f.tag);
            for (f, c) in sorted {
                let write = self.write_field(f, &flex_value)?.replacen("enc.", "e.", 1);
                let write = if write.starts_with("self.") {
                    // A struct field writes itself: `self.x.encode(enc, version)`.
                    write.replace("(enc,", "(e,")
                } else {
                    write
                };
                writeln!(t, "        if {c} {{")?;
                writeln!(
                    t,
                    "            enc.tagged({}, |e| {write});",
                    f.tag.expect("checked at parse")
                )?;
                writeln!(t, "        }}")?;
            }
        }
        match &flex {
            Cond::Always => body.push_str(&t),
            Cond::Never => {}
            Cond::Expr(_) => {
                writeln!(body, "        if flexible {{")?;
                for line in t.lines() {
                    writeln!(body, "    {line}")?;
                }
                writeln!(body, "        }}")?;
            }
        }
        let version_param = if uses_ident(&body, "version") {
            "version"
        } else {
            "_version"
        };
        let enc_param = if uses_ident(&body, "enc") {
            "enc"
        } else {
            "_enc"
        };
        writeln!(
            w,
            "    pub fn encode(&self, {enc_param}: &mut crate::Encoder, {version_param}: i16) {{"
        )?;
        w.push_str(&body);
        writeln!(w, "    }}")?;
        writeln!(w, "}}\n")?;

        // Test sample.
        let mut body = String::new();
        if s.fields.is_empty() {
            writeln!(body, "        Self {{}}")?;
        } else {
            writeln!(body, "        Self {{")?;
            for (i, f) in s.fields.iter().enumerate() {
                let default = self.default_expr(f)?;
                let avoid = f.default.as_deref().map(|d| {
                    if f.ty.is_int() {
                        parse_int(d).map(|v| v.to_string()).unwrap_or_default()
                    } else {
                        d.to_ascii_lowercase()
                    }
                });
                let mut sample = self.sample_value(&f.ty, i, avoid.as_deref());
                if f.is_option() {
                    sample = format!("Some({sample})");
                }
                match f.versions.cond() {
                    Cond::Always => writeln!(body, "            {}: {sample},", f.rust_name)?,
                    Cond::Never => writeln!(body, "            {}: {default},", f.rust_name)?,
                    // A bool sample is the negated default: the condition itself.
                    Cond::Expr(e) if f.ty == Ty::Bool && sample == "true" && default == "false" => {
                        writeln!(body, "            {}: {e},", f.rust_name)?;
                    }
                    Cond::Expr(_) if f.ty == Ty::Bool && sample == "false" && default == "true" => {
                        writeln!(
                            body,
                            "            {}: {},",
                            f.rust_name,
                            f.versions.negated_cond()
                        )?;
                    }
                    Cond::Expr(e) => writeln!(
                        body,
                        "            {}: if {e} {{ {sample} }} else {{ {default} }},",
                        f.rust_name
                    )?,
                }
            }
            writeln!(body, "        }}")?;
        }
        let version_param = if uses_ident(&body, "version") {
            "version"
        } else {
            "_version"
        };
        writeln!(w, "#[cfg(test)]")?;
        writeln!(w, "impl {} {{", s.name)?;
        writeln!(
            w,
            "    /// A value with every field present in `version` set to a non-default value."
        )?;
        writeln!(
            w,
            "    pub(crate) fn populated({version_param}: i16) -> Self {{"
        )?;
        w.push_str(&body);
        writeln!(w, "    }}\n}}\n")?;

        self.out.push_str(w);
        Ok(())
    }

    fn emit(mut self) -> Result<String> {
        let s = self.schema;
        writeln!(
            self.out,
            "// @generated by net/codegen from Kafka's {}.json. Do not edit.",
            s.file_stem
        )?;
        writeln!(
            self.out,
            "//! `{}`: valid versions {}, flexible {}{}.",
            s.name,
            describe(s.valid),
            describe(s.flexible),
            if s.latest_unstable {
                ", latest version unstable"
            } else {
                ""
            }
        )?;
        writeln!(self.out)?;
        for st in &s.structs.clone() {
            self.emit_struct(st)?;
        }
        Ok(self.out)
    }
}

/// Whether `ident` occurs in `code` as a whole identifier.
fn uses_ident(code: &str, ident: &str) -> bool {
    let is_ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(ident).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + ident.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

fn describe(v: Versions) -> String {
    match v.0 {
        None => "none".into(),
        Some((lo, VERSION_MAX)) => format!("{lo}+"),
        Some((lo, hi)) if lo == hi => format!("{lo}"),
        Some((lo, hi)) => format!("{lo}-{hi}"),
    }
}

struct Api<'a> {
    key: i16,
    name: String,
    request: &'a Schema,
    response: &'a Schema,
}

impl Api<'_> {
    fn decodable(&self) -> bool {
        !self.request.valid.is_empty()
    }

    /// The advertised range: valid versions, less an unstable latest one.
    fn advertised(&self) -> Versions {
        match self.request.valid.0 {
            Some((lo, hi)) if self.request.latest_unstable => {
                if hi > lo {
                    Versions(Some((lo, hi - 1)))
                } else {
                    Versions::NONE
                }
            }
            other => Versions(other),
        }
    }
}

fn emit_mod(schemas: &[Schema]) -> Result<String> {
    let mut by_key: BTreeMap<i16, (Option<&Schema>, Option<&Schema>)> = BTreeMap::new();
    for s in schemas {
        if let Some(key) = s.api_key {
            let entry = by_key.entry(key).or_default();
            match s.kind.as_str() {
                "request" => entry.0 = Some(s),
                "response" => entry.1 = Some(s),
                _ => bail!("api key on {}", s.name),
            }
        }
    }
    let mut apis = Vec::new();
    for (key, (req, resp)) in by_key {
        let request = req.with_context(|| format!("api key {key} has no request"))?;
        let response = resp.with_context(|| format!("api key {key} has no response"))?;
        if request.valid != response.valid {
            bail!("api key {key}: request and response versions differ");
        }
        let name = request
            .name
            .strip_suffix("Request")
            .context("request name")?
            .to_string();
        apis.push(Api {
            key,
            name,
            request,
            response,
        });
    }

    let mut o = String::new();
    writeln!(
        o,
        "// @generated by net/codegen from Kafka's message schemas. Do not edit."
    )?;
    writeln!(
        o,
        "//! Message types for every Kafka API, and the API key table."
    )?;
    writeln!(o)?;
    let mut modules: Vec<&Schema> = schemas.iter().collect();
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    for s in &modules {
        if s.api_key.is_some() && s.valid.is_empty() {
            continue;
        }
        writeln!(o, "pub mod {};", snake_case(&s.name))?;
    }
    writeln!(o)?;
    for s in &modules {
        if s.api_key.is_some() && s.valid.is_empty() {
            continue;
        }
        writeln!(o, "pub use {}::{};", snake_case(&s.name), s.name)?;
    }

    writeln!(
        o,
        "\n/// Every API key in Kafka's schemas, including ones whose versions were all removed."
    )?;
    writeln!(
        o,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]"
    )?;
    writeln!(o, "#[repr(i16)]")?;
    writeln!(o, "pub enum ApiKey {{")?;
    for a in &apis {
        writeln!(o, "    {} = {},", a.name, a.key)?;
    }
    writeln!(o, "}}\n")?;
    writeln!(o, "impl ApiKey {{")?;
    writeln!(o, "    /// All keys, in ascending order.")?;
    writeln!(o, "    pub const ALL: &'static [ApiKey] = &[")?;
    for a in &apis {
        writeln!(o, "        ApiKey::{},", a.name)?;
    }
    writeln!(o, "    ];\n")?;
    writeln!(o, "    pub fn from_i16(key: i16) -> Option<ApiKey> {{")?;
    writeln!(o, "        match key {{")?;
    for a in &apis {
        writeln!(o, "            {} => Some(ApiKey::{}),", a.key, a.name)?;
    }
    writeln!(o, "            _ => None,\n        }}\n    }}\n")?;
    writeln!(
        o,
        "    pub fn as_i16(self) -> i16 {{\n        self as i16\n    }}\n"
    )?;
    writeln!(o, "    /// Kafka's name for the API.")?;
    writeln!(o, "    pub fn name(self) -> &'static str {{")?;
    writeln!(o, "        match self {{")?;
    for a in &apis {
        writeln!(o, "            ApiKey::{} => \"{}\",", a.name, a.name)?;
    }
    writeln!(o, "        }}\n    }}\n")?;
    writeln!(
        o,
        "    /// Versions this codec decodes and encodes (the schema's `validVersions`,"
    )?;
    writeln!(
        o,
        "    /// an unstable latest version included); `None` when all were removed."
    )?;
    writeln!(
        o,
        "    pub fn valid_versions(self) -> Option<(i16, i16)> {{"
    )?;
    writeln!(o, "        match self {{")?;
    for a in &apis {
        match a.request.valid.0 {
            Some((lo, hi)) => writeln!(o, "            ApiKey::{} => Some(({lo}, {hi})),", a.name)?,
            None => writeln!(o, "            ApiKey::{} => None,", a.name)?,
        }
    }
    writeln!(o, "        }}\n    }}\n")?;
    writeln!(
        o,
        "    /// The range to advertise in ApiVersions: valid versions less an unstable"
    )?;
    writeln!(
        o,
        "    /// latest one. Empty (`min > max`, as `(0, -1)`) when there is none."
    )?;
    writeln!(o, "    pub fn supported_versions(self) -> (i16, i16) {{")?;
    writeln!(o, "        match self {{")?;
    for a in &apis {
        match a.advertised().0 {
            Some((lo, hi)) => writeln!(o, "            ApiKey::{} => ({lo}, {hi}),", a.name)?,
            None => writeln!(o, "            ApiKey::{} => (0, -1),", a.name)?,
        }
    }
    writeln!(o, "        }}\n    }}\n")?;
    writeln!(
        o,
        "    /// Whether `version` of the request uses the flexible encoding."
    )?;
    writeln!(
        o,
        "    pub fn is_flexible_request(self, version: i16) -> bool {{"
    )?;
    writeln!(o, "        match self {{")?;
    for a in &apis {
        writeln!(
            o,
            "            ApiKey::{} => {},",
            a.name,
            a.request.flexible.cond().value()
        )?;
    }
    writeln!(o, "        }}\n    }}\n")?;
    writeln!(
        o,
        "    /// Whether `version` of the response uses the flexible encoding."
    )?;
    writeln!(
        o,
        "    pub fn is_flexible_response(self, version: i16) -> bool {{"
    )?;
    writeln!(o, "        match self {{")?;
    for a in &apis {
        writeln!(
            o,
            "            ApiKey::{} => {},",
            a.name,
            a.response.flexible.cond().value()
        )?;
    }
    writeln!(o, "        }}\n    }}\n}}\n")?;

    for (kind, suffix) in [("Request", "request"), ("Response", "response")] {
        writeln!(
            o,
            "/// A decoded {suffix} body, one variant per API that has versions."
        )?;
        writeln!(o, "#[derive(Debug, Clone, PartialEq)]")?;
        writeln!(o, "#[allow(clippy::large_enum_variant)]")?;
        writeln!(o, "pub enum {kind}Body {{")?;
        for a in apis.iter().filter(|a| a.decodable()) {
            writeln!(o, "    {}({}{kind}),", a.name, a.name)?;
        }
        writeln!(o, "}}\n")?;
        writeln!(o, "impl {kind}Body {{")?;
        writeln!(o, "    pub fn api_key(&self) -> ApiKey {{")?;
        writeln!(o, "        match self {{")?;
        for a in apis.iter().filter(|a| a.decodable()) {
            writeln!(
                o,
                "            {kind}Body::{}(_) => ApiKey::{},",
                a.name, a.name
            )?;
        }
        writeln!(o, "        }}\n    }}\n")?;
        writeln!(
            o,
            "    /// Decodes the body of `api_key` at `version`, which must be one of its"
        )?;
        writeln!(o, "    /// valid versions.")?;
        writeln!(o, "    pub fn decode(api_key: ApiKey, version: i16, dec: &mut crate::Decoder) -> Result<Self, crate::DecodeError> {{")?;
        writeln!(o, "        match api_key.valid_versions() {{")?;
        writeln!(
            o,
            "            Some((lo, hi)) if lo <= version && version <= hi => {{}}"
        )?;
        writeln!(o, "            _ => return Err(crate::DecodeError::UnsupportedVersion {{ api_key: api_key.as_i16(), version }}),")?;
        writeln!(o, "        }}")?;
        writeln!(o, "        Ok(match api_key {{")?;
        for a in &apis {
            if a.decodable() {
                writeln!(
                    o,
                    "            ApiKey::{n} => {kind}Body::{n}({n}{kind}::decode(dec, version)?),",
                    n = a.name
                )?;
            } else {
                writeln!(
                    o,
                    "            ApiKey::{} => unreachable!(\"no valid versions\"),",
                    a.name
                )?;
            }
        }
        writeln!(o, "        }})\n    }}\n")?;
        writeln!(
            o,
            "    pub fn encode(&self, enc: &mut crate::Encoder, version: i16) {{"
        )?;
        writeln!(o, "        match self {{")?;
        for a in apis.iter().filter(|a| a.decodable()) {
            writeln!(
                o,
                "            {kind}Body::{}(body) => body.encode(enc, version),",
                a.name
            )?;
        }
        writeln!(o, "        }}\n    }}\n")?;
        writeln!(o, "    #[cfg(test)]")?;
        writeln!(
            o,
            "    pub(crate) fn populated(api_key: ApiKey, version: i16) -> Option<Self> {{"
        )?;
        writeln!(o, "        Some(match api_key {{")?;
        for a in &apis {
            if a.decodable() {
                writeln!(
                    o,
                    "            ApiKey::{n} => {kind}Body::{n}({n}{kind}::populated(version)),",
                    n = a.name
                )?;
            } else {
                writeln!(o, "            ApiKey::{} => return None,", a.name)?;
            }
        }
        writeln!(o, "        }})\n    }}\n}}\n")?;
    }
    Ok(o)
}

fn run(schema_dir: &Path, out_dir: &Path) -> Result<()> {
    let mut paths: Vec<PathBuf> = fs::read_dir(schema_dir)
        .with_context(|| format!("reading {}", schema_dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    let mut schemas = Vec::new();
    for p in &paths {
        if let Some(s) = parse_schema(p)? {
            schemas.push(s);
        }
    }
    if schemas.is_empty() {
        bail!("no request/response schemas in {}", schema_dir.display());
    }
    fs::create_dir_all(out_dir)?;
    // Remove stale generated modules so a dropped schema leaves no file behind.
    for entry in fs::read_dir(out_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            fs::remove_file(&path)?;
        }
    }
    for s in &schemas {
        if s.api_key.is_some() && s.valid.is_empty() {
            continue;
        }
        let code = Gen {
            schema: s,
            out: String::new(),
        }
        .emit()?;
        fs::write(out_dir.join(format!("{}.rs", snake_case(&s.name))), code)?;
    }
    fs::write(out_dir.join("mod.rs"), emit_mod(&schemas)?)?;
    println!(
        "generated {} schemas into {}",
        schemas.len(),
        out_dir.display()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, schema_dir, out_dir] = args.as_slice() else {
        bail!("usage: codegen <schema-dir> <out-dir>");
    };
    run(Path::new(schema_dir), Path::new(out_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ranges() {
        assert_eq!(
            Versions::parse("3+").unwrap(),
            Versions(Some((3, VERSION_MAX)))
        );
        assert_eq!(Versions::parse("0-12").unwrap(), Versions(Some((0, 12))));
        assert_eq!(Versions::parse("5").unwrap(), Versions(Some((5, 5))));
        assert_eq!(Versions::parse("none").unwrap(), Versions::NONE);
        assert_eq!(Versions::parse("0+").unwrap().cond(), Cond::Always);
        assert_eq!(
            Versions::parse("3-12").unwrap().cond(),
            Cond::Expr("(3..=12).contains(&version)".into())
        );
        let v = Versions::parse("0+").unwrap();
        assert_eq!(
            v.minus(Versions::parse("3+").unwrap()).unwrap(),
            Versions(Some((0, 2)))
        );
        assert_eq!(v.minus(v).unwrap(), Versions::NONE);
    }

    #[test]
    fn names() {
        assert_eq!(snake_case("TopicId"), "topic_id");
        assert_eq!(snake_case("KRaftVersionFeature"), "k_raft_version_feature");
        assert_eq!(snake_case("Type"), "r#type");
        assert_eq!(snake_case("ProduceRequest"), "produce_request");
    }

    #[test]
    fn hex_defaults() {
        assert_eq!(parse_int("0x7fffffff").unwrap(), 0x7fff_ffff);
        assert_eq!(parse_int("-2147483648").unwrap(), -2_147_483_648);
    }

    #[test]
    fn comments_are_stripped_inside_objects() {
        let text =
            "{\n  // a comment\n  \"a\": 1, // not stripped: trails a value\n  // x\n  \"b\": 2\n}";
        let stripped = strip_comments(text);
        assert!(!stripped.contains("a comment"));
        assert!(stripped.contains("not stripped"));
    }
}

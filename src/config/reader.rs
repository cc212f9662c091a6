//! Walking the TOML document: the only code that knows the TOML crate's types. Every read
//! records the key as known, checks type and range, and on a problem records it with its dotted
//! key path and line and returns `None`, so the section functions go on and every problem of a
//! file is reported at once.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{ConfigError, ConfigWarning, Roi};

/// The parsed document (syntax checked, nothing validated yet).
pub(super) struct Document<'i> {
    root: DeTable<'i>,
}

impl<'i> Document<'i> {
    /// Parses `text`; a syntax error is the one problem reported.
    pub(super) fn parse(text: &'i str) -> Result<Self, ConfigError> {
        match DeTable::parse(text) {
            Ok(root) => Ok(Document {
                root: root.into_inner(),
            }),
            Err(e) => Err(ConfigError {
                key: "(syntax)".into(),
                line: e.span().map(|s| line_of(text, &s)),
                message: e.message().trim().to_string(),
            }),
        }
    }

    /// The `[name]` table, absent when the file has none (or it is not a table).
    pub(super) fn section(&self, name: &'static str) -> Section<'_, 'i> {
        let table = self.root.get(name).and_then(|v| match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        });
        Section {
            name,
            table,
            used: Vec::new(),
        }
    }
}

/// One `[section]` (or inline table) being read; remembers which keys were asked for.
pub(super) struct Section<'a, 'i> {
    name: &'static str,
    table: Option<&'a DeTable<'i>>,
    used: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    fn take(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.used.push(key);
        self.table?.get(key)
    }

    /// Whether the file has this section at all.
    pub(super) fn present(&self) -> bool {
        self.table.is_some()
    }

    /// Whether the key is present (without reading it).
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.get(key).is_some())
    }

    /// Marks a key as known without reading it.
    pub(super) fn skip(&mut self, key: &'static str) {
        self.used.push(key);
    }

    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.table?.get(key).map(Spanned::span)
    }

    fn path_of(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }
}

/// Whether a keyword is matched exactly or ASCII-case-insensitively.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    Exact,
    Insensitive,
}

/// Collects the problems and warnings while the section functions read.
pub(super) struct Reader<'t> {
    text: &'t str,
    /// Relative paths are joined to this (the config file's directory).
    base: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text[..end].bytes().filter(|&b| b == b'\n').count() + 1
}

fn show(v: &Spanned<DeValue>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) => i.as_str().to_string(),
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn alternatives(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

impl<'t> Reader<'t> {
    pub(super) fn new(text: &'t str, base: PathBuf) -> Self {
        Self {
            text,
            base,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Unknown top-level names and top-level values that are not tables are errors.
    pub(super) fn check_sections(&mut self, doc: &Document, names: &[&str]) {
        for (key, value) in doc.root.iter() {
            let name = key.get_ref().as_ref();
            if !names.contains(&name) {
                let msg = format!("unknown section; expected one of {}", names.join(", "));
                self.error(name, Some(key.span()), msg);
            } else if !matches!(value.get_ref(), DeValue::Table(_)) {
                self.error(name, Some(key.span()), "must be a table ([section])".into());
            }
        }
    }

    /// The problems and warnings, each in file order (those without a line last).
    pub(super) fn finish_document(mut self) -> (Vec<ConfigError>, Vec<ConfigWarning>) {
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        self.warnings.sort_by_key(|w| w.line.unwrap_or(usize::MAX));
        (self.errors, self.warnings)
    }

    fn error(&mut self, key: &str, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| line_of(self.text, &s));
        self.errors.push(ConfigError {
            key: key.to_string(),
            line,
            message,
        });
    }

    /// A problem with the value of `key` (or with its absence).
    pub(super) fn key_error(&mut self, sec: &Section, key: &str, message: String) {
        self.error(&sec.path_of(key), sec.span_of(key), message);
    }

    /// Something accepted at `key` that deserves attention.
    pub(super) fn key_warning(&mut self, sec: &Section, key: &str, message: String) {
        let line = sec.span_of(key).map(|s| line_of(self.text, &s));
        self.warnings.push(ConfigWarning {
            key: sec.path_of(key),
            line,
            message,
        });
    }

    fn type_error(&mut self, sec: &Section, key: &str, v: &Spanned<DeValue>, want: &str) {
        let got = match v.get_ref() {
            DeValue::String(_) => "a string",
            DeValue::Integer(_) => "an integer",
            DeValue::Float(_) => "a float",
            DeValue::Boolean(_) => "a boolean",
            DeValue::Datetime(_) => "a datetime",
            DeValue::Array(_) => "an array",
            DeValue::Table(_) => "a table",
        };
        let msg = format!("must be {want}, got {got}");
        self.error(&sec.path_of(key), Some(v.span()), msg);
    }

    /// Reports every key of the section that no reader asked for.
    pub(super) fn finish(&mut self, sec: Section) {
        let Some(table) = sec.table else { return };
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if !sec.used.contains(&name) {
                let msg = format!("unknown key; known keys: {}", sec.used.join(", "));
                self.error(&sec.path_of(name), Some(key.span()), msg);
            }
        }
    }

    pub(super) fn string(&mut self, sec: &mut Section, key: &'static str) -> Option<String> {
        let v = sec.take(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.type_error(sec, key, v, "a string");
                None
            }
        }
    }

    /// One of `choices` by name; `context` is appended to the message listing them.
    pub(super) fn keyword<T: Copy>(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        choices: &[(&str, T)],
        case: Case,
        context: &str,
    ) -> Option<T> {
        let got = self.string(sec, key)?;
        let matches = |name: &str| match case {
            Case::Exact => name == got,
            Case::Insensitive => name.eq_ignore_ascii_case(&got),
        };
        if let Some(&(_, value)) = choices.iter().find(|(name, _)| matches(name)) {
            return Some(value);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let msg = format!("must be {}{context}, got {got:?}", alternatives(&names));
        self.key_error(sec, key, msg);
        None
    }

    /// A path, resolved against the config file's directory.
    pub(super) fn path(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        required: bool,
    ) -> Option<PathBuf> {
        if !sec.has(key) {
            if required {
                self.error(&sec.path_of(key), None, "is required".into());
            }
            sec.skip(key);
            return None;
        }
        let s = self.string(sec, key)?;
        if s.is_empty() {
            self.key_error(sec, key, "must not be empty".into());
            return None;
        }
        Some(self.base.join(s))
    }

    pub(super) fn integer(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => {
                self.type_error(sec, key, v, "an integer");
                return None;
            }
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let msg = format!("must be an integer from {min} to {max}, got {}", show(v));
                self.error(&sec.path_of(key), Some(v.span()), msg);
                None
            }
        }
    }

    /// A whole number of milliseconds from `min` to `max`.
    pub(super) fn millis(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Option<std::time::Duration> {
        self.integer(sec, key, min as i64, max as i64)
            .map(|ms| std::time::Duration::from_millis(ms as u64))
    }

    pub(super) fn float(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        ok: impl Fn(f64) -> bool,
        want: &str,
    ) -> Option<f64> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.type_error(sec, key, v, "a number");
                return None;
            }
        };
        match parsed {
            Some(x) if ok(x) => Some(x),
            _ => {
                let msg = format!("must be {want}, got {}", show(v));
                self.error(&sec.path_of(key), Some(v.span()), msg);
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, sec: &mut Section, key: &'static str) -> Option<bool> {
        let v = sec.take(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(sec, key, v, "true or false");
                None
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        sec: &mut Section,
        key: &'static str,
    ) -> Option<Vec<String>> {
        let v = sec.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(sec, key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                _ => {
                    self.type_error(sec, key, item, "an array of strings");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// An array whose items are strings or non-negative integers (user or group names or ids),
    /// each resolved by `resolve` (`None` = unknown: an error naming the key and the item).
    pub(super) fn name_or_id_list(
        &mut self,
        sec: &mut Section,
        key: &'static str,
        what: &str,
        resolve: impl Fn(&str) -> Option<u32>,
    ) -> Option<Vec<u32>> {
        let v = sec.take(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(sec, key, v, "an array of names or numeric ids");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            let id = match item.get_ref() {
                DeValue::String(s) => resolve(s).ok_or_else(|| format!("unknown {what} {s:?}")),
                DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                    .ok()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("{} is not a {what} id", show(item))),
                _ => {
                    self.type_error(sec, key, item, "an array of names or numeric ids");
                    return None;
                }
            };
            match id {
                Ok(id) => out.push(id),
                Err(msg) => {
                    ok = false;
                    self.error(&sec.path_of(key), Some(item.span()), msg);
                }
            }
        }
        ok.then_some(out)
    }

    /// A region of interest: `{ x = 0, y = 0, width = 100, height = 100 }`.
    pub(super) fn roi(&mut self, sec: &mut Section, key: &'static str) -> Option<Roi> {
        let v = sec.take(key)?;
        let DeValue::Table(t) = v.get_ref() else {
            self.type_error(sec, key, v, "a table { x, y, width, height }");
            return None;
        };
        let mut inner = Section {
            name: "source.roi",
            table: Some(t),
            used: Vec::new(),
        };
        let x = self.integer(&mut inner, "x", 0, 65535);
        let y = self.integer(&mut inner, "y", 0, 65535);
        let w = self.integer(&mut inner, "width", 1, 65535);
        let h = self.integer(&mut inner, "height", 1, 65535);
        self.finish(inner);
        match (x, y, w, h) {
            (Some(x), Some(y), Some(w), Some(h)) => Some(Roi {
                x: x as u32,
                y: y as u32,
                width: w as u32,
                height: h as u32,
            }),
            _ => {
                let msg = "needs integer x, y, width and height".into();
                self.error(&sec.path_of(key), Some(v.span()), msg);
                None
            }
        }
    }

    /// File permission bits: an octal integer (`0o660`) or an octal string (`"0660"`).
    pub(super) fn mode(&mut self, sec: &mut Section, key: &'static str) -> Option<u32> {
        let v = sec.take(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                u32::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            DeValue::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
            _ => None,
        };
        match parsed {
            Some(m) if m <= 0o777 => Some(m),
            Some(m) => {
                let msg = format!(
                    "must be permission bits from 0o0 to 0o777 such as 0o660, got {m:#o}: the setuid, setgid and sticky bits (0o7000) have no meaning on a socket"
                );
                self.error(&sec.path_of(key), Some(v.span()), msg);
                None
            }
            None => {
                let msg = format!(
                    "must be permission bits such as 0o660 or \"0660\", got {}",
                    show(v)
                );
                self.error(&sec.path_of(key), Some(v.span()), msg);
                None
            }
        }
    }
}

//! The named values a key template is rendered from.

use crate::keyvalue::{to_key_value, KeyValue};
use serde::Serialize;
use std::borrow::Cow;

/// The named values that fill a template's placeholders, each in its serde form.
///
/// Build one with [`ctx!`](crate::ctx) or with [`Context::new`] and [`insert`](Context::insert).
/// A value is serialized when it is inserted, so it reflects the argument as it was before
/// the cached or invalidating closure ran. The serialized form keeps what tells values
/// apart (NaN from `None`, `Some(None)` from `None`), and a `HashSet` is put in a
/// canonical order, so that equal sets give one key.
#[derive(Debug, Clone, Default)]
pub struct Context {
    entries: Vec<(Cow<'static, str>, Result<KeyValue, String>)>,
}

impl Context {
    /// An empty context, for templates without placeholders.
    pub fn new() -> Self {
        Context::default()
    }

    /// Adds (or replaces) the value of `name`.
    ///
    /// A value that fails to serialize is kept as an error and reported when a template
    /// uses it.
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> &mut Self {
        let name = name.into();
        let value = to_key_value(value);
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((name, value)),
        }
        self
    }

    /// Adds `name` and returns the context, for chaining.
    #[must_use]
    pub fn with<T: Serialize + ?Sized>(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of `name`: `None` when absent, `Some(Err)` when it failed to serialize.
    pub(crate) fn get(&self, name: &str) -> Option<Result<&KeyValue, &str>> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref().map_err(String::as_str))
    }

    /// The names it holds, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_ref())
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no names.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

//! The named values a key template is rendered from.

use super::value::{to_key_value, KeyValue};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

type Entry = (Cow<'static, str>, Result<KeyValue, String>);

/// The named values that fill a template's placeholders, each in its serde form.
///
/// Build one with [`ctx!`](crate::ctx) or with [`Context::new`] and [`insert`](Context::insert).
/// A value is serialized when it is inserted, so it reflects the argument as it was before
/// the cached or invalidating closure ran. The serialized form keeps what tells values
/// apart (NaN from `None`, `Some(None)` from `None`), and a `HashSet` is put in a
/// canonical order, so that equal sets give one key.
#[derive(Clone, Default)]
pub struct Context {
    // The first entry is held inline, so that the common one-placeholder context (a user
    // id, an order id) costs no allocation beyond its value; the rest follow in order.
    first: Option<Entry>,
    rest: Vec<Entry>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'a>(&'a Context);
        impl fmt::Debug for Entries<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.entries()).finish()
            }
        }
        f.debug_struct("Context")
            .field("entries", &Entries(self))
            .finish()
    }
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
        let empty = self.first.is_none();
        let found = self
            .first
            .iter_mut()
            .chain(self.rest.iter_mut())
            .find(|(n, _)| *n == name);
        match found {
            Some(slot) => slot.1 = value,
            None if empty => self.first = Some((name, value)),
            None => self.rest.push((name, value)),
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
        self.entries()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref().map_err(String::as_str))
    }

    /// The names it holds, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries().map(|(n, _)| n.as_ref())
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// True when it holds no names.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Its entries, in insertion order.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.first.iter().chain(self.rest.iter())
    }
}

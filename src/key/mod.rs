//! Keys: a template (`user:<<user_id>>:profile`) and the values that fill its placeholders
//! render into a key or an invalidation pattern, one way only.
//!
//! - `grammar.rs`: what a placeholder is and what may follow it, as `const fn`s that
//!   `cache_fn!`'s compile-time checks share with the parser;
//! - `template.rs`: [`Template`], parsed once, rendered with values escaped (so rendering
//!   is injective) and objects hashed; `static_template.rs`, the one of a `cache_fn!`
//!   function, in a `static` of its body;
//! - `context.rs` and `value.rs`: the values ([`Context`]), each turned into a faithful tree
//!   of its serde form, sets in a canonical order;
//! - `hash.rs`: the digests of hashed values (SHA-1 of canonical JSON);
//! - `glob.rs`: Redis's glob matcher, for patterns matched in process.

pub(crate) mod context;
pub(crate) mod glob;
pub(crate) mod grammar;
pub(crate) mod hash;
mod static_template;
mod template;
pub(crate) mod value;

pub use context::Context;
pub use static_template::StaticTemplate;
pub use template::Template;
pub(crate) use template::{glob_escape_into, RenderOptions, TemplateRef};

//! `cache_fn!` on generic functions: lifetimes, type and `const` parameters with bounds,
//! `where` clauses, `impl Trait` arguments, sync and async, free functions and methods,
//! `impl` blocks wrapped in the macro. Each block below is expanded either side by side
//! (the usual forms) or one function after another (any other form); both are exercised.

mod support;

use cacheable::{cache_fn, Cache, Config};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{LazyLock, Mutex};

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache::new(Config::memory().prefix("g")).expect("memory cache"));

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
pub struct NotFound(u64);

/// A repository trait, as services are written: the cached functions are generic over it.
pub trait Repo {
    type Error: Debug;
    fn item(&self, id: u64) -> Result<Item, Self::Error>;
    fn save(&self, item: Item) -> Result<(), Self::Error>;
}

/// Not `Serialize`: no key names it.
#[derive(Default)]
pub struct MemRepo {
    items: Mutex<HashMap<u64, Item>>,
    queries: AtomicU32,
}

impl Repo for MemRepo {
    type Error = NotFound;
    fn item(&self, id: u64) -> Result<Item, NotFound> {
        self.queries.fetch_add(1, SeqCst);
        self.items
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or(NotFound(id))
    }
    fn save(&self, item: Item) -> Result<(), NotFound> {
        self.items.lock().unwrap().insert(item.id, item);
        Ok(())
    }
}

impl MemRepo {
    fn with(items: &[(u64, &str)]) -> MemRepo {
        let repo = MemRepo::default();
        for &(id, name) in items {
            repo.save(Item {
                id,
                name: name.into(),
            })
            .unwrap();
        }
        repo
    }
    fn queries(&self) -> u32 {
        self.queries.load(SeqCst)
    }
}

static CALLS: AtomicU32 = AtomicU32::new(0);

fn call() -> u32 {
    CALLS.fetch_add(1, SeqCst) + 1
}

// ---- the usual forms: this block expands side by side.

cache_fn! {
    /// Only a lifetime.
    #[cache(key = "g:name:<<name>>:<<id>>", cache = &CACHE)]
    pub fn greet<'a>(name: &'a str, id: u32) -> String {
        format!("{name}#{id}:{}", call())
    }

    /// Generic over the repository, async, `Result` through an associated type.
    #[cache(key = "g:item:<<id>>", ttl = 60, cache = &CACHE)]
    pub async fn load<R: Repo>(repo: &R, id: u64) -> Result<Item, R::Error> {
        tokio::task::yield_now().await;
        repo.item(id)
    }

    /// The same in a `where` clause, sync, with several bounds and a lifetime bound.
    #[cache(key = "g:item:sync:<<id>>", cache = &CACHE)]
    pub fn load_sync<'r, R>(repo: &'r R, id: u64) -> Result<Item, R::Error>
    where
        R: Repo + Sync + 'r,
        R::Error: Debug,
    {
        repo.item(id)
    }

    #[invalidate("g:item:<<id>>", "g:item:sync:<<id>>", cache = &CACHE)]
    pub async fn rename<R: Repo + Sync>(repo: &R, id: u64, name: String) -> Result<(), R::Error> {
        repo.save(Item { id, name })
    }

    /// `impl Trait` arguments, one of them in the key.
    #[cache(key = "g:label:<<id>>:<<tag>>", cache = &CACHE)]
    fn label(id: u32, tag: impl Serialize + Display, suffix: impl Display) -> String {
        format!("{id}:{tag}:{suffix}:{}", call())
    }

    /// Type parameters whose bounds carry generic arguments, `?Sized`, and `Fn` sugar.
    #[cache(key = "g:sum:<<id>>", cache = &CACHE)]
    fn sum<I: IntoIterator<Item = u32> + Clone, F: Fn(u32) -> u32, S: ?Sized + Display>(
        id: u32,
        items: I,
        f: F,
        note: &S,
    ) -> String {
        let total: u32 = items.into_iter().map(f).sum();
        format!("{id}:{total}:{note}:{}", call())
    }

    /// A generic key argument: it must be `Serialize`, and its bound says so.
    #[cache(key = "g:by:<<key>>", hash = [key], cache = &CACHE)]
    fn by_key<K: Serialize + Debug>(key: K) -> String {
        format!("{key:?}:{}", call())
    }

    /// A `const` parameter.
    #[cache(key = "g:rep:<<id>>", cache = &CACHE)]
    fn repeat<const N: usize>(id: u32) -> Vec<u32> {
        vec![id; N]
    }

    /// Generic over the cached type: one template per type, since the key holds
    /// arguments, not type parameters.
    #[cache(key = "g:decode:<<kind>>:<<id>>", cache = &CACHE)]
    fn decode<T: cacheable::CacheValue + Default>(kind: &str, id: u32) -> Option<T> {
        let _ = (kind, id, call());
        Some(T::default())
    }
}

#[tokio::test]
async fn repository_generic_functions_cache_and_invalidate() {
    let repo = MemRepo::with(&[(1, "ada"), (2, "grace")]);
    assert_eq!(load(&repo, 1).await.unwrap().name, "ada");
    assert_eq!(load(&repo, 1).await.unwrap().name, "ada");
    assert_eq!(load(&repo, 9).await, Err(NotFound(9)));
    assert_eq!(
        load(&repo, 9).await,
        Err(NotFound(9)),
        "an Err is never cached"
    );
    assert_eq!(repo.queries(), 3);

    assert_eq!(load_sync(&repo, 2).unwrap().name, "grace");
    assert_eq!(load_sync(&repo, 2).unwrap().name, "grace");
    assert_eq!(repo.queries(), 4);

    rename(&repo, 1, "lovelace".into()).await.unwrap();
    assert_eq!(load(&repo, 1).await.unwrap().name, "lovelace");
    assert_eq!(repo.queries(), 5, "invalidated, then read again");
    rename(&repo, 2, "hopper".into()).await.unwrap();
    assert_eq!(load_sync(&repo, 2).unwrap().name, "hopper");
    // Keys that hold a value (the failed call on 9 leaves only a failure marker, for a
    // second).
    let values = CACHE.keys("g:item:*").unwrap().into_iter();
    let values = values.filter(|k| CACHE.get::<Item>(k).unwrap().is_some());
    assert_eq!(values.count(), 2);
}

#[test]
fn lifetimes_impl_trait_and_bounds() {
    let a = greet("ada", 1);
    assert_eq!(greet("ada", 1), a);
    assert_ne!(greet("ada", 2), a);
    assert_eq!(CACHE.keys("g:name:ada:*").unwrap().len(), 2);

    let l = label(1, "x", 'a');
    assert_eq!(label(1, "x", 'b'), l, "`suffix` is not in the key");
    assert!(CACHE.get::<String>("g:label:1:x").unwrap().is_some());

    let s = sum(7, vec![1, 2, 3], |x| x * 10, "note");
    assert!(s.starts_with("7:60:note:"), "{s}");
    assert_eq!(sum(7, vec![0], |x| x, "other"), s);

    let k = by_key(("a", 1));
    assert_eq!(by_key(("a", 1)), k);
    let keys = CACHE.keys("g:by:*").unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].len(), "g:by:".len() + 16, "hashed: {keys:?}");

    assert_eq!(repeat::<3>(4), [4, 4, 4]);
    assert_eq!(
        repeat::<2>(4),
        [4, 4, 4],
        "the type parameters are not in the key"
    );
    assert_eq!(repeat::<2>(5), [5, 5]);

    assert_eq!(decode::<u32>("u32", 1), Some(0));
    assert_eq!(decode::<String>("string", 1), Some(String::new()));
    assert_eq!(decode::<u32>("u32", 1), Some(0));
}

// ---- other forms: this block expands one function after another, reading each
// signature token by token, so any generic syntax works.

pub trait Named<'a> {
    fn name(&self) -> &'a str;
}

impl<'a> Named<'a> for &'a str {
    fn name(&self) -> &'a str {
        self
    }
}

cache_fn! {
    /// The bound's arguments close the parameter list (`>>`).
    #[cache(key = "o:into:<<id>>", cache = &CACHE)]
    fn into_name<T: Into<String>>(id: u32, name: T) -> String {
        format!("{id}:{}:{}", name.into(), call())
    }

    /// A higher-ranked bound.
    #[cache(key = "o:hrtb:<<id>>", cache = &CACHE)]
    fn measure<F: for<'a> Fn(&'a str) -> usize>(id: u32, f: F) -> usize {
        f("four") + id as usize
    }

    /// A `where` predicate on a type that is not a parameter, and `Fn` sugar returning
    /// a generic type.
    #[cache(key = "o:where:<<id>>", cache = &CACHE)]
    async fn count<T, F: Fn(u32) -> Option<u32>>(id: u32, items: Vec<T>, f: F) -> Option<u32>
    where
        Vec<T>: Clone + Send,
        T: Send,
    {
        let copy = items.clone();
        f(id + copy.len() as u32)
    }

    /// Lifetime arguments in a bound, lifetime predicates in `where`.
    #[cache(key = "o:named:<<id>>", cache = &CACHE)]
    fn named<'a, 'b, N>(id: u32, n: N, _other: &'b str) -> String
    where
        'a: 'b,
        N: Named<'a>,
    {
        format!("{}:{id}:{}", n.name(), call())
    }

    #[invalidate("o:*", cache = &CACHE)]
    fn reset_others() {}
}

#[tokio::test]
async fn other_generic_forms() {
    let a = into_name(1, "ada");
    assert_eq!(into_name(1, String::from("grace")), a);
    assert_eq!(measure(2, str::len), 6);
    assert_eq!(measure(2, |_| 0), 6);
    assert_eq!(count(1, vec!['a'], Some).await, Some(2));
    assert_eq!(count(1, Vec::<u8>::new(), |_| None).await, Some(2));
    let n = named(5, "ada", "x");
    assert_eq!(named(5, "bob", "y"), n);
    reset_others();
    assert_eq!(CACHE.count("o:*").unwrap(), 0);
    assert_ne!(into_name(1, "ada"), a, "recomputed after the invalidation");
}

// ---- methods: generic impls, generic methods, and an `impl` block inside the macro.

pub struct Service<R> {
    repo: R,
    cache: Cache,
}

impl<R: Repo + Sync> Service<R> {
    cache_fn! {
        #[cache(key = "svc:item:<<id>>", cache = &self.cache)]
        pub async fn item(&self, id: u64) -> Result<Item, R::Error> {
            self.repo.item(id)
        }

        /// A generic method in a generic impl.
        #[cache(key = "svc:named:<<id>>", cache = &self.cache)]
        pub fn named<T>(&self, id: T) -> Result<String, R::Error>
        where
            T: Into<u64> + Serialize + Copy,
        {
            self.repo.item(id.into()).map(|item| item.name)
        }

        #[invalidate("svc:item:<<id>>", "svc:named:<<id>>", cache = &self.cache)]
        pub fn forget(&self, id: u64) {}
    }
}

pub struct Catalog {
    cache: Cache,
    reads: AtomicU32,
}

cache_fn! {
    /// The `impl` block itself inside the macro.
    impl Catalog {
        #[cache(key = "cat:<<id>>", cache = &self.cache)]
        pub fn entry<'s>(&'s self, id: u32) -> String {
            format!("entry {id} #{}", self.reads.fetch_add(1, SeqCst) + 1)
        }
    }

    /// A generic `impl` block, then more functions after it.
    impl<'a> Wrapper<'a> {
        #[cache(key = "wrap:<<id>>", cache = &CACHE)]
        pub fn upper(&self, id: u32) -> String {
            format!("{}:{id}:{}", self.0.to_uppercase(), call())
        }
    }

    #[cache(key = "cat:free:<<id>>", cache = &CACHE)]
    fn after_the_impl(id: u32) -> u32 {
        id + call()
    }
}

pub struct Wrapper<'a>(&'a str);

#[tokio::test]
async fn methods_and_impl_blocks() {
    let svc = Service {
        repo: MemRepo::with(&[(1, "ada")]),
        cache: Cache::new(Config::memory()).unwrap(),
    };
    assert_eq!(svc.item(1).await.unwrap().name, "ada");
    assert_eq!(svc.item(1).await.unwrap().name, "ada");
    assert_eq!(svc.named(1_u32).unwrap(), "ada");
    assert_eq!(svc.named(1_u32).unwrap(), "ada");
    assert_eq!(svc.repo.queries(), 2);
    svc.forget(1);
    assert_eq!(svc.cache.count("*").unwrap(), 0);

    let catalog = Catalog {
        cache: Cache::new(Config::memory()).unwrap(),
        reads: AtomicU32::new(0),
    };
    assert_eq!(catalog.entry(3), "entry 3 #1");
    assert_eq!(catalog.entry(3), "entry 3 #1");
    let first = after_the_impl(1);
    assert_eq!(after_the_impl(1), first);
    let upper = Wrapper("ab").upper(1);
    assert!(upper.starts_with("AB:1:"), "{upper}");
    assert_eq!(Wrapper("cd").upper(1), upper, "`self` is not in the key");
}

// ---- debug lines name the function.

cache_fn! {
    #[cache(key = "dbg:<<id>>", debug = true, cache = &CACHE)]
    fn traced<T: Serialize>(id: T) -> u32 {
        let _ = id;
        7
    }

    #[invalidate("dbg:<<id>>", debug = true, cache = &CACHE)]
    fn untraced<T: Serialize>(id: T) {}
}

#[test]
fn debug_lines_name_the_function() {
    support::logs::capture();
    assert_eq!(traced(5_u8), 7);
    untraced(5_u8);
    let lines = support::logs::take_cacheable(log::Level::Info);
    assert!(
        lines.contains(&"[Cache Debug] Function: traced".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"[Cache Debug] Key Template: dbg:<<id>>".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"[Cache Debug] Total deleted: 1 keys for function: untraced".to_string()),
        "{lines:?}"
    );
}

//! `cache_fn!` against a private in-memory cache: which finisher each return type takes,
//! which arguments make the key, methods, async functions, attributes.

use cacheable::{cache_fn, Cache, Config};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache::new(Config::memory().prefix("t")).expect("memory cache"));

/// Counts calls per test, so that tests running in parallel do not share a counter.
#[derive(Default)]
struct Db {
    queries: AtomicU32,
}

impl Db {
    fn query(&self) -> u32 {
        self.queries.fetch_add(1, SeqCst) + 1
    }
    fn count(&self) -> u32 {
        self.queries.load(SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Filters {
    is_active: bool,
    max_amount: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct DbError(String);

type AppResult<T> = std::result::Result<T, DbError>;

mod own_result {
    #[derive(Debug)]
    pub struct Failure;
    pub type Result<T> = std::result::Result<T, Failure>;
}

cache_fn! {
    /// Plain value.
    #[cache(key = "plain:<<id>>", ttl = 60, cache = &CACHE)]
    fn plain(db: &Db, id: u32) -> String {
        format!("{id}:{}", db.query())
    }

    #[cache(key = "res:<<id>>", cache = &CACHE)]
    fn fallible(db: &Db, id: u32, fail: bool) -> Result<u32, DbError> {
        let n = db.query();
        if fail {
            return Err(DbError(format!("query {n} failed")));
        }
        Ok(id * 100 + n)
    }

    #[cache(key = "alias:<<id>>", cache = &CACHE)]
    fn through_alias(db: &Db, id: u32, fail: bool) -> AppResult<u32> {
        if fail { Err(DbError("no".into())) } else { Ok(id + db.query()) }
    }

    #[cache(key = "io:<<id>>", cache = &CACHE)]
    fn through_io_result(db: &Db, id: u32, fail: bool) -> std::io::Result<u32> {
        let n = db.query();
        if fail {
            Err(std::io::Error::other("disk"))?;
        }
        Ok(id + n)
    }

    #[cache(key = "own:<<id>>", cache = &CACHE)]
    fn through_own_result(db: &Db, id: u32, fail: bool) -> own_result::Result<u32> {
        if fail { Err(own_result::Failure) } else { Ok(id + db.query()) }
    }

    #[cache(key = "opt:<<id>>", cache = &CACHE)]
    fn optional(db: &Db, id: u32) -> Option<u32> {
        db.query();
        (id % 2 == 0).then_some(id)
    }
}

#[test]
fn plain_values_are_cached_per_key() {
    let db = Db::default();
    assert_eq!(plain(&db, 1), "1:1");
    assert_eq!(plain(&db, 1), "1:1");
    assert_eq!(plain(&db, 2), "2:2");
    assert_eq!(db.count(), 2);
    assert!(CACHE.get::<String>("plain:1").unwrap().is_some());
}

#[test]
fn err_is_never_cached_ok_is() {
    let db = Db::default();
    assert!(fallible(&db, 7, true).is_err());
    assert!(fallible(&db, 7, true).is_err());
    assert_eq!(db.count(), 2, "an Err is recomputed");
    assert_eq!(fallible(&db, 7, false), Ok(703));
    assert_eq!(fallible(&db, 7, true), Ok(703), "then the Ok is served");
    assert_eq!(db.count(), 3);
}

#[test]
fn result_aliases_take_the_try_path() {
    let db = Db::default();
    assert!(through_alias(&db, 1, true).is_err());
    assert!(CACHE.get::<serde_json::Value>("alias:1").unwrap().is_none());
    assert!(through_io_result(&db, 1, true).is_err());
    assert!(through_io_result(&db, 1, true).is_err());
    assert!(CACHE.get::<serde_json::Value>("io:1").unwrap().is_none());
    assert!(through_own_result(&db, 1, true).is_err());
    assert!(CACHE.get::<serde_json::Value>("own:1").unwrap().is_none());
    assert_eq!(db.count(), 2, "only the io function queries before failing");

    let ok = through_io_result(&db, 1, false).unwrap();
    assert_eq!(through_io_result(&db, 1, true).unwrap(), ok);
    let ok = through_alias(&db, 1, false).unwrap();
    assert_eq!(through_alias(&db, 1, true).unwrap(), ok);
    let ok = through_own_result(&db, 1, false).unwrap();
    assert_eq!(through_own_result(&db, 1, true).unwrap(), ok);
}

#[test]
fn none_is_a_cached_value() {
    let db = Db::default();
    assert_eq!(optional(&db, 3), None);
    assert_eq!(optional(&db, 3), None);
    assert_eq!(db.count(), 1);
    assert_eq!(
        CACHE.get::<serde_json::Value>("opt:3").unwrap(),
        Some(serde_json::Value::Null)
    );
}

// ---- arguments that no key names need not be Serialize.

struct Pool(Mutex<Vec<&'static str>>);
struct State<T>(T);

cache_fn! {
    #[cache(key = "filtered:<<code>>:<<filters>>", hash = [code, filters], cache = &CACHE)]
    fn filtered(pool: &Pool, code: &str, filters: Filters) -> Vec<String> {
        pool.0.lock().unwrap().push("filtered");
        vec![code.to_owned(), filters.is_active.to_string()]
    }

    #[cache(key = "user:<<user.id>>:name", cache = &CACHE)]
    fn user_name(State(pool): State<Arc<Pool>>, user: &User, _: u8) -> String {
        pool.0.lock().unwrap().push("user_name");
        user.name.clone()
    }

    #[cache(key = "kind:<<type>>", cache = &CACHE)]
    fn raw_ident(pool: &Pool, r#type: &str) -> String {
        pool.0.lock().unwrap().push("raw");
        r#type.to_uppercase()
    }
}

#[test]
fn only_named_arguments_make_the_key() {
    let pool = Arc::new(Pool(Mutex::new(Vec::new())));
    let f = Filters {
        is_active: true,
        max_amount: Some(5),
    };
    assert_eq!(filtered(&pool, "NGN", f.clone()), ["NGN", "true"]);
    assert_eq!(filtered(&pool, "NGN", f.clone()), ["NGN", "true"]);
    let keys = CACHE.keys("filtered:*").unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains("NGN"), "hashed: {keys:?}");
    assert_eq!(keys[0].len(), "filtered:".len() + 16 + 1 + 16);

    let ada = User {
        id: 9,
        name: "Ada".into(),
    };
    assert_eq!(user_name(State(pool.clone()), &ada, 0), "Ada");
    assert_eq!(user_name(State(pool.clone()), &ada, 1), "Ada");
    assert_eq!(CACHE.keys("user:9:*").unwrap(), ["user:9:name"]);

    assert_eq!(raw_ident(&pool, "loan"), "LOAN");
    assert_eq!(raw_ident(&pool, "loan"), "LOAN");
    assert_eq!(CACHE.keys("kind:*").unwrap(), ["kind:loan"]);

    assert_eq!(*pool.0.lock().unwrap(), ["filtered", "user_name", "raw"]);
}

// ---- methods, several functions in one invocation, attributes kept.

struct Service {
    db: Db,
    cache: Cache,
    calls: u32,
}

impl Service {
    cache_fn! {
        /// Documented method.
        #[must_use]
        #[cache(key = "svc:<<id>>", ttl = Duration::from_secs(30), cache = &self.cache)]
        #[inline]
        pub fn get(&self, id: u32) -> u32 {
            id + self.db.query()
        }

        #[cache(key = "svc:mut:<<id>>", cache = &CACHE)]
        pub(crate) fn get_mut(&mut self, id: u32) -> u32 {
            self.calls += 1;
            id + self.calls
        }

        #[cache(key = "svc:owned:<<id>>", cache = &CACHE, debug = false)]
        fn into_value(self, id: u32) -> u32 {
            id + self.calls
        }

        #[invalidate("svc:<<id>>", cache = &self.cache)]
        pub fn touch(&self, id: u32) {
            self.db.query();
        }
    }
}

#[test]
fn methods_leave_self_out_of_the_key() {
    let mut svc = Service {
        db: Db::default(),
        cache: Cache::new(Config::memory().prefix("svc")).unwrap(),
        calls: 0,
    };
    assert_eq!(svc.get(10), 11);
    assert_eq!(svc.get(10), 11);
    assert_eq!(svc.cache.keys("*").unwrap(), ["svc:10"]);
    svc.touch(10);
    assert_eq!(svc.cache.keys("*").unwrap(), Vec::<String>::new());
    assert_eq!(svc.get(10), 13);

    assert_eq!(svc.get_mut(1), 2);
    assert_eq!(svc.get_mut(1), 2);
    assert_eq!(svc.calls, 1);
    assert_eq!(svc.into_value(4), 5);
}

// ---- invalidation: after Ok only for results; always for plain values.

cache_fn! {
    #[cache(key = "profile:<<user_id>>", cache = &CACHE)]
    fn profile(db: &Db, user_id: i64) -> u32 {
        db.query()
    }

    #[invalidate("profile:<<user_id>>", "other:<<user_id>>:*", cache = &CACHE)]
    fn update(db: &Db, user_id: i64, fail: bool) -> Result<(), DbError> {
        let _ = db;
        if fail { Err(DbError("rejected".into())) } else { Ok(()) }
    }

    #[invalidate("profile:*", cache = &CACHE)]
    fn reset(count: &AtomicU32) {
        count.fetch_add(1, SeqCst);
    }
}

#[test]
fn invalidation_follows_ok_only() {
    let db = Db::default();
    assert_eq!(profile(&db, 1), 1);
    assert_eq!(profile(&db, 1), 1);
    assert!(update(&db, 1, true).is_err());
    assert_eq!(profile(&db, 1), 1, "an Err invalidates nothing");
    assert!(update(&db, 1, false).is_ok());
    assert_eq!(profile(&db, 1), 2, "an Ok invalidates");
    let resets = AtomicU32::new(0);
    reset(&resets);
    assert_eq!(resets.load(SeqCst), 1);
    assert_eq!(profile(&db, 1), 3, "a plain mutation always invalidates");
}

// ---- async.

cache_fn! {
    #[cache(key = "async:<<id>>", ttl = 60, cache = &CACHE)]
    pub async fn load(db: &Db, id: u32, fail: bool) -> Result<u32, DbError> {
        tokio::task::yield_now().await;
        let n = db.query();
        if fail {
            Err(DbError("boom".into()))?;
        }
        if id == 0 {
            return Ok(0);
        }
        Ok(id * 10 + n)
    }

    #[cache(key = "async:opt:<<id>>", cache = &CACHE)]
    async fn load_opt(db: &Db, id: u32) -> Option<u32> {
        db.query();
        None.or((id > 5).then_some(id))
    }

    #[invalidate("async:<<id>>", cache = &CACHE)]
    async fn save(db: &Db, id: u32, fail: bool) -> std::io::Result<u32> {
        let _ = db;
        if fail { Err(std::io::Error::other("no")) } else { Ok(id) }
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test]
async fn async_functions_take_the_async_finishers() {
    let db = Db::default();
    assert!(assert_send(load(&db, 4, true)).await.is_err());
    assert_eq!(load(&db, 4, false).await, Ok(42));
    assert_eq!(load(&db, 4, true).await, Ok(42));
    assert_eq!(load(&db, 0, false).await, Ok(0));
    assert_eq!(db.count(), 3);

    assert!(save(&db, 4, true).await.is_err());
    assert_eq!(load(&db, 4, true).await, Ok(42));
    assert_eq!(save(&db, 4, false).await.unwrap(), 4);
    assert!(load(&db, 4, true).await.is_err(), "invalidated, recomputed");

    assert_eq!(load_opt(&db, 1).await, None);
    assert_eq!(load_opt(&db, 1).await, None);
    assert_eq!(db.count(), 5);
}

// ---- other places a function can stand: a generic impl, a trait impl, odd receivers.

struct Repo<T> {
    items: Vec<T>,
    db: Db,
}

impl<T: cacheable::CacheValue> Repo<T> {
    cache_fn! {
        #[cache(key = "repo:<<index>>", cache = &CACHE)]
        fn item(&self, index: usize) -> Option<T> {
            self.db.query();
            self.items.get(index).cloned()
        }

        #[cache(key = "repo:arc:<<index>>", cache = &CACHE)]
        fn item_of_arc(self: Arc<Self>, index: usize) -> Option<T> {
            self.db.query();
            self.items.get(index).cloned()
        }
    }
}

trait Lookup {
    fn lookup(&self, id: u32) -> Result<String, DbError>;
    async fn lookup_async(&self, pair: (u32, u32), id: u32) -> String;
}

struct Directory(Db);

impl Lookup for Directory {
    cache_fn! {
        #[cache(key = "dir:<<id>>", cache = &CACHE)]
        fn lookup(&self, id: u32) -> Result<String, DbError> {
            Ok(format!("entry {id} #{}", self.0.query()))
        }

        #[cache(key = "dir:async:<<id>>", cache = &CACHE)]
        async fn lookup_async(&self, (a, b): (u32, u32), id: u32) -> String {
            format!("{} #{}", a + b + id, self.0.query())
        }
    }
}

#[tokio::test]
async fn generic_impls_trait_impls_and_receivers() {
    let repo = Arc::new(Repo {
        items: vec!["a".to_string(), "b".to_string()],
        db: Db::default(),
    });
    assert_eq!(repo.item(1).as_deref(), Some("b"));
    assert_eq!(repo.item(1).as_deref(), Some("b"));
    assert_eq!(repo.item(5), None);
    assert_eq!(repo.item(5), None);
    assert_eq!(repo.clone().item_of_arc(0).as_deref(), Some("a"));
    assert_eq!(repo.clone().item_of_arc(0).as_deref(), Some("a"));
    assert_eq!(repo.db.count(), 3);

    let dir = Directory(Db::default());
    assert_eq!(dir.lookup(3).unwrap(), "entry 3 #1");
    assert_eq!(dir.lookup(3).unwrap(), "entry 3 #1");
    assert_eq!(dir.lookup_async((1, 2), 3).await, "6 #2");
    assert_eq!(
        dir.lookup_async((9, 9), 3).await,
        "6 #2",
        "the pattern is not in the key"
    );
}

cache_fn! {
    #[cache(key = "by_email:<<email>>:profile", hash = [email], cache = &CACHE)]
    fn profile_by_email(db: &Db, email: &str) -> String {
        format!("{email}:{}", db.query())
    }

    #[invalidate("by_email:<<email>>:*", hash = [email], cache = &CACHE)]
    fn update_by_email(email: &str) {
        let _ = email;
    }
}

#[test]
fn hashed_scalars_are_invalidated_by_patterns_that_hash_them_too() {
    let db = Db::default();
    profile_by_email(&db, "ada@example.com");
    profile_by_email(&db, "ada@example.com");
    assert_eq!(db.count(), 1);
    let keys = CACHE.keys("by_email:*").unwrap();
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains("ada"), "the email is hashed: {keys:?}");
    update_by_email("ada@example.com");
    assert_eq!(CACHE.count("by_email:*").unwrap(), 0);
    profile_by_email(&db, "ada@example.com");
    assert_eq!(db.count(), 2);
}

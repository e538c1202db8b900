use cacheable::cache_fn;

cache_fn! {
    #[cache(key = "user:<<user_id>>:profile", ttl = 0)]
    pub fn never_cached(user_id: i64) -> String {
        user_id.to_string()
    }

    #[cache(key = "user:<<user_id>>:name", ttl = -30)]
    pub fn negative(user_id: i64) -> String {
        user_id.to_string()
    }
}

cache_fn! {
    #[cache(key = "user:<<user_id>>:age", ttl = 60, ttl = 0_u64)]
    pub fn twice(user_id: i64) -> i64 {
        user_id
    }
}

fn main() {}

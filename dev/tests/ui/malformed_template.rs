use cacheable::cache_fn;

cache_fn! {
    #[cache(key = "user:<<user_id:profile")]
    pub fn unclosed(user_id: i64) -> i64 {
        user_id
    }

    #[invalidate("user:<<user id>>:*")]
    pub fn spaced(user_id: i64) {
        let _ = user_id;
    }
}

fn main() {}

use cacheable::cache_fn;

pub struct Pool;

cache_fn! {
    #[cache(key = "pool:<<pool>>")]
    pub fn by_pool(pool: &Pool) -> u32 {
        let _ = pool;
        1
    }
}

fn main() {}

use cacheable::cache_fn;

cache_fn! {
    #[cache(key = "id:<<id>>")]
    pub const fn constant(id: u32) -> u32 {
        id
    }
}

cache_fn! {
    #[cache(key = "id:<<id>>")]
    pub fn no_body(id: u32) -> u32;
}

fn main() {}

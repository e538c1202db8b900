use cacheable::cache_fn;

cache_fn! {
    pub fn no_attribute(id: u32) -> u32 {
        id
    }
}

cache_fn! {
    #[cache(key = "a:<<id>>", tll = 60)]
    pub fn misspelt_option(id: u32) -> u32 {
        id
    }
}

cache_fn! {
    #[cache(ttl = 60)]
    pub fn no_key(id: u32) -> u32 {
        id
    }
}

const KEY: &str = "a:<<id>>";

cache_fn! {
    #[cache(key = KEY)]
    pub fn key_not_literal(id: u32) -> u32 {
        id
    }
}

cache_fn! {
    #[cache(key = "a:<<id>>")]
    #[invalidate("a:*")]
    pub fn both(id: u32) -> u32 {
        id
    }
}

cache_fn! {
    #[invalidate()]
    pub fn no_pattern(id: u32) -> u32 {
        id
    }
}

fn main() {}

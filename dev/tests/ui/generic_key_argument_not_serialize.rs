use cacheable::cache_fn;

cache_fn! {
    // `T` is in the key, so it must be `Serialize`; nothing says so.
    #[cache(key = "item:<<id>>")]
    pub fn load<T>(id: T) -> u32 {
        let _ = id;
        1
    }
}

cache_fn! {
    // The same, read token by token (the bound's arguments close the parameter list).
    #[cache(key = "item:<<id>>")]
    pub fn load_into<T: Into<String>>(id: T) -> String {
        id.into()
    }
}

fn main() {}

use cacheable::cache_fn;

cache_fn! {
    #[cache(key = "list[0]:<<id>>")]
    fn get_list(id: u32) -> Vec<u32> {
        vec![id]
    }
}

fn main() {}

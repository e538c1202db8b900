use cacheable::cache_fn;

cache_fn! {
    // `-` may stand inside a value: ("a-b", "c") and ("a", "b-c") would give one key.
    #[cache(key = "range:<<from>>-<<to>>")]
    fn get_range(from: String, to: String) -> Vec<String> {
        vec![from, to]
    }

    #[invalidate("range:<<from>><<to>>*")]
    fn forget_range(from: String, to: String) {
        let _ = (from, to);
    }
}

fn main() {}

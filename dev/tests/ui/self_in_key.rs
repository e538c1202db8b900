use cacheable::cache_fn;

pub struct Service {
    pub id: u32,
}

impl Service {
    cache_fn! {
        #[cache(key = "svc:<<self.id>>")]
        pub fn get(&self) -> u32 {
            self.id
        }
    }
}

fn main() {}

use cacheable::cache_fn;

pub trait Repo {
    type Error;
}

cache_fn! {
    // Expanded side by side with any other function of the block.
    #[cache(key = "item:<<item_id>>")]
    pub async fn load<R: Repo + Sync>(repo: &R, id: u64) -> Result<u64, R::Error> {
        let _ = repo;
        Ok(id)
    }

    #[invalidate("item:<<id>>", hash = [idd])]
    pub fn save<'a, R>(repo: &'a R, id: u64)
    where
        R: Repo,
    {
        let _ = (repo, id);
    }
}

cache_fn! {
    // A higher-ranked bound: read token by token, checked all the same.
    #[cache(key = "len:<<text>>")]
    pub fn measure<F: for<'a> Fn(&'a str) -> usize>(f: F, txt: String) -> usize {
        f(&txt)
    }
}

fn main() {}

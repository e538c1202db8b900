use cacheable::cache_fn;

pub struct Db;

cache_fn! {
    #[cache(key = "user:<<usr_id>>:profile", ttl = 600)]
    pub fn get_user_profile(db: &Db, user_id: i64) -> String {
        let _ = (db, user_id);
        String::new()
    }
}

fn main() {}

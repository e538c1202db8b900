use cacheable::cache_fn;

cache_fn! {
    #[invalidate("user:<<user_id>>:profile", "wallets:<<user_id>>:*", hash = [usr_id])]
    pub fn update_user_profile(user_id: i64, name: String) {
        let _ = (user_id, name);
    }
}

cache_fn! {
    #[invalidate("user:<<user_id>>:profile", hash = [name])]
    pub fn rename_user(user_id: i64, name: String) {
        let _ = (user_id, name);
    }
}

fn main() {}

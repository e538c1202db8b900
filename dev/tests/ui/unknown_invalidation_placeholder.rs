use cacheable::cache_fn;

cache_fn! {
    #[invalidate("wallets:summary:<<user_id>>", "wallets:<<walet_id>>:balance")]
    pub async fn create_transaction(user_id: i64, wallet_id: String) -> Result<(), String> {
        let _ = (user_id, wallet_id);
        Ok(())
    }
}

fn main() {}

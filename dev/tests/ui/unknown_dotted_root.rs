use cacheable::cache_fn;

#[derive(serde::Serialize)]
pub struct User {
    id: i64,
}

cache_fn! {
    #[cache(key = "user:<<usr.id>>:profile")]
    pub async fn get_user_profile(user: &User) -> String {
        user.id.to_string()
    }
}

fn main() {}

use cacheable::ctx;

#[derive(serde::Serialize)]
pub struct User {
    id: i64,
    pair: (i64, i64),
}

fn main() {
    let user = User { id: 1, pair: (2, 3) };
    let code = "NGN";
    let _ = ctx! { code, user.id };
    let _ = ctx! { user.pair.0 };
    let _ = ctx! { code, load(user) };
}

use cacheable::cache_fn;

cache_fn! {
    #[cache(key = "loans:products:<<currency_code>>:<<filters>>", hash = [filtres])]
    pub fn get_loan_products(currency_code: &str, filters: Vec<String>) -> Vec<String> {
        let _ = currency_code;
        filters
    }
}

cache_fn! {
    #[cache(key = "loans:products:<<currency_code>>", hash = [limit])]
    pub fn get_loan_products_limited(currency_code: &str, limit: u32) -> Vec<String> {
        let _ = (currency_code, limit);
        Vec::new()
    }
}

fn main() {}

//! Cache URLs: each scheme, its nodes, credentials and parameters.

use super::*;

#[test]
fn max_value_bytes_comes_from_any_url_query() {
    assert_eq!(Config::memory().max_value_bytes, None);
    assert_eq!(
        Config::from_url("memory://?max_entries=10&max_value_bytes=4096")
            .unwrap()
            .max_value_bytes,
        Some(4096)
    );
    #[cfg(feature = "redis")]
    assert_eq!(
        Config::from_url("redis://127.0.0.1:6379/1?max_value_bytes=10")
            .unwrap()
            .max_value_bytes,
        Some(10)
    );
    assert_eq!(Config::memory().max_value_bytes(0).max_value_bytes, None);
    let err = Config::from_url("memory://?max_value_bytes=lots").unwrap_err();
    assert!(err.to_string().contains("max_value_bytes"), "{err}");
}

#[test]
fn urls_pick_the_store() {
    assert_eq!(
        Config::from_url("memory://?max_entries=10").unwrap().store,
        StoreConfig::Memory { max_entries: 10 }
    );
    #[cfg(feature = "redis")]
    assert!(matches!(
        Config::from_url("redis://127.0.0.1:6379/1").unwrap().store,
        StoreConfig::Redis { .. }
    ));
    #[cfg(not(feature = "redis"))]
    assert!(Config::from_url("redis://127.0.0.1:6379/1")
        .unwrap_err()
        .to_string()
        .contains("`redis` feature"));
    #[cfg(feature = "cluster")]
    assert!(matches!(
        Config::from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap().store,
        StoreConfig::Cluster { ref nodes } if nodes.len() == 2
    ));
    #[cfg(not(feature = "cluster"))]
    assert!(Config::from_url("redis+cluster://a:1")
        .unwrap_err()
        .to_string()
        .contains("`cluster` feature"));
    for bad in [
        "ftp://x",
        "nothing",
        "memory://?size=1",
        "redis+cluster://a:1/3",
        "redis+cluster://",
    ] {
        assert_eq!(
            Config::from_url(bad).unwrap_err().kind(),
            crate::error::ErrorKind::Config,
            "{bad}"
        );
    }
}

#[test]
fn format_parameters_leave_the_rest_of_the_url_as_it_was() {
    let take = |url: &str| take_format_params(url).unwrap();
    assert_eq!(
        take("redis://:pa?ss@h:1/0?protocol=resp3&codec=json"),
        (
            "redis://:pa?ss@h:1/0?protocol=resp3".to_owned(),
            Some(Codec::Json),
            None
        )
    );
    assert_eq!(
        take("redis://h:1/?codec=json"),
        ("redis://h:1/".to_owned(), Some(Codec::Json), None)
    );
    assert_eq!(
        take("redis://u:p@h:1/2"),
        ("redis://u:p@h:1/2".to_owned(), None, None)
    );
    assert_eq!(
        take("memory://?codec=json&max_entries=5#x"),
        (
            "memory://?max_entries=5#x".to_owned(),
            Some(Codec::Json),
            None
        )
    );
    assert_eq!(Config::memory().format, Format::default());
    assert_eq!(Config::memory().get_codec(), Codec::Json);
    #[cfg(feature = "compress")]
    {
        let (url, _, over) = take("redis+cluster://h1:1,h2:2/?compress_over=512&protocol=resp3");
        assert_eq!(
            (url.as_str(), over),
            ("redis+cluster://h1:1,h2:2/?protocol=resp3", Some(512))
        );
    }
    // Errors name the parameter, never the password.
    let err = take_format_params("redis://:hunter2@h:1/?codec=yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("yaml") && !err.contains("hunter2"), "{err}");
}

#[cfg(feature = "cluster")]
#[test]
fn cluster_urls_give_one_node_url_each_with_the_shared_credentials_and_query() {
    let nodes = |url: &str| match Config::from_url(url).unwrap().store {
        StoreConfig::Cluster { nodes } => nodes
            .iter()
            .map(|n| n.expose().to_owned())
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        nodes("redis+cluster://10.0.0.1:7000,10.0.0.2:7001"),
        ["redis://10.0.0.1:7000/", "redis://10.0.0.2:7001/"]
    );
    assert_eq!(
        nodes("redis+cluster://u:p,w@h1:1,h2:2/?protocol=resp3"),
        [
            "redis://u:p,w@h1:1/?protocol=resp3",
            "redis://u:p,w@h2:2/?protocol=resp3"
        ]
    );
    assert_eq!(
        nodes("redis+cluster://u:p@h1:1,u:p@h2:2,h3:3"),
        [
            "redis://u:p@h1:1/",
            "redis://u:p@h2:2/",
            "redis://u:p@h3:3/"
        ]
    );
    assert_eq!(
        nodes("redis+cluster://:secret@h1:1/0"),
        ["redis://:secret@h1:1/"]
    );
    let refused = |url: &str| Config::from_url(url).unwrap_err().to_string();
    assert!(refused("redis+cluster://u:p@h1:1,v:q@h2:2").contains("same credentials"));
    assert!(refused("redis+cluster://h1:1/2").contains("one database"));
    assert!(refused("redis+cluster://h1:1,,h2:2").contains("empty node"));
    // Masked in the message, and in the configuration's Debug.
    let text = refused("redis+cluster://u:SECRET@h1:1,v:q@h2:2");
    assert!(!text.contains("SECRET"), "{text}");
    let config = Config::cluster(["redis://u:SECRET@h1:1", "redis://u:SECRET@h2:2"]).unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("SECRET") && debug.contains("h2:2"),
        "{debug}"
    );
    assert!(Config::cluster(Vec::<String>::new()).is_err());
    assert!(Config::cluster(["memory://"]).is_err());
    #[cfg(not(feature = "tls"))]
    assert!(refused("rediss+cluster://h1:1").contains("`tls` feature"));
}

#[cfg(feature = "sentinel")]
#[test]
fn sentinel_urls_name_the_sentinels_the_service_the_database_and_two_sets_of_credentials() {
    let parts = |config: Config| match config.store {
        StoreConfig::Sentinel(s) => (
            s.sentinels
                .iter()
                .map(|n| n.expose().to_owned())
                .collect::<Vec<_>>(),
            s.service,
            s.node.expose().to_owned(),
        ),
        other => panic!("{other:?}"),
    };
    let url = |u: &str| parts(Config::from_url(u).unwrap());
    assert_eq!(
        url("redis+sentinel://h1:26379,h2:26380/mymaster/2"),
        (
            vec!["redis://h1:26379".to_owned(), "redis://h2:26380".to_owned()],
            "mymaster".to_owned(),
            format!("redis://{PRIMARY_HOST}/2")
        )
    );
    assert_eq!(
        url("redis+sentinel://:node%2Fpw@h1,h2:1/svc?sentinel_password=s%40p&protocol=resp3"),
        (
            vec![
                "redis://:s%40p@h1:26379".to_owned(),
                "redis://:s%40p@h2:1".to_owned()
            ],
            "svc".to_owned(),
            format!("redis://:node%2Fpw@{PRIMARY_HOST}/0?protocol=resp3")
        )
    );
    assert_eq!(
        parts(
            Config::sentinel(["h1:1", "redis://:spw@h2:2"], "svc")
                .unwrap()
                .db(3)
                .primary_auth(Some("app"), "p@ss word")
        ),
        (
            vec!["redis://h1:1".to_owned(), "redis://:spw@h2:2".to_owned()],
            "svc".to_owned(),
            format!("redis://app:p%40ss%20word@{PRIMARY_HOST}/3")
        )
    );
    let refused = |u: &str| Config::from_url(u).unwrap_err().to_string();
    assert!(refused("redis+sentinel://h1:1").contains("names its service"));
    assert!(refused("redis+sentinel://h1:1/").contains("names its service"));
    assert!(refused("redis+sentinel://h1:1/svc/x").contains("a number"));
    assert!(refused("redis+sentinel://h1:1/svc/1/2").contains("/SERVICE/DB"));
    assert!(refused("redis+sentinel://h1:1,,h2:2/svc").contains("empty Sentinel"));
    #[cfg(not(feature = "tls"))]
    assert!(refused("rediss+sentinel://h1:1/svc").contains("`tls` feature"));
    assert_eq!(
        parts(Config::sentinel(["h1", "10.0.0.1:1"], "svc").unwrap()).0,
        ["redis://h1:26379", "redis://10.0.0.1:1"]
    );
    assert!(Config::sentinel(Vec::<String>::new(), "svc").is_err());
    assert!(Config::sentinel(["h:1"], " ").is_err());
    assert!(Config::sentinel(["memory://"], "svc").is_err());
    // Both passwords masked, in Debug and in messages.
    let config = Config::from_url(
        "redis+sentinel://:NODESECRET@h1:1,h2:2/svc/1?sentinel_password=SENTSECRET",
    )
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("NODESECRET") && !debug.contains("SENTSECRET") && debug.contains("h2:2"),
        "{debug}"
    );
    let text = refused("redis+sentinel://:NODESECRET@h1:1/svc/x?sentinel_password=SENTSECRET");
    assert!(
        !text.contains("NODESECRET") && !text.contains("SENTSECRET"),
        "{text}"
    );
    // Sentinel-only settings on another store are refused, not ignored.
    let misused = Config::memory().db(2).validate().unwrap_err().to_string();
    assert!(misused.contains("`db`"), "{misused}");
    assert!(Config::memory().primary_auth(None, "x").validate().is_err());
}

#[test]
fn a_url_without_its_slashes_says_what_is_missing() {
    let err = Config::from_url("redis:/127.0.0.1:6379").unwrap_err();
    assert!(
        err.to_string()
            .contains("`://` is missing after the scheme `redis`"),
        "{err}"
    );
    let err = Config::from_url("127.0.0.1:6379").unwrap_err();
    assert!(err.to_string().contains("has no scheme"), "{err}");
    // A mistyped port is shown as typed: it cannot be a password there.
    let err = Config::from_url("redis://127.0.0.1:63x9/0").unwrap_err();
    assert!(err.to_string().contains("127.0.0.1:63x9"), "{err}");
}

//! The `tracing` feature: each cached call is one span named `cacheable`, a child of the
//! caller's span, that ends with the call's outcome, key and times, sync and async.

use cacheable::{ctx, Cache, Cacheable, Config};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One recorded span: its name, its parent's name, and its fields as text.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    parent: Option<String>,
    fields: HashMap<String, String>,
    metadata: &'static Metadata<'static>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

/// A subscriber that keeps every span and tracks the current one per thread.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<Seen>>>,
}

thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut spans = self.spans.lock().unwrap();
        let parent = match attrs.parent() {
            Some(id) => Some(id.into_u64()),
            None if attrs.is_contextual() => STACK.with(|s| s.borrow().last().copied()),
            None => None,
        };
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            parent: parent.map(|p| spans[p as usize - 1].name.clone()),
            fields: HashMap::new(),
            metadata: attrs.metadata(),
        };
        attrs.record(&mut Fields(&mut seen.fields));
        spans.push(seen);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        values.record(&mut Fields(&mut spans[span.into_u64() as usize - 1].fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
    fn current_span(&self) -> tracing_core::span::Current {
        match STACK.with(|s| s.borrow().last().copied()) {
            Some(id) => {
                let metadata = self.spans.lock().unwrap()[id as usize - 1].metadata;
                tracing_core::span::Current::new(Id::from_u64(id), metadata)
            }
            None => tracing_core::span::Current::none(),
        }
    }
}

impl Recorder {
    /// The `cacheable` spans so far.
    fn calls(&self) -> Vec<Seen> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.name == "cacheable")
            .cloned()
            .collect()
    }
}

#[test]
fn each_call_is_a_span_in_the_callers_span_with_its_outcome() {
    let recorder = Recorder::default();
    let _default = tracing::subscriber::set_default(recorder.clone());
    let cache = Cache::new(Config::memory().prefix("traced")).unwrap();
    let handler = tracing::info_span!("handler");
    handler.in_scope(|| {
        for _ in 0..2 {
            let v = Cacheable::new("wallet:<<id>>")
                .on(&cache)
                .run(ctx! { id = 7 }, || {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    10
                });
            assert_eq!(v, 10);
        }
    });
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for (call, outcome) in calls.iter().zip(["miss", "hit"]) {
        assert_eq!(call.parent.as_deref(), Some("handler"), "{call:?}");
        assert_eq!(call.fields["template"], "wallet:<<id>>");
        assert_eq!(call.fields["outcome"], outcome, "{call:?}");
        assert_eq!(call.fields["key"], "traced:wallet:7");
        assert!(call.fields.contains_key("elapsed_us"), "{call:?}");
    }
    let computed: u64 = calls[0].fields["computation_us"].parse().unwrap();
    assert!(computed >= 5_000, "the computation's time: {computed} µs");
    assert!(!calls[1].fields.contains_key("computation_us"));

    // Async: the span is the caller's child too, and holds across the awaits.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = tracing::info_span!("request");
    let v = rt.block_on(tracing::Instrument::instrument(
        async {
            Cacheable::new("wallet:<<id>>")
                .on(&cache)
                .run_async(ctx! { id = 8 }, || async { 20 })
                .await
        },
        request,
    ));
    assert_eq!(v, 20);
    let calls = recorder.calls();
    let last = calls.last().unwrap();
    assert_eq!(last.parent.as_deref(), Some("request"), "{last:?}");
    assert_eq!(last.fields["outcome"], "miss");
    assert_eq!(last.fields["key"], "traced:wallet:8");
}

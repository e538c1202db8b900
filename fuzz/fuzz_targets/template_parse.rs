//! The template parser: any input either parses or is refused with an error, never a
//! panic; a parsed template keeps its source, and renders once each placeholder has a value.
#![no_main]

use cacheable::{Context, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse(source) else {
        return;
    };
    assert_eq!(template.as_str(), source);
    let mut ctx = Context::new();
    let roots: Vec<String> = template
        .placeholders()
        .map(|p| p.split('.').next().unwrap_or(p).to_owned())
        .collect();
    let dotted = template.placeholders().any(|p| p.contains('.'));
    for root in &roots {
        ctx.insert(root.clone(), &"v");
    }
    let rendered = template.render(&ctx);
    if !dotted {
        // Every placeholder has a value: rendering succeeds, and leaves no `<<`.
        let key = rendered.unwrap_or_else(|e| panic!("{source:?}: {e}"));
        assert!(!key.contains("<<"), "{source:?} rendered as {key:?}");
    }
});

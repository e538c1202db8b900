//! Log capture: every record the process logs, kept to be read back by the test.

use std::sync::Mutex;

/// One log record.
#[derive(Clone, Debug)]
pub struct Record {
    pub level: log::Level,
    pub target: String,
    pub text: String,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS.lock().unwrap().push(Record {
            level: record.level(),
            target: record.target().to_owned(),
            text: record.args().to_string(),
        });
    }
    fn flush(&self) {}
}

/// Keeps every record from now on, of every level and target (once per process: a second
/// call does nothing).
pub fn capture() {
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Trace);
}

/// Every record so far, each as `LEVEL target text`.
pub fn lines() -> Vec<String> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r.level, r.target, r.text))
        .collect()
}

/// The records so far whose text holds `needle`, as (level, target, text).
pub fn with(needle: &str) -> Vec<(log::Level, String, String)> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.text.contains(needle))
        .map(|r| (r.level, r.target.clone(), r.text.clone()))
        .collect()
}

/// The texts of the crate's records (target `cacheable`) at `level` or more severe that
/// hold `needle`.
pub fn cacheable(level: log::Level, needle: &str) -> Vec<String> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.target == "cacheable" && r.level <= level && r.text.contains(needle))
        .map(|r| r.text.clone())
        .collect()
}

/// The texts of the crate's records at exactly `level` so far; every record is forgotten.
pub fn take_cacheable(level: log::Level) -> Vec<String> {
    std::mem::take(&mut *RECORDS.lock().unwrap())
        .into_iter()
        .filter(|r| r.target == "cacheable" && r.level == level)
        .map(|r| r.text)
        .collect()
}

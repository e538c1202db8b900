//! The commands and Lua scripts the Redis stores send (one server and the cluster alike):
//! every compare-and-set a lease, a refresh or a tag needs, each on one key (slot-safe).

use crate::error::{Error, ErrorKind, Result};
use crate::store::KeyTtl;
use once_cell::sync::Lazy;
use redis::{Cmd, FromRedisValue, Script};
use std::time::Duration;

pub(crate) fn get_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("GET");
    cmd.arg(key);
    cmd
}

pub(crate) fn set_cmd(key: &str, value: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    // PX keeps sub-second TTLs; a TTL under 1 ms still lives 1 ms rather than erroring.
    cmd.arg(key).arg(value).arg("PX").arg(ttl_ms(ttl));
    cmd
}

pub(crate) fn unlink_cmd<K: redis::ToRedisArgs>(keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(keys);
    cmd
}

pub(crate) fn mget_cmd<'k>(keys: impl IntoIterator<Item = &'k str>) -> Cmd {
    let mut cmd = redis::cmd("MGET");
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

/// The reads of `n` keys from an `MGET`'s reply and, when asked, each key's `PTTL` reply
/// (empty: not asked).
pub(crate) fn many_reads(
    values: redis::Value,
    ttls: Vec<redis::Value>,
    n: usize,
) -> std::result::Result<Vec<crate::store::Read>, redis::ParsingError> {
    let values: Vec<Option<Vec<u8>>> = redis::from_redis_value(values)?;
    if values.len() != n || !(ttls.is_empty() || ttls.len() == n) {
        return Err(redis::ParsingError::from(format!(
            "MGET of {n} keys answered {} values and {} expiries",
            values.len(),
            ttls.len()
        )));
    }
    let mut ttls = ttls.into_iter();
    values
        .into_iter()
        .map(|bytes| {
            let left = match ttls.next() {
                Some(ms) => match to_ttl(redis::from_redis_value(ms)?) {
                    KeyTtl::Expires(d) if bytes.is_some() => Some(d),
                    _ => None,
                },
                None => None,
            };
            Ok((bytes, left))
        })
        .collect()
}

pub(crate) fn pttl_cmd(key: &str) -> Cmd {
    let mut cmd = redis::cmd("PTTL");
    cmd.arg(key);
    cmd
}

pub(crate) fn to_ttl(ms: i64) -> KeyTtl {
    match ms {
        -2 => KeyTtl::Missing,
        ms if ms < 0 => KeyTtl::Persistent,
        ms => KeyTtl::Expires(Duration::from_millis(ms as u64)),
    }
}

pub(crate) type ScanPage = (u64, Vec<Vec<u8>>);

pub(crate) fn set_nx_cmd(key: &str, value: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = set_cmd(key, value, ttl);
    cmd.arg("NX");
    cmd
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `SET` only while the key holds ARGV[1]: the lease holder's write, which an
/// invalidation during the computation (deleting the lease) turns into a no-op.
pub(crate) static SET_IF: Lazy<Script> = Lazy::new(|| Script::new(SET_IF_LUA));
pub(crate) const SET_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 \
     end return 0";

/// `PEXPIRE` only while the key holds ARGV[1]: a lease holder keeping its lease alive
/// through a long computation.
pub(crate) static RENEW_IF: Lazy<Script> = Lazy::new(|| Script::new(RENEW_IF_LUA));
pub(crate) const RENEW_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        return redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
     end return 0";

/// `GET`, and `PEXPIRE` to ARGV[1] ms when the bytes are a value: a sliding read in one
/// round trip that never touches a marker, on any server version (the cluster's sliding
/// read, and one server's before Redis 6.2). Markers start with `\0c` (NUL, then byte
/// 99); a value is JSON text, never NUL first, or another codec's form, `\0` then 0xCB.
pub(crate) static GET_SLIDING: Lazy<Script> = Lazy::new(|| Script::new(GET_SLIDING_LUA));
pub(crate) const GET_SLIDING_LUA: &str = "local v = redis.call('GET', KEYS[1]) \
     if v and (string.byte(v, 1) ~= 0 or string.byte(v, 2) ~= 99) then \
         redis.call('PEXPIRE', KEYS[1], ARGV[1]) \
     end return v";

/// An error reply saying the server does not know the command.
pub(super) fn unknown_command(e: &Error) -> bool {
    e.redis_error().is_some_and(|r| {
        r.code() == Some("ERR") && r.detail().is_some_and(|d| d.contains("unknown command"))
    })
}

/// `DEL` only while the key holds ARGV[1]: a lease holder giving its lease back.
pub(crate) static DELETE_IF: Lazy<Script> = Lazy::new(|| Script::new(DELETE_IF_LUA));
pub(crate) const DELETE_IF_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
        return redis.call('DEL', KEYS[1]) \
     end return 0";

/// `SET` only while the key holds ARGV[1] with at most ARGV[2] ms to live: an early
/// refresh's write, which an invalidation during the computation (deleting the key, or
/// deleting it and writing it anew) turns into a no-op.
pub(crate) static SET_IF_AGING: Lazy<Script> = Lazy::new(|| Script::new(SET_IF_AGING_LUA));
pub(crate) const SET_IF_AGING_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] \
        and redis.call('PTTL', KEYS[1]) <= tonumber(ARGV[2]) then \
        redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4]) return 1 \
     end return 0";

/// Records ARGV[1] in the tag set KEYS[1] until ARGV[2] (ms since the Unix epoch, on the
/// writer's clock), always with a score other than the one it had (a later expiry it has is
/// kept, plus 1 ms): an invalidation that read the old score then forgets the entry only if
/// nobody recorded the key again meanwhile, even within the same millisecond. Prunes at most
/// 64 entries scored before ARGV[4] (each addition prunes more than it adds, so a set never
/// piles up dead entries, and no call does unbounded work), and stretches the set's TTL to
/// ARGV[3] ms (the entry's life) if it had less: the set never outlives its last live entry
/// by more than that entry's life.
pub(crate) static TAG_ADD: Lazy<Script> = Lazy::new(|| Script::new(TAG_ADD_LUA));
pub(crate) const TAG_ADD_LUA: &str = "local expiry = tonumber(ARGV[2]) \
     local cur = redis.call('ZSCORE', KEYS[1], ARGV[1]) \
     if cur and tonumber(cur) >= expiry then expiry = tonumber(cur) + 1 end \
     redis.call('ZADD', KEYS[1], string.format('%d', expiry), ARGV[1]) \
     local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4], 'LIMIT', 0, 64) \
     if #old > 0 then redis.call('ZREM', KEYS[1], unpack(old)) end \
     if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then \
         redis.call('PEXPIRE', KEYS[1], ARGV[3]) end \
     return 1";

/// The arguments of [`TAG_ADD`] for an entry of `member` that lives `life` from now.
pub(crate) fn tag_add_args(member: &str, life: Duration) -> [Vec<u8>; 4] {
    let now = crate::store::unix_ms();
    let expiry = now.saturating_add(ttl_ms(life));
    let cutoff = now.saturating_sub(ttl_ms(crate::store::TAG_CLOCK_SLACK));
    [
        member.as_bytes().to_vec(),
        expiry.to_string().into_bytes(),
        ttl_ms(life).to_string().into_bytes(),
        cutoff.to_string().into_bytes(),
    ]
}

/// `ZSCAN set cursor COUNT count`: one page of a tag set.
pub(crate) fn tag_page_cmd(set: &str, from: &crate::store::TagCursor, count: usize) -> Cmd {
    let cursor = match from {
        crate::store::TagCursor::Scan(c) => *c,
        crate::store::TagCursor::Start | crate::store::TagCursor::After(_) => 0,
    };
    let mut cmd = redis::cmd("ZSCAN");
    cmd.arg(set).arg(cursor).arg("COUNT").arg(count);
    cmd
}

/// A `ZSCAN` reply as a page, read from `server` (see [`TagPage::server`](crate::store::TagPage)).
pub(crate) fn tag_page_of(
    (cursor, flat): (u64, Vec<String>),
    server: u64,
) -> crate::store::TagPage {
    crate::store::TagPage {
        entries: pairs(flat),
        next: (cursor != 0).then_some(crate::store::TagCursor::Scan(cursor)),
        server,
    }
}

/// Removes from the tag set KEYS[1] each member ARGV[i] whose score is still ARGV[i+1] (as
/// numbers: `ZSCAN` and `ZSCORE` need not write a score alike): an entry re-added since (by
/// a computation that began after the listing) stays. The scores are read in one
/// `ZMSCORE` and the members removed in one `ZREM`, 500 at a time (a page is smaller, but
/// `ZSCAN` returns a small set whole, and Lua's `unpack` takes at most ~8,000); before
/// Redis 6.2, one `ZSCORE` per member.
pub(crate) static TAG_FORGET: Lazy<Script> = Lazy::new(|| Script::new(TAG_FORGET_LUA));
pub(crate) const TAG_FORGET_LUA: &str = "local n, gone = #ARGV / 2, 0 \
     for first = 1, n, 500 do \
         local last = math.min(first + 499, n) \
         local members = {} \
         for i = first, last do members[#members + 1] = ARGV[2 * i - 1] end \
         local scores = redis.pcall('ZMSCORE', KEYS[1], unpack(members)) \
         if type(scores) ~= 'table' or scores.err then \
             scores = {} \
             for i, m in ipairs(members) do scores[i] = redis.call('ZSCORE', KEYS[1], m) end \
         end \
         local stale = {} \
         for i, m in ipairs(members) do \
             local cur = scores[i] \
             if cur and tonumber(cur) == tonumber(ARGV[2 * (first + i - 1)]) then \
                 stale[#stale + 1] = m \
             end \
         end \
         if #stale > 0 then redis.call('ZREM', KEYS[1], unpack(stale)) end \
         gone = gone + #stale \
     end \
     return gone";

/// One reply of a pipeline, parsed (an error reply is the error).
pub(super) fn parse_reply<T: FromRedisValue>(reply: Option<redis::Value>) -> Result<T> {
    let reply = reply.ok_or_else(|| Error::new(ErrorKind::Store, "a pipeline reply is missing"))?;
    let reply = reply.extract_error().map_err(Error::from_redis)?;
    redis::from_redis_value(reply).map_err(|e| Error::from_redis(e.into()))
}

/// Pairs a flat `member, score, member, score…` reply.
pub(crate) fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(m), Some(s)) = (it.next(), it.next()) {
        out.push((m, s));
    }
    out
}

/// The arguments of [`TAG_FORGET`].
pub(crate) fn forget_args(entries: &[(String, String)]) -> Vec<&[u8]> {
    entries
        .iter()
        .flat_map(|(m, s)| [m.as_bytes(), s.as_bytes()])
        .collect()
}

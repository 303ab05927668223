//! The Lua script that grants leases and applies flushes atomically, and the webdis wire format of its calls.

#[allow(unused_imports)]
use super::*;

/// The one script every call runs (atomic in Redis). `ARGV[1]` is `sync`
/// (flush `delta` once per sequence number `ARGV[3]`, then change the lease
/// by the signed `change`) or `grow` (grow the lease by up to `change`);
/// `ARGV[2]` the instance, `ARGV[4]` the lease time to live (ms); then per
/// key: limit, delta, change, key TTL (s, 0 = keep). Returns per key: own
/// lease, fleet used, fleet leased, granted now. Expired leases of other
/// instances (a killed Envoy's) are reclaimed when a grant falls short, and
/// otherwise at most once per lease lifetime per key (`n`: next scan).
pub const LUA_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local op, inst, seq, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lf, ef, sf = 'l:' .. inst, 'e:' .. inst, 's:' .. inst
local out = {}
for i, h in ipairs(KEYS) do
  local a = 4 + (i - 1) * 4
  local lim, delta, change, kttl = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local used = tonumber(redis.call('HGET', h, 'u') or '0')
  local leased = tonumber(redis.call('HGET', h, 'L') or '0')
  local own = tonumber(redis.call('HGET', h, lf) or '0')
  local want = 0
  local granted = 0
  if op == 'sync' then
    local last = tonumber(redis.call('HGET', h, sf) or '0')
    if seq > last then
      used = used + delta
      local d = math.min(own, delta)
      own = own - d
      leased = leased - d
      if change < 0 then
        local r = math.min(own, -change)
        own = own - r
        leased = leased - r
      else
        want = change
      end
      redis.call('HSET', h, sf, seq)
    end
  else
    want = change
  end
  local short = want > 0 and lim - used - leased < want
  local due = leased > own and now >= tonumber(redis.call('HGET', h, 'n') or '0')
  if short or due then
    local f = redis.call('HGETALL', h)
    for j = 1, #f, 2 do
      local name = f[j]
      if string.sub(name, 1, 2) == 'e:' and name ~= ef and tonumber(f[j + 1]) < now then
        local other = string.sub(name, 3)
        leased = leased - tonumber(redis.call('HGET', h, 'l:' .. other) or '0')
        redis.call('HDEL', h, 'l:' .. other, name)
      end
    end
    redis.call('HSET', h, 'n', now + ttl)
  end
  if want > 0 then
    granted = math.max(0, math.min(want, lim - used - leased))
    own = own + granted
    leased = leased + granted
  end
  if leased < 0 then leased = 0 end
  redis.call('HSET', h, 'u', used, 'L', leased, lf, own, ef, now + ttl)
  if kttl > 0 then redis.call('EXPIRE', h, kttl) end
  out[#out + 1] = own
  out[#out + 1] = used
  out[#out + 1] = leased
  out[#out + 1] = granted
end
return out
"#;

/// One key of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallItem {
    /// Scope name.
    pub scope: String,
    /// Which resource.
    pub res: Resource,
    /// Window start.
    pub window: u64,
    /// The resource's limit.
    pub limit: u64,
    /// Usage to flush (sync).
    pub delta: u64,
    /// Lease change (sync: signed; grow: the amount wanted).
    pub change: i64,
    /// TTL of the Redis hash, seconds.
    pub key_ttl_s: u64,
}

/// One key's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemReply {
    /// This Envoy's outstanding lease after the call.
    pub own: u64,
    /// Fleet-wide use.
    pub used: u64,
    /// Sum of all leases.
    pub leased: u64,
    /// Granted by this call.
    pub granted: u64,
}

/// Percent-encode one webdis argument: `/` separates arguments and `.`
/// picks the output format, so everything but unreserved characters is
/// escaped.
pub fn webdis_arg(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
}

/// The body of a webdis `POST /`: `EVAL/<script>/<n>/<keys...>/<args...>`.
pub fn call_body(
    prefix: &str,
    op: &str,
    inst: &str,
    seq: u64,
    lease_ttl_ms: u64,
    items: &[CallItem],
) -> Vec<u8> {
    let mut s = String::with_capacity(LUA_SCRIPT.len() * 2 + items.len() * 120);
    s.push_str("EVAL/");
    webdis_arg(LUA_SCRIPT, &mut s);
    s.push('/');
    s.push_str(&items.len().to_string());
    for it in items {
        s.push('/');
        webdis_arg(&redis_key(prefix, &it.scope, it.res, it.window), &mut s);
    }
    for a in [op, inst, &seq.to_string(), &lease_ttl_ms.to_string()] {
        s.push('/');
        webdis_arg(a, &mut s);
    }
    for it in items {
        for a in [
            it.limit.to_string(),
            it.delta.to_string(),
            it.change.to_string(),
            it.key_ttl_s.to_string(),
        ] {
            s.push('/');
            webdis_arg(&a, &mut s);
        }
    }
    s.into_bytes()
}

/// Read webdis's answer (`{"EVAL": [own, used, leased, granted, ...]}`);
/// an error reply, another shape or a wrong count is an error.
pub fn parse_reply(status: u16, body: &[u8], n: usize) -> Result<Vec<ItemReply>, String> {
    if status != 200 {
        return Err(format!("webdis answered HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("webdis answer: {e}"))?;
    let arr = v
        .get("EVAL")
        .and_then(Value::as_array)
        .ok_or_else(|| "webdis answer has no EVAL array".to_string())?;
    if arr.first() == Some(&Value::Bool(false)) {
        return Err(format!(
            "Redis error: {}",
            arr.get(1).and_then(Value::as_str).unwrap_or("unknown")
        ));
    }
    if arr.len() != n * 4 {
        return Err(format!(
            "webdis answer has {} numbers, expected {}",
            arr.len(),
            n * 4
        ));
    }
    let num = |i: usize| -> Result<u64, String> {
        let v = arr.get(i).ok_or("short answer")?;
        v.as_i64()
            .map(|x| x.max(0) as u64)
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("webdis answer item {i} is not a number"))
    };
    (0..n)
        .map(|i| {
            Ok(ItemReply {
                own: num(i * 4)?,
                used: num(i * 4 + 1)?,
                leased: num(i * 4 + 2)?,
                granted: num(i * 4 + 3)?,
            })
        })
        .collect()
}

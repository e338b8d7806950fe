"""The Lua scripts of the Redis channel: each one step, atomic, and safe to run twice.

Every key of a queue shares the hash tag ``{<queue>}``, so the scripts also run on
Redis Cluster. Times come from the server's clock (``TIME``), never a client's.

A stored message is a flat list of field/value pairs (``id``, ``name``, ``args``,
``att``, ``dlv``, ``to``, ``key``, ``par``; ``at`` is added by the script): a stream
entry as it is, ``cmsgpack``-packed in the body hash while it is delayed.

Scripts that may be retried after a connection error are idempotent: adding checks a
``seen`` key written with the messages (its name is made by the client, one per
call), and every step
that ends an entry (acknowledge, dead-letter, release, reschedule) first deletes the
entry and does nothing more when it was already gone.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACK",
    "ADD",
    "DEAD",
    "PROMOTE",
    "PURGE_ALL",
    "RECLAIM",
    "RELEASE",
    "RENEW",
    "REPLAY",
    "RESCHEDULE",
    "RETIRE",
]

_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = string.format('%d', now)
"""

#: KEYS: stream, delayed, body, keys, seen (this call's own, named by the client).
#: ARGV: capacity (-1: none), seen_ttl_ms, group, consumer, read count, n acks, n key
#: args, the entry ids to acknowledge (n acks), key/id pairs to free (n key args, flat),
#: then per message: id, name, args, att, dlv, to, key, par, delay_ms.
#: Acknowledges and deletes the entries (a consumer's settlements riding along), adds
#: the messages in order (enqueue calls that arrived together), then reads up to
#: *read count* new entries for *consumer* (``XREADGROUP``, not blocking). The seen
#: key keeps the results: a retry of the same call (its reply was lost) adds nothing
#: again and gets them (and reads nothing; acknowledging twice is harmless).
#: -> {per message a pair: 1, at (added); 2, other id (key taken); 3, '' (full) --
#: then the entries read: {{id, {field, value...}}...}}
ADD: Final = (
    _NOW
    + """
local cap = tonumber(ARGV[1])
local nack, nkeys = tonumber(ARGV[6]), tonumber(ARGV[7])
if nack > 0 then
  redis.call('XACK', KEYS[1], ARGV[3], unpack(ARGV, 8, 7 + nack))
  redis.call('XDEL', KEYS[1], unpack(ARGV, 8, 7 + nack))
end
for i = 8 + nack, 7 + nack + nkeys, 2 do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[4], ARGV[i]) end
end
local seen = redis.call('GET', KEYS[5])
if seen then return {cmsgpack.unpack(seen), {}} end
local base = 7 + nack + nkeys
local count = -1
if cap >= 0 then count = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) end
local out = {}
local n = (#ARGV - base) / 9
for m = 1, n do
  local a = base + (m - 1) * 9
  local id, key = ARGV[a + 1], ARGV[a + 7]
  local other = false
  if key ~= '' then other = redis.call('HGET', KEYS[4], key) end
  if other then
    table.insert(out, 2); table.insert(out, other)
  elseif cap >= 0 and count >= cap then
    table.insert(out, 3); table.insert(out, '')
  else
    local fields = {'id', id, 'name', ARGV[a + 2], 'args', ARGV[a + 3], 'att', ARGV[a + 4],
                    'dlv', ARGV[a + 5], 'to', ARGV[a + 6], 'key', key, 'par', ARGV[a + 8],
                    'at', nows}
    local delay = tonumber(ARGV[a + 9])
    if delay > 0 then
      redis.call('HSET', KEYS[3], id, cmsgpack.pack(fields))
      redis.call('ZADD', KEYS[2], now + delay, id)
    else
      redis.call('XADD', KEYS[1], '*', unpack(fields))
    end
    if key ~= '' then redis.call('HSET', KEYS[4], key, id) end
    count = count + 1
    table.insert(out, 1); table.insert(out, nows)
  end
end
if n > 0 then redis.call('SET', KEYS[5], cmsgpack.pack(out), 'PX', ARGV[2]) end
local got = {}
local want = tonumber(ARGV[5])
if want > 0 then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', want, 'STREAMS',
                       KEYS[1], '>')
  if r then got = r[1][2] end
end
return {out, got}
"""
)

#: KEYS: stream, delayed, body.  ARGV: limit.
#: Moves due delayed messages into the stream. -> {moved, ms until the next is due or -1}
PROMOTE: Final = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  local packed = redis.call('HGET', KEYS[3], id)
  if packed then
    local fields = cmsgpack.unpack(packed)
    for i = 1, #fields, 2 do
      if fields[i] == 'at' then fields[i + 1] = nows end
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
local wait = tonumber(nxt[2]) - now
if wait < 0 then wait = 0 end
return {#due, wait}
"""
)

#: KEYS: stream, keys.  ARGV: group, n, entry ids (n), then key/id pairs to free.
#: Acknowledges and deletes the entries; frees the keys still held by those ids.
ACK: Final = """
local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, n + 2))
  redis.call('XDEL', KEYS[1], unpack(ARGV, 3, n + 2))
end
for i = n + 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
return n
"""

_END_ENTRY: Final = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
"""

#: KEYS: stream, keys, dead.  ARGV: group, entry id, id, key, cap, dead-letter fields...
#: -> 1 written, 0 the entry was gone (settled before).
DEAD: Final = (
    _END_ENTRY
    + _NOW
    + """
if ARGV[4] ~= '' and redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[3] then
  redis.call('HDEL', KEYS[2], ARGV[4])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'failed', nows, unpack(ARGV, 6))
return 1
"""
)

#: KEYS: stream.  ARGV: group, entry id, message fields...
#: Hands an entry back at once: re-added at the end of the stream (deliveries kept).
RELEASE: Final = (
    _END_ENTRY
    + _NOW
    + """
redis.call('XADD', KEYS[1], '*', 'at', nows, unpack(ARGV, 3))
return 1
"""
)

#: KEYS: stream, delayed, body.  ARGV: group, entry id, id, delay_ms, message fields...
RESCHEDULE: Final = (
    _END_ENTRY
    + _NOW
    + """
local fields = {'at', nows, unpack(ARGV, 5)}
redis.call('HSET', KEYS[3], ARGV[3], cmsgpack.pack(fields))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
return 1
"""
)

#: KEYS: stream.  ARGV: group, consumer, entry ids...
#: Renews the leases (idle time back to 0, no delivery counted) of the entries this
#: consumer still owns. -> the ids it no longer owns (lease lost).
RENEW: Final = """
local mine, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then table.insert(mine, ARGV[i]) else table.insert(lost, ARGV[i]) end
end
if #mine > 0 then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine), 'JUSTID')
end
return lost
"""

#: KEYS: stream, cursor, lock.  ARGV: group, consumer, min idle ms, count, max calls,
#: lock ms.  One sweeper at a time across the fleet (the lock, also a rate limit):
#: XAUTOCLAIM from the stored cursor, following it. -> nil when another sweeps, else
#: {{entry id, fields, delivery count}...}
RECLAIM: Final = """
if not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[6]) then return nil end
local cursor = redis.call('GET', KEYS[2]) or '0-0'
local want = tonumber(ARGV[4])
local out = {}
for _ = 1, tonumber(ARGV[5]) do
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,
                      'COUNT', want - #out)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local count = 1
    if #p == 1 then count = p[1][4] end
    table.insert(out, {e[1], e[2], count})
  end
  if cursor == '0-0' or #out >= want then break end
end
redis.call('SET', KEYS[2], cursor)
return out
"""

#: KEYS: stream.  ARGV: group, consumer, entries still running here (kept).
#: At close: hands back what is still pending for this consumer (entries it read but
#: never handed out), then removes the consumer once it owns nothing. -> released
RETIRE: Final = (
    _NOW
    + """
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local released = 0
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000, ARGV[2])
for _, p in ipairs(pending) do
  local entry = redis.call('XRANGE', KEYS[1], p[1], p[1])
  if keep[p[1]] then
    entry = {}
  else
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
  end
  if #entry == 1 and redis.call('XDEL', KEYS[1], p[1]) == 1 then
    local fields = entry[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'at' then fields[i + 1] = nows end
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    released = released + 1
  end
end
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return released
"""
)

#: KEYS: stream, dead, keys.  ARGV: dead entry ids...
#: Back to the queue, attempts and deliveries reset. -> how many
REPLAY: Final = (
    _NOW
    + """
local n = 0
for i = 1, #ARGV do
  local entry = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
  if #entry == 1 and redis.call('XDEL', KEYS[2], ARGV[i]) == 1 then
    local d = {}
    local f = entry[1][2]
    for j = 1, #f, 2 do d[f[j]] = f[j + 1] end
    local key = d['key'] or ''
    if key ~= '' and redis.call('HSETNX', KEYS[3], key, d['id']) == 0 then key = '' end
    redis.call('XADD', KEYS[1], '*', 'id', d['id'], 'name', d['name'], 'args', d['args'],
               'att', '0', 'dlv', '0', 'to', d['to'] or '', 'key', key, 'par', d['par'] or '',
               'at', nows)
    n = n + 1
  end
end
return n
"""
)

#: KEYS: dead.  -> how many dead letters were deleted
PURGE_ALL: Final = """
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
"""

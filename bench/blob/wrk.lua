-- wrk script for bench/blob/run.sh: PUTs distinct bodies to fresh keys, or GETs random keys
-- among those stored before. Settings come from the environment:
--   BENCH_MODE    put | get
--   BENCH_PREFIX  path prefix, e.g. /buckets/bench/keys/ (ours) or /bench/ (nginx)
--   BENCH_SIZE    body size in bytes (put)
--   BENCH_KEYS    how many keys exist to GET from (get)
--   BENCH_AUTH    Authorization header value, or empty
--   BENCH_RUN     a tag that makes this run's PUT keys distinct from earlier runs'
local mode = os.getenv("BENCH_MODE") or "put"
local prefix = os.getenv("BENCH_PREFIX") or "/"
local size = tonumber(os.getenv("BENCH_SIZE") or "4096")
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local auth = os.getenv("BENCH_AUTH") or ""
local run = os.getenv("BENCH_RUN") or "0"

local threads = {}
local counter = 0
local base = nil
local thread_id = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  -- Every body is distinct (a counter up front), so neither server can deduplicate.
  base = string.rep("x", size - 24)
  math.randomseed(thread_id * 7919 + os.time())
  if auth ~= "" then
    wrk.headers["Authorization"] = auth
  end
end

function request()
  counter = counter + 1
  if mode == "put" then
    local tag = string.format("%s-%d-%d", run, thread_id, counter)
    local body = string.format("%-24s", string.sub(tag, 1, 24)) .. base
    return wrk.format("PUT", prefix .. tag, nil, body)
  else
    local k = math.random(nkeys) - 1
    return wrk.format("GET", prefix .. "seed-" .. k, nil, nil)
  end
end

-- No response() hook on purpose: with one, wrk hands every response's headers and body to Lua,
-- copying each 1 MiB body into a Lua string. That made the client the bottleneck of the 1 MiB
-- GET runs (about 1,200 GETs/s against either server, 3,200/s without it) and measured wrk's
-- Lua rather than the servers. Failed requests still show: wrk counts non-2xx/3xx answers
-- itself, and run.sh stops on any.
